"""The AWS target as a Python CDK app: network, data, EKS cluster and DL1 training stacks."""

"""What crosses component boundaries, owned once and imported by both sides.

``contracts`` imports nothing from ``infra`` or ``workloads``: the CDK app, the EKS Anywhere code and
the workloads all depend on it, never on each other's internals. It holds the typed configuration,
the error types, the artifacts layout, the names AWS resources share with the tasks that look
them up, and the staged atomic writes every stage uses.
"""

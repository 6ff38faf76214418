"""The stacks of the AWS target; each composes constructs from infra.cdk.components."""

"""Names shared by the CDK app (infra/cdk) and the deploy code: stacks and their outputs.

Plain Python on purpose: the deploy code reads outputs without importing aws-cdk-lib.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# CloudFormation output keys (the CfnOutput ids), grouped by the stack that declares them.
CLUSTER_NAME = "ClusterName"
CLUSTER_ENDPOINT = "ClusterEndpoint"
MODEL_SYNC_ROLE_ARN = "ModelSyncRoleArn"
DL1_INSTANCE_ID = "Dl1InstanceId"
BUCKET_KINDS = ("datasets", "models", "results")
REPOSITORY_KINDS = ("train", "ovms", "bench")


def nodegroup_output(pool: str) -> str:
    """Output key of a node group's name: ``NodegroupC6i`` for pool ``c6i``."""
    return "Nodegroup" + "".join(part.capitalize() for part in re.split(r"[^a-zA-Z0-9]", pool))


def bucket_output(kind: str) -> str:
    return f"{kind.capitalize()}BucketName"


def repository_output(kind: str) -> str:
    return f"{kind.capitalize()}RepositoryUri"


@dataclass(frozen=True)
class StackNames:
    """The four stacks of the AWS target; ``data`` holds what `down` keeps."""

    network: str
    data: str
    cluster: str
    training: str

    @classmethod
    def for_prefix(cls, prefix: str) -> StackNames:
        return cls(
            network=f"{prefix}-network",
            data=f"{prefix}-data",
            cluster=f"{prefix}-cluster",
            training=f"{prefix}-training",
        )

    @property
    def all(self) -> tuple[str, ...]:
        return (self.network, self.data, self.cluster, self.training)

    @property
    def removable(self) -> tuple[str, ...]:
        """What `down` deletes: everything but the data stack (buckets, keys, repositories)."""
        return (self.training, self.cluster, self.network)


def cluster_name(prefix: str) -> str:
    return f"{prefix}-eks"

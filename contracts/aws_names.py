"""Names shared by the CDK app (infra/cdk) and the tasks: stacks, outputs, repositories, tags, prefixes.

Plain Python on purpose: the tasks use these without importing aws-cdk-lib. Each name is produced
here once; both sides call these functions instead of spelling the name. The service account of the
model-sync Pod Identity association is config (``kubernetes.model_sync_service_account``), read by
both the CDK app and the manifests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# CloudFormation output keys (the CfnOutput ids), grouped by the stack that declares them.
CLUSTER_NAME = "ClusterName"
CLUSTER_ENDPOINT = "ClusterEndpoint"
MODEL_SYNC_ROLE_ARN = "ModelSyncRoleArn"
# The Pod Identity role of kubernetes.bench_service_account: writes only BENCH_RESULTS_PREFIX.
BENCH_RESULTS_ROLE_ARN = "BenchResultsRoleArn"
DL1_INSTANCE_ID = "Dl1InstanceId"
BUCKET_KINDS = ("datasets", "models", "results")

# CloudFormation parameters `invoke up --target aws` fills at deploy time (`cdk deploy --parameters`),
# so a synth without credentials stays honest: no guessed AMI id, no guessed caller address.
# The training stack's Habana Deep Learning AMI (type AWS::EC2::Image::Id).
HABANA_AMI_PARAMETER = "HabanaAmiId"
# The cluster stack's public-endpoint allow list (CommaDelimitedList of CIDRs).
ENDPOINT_CIDRS_PARAMETER = "EndpointPublicCidrs"
REPOSITORY_KINDS = ("train", "ovms", "bench")

# Key prefixes inside the buckets. The OVMS model repository in the models bucket: `up` uploads it
# there and the sync init container reads it.
MODEL_REPOSITORY_PREFIX = "ovms"
# Where the in-cluster bench Job uploads its results, in the bucket it read its artifacts from.
BENCH_RESULTS_PREFIX = "bench-results"
# DL1 training exchange in images.dl1_bucket: uploaded datasets and the run directories.
DATASETS_PREFIX = "datasets"
RUNS_PREFIX = "runs"

# The tag `invoke train --target dl1` finds the DL1 instance by.
DL1_TAG_KEY = "Name"
# The custom metric the DL1 training command publishes (dimension InstanceId) while it runs; the
# instance's idle stop does not fire while it arrives, however low the CPU (the work is on Gaudi).
DL1_HEARTBEAT_NAMESPACE = "BoneMarrow/Training"
DL1_HEARTBEAT_METRIC = "TrainingHeartbeat"


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


def repository_name(prefix: str, kind: str) -> str:
    """The ECR repository of an image kind (train, ovms, bench): ``bone-marrow/train``."""
    return f"{prefix}/{kind}"


def dl1_tag_value(prefix: str) -> str:
    return f"{prefix}-dl1"

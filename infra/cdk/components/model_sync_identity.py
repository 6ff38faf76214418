"""EKS Pod Identity for the OVMS model sync: its pods get the (read-only) model sync role."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct


@dataclass(frozen=True)
class ModelSyncIdentityProps:
    cluster: eks.Cluster
    namespace: str
    service_account: str
    role: iam.IRole


class ModelSyncIdentity(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: ModelSyncIdentityProps) -> None:
        super().__init__(scope, construct_id)
        agent = eks.Addon(
            self,
            "PodIdentityAgent",
            # aws_eks_v2.Cluster implements ICluster, but its binding omits kubectl_provider_options.
            cluster=props.cluster,  # type: ignore[arg-type]
            addon_name="eks-pod-identity-agent",
        )
        self.role = props.role
        association = eks.CfnPodIdentityAssociation(
            self,
            "Association",
            cluster_name=props.cluster.cluster_name,
            namespace=props.namespace,
            service_account=props.service_account,
            role_arn=self.role.role_arn,
        )
        association.node.add_dependency(agent)

"""EKS Pod Identity for one service account: its pods get the given role (via the agent add-on)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct


@dataclass(frozen=True)
class ServiceAccountIdentityProps:
    cluster: eks.Cluster
    namespace: str
    service_account: str
    role: iam.IRole
    # The eks-pod-identity-agent add-on: without it running, pods get no credentials.
    agent: eks.CfnAddon


class ServiceAccountIdentity(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: ServiceAccountIdentityProps) -> None:
        super().__init__(scope, construct_id)
        self.role = props.role
        association = eks.CfnPodIdentityAssociation(
            self,
            "Association",
            cluster_name=props.cluster.cluster_name,
            namespace=props.namespace,
            service_account=props.service_account,
            role_arn=self.role.role_arn,
        )
        association.node.add_dependency(props.agent)

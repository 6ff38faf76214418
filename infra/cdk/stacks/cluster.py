"""EKS with managed node groups (one per pool), encrypted secrets, full control-plane logging."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from contracts.aws_names import CLUSTER_ENDPOINT, CLUSTER_NAME, nodegroup_output
from contracts.config import NodePoolConfig
from infra.cdk.acknowledge import acknowledge
from infra.cdk.components.encrypted_log_group import EncryptedLogGroup, EncryptedLogGroupProps
from infra.cdk.components.encryption_key import EncryptionKey, EncryptionKeyProps
from infra.cdk.components.model_sync_identity import ModelSyncIdentity, ModelSyncIdentityProps
from infra.cdk.components.node_pool import NodePool, NodePoolProps
from infra.cdk.stacks.base import ZonedStack

ALL_CONTROL_PLANE_LOGS = [
    eks.ClusterLoggingTypes.API,
    eks.ClusterLoggingTypes.AUDIT,
    eks.ClusterLoggingTypes.AUTHENTICATOR,
    eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
    eks.ClusterLoggingTypes.SCHEDULER,
]


@dataclass(frozen=True)
class ClusterStackProps:
    cluster_name: str
    kubernetes_version: str
    vpc: ec2.IVpc
    node_subnets: ec2.SubnetSelection
    # Empty: the API endpoint is private only.
    endpoint_public_cidrs: tuple[str, ...]
    admin_principal_arns: tuple[str, ...]
    # pool name -> (pool, node labels from config.kubernetes.pool_labels)
    pools: dict[str, tuple[NodePoolConfig, dict[str, str]]]
    namespace: str
    model_sync_service_account: str
    model_sync_role: iam.IRole
    log_retention_days: int


class ClusterStack(ZonedStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, props: ClusterStackProps, **stack_args: Any
    ) -> None:
        super().__init__(scope, construct_id, **stack_args)
        secrets_key = EncryptionKey(
            self,
            "SecretsKey",
            props=EncryptionKeyProps(
                description=f"{props.cluster_name}: Kubernetes secrets", removal_policy=RemovalPolicy.DESTROY
            ),
        ).key
        # EKS writes to this name; creating it first gives the logs a retention and encryption.
        control_plane_logs = EncryptedLogGroup(
            self,
            "ControlPlaneLogs",
            props=EncryptedLogGroupProps(
                description="EKS control-plane logs",
                retention_days=props.log_retention_days,
                log_group_name=f"/aws/eks/{props.cluster_name}/cluster",
            ),
        )
        self.cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=props.cluster_name,
            version=eks.KubernetesVersion.of(props.kubernetes_version),
            vpc=props.vpc,
            vpc_subnets=[props.node_subnets],
            # Managed node groups only: no Auto Mode, no default capacity, no kubectl Lambda.
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            endpoint_access=_endpoint_access(props.endpoint_public_cidrs),
            cluster_logging=ALL_CONTROL_PLANE_LOGS,
            secrets_encryption_key=secrets_key,
            # The creator is CloudFormation's execution role; admins get explicit access entries instead.
            bootstrap_cluster_creator_admin_permissions=False,
            output_config_command=False,
        )
        self.cluster.node.add_dependency(control_plane_logs)
        acknowledge(
            self.cluster.role,
            rule="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonEKSClusterPolicy]",
            reason="EKS requires the AWS managed AmazonEKSClusterPolicy on the cluster service role.",
        )
        admin_policy = eks.AccessPolicy.from_access_policy_name(
            "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
        )
        for arn in props.admin_principal_arns:
            # Named by the ARN, so adding or removing one admin leaves the others' entries alone.
            digest = hashlib.sha256(arn.encode()).hexdigest()[:8]
            self.cluster.grant_access(f"Admin{digest}", arn, [admin_policy])
        CfnOutput(self, CLUSTER_NAME, value=self.cluster.cluster_name)
        CfnOutput(self, CLUSTER_ENDPOINT, value=self.cluster.cluster_endpoint)

        self.node_pools: dict[str, NodePool] = {}
        for pool_name, (pool, labels) in props.pools.items():
            node_pool = NodePool(
                self,
                f"Pool{nodegroup_output(pool_name).removeprefix('Nodegroup')}",
                props=NodePoolProps(
                    cluster=self.cluster, pool=pool, labels=labels, subnets=props.node_subnets
                ),
            )
            _acknowledge_node_role(node_pool)
            self.node_pools[pool_name] = node_pool
            CfnOutput(self, nodegroup_output(pool_name), value=node_pool.nodegroup.nodegroup_name)

        ModelSyncIdentity(
            self,
            "ModelSync",
            props=ModelSyncIdentityProps(
                cluster=self.cluster,
                namespace=props.namespace,
                service_account=props.model_sync_service_account,
                role=props.model_sync_role,
            ),
        )


def _endpoint_access(public_cidrs: tuple[str, ...]) -> eks.EndpointAccess:
    if not public_cidrs:
        return eks.EndpointAccess.PRIVATE
    return eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from(*public_cidrs)


def _acknowledge_node_role(node_pool: NodePool) -> None:
    for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"):
        acknowledge(
            node_pool.nodegroup,
            rule=f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]",
            reason=f"EKS managed node groups require the AWS managed {policy} on the node role.",
        )

"""EKS with managed node groups (one per pool, plus the bench pool), pinned managed add-ons,
encrypted secrets, full control-plane logging, an endpoint public only to the deploying machine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, CfnParameter, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from contracts.aws_names import CLUSTER_ENDPOINT, CLUSTER_NAME, ENDPOINT_CIDRS_PARAMETER, nodegroup_output
from contracts.config import BENCH_POOL, EksAddons, NodePoolConfig, NodeTaint
from infra.cdk.acknowledge import acknowledge
from infra.cdk.components.encrypted_log_group import EncryptedLogGroup, EncryptedLogGroupProps
from infra.cdk.components.encryption_key import EncryptionKey, EncryptionKeyProps
from infra.cdk.components.managed_addons import ManagedAddons, ManagedAddonsProps
from infra.cdk.components.node_config import STATIC_CPU_MANAGER
from infra.cdk.components.node_pool import NodePool, NodePoolProps
from infra.cdk.components.service_account_identity import (
    ServiceAccountIdentity,
    ServiceAccountIdentityProps,
)
from infra.cdk.stacks.base import ZonedStack

# The eks-pod-identity-agent add-on's logical id since the first release (kept, see below).
POD_IDENTITY_AGENT_LOGICAL_ID = "ModelSyncPodIdentityAgent3E6D3F08"

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
    # The VPC's CIDR as configured (a literal: the security group rule stays checkable by cdk-nag).
    vpc_cidr: str
    node_subnets: ec2.SubnetSelection
    # False: the API endpoint is private only. True: also public, to the CIDRs of the
    # ENDPOINT_CIDRS_PARAMETER parameter that `invoke up` fills (default: default_public_cidrs).
    public_endpoint: bool
    default_public_cidrs: tuple[str, ...]
    # STANDARD or EXTENDED (the cluster's upgrade policy).
    support_type: str
    addons: EksAddons
    admin_principal_arns: tuple[str, ...]
    # pool name -> (pool, node labels from config.kubernetes.pool_labels): the serving pools.
    pools: dict[str, tuple[NodePoolConfig, dict[str, str]]]
    # The load generator's pool (BENCH_POOL): its labels and the taint only the bench Job tolerates.
    bench_pool: tuple[NodePoolConfig, dict[str, str]]
    bench_taint: NodeTaint
    namespace: str
    model_sync_service_account: str
    model_sync_role: iam.IRole
    bench_service_account: str
    bench_results_role: iam.IRole
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
            endpoint_access=self._endpoint_access(props),
            cluster_logging=ALL_CONTROL_PLANE_LOGS,
            secrets_encryption_key=secrets_key,
            # The creator is CloudFormation's execution role; admins get explicit access entries instead.
            bootstrap_cluster_creator_admin_permissions=False,
            output_config_command=False,
        )
        self.cluster.node.add_dependency(control_plane_logs)
        # The private endpoint answers inside the VPC (a bastion, a VPN or Direct Connect into it, or
        # `invoke up` run there); nodes reach it through the cluster security group EKS adds itself.
        self.cluster.connections.allow_from(
            ec2.Peer.ipv4(props.vpc_cidr), ec2.Port.tcp(443), "Kubernetes API from inside the VPC"
        )
        cluster_resource = self.cluster.node.default_child
        if not isinstance(cluster_resource, eks.CfnCluster):
            raise TypeError("aws_eks_v2.Cluster has no CfnCluster to set the upgrade policy on")
        # aws_eks_v2.Cluster has no upgrade policy property yet.
        cluster_resource.upgrade_policy = eks.CfnCluster.UpgradePolicyProperty(
            support_type=props.support_type
        )
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

        self.addons = ManagedAddons(
            self, "Addons", props=ManagedAddonsProps(cluster=self.cluster, versions=props.addons)
        )
        # Deployed clusters already have this add-on under its first logical id; a new id would make
        # CloudFormation create it a second time (EKS refuses: it exists) before deleting the old one.
        self.addons.pod_identity_agent.override_logical_id(POD_IDENTITY_AGENT_LOGICAL_ID)

        # Serving nodes run the static CPU manager: OVMS's Guaranteed pods get exclusive cores. The
        # bench pool does not need it (its client shares cores with nothing it measures).
        node_pools = [
            (
                name,
                NodePoolProps(
                    cluster=self.cluster,
                    pool=pool,
                    labels=labels,
                    subnets=props.node_subnets,
                    kubelet_config=STATIC_CPU_MANAGER,
                ),
            )
            for name, (pool, labels) in props.pools.items()
        ]
        bench_pool, bench_labels = props.bench_pool
        node_pools.append(
            (
                BENCH_POOL,
                NodePoolProps(
                    cluster=self.cluster,
                    pool=bench_pool,
                    labels=bench_labels,
                    subnets=props.node_subnets,
                    taints=(props.bench_taint,),
                ),
            )
        )
        self.node_pools: dict[str, NodePool] = {}
        for pool_name, pool_props in node_pools:
            node_pool = NodePool(
                self, f"Pool{nodegroup_output(pool_name).removeprefix('Nodegroup')}", props=pool_props
            )
            # A node that joins before the VPC CNI add-on runs the self-managed CNI without policy
            # enforcement (and without kube-proxy / Pod Identity agent of the pinned versions).
            for addon in self.addons.before_nodes:
                node_pool.nodegroup.node.add_dependency(addon)
            _acknowledge_node_role(node_pool)
            self.node_pools[pool_name] = node_pool
            CfnOutput(self, nodegroup_output(pool_name), value=node_pool.nodegroup_name)
        # CoreDNS (a Deployment) becomes ACTIVE only once serving nodes can run it.
        for addon in self.addons.needs_nodes:
            for pool_name in props.pools:
                addon.node.add_dependency(self.node_pools[pool_name].nodegroup)

        for construct_id, service_account, role in (
            ("ModelSync", props.model_sync_service_account, props.model_sync_role),
            ("BenchResults", props.bench_service_account, props.bench_results_role),
        ):
            ServiceAccountIdentity(
                self,
                construct_id,
                props=ServiceAccountIdentityProps(
                    cluster=self.cluster,
                    namespace=props.namespace,
                    service_account=service_account,
                    role=role,
                    agent=self.addons.pod_identity_agent,
                ),
            )

    def _endpoint_access(self, props: ClusterStackProps) -> eks.EndpointAccess:
        if not props.public_endpoint:
            return eks.EndpointAccess.PRIVATE
        # Filled at deploy time: a synth without credentials knows no caller address.
        cidrs = CfnParameter(
            self,
            ENDPOINT_CIDRS_PARAMETER,
            type="CommaDelimitedList",
            description="CIDRs that may reach the public Kubernetes API endpoint (`invoke up` passes them)",
            default=",".join(props.default_public_cidrs) if props.default_public_cidrs else None,
        )
        return eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from(*cidrs.value_as_list)


def _acknowledge_node_role(node_pool: NodePool) -> None:
    for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"):
        acknowledge(
            node_pool.nodegroup,
            rule=f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]",
            reason=f"EKS managed node groups require the AWS managed {policy} on the node role.",
        )

"""The whole AWS target from the typed toolkit config: which stacks, with which props.

Every decision is taken here at synth time from the config; nothing reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Environment, Validations
from aws_cdk import aws_ec2 as ec2
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

from contracts.aws_names import DL1_TAG_KEY, StackNames, cluster_name, dl1_tag_value
from contracts.config import ToolkitConfig
from infra.cdk.components.monthly_budget import MonthlyBudgetProps
from infra.cdk.components.training_instance import TrainingInstanceProps
from infra.cdk.stacks.cluster import ClusterStack, ClusterStackProps
from infra.cdk.stacks.data import DataStack, DataStackProps, PodIdentityScope
from infra.cdk.stacks.network import NODES_SUBNETS, TRAINING_SUBNETS, NetworkStack, NetworkStackProps
from infra.cdk.stacks.training import TrainingStack, TrainingStackProps

# Context key through which `invoke up` hands the effective toolkit config (a JSON file) to the app.
CONFIG_FILE_CONTEXT = "bmc:config-file"


@dataclass(frozen=True)
class ToolkitStacks:
    network: NetworkStack
    data: DataStack
    cluster: ClusterStack
    training: TrainingStack


def add_stacks(app: App, *, config: ToolkitConfig, account: str | None) -> ToolkitStacks:
    aws, kubernetes = config.aws, config.kubernetes
    # kube-proxy must be of the cluster's minor version (the vSphere side shares kubernetes.version).
    aws.addons.check_kubernetes_version("aws.addons", kubernetes.version)
    env = Environment(account=account, region=aws.region)
    names = StackNames.for_prefix(aws.resource_prefix)
    network = NetworkStack(
        app,
        names.network,
        env=env,
        zones=aws.availability_zones,
        description="Bone-marrow toolkit: VPC, NAT, flow logs",
        props=NetworkStackProps(
            availability_zones=aws.availability_zones,
            cidr=aws.vpc_cidr,
            nat_gateways=aws.nat_gateways,
            log_retention_days=aws.log_retention_days,
        ),
    )
    data = DataStack(
        app,
        names.data,
        env=env,
        zones=aws.availability_zones,
        description="Bone-marrow toolkit: data buckets and image repositories (kept by `invoke down`)",
        props=DataStackProps(
            resource_prefix=aws.resource_prefix,
            pod_identity=PodIdentityScope(
                cluster_name=cluster_name(aws.resource_prefix),
                namespace=kubernetes.namespace,
                model_sync_service_account=kubernetes.model_sync_service_account,
                bench_service_account=kubernetes.bench_service_account,
            ),
            bench_artifacts_prefix=aws.bench_artifacts_prefix,
        ),
    )
    cluster = ClusterStack(
        app,
        names.cluster,
        env=env,
        zones=aws.availability_zones,
        description="Bone-marrow toolkit: EKS cluster with c5 and c6i node groups",
        props=ClusterStackProps(
            cluster_name=cluster_name(aws.resource_prefix),
            kubernetes_version=kubernetes.version,
            vpc=network.vpc,
            vpc_cidr=aws.vpc_cidr,
            node_subnets=network.subnets(NODES_SUBNETS),
            public_endpoint=aws.endpoint_access == "public-and-private",
            default_public_cidrs=aws.endpoint_public_cidrs,
            support_type=aws.cluster_support_type,
            addons=aws.addons,
            admin_principal_arns=aws.cluster_admin_arns,
            pools={name: (pool, kubernetes.pool_labels(name, pool)) for name, pool in aws.pools.items()},
            bench_pool=(aws.bench_pool, kubernetes.bench_pool_labels(aws.bench_pool)),
            bench_taint=kubernetes.bench_taint(),
            namespace=kubernetes.namespace,
            model_sync_service_account=kubernetes.model_sync_service_account,
            model_sync_role=data.model_sync_role,
            bench_service_account=kubernetes.bench_service_account,
            bench_results_role=data.bench_results_role,
            log_retention_days=aws.log_retention_days,
        ),
    )
    training = TrainingStack(
        app,
        names.training,
        env=env,
        zones=aws.availability_zones,
        description="Bone-marrow toolkit: DL1 training instance and monthly budget",
        props=TrainingStackProps(
            instance=TrainingInstanceProps(
                vpc=network.vpc,
                # One zone (the first): the instance's volume and subnet stay put across updates.
                subnets=ec2.SubnetSelection(
                    subnet_group_name=TRAINING_SUBNETS, availability_zones=[aws.availability_zones[0]]
                ),
                instance_type=aws.dl1_instance_type,
                region=aws.region,
                pinned_ami_id=aws.habana_ami_ids.get(aws.region),
                volume_gib=aws.dl1_volume_gib,
                idle_minutes=aws.dl1_idle_minutes,
                idle_cpu_percent=aws.dl1_idle_cpu_percent,
                role=data.training_role,
                identity_tag=(DL1_TAG_KEY, dl1_tag_value(aws.resource_prefix)),
                log_retention_days=aws.log_retention_days,
            ),
            budget=MonthlyBudgetProps(
                budget_name=f"{aws.resource_prefix}-monthly",
                amount_usd=aws.budget_monthly_usd,
                email=aws.budget_email,
            ),
        ),
    )
    return ToolkitStacks(network=network, data=data, cluster=cluster, training=training)


def add_compliance_checks(app: App) -> None:
    """cdk-nag AwsSolutions and HIPAA Security: an unacknowledged finding stops synthesis."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))

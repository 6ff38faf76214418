"""VPC over explicit zones: public subnets for NAT, private ones for EKS nodes and DL1; flow logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk.acknowledge import acknowledge
from infra.cdk.components.encrypted_log_group import EncryptedLogGroup, EncryptedLogGroupProps
from infra.cdk.stacks.base import ZonedStack

NODES_SUBNETS = "nodes"
TRAINING_SUBNETS = "training"


@dataclass(frozen=True)
class NetworkStackProps:
    availability_zones: tuple[str, ...]
    cidr: str
    nat_gateways: int
    log_retention_days: int


class NetworkStack(ZonedStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, props: NetworkStackProps, **stack_args: Any
    ) -> None:
        super().__init__(scope, construct_id, **stack_args)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(props.cidr),
            # Explicit zones: no account lookup at synth time, and zones known to offer dl1.24xlarge.
            availability_zones=list(props.availability_zones),
            nat_gateways=props.nat_gateways,
            subnet_configuration=[
                # Only the NAT gateways live here (with their own Elastic IPs): no automatic public IPs.
                ec2.SubnetConfiguration(
                    name="public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=24,
                    map_public_ip_on_launch=False,
                ),
                ec2.SubnetConfiguration(
                    name=NODES_SUBNETS, subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=19
                ),
                ec2.SubnetConfiguration(
                    name=TRAINING_SUBNETS, subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24
                ),
            ],
            # Closing the default security group needs a Lambda-backed custom resource; nothing uses it.
            restrict_default_security_group=False,
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )
        acknowledge(
            self.vpc,
            rule="HIPAA.Security-VPCDefaultSecurityGroupClosed",
            reason="No resource is attached to the default security group; every resource has its own.",
        )
        for subnet in self.vpc.public_subnets:
            Tags.of(subnet).add("kubernetes.io/role/elb", "1")
            acknowledge(
                subnet,
                rule="HIPAA.Security-VPCNoUnrestrictedRouteToIGW",
                reason="Public subnet of the NAT gateways: its default route must be the internet gateway.",
            )
        for subnet in self.vpc.public_subnets + self.vpc.private_subnets:
            acknowledge(
                subnet,
                rule="CloudFormation-Validate::W3010",
                reason="Zones are explicit by design: config.aws.availability_zones, ones offering DL1.",
            )
        for subnet in self.vpc.select_subnets(subnet_group_name=NODES_SUBNETS).subnets:
            Tags.of(subnet).add("kubernetes.io/role/internal-elb", "1")
        flow_logs = EncryptedLogGroup(
            self,
            "FlowLogs",
            props=EncryptedLogGroupProps(
                description="VPC flow logs", retention_days=props.log_retention_days
            ),
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                flow_logs.log_group, self._flow_log_role(flow_logs.log_group)
            ),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

    def _flow_log_role(self, log_group: logs.ILogGroup) -> iam.IRole:
        """The delivery role, with a managed policy (CDK's default grant would be an inline policy)."""
        role = iam.Role(self, "FlowLogRole", assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"))
        role.add_managed_policy(
            iam.ManagedPolicy(
                self,
                "FlowLogDelivery",
                description="VPC flow log delivery into its one log group",
                statements=[
                    iam.PolicyStatement(
                        actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                        resources=[log_group.log_group_arn],
                    )
                ],
            )
        )
        return role.without_policy_updates()

    def subnets(self, group: str) -> ec2.SubnetSelection:
        return ec2.SubnetSelection(subnet_group_name=group)

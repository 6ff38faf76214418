"""A managed node group of one instance type, labelled for the OVMS pool that runs on it."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from contracts.config import NodePoolConfig

# Root volume of a node: the OVMS image and the synced model repository fit with room to spare.
NODE_VOLUME_GIB = 30


@dataclass(frozen=True)
class NodePoolProps:
    cluster: eks.Cluster
    pool: NodePoolConfig
    labels: dict[str, str]
    subnets: ec2.SubnetSelection


class NodePool(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: NodePoolProps) -> None:
        super().__init__(scope, construct_id)
        self.launch_template = ec2.CfnLaunchTemplate(
            self,
            "LaunchTemplate",
            launch_template_data=ec2.CfnLaunchTemplate.LaunchTemplateDataProperty(
                # Hop limit 1: pods cannot reach the node's instance metadata (and its role); they use
                # their own identity (Pod Identity).
                metadata_options=ec2.CfnLaunchTemplate.MetadataOptionsProperty(
                    http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
                ),
                block_device_mappings=[
                    ec2.CfnLaunchTemplate.BlockDeviceMappingProperty(
                        device_name="/dev/xvda",
                        ebs=ec2.CfnLaunchTemplate.EbsProperty(
                            volume_size=NODE_VOLUME_GIB,
                            volume_type="gp3",
                            encrypted=True,
                            delete_on_termination=True,
                        ),
                    )
                ],
            ),
        )
        self.nodegroup = eks.Nodegroup(
            self,
            "Nodegroup",
            # aws_eks_v2.Cluster implements ICluster, but its binding omits kubectl_provider_options.
            cluster=props.cluster,  # type: ignore[arg-type]
            instance_types=[ec2.InstanceType(props.pool.instance_type)],
            ami_type=eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
            capacity_type=eks.CapacityType.ON_DEMAND,
            min_size=props.pool.min_size,
            desired_size=props.pool.desired_size,
            max_size=props.pool.max_size,
            labels=props.labels,
            subnets=props.subnets,
            launch_template_spec=eks.LaunchTemplateSpec(
                id=self.launch_template.ref, version=self.launch_template.attr_latest_version_number
            ),
        )

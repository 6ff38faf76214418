"""A managed node group of one instance type, labelled (and tainted) for the pool that runs on it.

Desired size: CDK's Nodegroup always writes ScalingConfig.DesiredSize (desired, else min, else 2),
and CloudFormation sends a node group's ScalingConfig to EKS only when it changes in the template.
So a size set with eks.update_nodegroup_config (the bench pool, scaled up by `invoke bench
--in-cluster`) survives deploys that leave the pool's min/desired/max alone; changing them in
config resets the live size to the configured desired size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from contracts.config import NodePoolConfig, NodeTaint
from infra.cdk.components.node_config import nodeadm_user_data

# Root volume of a node: the OVMS image and the synced model repository fit with room to spare.
NODE_VOLUME_GIB = 30


@dataclass(frozen=True)
class NodePoolProps:
    cluster: eks.Cluster
    pool: NodePoolConfig
    labels: dict[str, str]
    subnets: ec2.SubnetSelection
    taints: tuple[NodeTaint, ...] = ()
    # kubelet settings for nodeadm's NodeConfig (AL2023); empty: EKS's defaults, no user data.
    kubelet_config: Mapping[str, Any] = field(default_factory=dict)


TAINT_EFFECTS = {
    "NoSchedule": eks.TaintEffect.NO_SCHEDULE,
    "PreferNoSchedule": eks.TaintEffect.PREFER_NO_SCHEDULE,
    "NoExecute": eks.TaintEffect.NO_EXECUTE,
}


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
                user_data=nodeadm_user_data(props.kubelet_config) if props.kubelet_config else None,
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
            taints=[
                eks.TaintSpec(effect=TAINT_EFFECTS[t.effect], key=t.key, value=t.value) for t in props.taints
            ]
            or None,
            subnets=props.subnets,
            launch_template_spec=eks.LaunchTemplateSpec(
                id=self.launch_template.ref, version=self.launch_template.attr_latest_version_number
            ),
        )
        resource = self.nodegroup.node.default_child
        if not isinstance(resource, eks.CfnNodegroup):
            raise TypeError("aws_eks_v2.Nodegroup has no CfnNodegroup")
        # Not Nodegroup.nodegroup_name: that is the resource's Ref, "<cluster>/<nodegroup>" (aws-cdk
        # issue 22442), which eks.update_nodegroup_config refuses.
        self.nodegroup_name: str = resource.attr_nodegroup_name

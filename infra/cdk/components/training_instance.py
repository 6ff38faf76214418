"""The DL1 (Habana Gaudi) training instance: private, SSM-managed, stopped when idle."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aws_cdk import Duration, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

# Root device of the Ubuntu-based Habana Deep Learning AMIs.
ROOT_DEVICE = "/dev/sda1"
IDLE_PERIOD = Duration.minutes(5)


@dataclass(frozen=True)
class TrainingInstanceProps:
    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    instance_type: str
    region: str
    ami_id: str
    volume_gib: int
    idle_minutes: int
    idle_cpu_percent: float
    # Its data access (datasets/models/results read-write, training image pull, SSM) is decided in
    # the data stack.
    role: iam.IRole
    # (key, value) that `invoke train --target dl1` finds the instance by.
    identity_tag: tuple[str, str]


class TrainingInstance(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: TrainingInstanceProps) -> None:
        super().__init__(scope, construct_id)
        self.role = props.role
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=props.vpc,
            description="DL1 training instance: no inbound (reached through SSM), outbound for S3/ECR/SSM",
            allow_all_outbound=True,
        )
        self.instance = ec2.Instance(
            self,
            "Instance",
            vpc=props.vpc,
            vpc_subnets=props.subnets,
            instance_type=ec2.InstanceType(props.instance_type),
            machine_image=ec2.MachineImage.generic_linux({props.region: props.ami_id}),
            role=self.role,
            security_group=self.security_group,
            http_tokens=ec2.HttpTokens.REQUIRED,
            # 2, not 1: the training runs in a Habana container (docker bridge = one more hop) that
            # uses the instance role for S3.
            http_put_response_hop_limit=2,
            detailed_monitoring=True,
            instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.STOP,
            ebs_optimized=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE,
                    volume=ec2.BlockDeviceVolume.ebs(
                        props.volume_gib,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        Tags.of(self.instance).add(*props.identity_tag)
        self.idle_alarm = cloudwatch.Alarm(
            self,
            "IdleAlarm",
            alarm_description=(
                f"Stops the DL1 instance after {props.idle_minutes} min below {props.idle_cpu_percent}% CPU"
            ),
            metric=cloudwatch.Metric(
                namespace="AWS/EC2",
                metric_name="CPUUtilization",
                dimensions_map={"InstanceId": self.instance.instance_id},
                statistic="Average",
                period=IDLE_PERIOD,
            ),
            threshold=props.idle_cpu_percent,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=math.ceil(props.idle_minutes / IDLE_PERIOD.to_minutes()),
            # A stopped instance reports nothing; that is not "idle and running".
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.idle_alarm.add_alarm_action(
            cloudwatch_actions.Ec2Action(cloudwatch_actions.Ec2InstanceAction.STOP)
        )

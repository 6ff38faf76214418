"""The DL1 (Habana Gaudi) training instance: private, SSM-managed, stopped when idle.

Idle means low CPU and no training heartbeat: a training runs on the Gaudi cards and may leave the
96 vCPUs nearly idle, so the training command publishes a heartbeat metric while it runs
(workloads/training/remote.py) and the alarm stops the instance only when that is absent too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aws_cdk import CfnParameter, Duration, Stack, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from contracts.aws_names import DL1_HEARTBEAT_METRIC, DL1_HEARTBEAT_NAMESPACE, HABANA_AMI_PARAMETER
from infra.cdk.acknowledge import acknowledge
from infra.cdk.components.instance_stopper import InstanceStopper, InstanceStopperProps

# Root device of the Ubuntu-based Habana Deep Learning AMIs.
ROOT_DEVICE = "/dev/sda1"
IDLE_PERIOD = Duration.minutes(5)


@dataclass(frozen=True)
class TrainingInstanceProps:
    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    instance_type: str
    region: str
    # The default of the stack's AMI parameter (aws.habana_ami_ids[region]); None: no default, the
    # deploy passes the AMI it resolved (`cdk deploy --parameters`).
    pinned_ami_id: str | None
    volume_gib: int
    idle_minutes: int
    idle_cpu_percent: float
    # Its data access (datasets/models/results read-write, training image pull, SSM) is decided in
    # the data stack.
    role: iam.IRole
    # (key, value) that `invoke train --target dl1` finds the instance by.
    identity_tag: tuple[str, str]
    log_retention_days: int


class TrainingInstance(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: TrainingInstanceProps) -> None:
        super().__init__(scope, construct_id)
        self.role = props.role
        # A typed stack parameter (CloudFormation checks it is an image id): synthesis needs no
        # credentials and never writes a guessed id.
        self.ami = CfnParameter(
            Stack.of(self),
            HABANA_AMI_PARAMETER,
            type="AWS::EC2::Image::Id",
            description=f"Habana Deep Learning AMI for the DL1 instance in {props.region}",
            default=props.pinned_ami_id,
        )
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
            machine_image=ec2.MachineImage.generic_linux({props.region: self.ami.value_as_string}),
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
        instance_id = {"InstanceId": self.instance.instance_id}
        cpu = cloudwatch.Metric(
            namespace="AWS/EC2",
            metric_name="CPUUtilization",
            dimensions_map=instance_id,
            statistic="Average",
            period=IDLE_PERIOD,
        )
        heartbeat = cloudwatch.Metric(
            namespace=DL1_HEARTBEAT_NAMESPACE,
            metric_name=DL1_HEARTBEAT_METRIC,
            dimensions_map=instance_id,
            statistic="SampleCount",
            period=IDLE_PERIOD,
        )
        # 1 in a period with low CPU and no heartbeat. A heartbeat that never arrived is missing data,
        # not a heartbeat: FILL makes it 0. Without CPU data (instance stopped) there is no point at
        # all, which is not breaching, so the alarm returns to OK and fires again next time.
        idle = cloudwatch.MathExpression(
            expression=f"IF(cpu < {props.idle_cpu_percent:g} AND FILL(heartbeat, 0) == 0, 1, 0)",
            using_metrics={"cpu": cpu, "heartbeat": heartbeat},
            period=IDLE_PERIOD,
            label="idle (low CPU, no training heartbeat)",
        )
        self.idle_alarm = cloudwatch.Alarm(
            self,
            "IdleAlarm",
            alarm_description=(
                f"Stops the DL1 instance after {props.idle_minutes} min below {props.idle_cpu_percent}% CPU "
                "without a training heartbeat"
            ),
            metric=idle,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=math.ceil(props.idle_minutes / IDLE_PERIOD.to_minutes()),
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        # Not Ec2Action: CloudWatch's EC2 actions refuse an alarm on metric math.
        self.stopper = InstanceStopper(
            self,
            "IdleStop",
            props=InstanceStopperProps(instance=self.instance, log_retention_days=props.log_retention_days),
        )
        self.idle_alarm.add_alarm_action(cloudwatch_actions.LambdaAction(self.stopper.function))
        # The training command publishes the heartbeat with the instance role: that one namespace only.
        self.heartbeat_policy = iam.ManagedPolicy(
            self,
            "HeartbeatPolicy",
            description="DL1 training heartbeat: put metric data in its own namespace only",
            roles=[props.role],
            statements=[
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": DL1_HEARTBEAT_NAMESPACE}},
                )
            ],
        )
        acknowledge(
            self.heartbeat_policy,
            rule="AwsSolutions-IAM5[Resource::*]",
            reason="cloudwatch:PutMetricData takes no resource ARN; the condition names the one namespace.",
        )

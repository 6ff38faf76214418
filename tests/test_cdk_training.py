"""Training stack: the DL1 instance, its AMI parameter, its heartbeat-aware idle stop, the budget."""

from __future__ import annotations

import json
import os

import boto3
import pytest
from aws_cdk.assertions import Match
from cdk_synthesis import AMI, SETTINGS, synthesize, synthesized
from moto_aws import REGION, moto_session  # noqa: F401 (fixture)

from contracts.aws_names import DL1_HEARTBEAT_METRIC, DL1_HEARTBEAT_NAMESPACE, HABANA_AMI_PARAMETER
from infra.cdk.components import instance_stopper_handler


def _instance(synth) -> dict:
    (instance,) = synth.resources("training", "AWS::EC2::Instance").values()
    return instance["Properties"]


def test_dl1_type_ami_parameter_private_training_subnet_in_the_first_zone_no_key():
    synth = synthesized()
    instance = _instance(synth)
    assert instance["InstanceType"] == "dl1.24xlarge"
    assert instance["ImageId"] == {"Ref": HABANA_AMI_PARAMETER}
    assert instance["AvailabilityZone"] == "us-west-2b"
    assert "VpctrainingSubnet1" in json.dumps(instance["SubnetId"])
    assert "KeyName" not in instance and "NetworkInterfaces" not in instance
    assert instance["Monitoring"] is True
    assert instance["InstanceInitiatedShutdownBehavior"] == "stop"


def test_imdsv2_required_and_encrypted_gp3_volume_sized_from_config():
    synth = synthesized()
    instance = _instance(synth)
    (device,) = instance["BlockDeviceMappings"]
    assert device["Ebs"] == {
        "DeleteOnTermination": True,
        "Encrypted": True,
        "VolumeSize": 750,
        "VolumeType": "gp3",
    }
    options = instance["MetadataOptions"]
    assert options["HttpTokens"] == "required"
    assert options["HttpPutResponseHopLimit"] == 2


def test_the_ami_is_a_typed_parameter_defaulting_to_the_pinned_one():
    parameter = synthesized().templates["training"]["Parameters"][HABANA_AMI_PARAMETER]
    assert parameter["Type"] == "AWS::EC2::Image::Id"
    assert parameter["Default"] == AMI


def test_without_a_pinned_ami_it_synthesizes_with_a_parameter_and_no_default():
    settings = {**SETTINGS, "aws": {**SETTINGS["aws"], "habana_ami_ids": {}}}
    synth = synthesize(settings)
    assert synth.error is None, synth.violations()  # the compliance gate passes as well
    parameter = synth.templates["training"]["Parameters"][HABANA_AMI_PARAMETER]
    assert parameter["Type"] == "AWS::EC2::Image::Id" and "Default" not in parameter
    assert _instance(synth)["ImageId"] == {"Ref": HABANA_AMI_PARAMETER}
    assert "ami-" not in json.dumps(synth.templates["training"])


def test_no_inbound_rules_and_the_data_role_through_an_instance_profile():
    synth = synthesized()
    (group,) = synth.resources("training", "AWS::EC2::SecurityGroup").values()
    assert "SecurityGroupIngress" not in group["Properties"]
    (profile,) = synth.resources("training", "AWS::IAM::InstanceProfile").values()
    assert "TrainingAccessRole" in json.dumps(profile["Properties"]["Roles"])
    # The instance's role lives with the data; the only role here is the idle stop function's.
    (role,) = synth.resources("training", "AWS::IAM::Role").values()
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"
    }


def _alarm(synth) -> dict:
    (alarm,) = synth.resources("training", "AWS::CloudWatch::Alarm").values()
    return alarm["Properties"]


def test_idle_alarm_needs_low_cpu_and_no_training_heartbeat():
    synth = synthesized()
    (instance_id,) = synth.resources("training", "AWS::EC2::Instance")
    alarm = _alarm(synth)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["Threshold"] == 1
    assert alarm["EvaluationPeriods"] == 9  # 45 min in 5-min periods
    # No CPU data (a stopped instance) is no point at all: not breaching, so the alarm rearms.
    assert alarm["TreatMissingData"] == "notBreaching"
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    (expression,) = [q for q in queries.values() if "Expression" in q]
    assert expression["ReturnData"] is True
    # A heartbeat that never arrived is missing data, filled as 0, i.e. "no training".
    assert expression["Expression"] == "IF(cpu < 3 AND FILL(heartbeat, 0) == 0, 1, 0)"
    dimensions = [{"Name": "InstanceId", "Value": {"Ref": instance_id}}]
    assert queries["cpu"]["MetricStat"] == {
        "Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization", "Dimensions": dimensions},
        "Period": 300,
        "Stat": "Average",
    }
    assert queries["heartbeat"]["MetricStat"] == {
        "Metric": {
            "Namespace": DL1_HEARTBEAT_NAMESPACE,
            "MetricName": DL1_HEARTBEAT_METRIC,
            "Dimensions": dimensions,
        },
        "Period": 300,
        "Stat": "SampleCount",
    }
    assert not queries["cpu"]["ReturnData"] and not queries["heartbeat"]["ReturnData"]


def test_the_alarm_invokes_a_function_that_may_stop_only_this_instance():
    synth = synthesized()
    (instance_id,) = synth.resources("training", "AWS::EC2::Instance")
    ((function_id, function),) = synth.resources("training", "AWS::Lambda::Function").items()
    assert _alarm(synth)["AlarmActions"] == [{"Fn::GetAtt": [function_id, "Arn"]}]
    props = function["Properties"]
    assert props["Environment"]["Variables"] == {"INSTANCE_ID": {"Ref": instance_id}}
    assert props["Code"]["ZipFile"] == instance_stopper_handler.__loader__.get_source(
        instance_stopper_handler.__name__
    )
    assert props["ReservedConcurrentExecutions"] == 1
    synth.template("training").has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
            "Principal": "lambda.alarms.cloudwatch.amazonaws.com",
        },
    )
    (role,) = synth.resources("training", "AWS::IAM::Role").values()
    policies = synth.templates["training"]["Resources"]
    statements = [
        s
        for ref in role["Properties"]["ManagedPolicyArns"]
        for s in policies[ref["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    ]
    (stop,) = [s for s in statements if "ec2:StopInstances" in json.dumps(s["Action"])]
    assert stop["Action"] == "ec2:StopInstances"
    assert {"Ref": instance_id} in stop["Resource"]["Fn::Join"][1]
    assert not [s for s in statements if s["Resource"] == "*"]


def test_the_instance_role_may_put_only_heartbeat_metrics():
    synth = synthesized()
    (profile,) = synth.resources("training", "AWS::IAM::InstanceProfile").values()
    policies = [
        p["Properties"]
        for p in synth.resources("training", "AWS::IAM::ManagedPolicy").values()
        if p["Properties"].get("Roles") == profile["Properties"]["Roles"]
    ]
    (policy,) = policies
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Action": "cloudwatch:PutMetricData",
            "Condition": {"StringEquals": {"cloudwatch:namespace": DL1_HEARTBEAT_NAMESPACE}},
            "Effect": "Allow",
            "Resource": "*",
        }
    ]


@pytest.fixture
def stopper_env(moto_session, monkeypatch: pytest.MonkeyPatch):  # noqa: F811 (fixture)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_EC2": moto_session.url,
    }.items():
        monkeypatch.setenv(name, value)
    ec2 = moto_session.client("ec2")
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (instance,) = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"]
    monkeypatch.setenv("INSTANCE_ID", instance["InstanceId"])
    return ec2, instance["InstanceId"]


def _state(ec2, instance_id: str) -> str:
    (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservation["Instances"][0]["State"]["Name"]


def test_the_stop_function_stops_its_instance_on_alarm_only(stopper_env):
    ec2, instance_id = stopper_env
    assert os.environ["AWS_ENDPOINT_URL_EC2"].startswith("http://127.0.0.1:")
    assert boto3.client("ec2").meta.endpoint_url == os.environ["AWS_ENDPOINT_URL_EC2"]
    ok = {"alarmData": {"state": {"value": "OK"}}}
    assert instance_stopper_handler.handler(ok, None) == {"stopped": []}
    assert _state(ec2, instance_id) == "running"
    alarm = {"source": "aws.cloudwatch", "alarmData": {"state": {"value": "ALARM"}}}
    assert instance_stopper_handler.handler(alarm, None) == {"stopped": [instance_id]}
    assert _state(ec2, instance_id) == "stopped"


def test_monthly_budget_alerts_by_email():
    synthesized().template("training").has_resource_properties(
        "AWS::Budgets::Budget",
        {
            "Budget": {
                "BudgetName": "bmtest-monthly",
                "BudgetType": "COST",
                "TimeUnit": "MONTHLY",
                "BudgetLimit": {"Amount": 1500, "Unit": "USD"},
            },
            "NotificationsWithSubscribers": Match.array_with(
                [
                    {
                        "Notification": Match.object_like({"NotificationType": "ACTUAL", "Threshold": 80}),
                        "Subscribers": [{"Address": "ml-ops@example.org", "SubscriptionType": "EMAIL"}],
                    }
                ]
            ),
        },
    )

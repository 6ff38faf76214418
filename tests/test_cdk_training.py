"""Training stack: the DL1 instance, its idle alarm, and the monthly budget."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match
from cdk_synthesis import AMI, synthesized


def _instance(synth) -> dict:
    (instance,) = synth.resources("training", "AWS::EC2::Instance").values()
    return instance["Properties"]


def test_dl1_type_pinned_ami_private_training_subnet_in_the_first_zone_no_key():
    synth = synthesized()
    instance = _instance(synth)
    assert instance["InstanceType"] == "dl1.24xlarge"
    assert instance["ImageId"] == AMI
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


def test_no_inbound_rules_and_the_data_role_through_an_instance_profile():
    synth = synthesized()
    (group,) = synth.resources("training", "AWS::EC2::SecurityGroup").values()
    assert "SecurityGroupIngress" not in group["Properties"]
    (profile,) = synth.resources("training", "AWS::IAM::InstanceProfile").values()
    assert "TrainingAccessRole" in json.dumps(profile["Properties"]["Roles"])
    assert not synth.resources("training", "AWS::IAM::Role")  # the role lives with the data


def test_idle_cpu_alarm_stops_the_instance():
    synth = synthesized()
    (instance_id,) = synth.resources("training", "AWS::EC2::Instance")
    synth.template("training").has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/EC2",
            "MetricName": "CPUUtilization",
            "Dimensions": [{"Name": "InstanceId", "Value": {"Ref": instance_id}}],
            "Statistic": "Average",
            "Period": 300,
            "Threshold": 3.0,
            "ComparisonOperator": "LessThanThreshold",
            "EvaluationPeriods": 9,
            "TreatMissingData": "notBreaching",
            "AlarmActions": ["arn:aws:automate:us-west-2:ec2:stop"],
        },
    )


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

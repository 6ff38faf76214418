"""Network stack: VPC over the configured zones, private subnets, NAT, encrypted flow logs."""

from __future__ import annotations

from aws_cdk.assertions import Match
from cdk_synthesis import SETTINGS, synthesized


def test_vpc_uses_the_configured_cidr_and_zones_only():
    synth = synthesized()
    synth.template("network").has_resource_properties(
        "AWS::EC2::VPC", {"CidrBlock": "10.60.0.0/16", "EnableDnsHostnames": True, "EnableDnsSupport": True}
    )
    zones = {
        r["Properties"]["AvailabilityZone"] for r in synth.resources("network", "AWS::EC2::Subnet").values()
    }
    assert zones == set(SETTINGS["aws"]["availability_zones"])


def test_private_subnets_for_nodes_and_training_in_every_zone_and_no_public_ips():
    subnets = synthesized().resources("network", "AWS::EC2::Subnet")
    groups: dict[str, set[str]] = {}
    for subnet in subnets.values():
        tags = {t["Key"]: t["Value"] for t in subnet["Properties"]["Tags"]}
        groups.setdefault(tags["aws-cdk:subnet-name"], set()).add(subnet["Properties"]["AvailabilityZone"])
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
        if tags["aws-cdk:subnet-name"] == "nodes":
            assert tags["kubernetes.io/role/internal-elb"] == "1"
    assert groups == {name: {"us-west-2b", "us-west-2c"} for name in ("public", "nodes", "training")}


def test_nat_gateways_as_configured_and_private_routes_through_them():
    synth = synthesized()
    assert len(synth.resources("network", "AWS::EC2::NatGateway")) == SETTINGS["aws"]["nat_gateways"]
    synth.template("network").has_resource_properties(
        "AWS::EC2::Route", {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": Match.any_value()}
    )


def test_flow_logs_capture_everything_into_an_encrypted_log_group_with_retention():
    synth = synthesized()
    template = synth.template("network")
    template.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"},
    )
    (group,) = synth.resources("network", "AWS::Logs::LogGroup").values()
    assert group["Properties"]["RetentionInDays"] == 365
    key_id = group["Properties"]["KmsKeyId"]["Fn::GetAtt"][0]
    key = synth.templates["network"]["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    logs_statement = [
        s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Sid") == "CloudWatchLogs"
    ]
    assert logs_statement[0]["Principal"] == {"Service": "logs.us-west-2.amazonaws.com"}


def test_flow_log_role_has_a_managed_policy_scoped_to_its_log_group():
    synth = synthesized()
    (policy,) = synth.resources("network", "AWS::IAM::ManagedPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {
        "Fn::GetAtt": [next(iter(synth.resources("network", "AWS::Logs::LogGroup"))), "Arn"]
    }
    assert not synth.resources("network", "AWS::IAM::Policy")  # no inline policies


def test_s3_gateway_endpoint_keeps_bucket_traffic_off_the_nat():
    synthesized().template("network").has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway", "ServiceName": Match.any_value()}
    )

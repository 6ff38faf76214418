"""Cluster stack: EKS (aws_eks_v2) properties that cdk-nag and checkov do not evaluate, node groups."""

from __future__ import annotations

import functools
import json

from cdk_synthesis import ADMIN_ARN, SETTINGS, synthesize, synthesized

from contracts.config import load_config


def _cluster(synth) -> dict:
    (cluster,) = synth.resources("cluster", "AWS::EKS::Cluster").values()
    return cluster["Properties"]


def test_pinned_version_name_and_managed_node_groups_only():
    synth = synthesized()
    cluster = _cluster(synth)
    assert cluster["Version"] == "1.32" and cluster["Name"] == "bmtest-eks"
    assert cluster["ComputeConfig"] == {"Enabled": False}  # no Auto Mode
    types = {r["Type"] for t in synth.templates.values() for r in t["Resources"].values()}
    # No default capacity (an Auto Scaling group), no kubectl provider or other Lambda-backed resources.
    assert not {t for t in types if t.startswith(("AWS::AutoScaling::", "AWS::Lambda::", "Custom::"))}


def test_endpoint_is_private_plus_public_restricted_to_the_configured_cidrs():
    vpc = _cluster(synthesized())["ResourcesVpcConfig"]
    assert vpc["EndpointPrivateAccess"] is True and vpc["EndpointPublicAccess"] is True
    assert vpc["PublicAccessCidrs"] == SETTINGS["aws"]["endpoint_public_cidrs"]


@functools.cache
def _private_only():
    settings = json.loads(json.dumps(SETTINGS))
    settings["aws"]["endpoint_public_cidrs"] = []
    return synthesize(settings, checks=False)


def test_without_public_cidrs_the_endpoint_is_private_only():
    vpc = _cluster(_private_only())["ResourcesVpcConfig"]
    assert vpc["EndpointPrivateAccess"] is True and vpc["EndpointPublicAccess"] is False
    assert "PublicAccessCidrs" not in vpc


def test_all_control_plane_log_types_into_an_encrypted_group_with_retention():
    synth = synthesized()
    types = [t["Type"] for t in _cluster(synth)["Logging"]["ClusterLogging"]["EnabledTypes"]]
    assert sorted(types) == sorted(["api", "audit", "authenticator", "controllerManager", "scheduler"])
    (group,) = synth.resources("cluster", "AWS::Logs::LogGroup").values()
    assert group["Properties"]["LogGroupName"] == "/aws/eks/bmtest-eks/cluster"
    assert group["Properties"]["RetentionInDays"] == 365 and "KmsKeyId" in group["Properties"]


def test_secrets_are_encrypted_with_a_rotating_customer_key():
    synth = synthesized()
    (encryption,) = _cluster(synth)["EncryptionConfig"]
    assert encryption["Resources"] == ["secrets"]
    key_id = encryption["Provider"]["KeyArn"]["Fn::GetAtt"][0]
    key = synth.templates["cluster"]["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True


def test_access_entries_give_cluster_admin_to_the_configured_principal_only():
    synth = synthesized()
    access = _cluster(synth)["AccessConfig"]
    assert access == {"AuthenticationMode": "API", "BootstrapClusterCreatorAdminPermissions": False}
    (entry,) = synth.resources("cluster", "AWS::EKS::AccessEntry").values()
    assert entry["Properties"]["PrincipalArn"] == ADMIN_ARN
    (policy,) = entry["Properties"]["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "cluster"}
    assert json.dumps(policy["PolicyArn"]).endswith('cluster-access-policy/AmazonEKSClusterAdminPolicy"]]}')


def _nodegroups(synth) -> dict[str, dict]:
    groups = synth.resources("cluster", "AWS::EKS::Nodegroup").values()
    return {g["Properties"]["Labels"]["bone-marrow.ml/pool"]: g["Properties"] for g in groups}


def test_one_node_group_per_pool_with_type_sizes_ami_and_labels_from_config():
    synth = synthesized()
    config = load_config(SETTINGS)
    groups = _nodegroups(synth)
    assert set(groups) == {"c5", "c6i"}
    for name, pool in config.aws.pools.items():
        group = groups[name]
        assert group["InstanceTypes"] == [pool.instance_type]
        assert group["Labels"] == config.kubernetes.pool_labels(name, pool)
        assert group["AmiType"] == "AL2023_x86_64_STANDARD" and group["CapacityType"] == "ON_DEMAND"
        assert group["ScalingConfig"] == {
            "MinSize": pool.min_size,
            "DesiredSize": pool.desired_size,
            "MaxSize": pool.max_size,
        }
        assert "DiskSize" not in group and "RemoteAccess" not in group
    assert groups["c5"]["Labels"]["bone-marrow.ml/cpu-generation"] == "cascadelake"
    assert groups["c6i"]["Labels"]["bone-marrow.ml/cpu-generation"] == "icelake"


def test_node_groups_and_control_plane_use_the_private_node_subnets():
    synth = synthesized()
    subnet_refs = json.dumps(_cluster(synth)["ResourcesVpcConfig"]["SubnetIds"])
    assert subnet_refs.count("VpcnodesSubnet") == 2 and "public" not in subnet_refs
    for group in _nodegroups(synth).values():
        assert json.dumps(group["Subnets"]) == subnet_refs


def test_launch_templates_require_imdsv2_with_hop_limit_one_and_encrypted_volumes():
    synth = synthesized()
    templates = synth.resources("cluster", "AWS::EC2::LaunchTemplate")
    assert len(templates) == 2
    for name, group in _nodegroups(synth).items():
        template = templates[group["LaunchTemplate"]["Id"]["Ref"]]["Properties"]["LaunchTemplateData"]
        assert template["MetadataOptions"] == {
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 1,
            "HttpTokens": "required",
        }, name
        (device,) = template["BlockDeviceMappings"]
        assert device["Ebs"]["Encrypted"] is True and device["Ebs"]["VolumeType"] == "gp3"
        assert "InstanceType" not in template and "ImageId" not in template


def test_model_sync_pod_identity_for_the_configured_service_account():
    synth = synthesized()
    (association,) = synth.resources("cluster", "AWS::EKS::PodIdentityAssociation").values()
    props = association["Properties"]
    assert props["Namespace"] == "cells" and props["ServiceAccount"] == "model-sync"
    assert "ModelSyncAccessRole" in json.dumps(props["RoleArn"])
    (addon,) = synth.resources("cluster", "AWS::EKS::Addon").values()
    assert addon["Properties"]["AddonName"] == "eks-pod-identity-agent"
    assert any(dep.startswith("ModelSyncPodIdentityAgent") for dep in association["DependsOn"])

"""Cluster stack: EKS (aws_eks_v2) properties that cdk-nag and checkov do not evaluate, node groups."""

from __future__ import annotations

import base64
import email
import functools
import json

import pytest
import yaml
from aws_cdk import App
from cdk_synthesis import ACCOUNT, ADMIN_ARN, SETTINGS, synthesize, synthesized

from contracts.aws_names import BENCH_RESULTS_PREFIX, ENDPOINT_CIDRS_PARAMETER, nodegroup_output
from contracts.config import BENCH_POOL, EksAddons, KubernetesConfig, load_config
from contracts.errors import ConfigError
from infra.cdk.toolkit import add_stacks


def _cluster(synth) -> dict:
    (cluster,) = synth.resources("cluster", "AWS::EKS::Cluster").values()
    return cluster["Properties"]


def test_pinned_version_name_and_managed_node_groups_only():
    synth = synthesized()
    cluster = _cluster(synth)
    assert cluster["Version"] == "1.32" and cluster["Name"] == "bmtest-eks"
    assert cluster["ComputeConfig"] == {"Enabled": False}  # no Auto Mode
    types = {r["Type"] for r in synth.templates["cluster"]["Resources"].values()}
    # No default capacity (an Auto Scaling group), no kubectl provider or other Lambda-backed resources.
    assert not {t for t in types if t.startswith(("AWS::AutoScaling::", "AWS::Lambda::", "Custom::"))}


def test_endpoint_is_private_plus_public_restricted_to_the_deploy_time_cidr_parameter():
    synth = synthesized()
    vpc = _cluster(synth)["ResourcesVpcConfig"]
    assert vpc["EndpointPrivateAccess"] is True and vpc["EndpointPublicAccess"] is True
    assert vpc["PublicAccessCidrs"] == {"Ref": ENDPOINT_CIDRS_PARAMETER}
    parameter = synth.templates["cluster"]["Parameters"][ENDPOINT_CIDRS_PARAMETER]
    assert parameter["Type"] == "CommaDelimitedList"
    # `invoke up` passes the caller's address; the configured CIDRs are the default.
    assert parameter["Default"] == ",".join(SETTINGS["aws"]["endpoint_public_cidrs"])


@functools.cache
def _private_only():
    """SETTINGS with a private endpoint, and the upgrade policy left at its default."""
    settings = json.loads(json.dumps(SETTINGS))
    settings["aws"]["endpoint_access"] = "private"
    del settings["aws"]["cluster_support_type"]
    return synthesize(settings, checks=False)


def test_a_private_endpoint_has_no_public_access_and_no_cidr_parameter():
    synth = _private_only()
    vpc = _cluster(synth)["ResourcesVpcConfig"]
    assert vpc["EndpointPrivateAccess"] is True and vpc["EndpointPublicAccess"] is False
    assert "PublicAccessCidrs" not in vpc
    assert ENDPOINT_CIDRS_PARAMETER not in synth.templates["cluster"].get("Parameters", {})


@functools.cache
def _defaults():
    """The app with every default (no CIDRs, no AMI pinned): what a fresh clone synthesizes."""
    return synthesize({}, checks=False)


def test_by_default_the_public_endpoint_has_no_cidrs_until_deploy_time():
    synth = _defaults()
    vpc = _cluster(synth)["ResourcesVpcConfig"]
    assert vpc["EndpointPublicAccess"] is True and vpc["PublicAccessCidrs"] == {
        "Ref": ENDPOINT_CIDRS_PARAMETER
    }
    parameter = synth.templates["cluster"]["Parameters"][ENDPOINT_CIDRS_PARAMETER]
    # No default: a deploy without the caller's address fails instead of opening the endpoint wider.
    assert parameter["Type"] == "CommaDelimitedList" and "Default" not in parameter


def test_default_addon_versions_are_those_of_the_default_kubernetes_version():
    synth = _defaults()
    defaults = EksAddons()
    versions = {name: r["Properties"]["AddonVersion"] for name, (_, r) in _addons(synth).items()}
    assert versions == {
        "vpc-cni": defaults.vpc_cni,
        "kube-proxy": defaults.kube_proxy,
        "coredns": defaults.coredns,
        "eks-pod-identity-agent": defaults.pod_identity_agent,
    }
    assert _cluster(synth)["Version"] == KubernetesConfig().version
    assert defaults.kube_proxy.startswith(f"v{KubernetesConfig().version}.")


def test_the_control_plane_takes_https_from_inside_the_vpc_only():
    synth = synthesized()
    groups = synth.resources("cluster", "AWS::EC2::SecurityGroup")
    (group_id,) = [k for k in groups if k.startswith("ClusterControlPlaneSecurityGroup")]
    ingress = groups[group_id]["Properties"].get("SecurityGroupIngress", [])
    ingress += [
        r["Properties"]
        for r in synth.resources("cluster", "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]
    (rule,) = ingress
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)
    assert rule["CidrIp"] == SETTINGS["aws"]["vpc_cidr"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vpc_cni": "1.20.4"}, r"aws.addons.vpc_cni must be an EKS add-on version like v1.20.4-eksbuild.1"),
        ({"coredns": "v1.12.4-eksbuild"}, r"aws.addons.coredns must be an EKS add-on version"),
    ],
)
def test_addon_versions_must_be_eks_builds(changes, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"aws": {"addons": changes}})


def test_endpoint_access_and_support_type_take_only_their_values():
    with pytest.raises(ConfigError, match=r"aws.endpoint_access must be one of public-and-private, private"):
        load_config({"aws": {"endpoint_access": "public"}})
    with pytest.raises(ConfigError, match=r"aws.cluster_support_type must be one of STANDARD, EXTENDED"):
        load_config({"aws": {"cluster_support_type": "standard"}})


def test_upgrade_policy_is_standard_support_by_default_and_configurable():
    assert _cluster(_private_only())["UpgradePolicy"] == {"SupportType": "STANDARD"}
    assert _cluster(synthesized())["UpgradePolicy"] == {"SupportType": "EXTENDED"}


def _addons(synth) -> dict[str, tuple[str, dict]]:
    """add-on name -> (logical id, properties)."""
    found = synth.resources("cluster", "AWS::EKS::Addon").items()
    return {r["Properties"]["AddonName"]: (k, r) for k, r in found}


def test_managed_addons_are_pinned_from_config_and_take_over_the_self_managed_ones():
    synth = synthesized()
    addons = _addons(synth)
    versions = SETTINGS["aws"]["addons"]
    expected = {
        "vpc-cni": versions["vpc_cni"],
        "kube-proxy": versions["kube_proxy"],
        "coredns": versions["coredns"],
        "eks-pod-identity-agent": versions["pod_identity_agent"],
    }
    assert {name: r["Properties"]["AddonVersion"] for name, (_, r) in addons.items()} == expected
    cluster_id = next(iter(synth.resources("cluster", "AWS::EKS::Cluster")))
    for _, addon in addons.values():
        assert addon["Properties"]["ClusterName"] == {"Ref": cluster_id}
        assert addon["Properties"]["ResolveConflicts"] == "OVERWRITE"


def test_the_pod_identity_agent_keeps_the_logical_id_deployed_clusters_have():
    agent_id, _ = _addons(synthesized())["eks-pod-identity-agent"]
    assert agent_id == "ModelSyncPodIdentityAgent3E6D3F08"


def test_vpc_cni_enforces_network_policies_and_only_it_is_configured():
    addons = _addons(synthesized())
    (_, cni) = addons["vpc-cni"]
    assert json.loads(cni["Properties"]["ConfigurationValues"]) == {"enableNetworkPolicy": "true"}
    assert [n for n, (_, a) in addons.items() if "ConfigurationValues" in a["Properties"]] == ["vpc-cni"]


def test_node_groups_come_up_after_the_node_addons_and_coredns_after_the_serving_nodes():
    synth = synthesized()
    addons = _addons(synth)
    node_addons = {addons[name][0] for name in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")}
    groups = synth.resources("cluster", "AWS::EKS::Nodegroup")
    assert len(groups) == len(SETTINGS["aws"]["pools"]) + 1 == 4
    for group in groups.values():
        assert node_addons <= set(group.get("DependsOn", []))
    (_, coredns) = addons["coredns"]
    serving = {k for k, g in groups.items() if g["Properties"]["Labels"]["bone-marrow.ml/pool"] != BENCH_POOL}
    assert serving == {k for k in coredns["DependsOn"] if k in groups}


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
    assert set(groups) == {"c5", "c6i", "c7i", BENCH_POOL}
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
        assert "DiskSize" not in group and "RemoteAccess" not in group and "Taints" not in group
    assert groups["c5"]["Labels"]["bone-marrow.ml/cpu-generation"] == "cascadelake"
    assert groups["c6i"]["Labels"]["bone-marrow.ml/cpu-generation"] == "icelake"
    assert groups["c7i"]["Labels"]["bone-marrow.ml/cpu-generation"] == "sapphirerapids"
    assert groups["c7i"]["InstanceTypes"] == ["c7i.large"]


def test_node_groups_and_control_plane_use_the_private_node_subnets():
    synth = synthesized()
    subnet_refs = json.dumps(_cluster(synth)["ResourcesVpcConfig"]["SubnetIds"])
    assert subnet_refs.count("VpcnodesSubnet") == 2 and "public" not in subnet_refs
    for group in _nodegroups(synth).values():
        assert json.dumps(group["Subnets"]) == subnet_refs


def test_launch_templates_require_imdsv2_with_hop_limit_one_and_encrypted_volumes():
    synth = synthesized()
    templates = synth.resources("cluster", "AWS::EC2::LaunchTemplate")
    assert len(templates) == len(SETTINGS["aws"]["pools"]) + 1 == 4
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


def test_bench_pool_is_a_tainted_labelled_node_group_scaled_to_zero_with_its_name_as_output():
    synth = synthesized()
    config = load_config(SETTINGS)
    groups = synth.resources("cluster", "AWS::EKS::Nodegroup")
    (group_id,) = [
        k for k, g in groups.items() if g["Properties"]["Labels"]["bone-marrow.ml/pool"] == BENCH_POOL
    ]
    group = groups[group_id]["Properties"]
    pool = config.aws.bench_pool
    assert group["InstanceTypes"] == ["c5.xlarge"] == [pool.instance_type]
    assert group["Labels"] == config.kubernetes.bench_pool_labels(pool)
    taint = config.kubernetes.bench_taint()
    assert group["Taints"] == [{"Effect": "NO_SCHEDULE", "Key": taint.key, "Value": taint.value}]
    assert group["ScalingConfig"] == {"MinSize": 0, "DesiredSize": 0, "MaxSize": 2}
    output = synth.templates["cluster"]["Outputs"][nodegroup_output(BENCH_POOL)]
    assert output["Value"] == {"Fn::GetAtt": [group_id, "NodegroupName"]}


def test_every_node_group_output_is_the_bare_node_group_name():
    synth = synthesized()
    outputs = synth.templates["cluster"]["Outputs"]
    for pool in (*SETTINGS["aws"]["pools"], BENCH_POOL):
        # Ref would give "<cluster>/<nodegroup>", which the EKS API refuses as a node group name.
        group_id, attribute = outputs[nodegroup_output(pool)]["Value"]["Fn::GetAtt"]
        assert attribute == "NodegroupName"
        assert synth.templates["cluster"]["Resources"][group_id]["Type"] == "AWS::EKS::Nodegroup"


def _node_configs(synth) -> dict[str, list[dict]]:
    """pool -> the nodeadm NodeConfig documents in its launch template's (MIME multipart) user data."""
    templates = synth.resources("cluster", "AWS::EC2::LaunchTemplate")
    found = {}
    for name, group in _nodegroups(synth).items():
        data = templates[group["LaunchTemplate"]["Id"]["Ref"]]["Properties"]["LaunchTemplateData"]
        if "UserData" not in data:
            found[name] = []
            continue
        message = email.message_from_bytes(base64.b64decode(data["UserData"]))
        assert message.is_multipart() and message.get_content_type() == "multipart/mixed"
        found[name] = [
            yaml.safe_load(part.get_payload(decode=True))
            for part in message.get_payload()
            if part.get_content_type() == "application/node.eks.aws"
        ]
    return found


def test_serving_nodes_run_the_static_cpu_manager_and_the_bench_nodes_do_not():
    configs = _node_configs(synthesized())
    assert set(configs) == {*SETTINGS["aws"]["pools"], BENCH_POOL}
    for pool in SETTINGS["aws"]["pools"]:
        (node_config,) = configs[pool]
        assert node_config["apiVersion"] == "node.eks.aws/v1alpha1" and node_config["kind"] == "NodeConfig"
        # Static needs a non-zero CPU reservation: nodeadm's own kubeReserved, left untouched.
        assert node_config["spec"] == {"kubelet": {"config": {"cpuManagerPolicy": "static"}}}
    assert configs[BENCH_POOL] == []


def _associations(synth) -> dict[str, dict]:
    found = synth.resources("cluster", "AWS::EKS::PodIdentityAssociation").values()
    return {a["Properties"]["ServiceAccount"]: a for a in found}


def test_pod_identity_for_model_sync_and_bench_results_after_the_agent():
    synth = synthesized()
    associations = _associations(synth)
    assert set(associations) == {"model-sync", "bench-writer"}
    agent_id, _ = _addons(synth)["eks-pod-identity-agent"]
    for association in associations.values():
        assert association["Properties"]["Namespace"] == "cells"
        assert agent_id in association["DependsOn"]
    assert "ModelSyncAccessRole" in json.dumps(associations["model-sync"]["Properties"]["RoleArn"])
    assert "BenchResultsAccessRole" in json.dumps(associations["bench-writer"]["Properties"]["RoleArn"])


def _pod_identity_roles(synth) -> dict[str, dict]:
    roles = synth.resources("data", "AWS::IAM::Role").items()
    return {k: r for k, r in roles if "pods.eks.amazonaws.com" in json.dumps(r)}


def test_pod_identity_trust_names_the_account_the_cluster_and_one_service_account():
    roles = _pod_identity_roles(synthesized())
    assert len(roles) == 2
    accounts = set()
    for role in roles.values():
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
        conditions = statement["Condition"]
        # Pod Identity's aws:SourceArn is the association's ARN: any association of this cluster.
        assert conditions["ArnLike"] == {
            "aws:SourceArn": f"arn:aws:eks:us-west-2:{ACCOUNT}:podidentityassociation/bmtest-eks/*"
        }
        equals = conditions["StringEquals"]
        assert equals["aws:SourceAccount"] == ACCOUNT
        assert (
            equals["aws:RequestTag/eks-cluster-arn"] == f"arn:aws:eks:us-west-2:{ACCOUNT}:cluster/bmtest-eks"
        )
        assert equals["aws:RequestTag/kubernetes-namespace"] == "cells"
        accounts.add(equals["aws:RequestTag/kubernetes-service-account"])
    assert accounts == {"model-sync", "bench-writer"}


def _policy_statements(synth, role_id: str) -> list[dict]:
    resources = synth.templates["data"]["Resources"]
    policies = [resources[p["Ref"]] for p in resources[role_id]["Properties"]["ManagedPolicyArns"]]
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _object_patterns(statement: dict) -> list[tuple[str, str]]:
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return [(r["Fn::Join"][1][0]["Fn::GetAtt"][0], r["Fn::Join"][1][1]) for r in resources]


def test_bench_results_role_writes_only_the_results_prefix_and_reads_only_its_artifacts():
    synth = synthesized()
    (role_id,) = [k for k in _pod_identity_roles(synth) if k.startswith("BenchResultsAccess")]
    outputs = synth.templates["data"]["Outputs"]
    results, models = (
        outputs["ResultsBucketName"]["Value"]["Ref"],
        outputs["ModelsBucketName"]["Value"]["Ref"],
    )
    statements = _policy_statements(synth, role_id)
    by_action = {}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            by_action.setdefault(action, []).append(statement)
    assert "s3:DeleteObject" not in by_action and "s3:*" not in by_action
    (put,) = by_action["s3:PutObject"]
    assert _object_patterns(put) == [(results, f"/{BENCH_RESULTS_PREFIX}/*")]
    (get,) = by_action["s3:GetObject"]
    assert _object_patterns(get) == [(models, "/bench/inputs/*")]
    listed = {s["Resource"]["Fn::GetAtt"][0]: s["Condition"] for s in by_action["s3:ListBucket"]}
    assert listed == {
        models: {"StringLike": {"s3:prefix": ["bench/inputs", "bench/inputs/*"]}},
        results: {"StringLike": {"s3:prefix": [BENCH_RESULTS_PREFIX, f"{BENCH_RESULTS_PREFIX}/*"]}},
    }
    (key,) = by_action["kms:GenerateDataKey"]
    assert key["Resource"] == {"Fn::GetAtt": [next(iter(synth.resources("data", "AWS::KMS::Key"))), "Arn"]}
    assert "kms:ViaService" in key["Condition"]["StringEquals"]


def test_kube_proxy_of_another_minor_version_is_refused_in_one_line():
    settings = json.loads(json.dumps(SETTINGS))
    settings["kubernetes"]["version"] = "1.34"
    with pytest.raises(
        ConfigError, match=r"aws.addons.kube_proxy 'v1.32.3-eksbuild.7' is not for kubernetes.version 1.34"
    ):
        add_stacks(App(), config=load_config(settings), account=ACCOUNT)

"""Stack outputs: the outputs file, CloudFormation (moto), and agreement with the CDK templates."""

from __future__ import annotations

import json

import pytest
from moto_aws import moto_session  # noqa: F401 (fixture)

from contracts.aws_names import StackNames
from contracts.errors import DeployError
from workloads.deploy.aws_outputs import deployed_outputs, load_outputs_file, outputs_from_cloudformation

NAMES = StackNames.for_prefix("bmtest")


def sample_outputs() -> dict[str, dict[str, str]]:
    return {
        "bmtest-network": {},
        "bmtest-data": {
            "DatasetsBucketName": "bmtest-data-datasets-1",
            "ModelsBucketName": "bmtest-data-models-1",
            "ResultsBucketName": "bmtest-data-results-1",
            "TrainRepositoryUri": "111111111111.dkr.ecr.us-west-2.amazonaws.com/bmtest/train",
            "OvmsRepositoryUri": "111111111111.dkr.ecr.us-west-2.amazonaws.com/bmtest/ovms",
            "BenchRepositoryUri": "111111111111.dkr.ecr.us-west-2.amazonaws.com/bmtest/bench",
            "ModelSyncRoleArn": "arn:aws:iam::111111111111:role/bmtest-data-ModelSync",
        },
        "bmtest-cluster": {
            "ClusterName": "bmtest-eks",
            "ClusterEndpoint": "https://ABC.gr7.us-west-2.eks.amazonaws.com",
            "NodegroupC5": "PoolC5Nodegroup-abc",
            "NodegroupC6i": "PoolC6iNodegroup-def",
            "NodegroupC7i": "PoolC7iNodegroup-ghi",
        },
        "bmtest-training": {"Dl1InstanceId": "i-0123456789abcdef0"},
    }


def test_outputs_file_becomes_a_typed_record(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(sample_outputs()))
    outputs = deployed_outputs(load_outputs_file(path), NAMES, ["c5", "c6i"])
    assert outputs.cluster_name == "bmtest-eks"
    assert outputs.nodegroups == {"c5": "PoolC5Nodegroup-abc", "c6i": "PoolC6iNodegroup-def"}
    assert outputs.data.buckets["models"] == "bmtest-data-models-1"
    assert outputs.data.repositories["ovms"].endswith("/bmtest/ovms")
    assert outputs.dl1_instance_id == "i-0123456789abcdef0"


def test_missing_or_incomplete_outputs_are_one_line_each(tmp_path):
    with pytest.raises(DeployError, match=r"^no stack outputs at .*: run `invoke up --target aws` first$"):
        load_outputs_file(tmp_path / "absent.json")
    incomplete = sample_outputs()
    del incomplete["bmtest-training"]
    with pytest.raises(DeployError, match=r"^stack outputs lack bmtest-training\.Dl1InstanceId: "):
        deployed_outputs(incomplete, NAMES, ["c5", "c6i"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DeployError, match="is not a CDK outputs file"):
        load_outputs_file(tmp_path / "bad.json")


def test_every_output_the_deploy_code_reads_is_declared_by_the_cdk_stacks():
    from cdk_synthesis import synthesized

    synth = synthesized()
    declared = {
        getattr(NAMES, role): {key: "x" for key in template.get("Outputs", {})}
        for role, template in synth.templates.items()
    }
    outputs = deployed_outputs(declared, NAMES, synth.config.aws.pools)
    assert set(outputs.nodegroups) == {"c5", "c6i", "c7i"} == set(synth.config.aws.pools)


def test_outputs_read_from_cloudformation_skip_stacks_that_do_not_exist(moto_session):  # noqa: F811
    cloudformation = moto_session.client("cloudformation")
    template = {
        "Resources": {
            "Marker": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": "/bmtest/marker", "Type": "String", "Value": "x"},
            }
        },
        "Outputs": {key: {"Value": value} for key, value in sample_outputs()["bmtest-data"].items()},
    }
    cloudformation.create_stack(StackName="bmtest-data", TemplateBody=json.dumps(template))
    outputs = outputs_from_cloudformation(cloudformation, NAMES.all)
    assert outputs == {"bmtest-data": sample_outputs()["bmtest-data"]}

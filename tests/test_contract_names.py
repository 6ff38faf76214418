"""Every name the tasks look up in AWS exists in the synthesized templates, under that very name.

The task side is asked through its own functions (what `images.push`, `train --target dl1`, `up`
and `k8s.render` would use), never through contracts.aws_names directly: renaming either side fails here.
"""

from __future__ import annotations

import fnmatch
import types
from pathlib import Path
from typing import Any

import yaml
from cdk_synthesis import ACCOUNT, synthesized

from contracts.aws_names import (
    BENCH_RESULTS_PREFIX,
    BENCH_RESULTS_ROLE_ARN,
    BUCKET_KINDS,
    MODEL_SYNC_ROLE_ARN,
    StackNames,
    bucket_output,
    nodegroup_output,
)
from contracts.config import BENCH_POOL
from workloads.containers import build
from workloads.deploy import aws
from workloads.deploy.aws_outputs import deployed_outputs
from workloads.k8s import bench_job
from workloads.k8s.render import render_serving
from workloads.targets import ModelRequest, cluster_target
from workloads.training import remote, s3_exchange

REGISTRY = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com"
MODELS_BUCKET = "bmtest-models-bucket"
RESULTS_BUCKET = "bmtest-results-bucket"


def _template(role: str) -> dict[str, Any]:
    return synthesized().templates[role]


def _resources(role: str, resource_type: str) -> dict[str, dict]:
    return synthesized().resources(role, resource_type)


def _repository_ids() -> dict[str, str]:
    """ECR repository name -> logical id, in the data stack."""
    return {
        r["Properties"]["RepositoryName"]: k for k, r in _resources("data", "AWS::ECR::Repository").items()
    }


def _exported(import_value: dict) -> Any:
    """What an Fn::ImportValue of the cluster/training stack resolves to in the data stack."""
    name = import_value["Fn::ImportValue"]
    (value,) = [
        o["Value"] for o in _template("data")["Outputs"].values() if o.get("Export", {}).get("Name") == name
    ]
    return value


def _role_id(reference: Any) -> str:
    """Logical id of a role from {"Ref": id} or {"Fn::GetAtt": [id, "Arn"]}."""
    return reference["Ref"] if "Ref" in reference else reference["Fn::GetAtt"][0]


def _bucket_kinds() -> dict[str, str]:
    """Bucket logical id -> kind (datasets, models, results), by the output `up` reads its name from."""
    outputs = _template("data")["Outputs"]
    return {outputs[bucket_output(kind)]["Value"]["Ref"]: kind for kind in BUCKET_KINDS}


def _statements(role_id: str) -> list[dict]:
    resources = _template("data")["Resources"]
    policies = [
        resources[p["Ref"]] for p in resources[role_id]["Properties"]["ManagedPolicyArns"] if "Ref" in p
    ]
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _object_grants(role_id: str, action: str) -> set[tuple[str, str]]:
    """(bucket kind, key pattern) of every object resource ``action`` is allowed on."""
    kinds = _bucket_kinds()
    grants = set()
    for statement in _statements(role_id):
        if action not in _as_list(statement["Action"]):
            continue
        for resource in _as_list(statement["Resource"]):
            bucket, suffix = resource["Fn::Join"][1]
            grants.add((kinds[bucket["Fn::GetAtt"][0]], suffix.removeprefix("/")))
    return grants


def _deployed():
    """What `up` reads from `cdk deploy --outputs-file`, with every output the templates declare."""
    synth = synthesized()
    names = StackNames.for_prefix(synth.config.aws.resource_prefix)
    outputs = {
        getattr(names, role): {key: f"value-of-{key}" for key in template.get("Outputs", {})}
        for role, template in synth.templates.items()
    }
    return deployed_outputs(outputs, names, synth.config.aws.pools)


def test_every_output_the_deploy_side_reads_is_declared() -> None:
    outputs = _deployed()  # raises DeployError naming the first missing stack output
    assert set(outputs.data.buckets) == {"datasets", "models", "results"}
    assert set(outputs.data.repositories) == set(build.IMAGES)
    assert set(outputs.nodegroups) == set(synthesized().config.aws.pools)


def test_images_push_pushes_to_the_repositories_cdk_creates() -> None:
    config = synthesized().config
    pushed = set()
    for name in build.IMAGES:
        for tag in build.image_tags(config, registry=REGISTRY, name=name):
            pushed.add(tag.removeprefix(f"{REGISTRY}/").rpartition(":")[0])
    assert pushed == set(_repository_ids())


def test_dl1_pulls_the_training_image_from_the_repository_its_role_may_pull() -> None:
    sts = types.SimpleNamespace(get_caller_identity=lambda: {"Account": ACCOUNT})
    image = remote.training_image(synthesized().config, sts)
    repository = image.removeprefix(f"{REGISTRY}/").rpartition(":")[0]
    repository_id = _repository_ids()[repository]
    (profile,) = _resources("training", "AWS::IAM::InstanceProfile").values()
    (role,) = profile["Properties"]["Roles"]
    pulls = [
        s for s in _statements(_role_id(_exported(role))) if "ecr:BatchGetImage" in _as_list(s["Action"])
    ]
    assert [s["Resource"] for s in pulls] == [{"Fn::GetAtt": [repository_id, "Arn"]}]


class _Ec2:
    def __init__(self) -> None:
        self.filters: list[dict] = []

    def describe_instances(self, Filters: list[dict]) -> dict:
        self.filters = Filters
        return {"Reservations": [{"Instances": [{"InstanceId": "i-0123456789abcdef0"}]}]}


def test_train_finds_the_dl1_instance_by_a_tag_the_training_stack_sets() -> None:
    ec2 = _Ec2()
    assert remote.find_instance(synthesized().config, ec2) == "i-0123456789abcdef0"
    tag_filters = [f for f in ec2.filters if f["Name"].startswith("tag:")]
    assert tag_filters, "find_instance filters on no tag"
    (instance,) = _resources("training", "AWS::EC2::Instance").values()
    tags = {t["Key"]: t["Value"] for t in instance["Properties"]["Tags"]}
    for tag_filter in tag_filters:
        key = tag_filter["Name"].removeprefix("tag:")
        assert tags.get(key) in tag_filter["Values"], f"the DL1 instance has {key}={tags.get(key)!r}"


def _rendered_aws(tmp_path: Path) -> list[dict]:
    """What `invoke k8s.render --target aws --bucket B` writes, with its default prefix."""
    config = synthesized().config
    source = cluster_target("aws").require_model_source(config, ModelRequest(bucket=MODELS_BUCKET))
    paths = render_serving(config, target="aws", model_source=source, out_dir=tmp_path)
    return [d for path in paths for d in yaml.safe_load_all(path.read_text()) if d]


def _model_sync_pods(documents: list[dict]) -> list[dict]:
    pods = [d["spec"]["template"]["spec"] for d in documents if d["kind"] == "Deployment"]
    assert pods
    for pod in pods:
        assert any(c["name"] == "model-sync" for c in pod.get("initContainers", [])), (
            "no model-sync init container"
        )
    return pods


def _association(service_account: str | None = None) -> dict:
    """The Pod Identity association of a service account (default: the model sync's)."""
    wanted = service_account or synthesized().config.kubernetes.model_sync_service_account
    associations = [
        a["Properties"]
        for a in _resources("cluster", "AWS::EKS::PodIdentityAssociation").values()
        if a["Properties"]["ServiceAccount"] == wanted
    ]
    assert associations, f"no Pod Identity association for service account {wanted!r}"
    (association,) = associations
    return association


def test_the_pod_identity_association_names_the_service_account_of_the_ovms_pods(tmp_path: Path) -> None:
    documents = _rendered_aws(tmp_path)
    association = _association()
    accounts = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for d in documents
        if d["kind"] == "ServiceAccount"
    }
    assert (association["Namespace"], association["ServiceAccount"]) in accounts
    for pod in _model_sync_pods(documents):
        assert pod["serviceAccountName"] == association["ServiceAccount"]
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert {d["metadata"]["namespace"] for d in deployments} == {association["Namespace"]}


def test_models_prefix_uploaded_synced_and_granted_is_one_prefix(tmp_path: Path) -> None:
    prefixes = set()
    for pod in _model_sync_pods(_rendered_aws(tmp_path)):
        sync = next(c for c in pod["initContainers"] if c["name"] == "model-sync")
        (uri,) = [a for a in sync["args"] if a.startswith("s3://")]
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        assert bucket == MODELS_BUCKET
        prefixes.add(prefix.strip("/"))
    assert prefixes == {aws.MODEL_PREFIX.strip("/")}, "k8s.render syncs another prefix than `up` uploads to"
    role_id = _role_id(_exported(_association()["RoleArn"]))
    assert role_id == _role_id(_template("data")["Outputs"][MODEL_SYNC_ROLE_ARN]["Value"])
    grants = _object_grants(role_id, "s3:GetObject")
    assert {kind for kind, _ in grants} == {"models"}
    key = f"{aws.MODEL_PREFIX.strip('/')}/bone-marrow-int8/1/model.xml"
    assert any(fnmatch.fnmatchcase(key, pattern) for _, pattern in grants), (
        f"the model sync may not read {key}"
    )
    assert not _object_grants(role_id, "s3:PutObject")


def test_training_exchange_keys_are_writable_wherever_the_dl1_role_writes() -> None:
    manifest = types.SimpleNamespace(sha256=lambda: "0" * 64)
    run = remote.RemoteRun(
        instance_id="i-0",
        bucket="b",
        run_id="r1",
        image="i",
        dataset_prefix=s3_exchange.dataset_prefix(manifest),
    )
    keys = (
        f"{run.dataset_prefix}/{s3_exchange.MANIFEST_KEY}",
        f"{run.runs_prefix}/model_card.json",
        f"{run.runs_prefix}-ssm-output/stdout",
    )
    (profile,) = _resources("training", "AWS::IAM::InstanceProfile").values()
    (role,) = profile["Properties"]["Roles"]
    grants = _object_grants(_role_id(_exported(role)), "s3:PutObject")
    assert grants
    for kind in {kind for kind, _ in grants}:
        patterns = [pattern for k, pattern in grants if k == kind]
        for key in keys:
            assert any(fnmatch.fnmatchcase(key, p) for p in patterns), f"{key} is not writable in {kind}"


def test_the_contract_module_stays_plain_python() -> None:
    source = (Path(__file__).resolve().parents[1] / "contracts" / "aws_names.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in imports if any(m in line for m in ("aws_cdk", "workloads", "infra"))]


def _bench_job_s3_uris(tmp_path: Path) -> tuple[dict, dict[str, str]]:
    """The pod spec of the Job `invoke bench --in-cluster --target aws` renders, and the s3:// URI each
    sync container reads from or writes to, with the buckets and prefixes the aws target picks."""
    config = synthesized().config
    cluster = cluster_target("aws")
    artifacts = cluster.bench_s3_source(
        config, ModelRequest(bucket=MODELS_BUCKET, prefix=config.aws.bench_artifacts_prefix), results=False
    )
    results = cluster.bench_s3_source(
        config, ModelRequest(bucket=RESULTS_BUCKET, prefix=BENCH_RESULTS_PREFIX), results=True
    )
    spec = bench_job.BenchJobSpec(pool="c5", image="bench:1", artifacts=artifacts, results=results)
    documents = bench_job.job_documents(config, spec, target="aws")
    (job,) = [d for d in documents if d["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    uris = {}
    for container in pod["initContainers"] + pod["containers"]:
        found = [a for a in container.get("args", []) if a.startswith("s3://")]
        if found:
            (uris[container["name"]],) = found
    return pod, uris


def _object_key_granted(role_id: str, action: str, uri: str) -> bool:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    kind = {MODELS_BUCKET: "models", RESULTS_BUCKET: "results"}[bucket]
    probe = f"{key.strip('/')}/some/file.json"
    return any(k == kind and fnmatch.fnmatchcase(probe, p) for k, p in _object_grants(role_id, action))


def test_the_bench_job_runs_as_the_service_account_of_the_bench_results_association(tmp_path: Path) -> None:
    pod, _ = _bench_job_s3_uris(tmp_path)
    association = _association(pod["serviceAccountName"])
    role_id = _role_id(_exported(association["RoleArn"]))
    assert role_id == _role_id(_template("data")["Outputs"][BENCH_RESULTS_ROLE_ARN]["Value"])
    assert role_id != _role_id(_template("data")["Outputs"][MODEL_SYNC_ROLE_ARN]["Value"])


def test_the_bench_results_role_reads_what_the_job_syncs_in_and_writes_only_where_it_uploads(
    tmp_path: Path,
) -> None:
    pod, uris = _bench_job_s3_uris(tmp_path)
    role_id = _role_id(_exported(_association(pod["serviceAccountName"])["RoleArn"]))
    upload = uris.pop(bench_job.UPLOAD_CONTAINER)
    assert _object_key_granted(role_id, "s3:PutObject", upload), f"the bench may not write {upload}"
    assert {kind for kind, _ in _object_grants(role_id, "s3:PutObject")} == {"results"}
    assert uris, "the Job syncs no artifacts in"
    for name, uri in uris.items():
        assert _object_key_granted(role_id, "s3:GetObject", uri), f"{name}: the bench may not read {uri}"
        assert not _object_key_granted(role_id, "s3:PutObject", uri), f"{name}: {uri} is writable"


def test_the_bench_pool_node_group_the_tasks_scale_is_an_output_of_the_cluster_stack() -> None:
    outputs = _template("cluster")["Outputs"]
    group_id = outputs[nodegroup_output(BENCH_POOL)]["Value"]["Fn::GetAtt"]
    # The node group's own name (update_nodegroup_config refuses the Ref, "<cluster>/<nodegroup>").
    assert group_id[1] == "NodegroupName"
    group = _template("cluster")["Resources"][group_id[0]]["Properties"]
    config = synthesized().config
    assert group["Labels"] == config.kubernetes.bench_pool_labels(config.aws.bench_pool)

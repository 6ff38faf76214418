"""`invoke up --target aws` and `invoke down --target aws`.

up:   checks (credentials, endpoint reachability, region, bootstrap, DL1) → Habana AMI → synth →
      cdk deploy (pinned CLI; the AMI and the endpoint allow list as stack parameters) → kubeconfig →
      model repository to S3 → OVMS on both node groups (waits until ready) → endpoints for
      `invoke bench --target aws`. --dry-run needs no credentials: synth (and `cdk diff` with them).
down: OVMS workloads → training, cluster and network stacks; the data stack (buckets, key,
      repositories) stays, and is listed.
Every step is idempotent: a second `up` changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.aws_names import (
    CLUSTER_NAME,
    ENDPOINT_CIDRS_PARAMETER,
    HABANA_AMI_PARAMETER,
    MODEL_REPOSITORY_PREFIX,
    StackNames,
)
from contracts.config import ToolkitConfig, replace
from contracts.errors import DeployError
from workloads.deploy import aws_preflight as preflight
from workloads.deploy.aws_outputs import (
    DataOutputs,
    DeployedOutputs,
    data_outputs,
    deployed_outputs,
    load_outputs_file,
    outputs_from_cloudformation,
)
from workloads.deploy.aws_partition import partition_of
from workloads.deploy.cdk_cli import CdkCli
from workloads.deploy.endpoint_reachability import AddressDetector, detect_public_address, plan_endpoint
from workloads.deploy.habana_ami import resolve_habana_ami
from workloads.deploy.kubeconfig import write_kubeconfig
from workloads.deploy.model_upload import UploadSummary, upload_directory
from workloads.deploy.service_endpoints import service_endpoints
from workloads.k8s import apply as k8s_apply
from workloads.k8s import endpoints as k8s_endpoints
from workloads.k8s import render as k8s_render
from workloads.k8s.model_source import S3ModelSource
from workloads.progress import Progress, print_progress

TARGET = "aws"
# Where the OVMS model repository lives in the models bucket (what the sync init container reads).
MODEL_PREFIX = MODEL_REPOSITORY_PREFIX


@dataclass(frozen=True)
class AwsPaths:
    root: Path  # <artifacts>/deploy/aws

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def assembly(self) -> Path:
        return self.root / "cdk.out"

    @property
    def outputs_file(self) -> Path:
        return self.root / "outputs.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def upload_journal(self) -> Path:
        return self.root / "uploads"

    @property
    def habana_ami_record(self) -> Path:
        """The Habana AMI a first deploy found per region, reused by later deploys."""
        return self.root / "habana-ami.json"


@dataclass(frozen=True)
class UpResult:
    dry_run: bool
    outputs: DeployedOutputs | None = None
    upload: UploadSummary | None = None
    endpoints_file: Path | None = None


@dataclass(frozen=True)
class DownResult:
    removed: tuple[str, ...]
    kept: tuple[str, ...]  # s3://bucket and repository URIs


def aws_paths(config: ToolkitConfig) -> AwsPaths:
    return AwsPaths(config.paths.deploy(TARGET))


def up(
    config: ToolkitConfig,
    *,
    runner: Any,
    dry_run: bool = False,
    session: Any = None,
    progress: Progress = print_progress,
    detect_address: AddressDetector | None = None,
) -> UpResult:
    partition_of(config.aws.region)
    session = session or preflight.session_for(config.aws.region)
    paths = aws_paths(config)
    names = StackNames.for_prefix(config.aws.resource_prefix)
    cli = CdkCli(runner=runner, region=config.aws.region)
    if dry_run:
        identity = _identity_or_none(session, progress)
        if identity and not config.aws.cluster_admin_arns:
            config = _with_caller_as_admin(config, identity, session, progress)
        _synth(cli, config, paths, progress)
        if identity:
            progress("== cdk diff (nothing is deployed)")
            cli.run(cli.diff_command(assembly=paths.assembly), action="diff")
        else:
            progress("no AWS credentials: synthesized only, no `cdk diff`")
        return UpResult(dry_run=True)

    if not config.aws.budget_email:
        raise DeployError(
            "aws.budget_email is required for the budget alert: set it in invoke.yaml (bmc.aws)"
        )
    if not _has_files(config.paths.model_repository):
        raise DeployError(
            f"no OVMS model repository at {config.paths.model_repository}: run `invoke optimize` first"
        )
    identity = preflight.caller_identity(session.client("sts"), profile=session.profile_name)
    progress(f"== checks: account {identity.account}, region {config.aws.region}, as {identity.arn}")
    endpoint = plan_endpoint(
        access=config.aws.endpoint_access,
        public_cidrs=config.aws.endpoint_public_cidrs,
        deploy_from_vpc=config.aws.deploy_from_vpc,
        detect=detect_address or detect_public_address,
    )
    progress(f"   {endpoint.note}")
    preflight.check_region(
        session.client("ec2"), region=config.aws.region, zones=config.aws.availability_zones
    )
    preflight.check_bootstrap(session.client("ssm"), account=identity.account, region=config.aws.region)
    preflight.check_dl1(
        session.client("ec2"),
        session.client("service-quotas"),
        region=config.aws.region,
        zone=config.aws.availability_zones[0],
        instance_type=config.aws.dl1_instance_type,
        warn=progress,
    )
    ami = resolve_habana_ami(
        session.client("ec2"),
        region=config.aws.region,
        pinned=config.aws.habana_ami_ids,
        record=paths.habana_ami_record,
        progress=progress,
    )
    progress(f"   Habana AMI: {ami.image_id} ({ami.source})")
    if not config.aws.cluster_admin_arns:
        config = _with_caller_as_admin(config, identity, session, progress)
    parameters = {names.training: {HABANA_AMI_PARAMETER: ami.image_id}}
    if endpoint.public_cidrs is not None:
        parameters[names.cluster] = {ENDPOINT_CIDRS_PARAMETER: ",".join(endpoint.public_cidrs)}
    _synth(cli, config, paths, progress)
    progress("== deploy (CloudFormation; unchanged stacks are skipped)")
    cli.run(
        cli.deploy_command(assembly=paths.assembly, outputs_file=paths.outputs_file, parameters=parameters),
        action="deploy",
    )
    outputs = deployed_outputs(load_outputs_file(paths.outputs_file), names, config.aws.pools)

    progress("== kubeconfig")
    kubeconfig = write_kubeconfig(
        session.client("eks"),
        cluster_name=outputs.cluster_name,
        region=config.aws.region,
        path=paths.kubeconfig,
    )
    progress(f"== model repository → s3://{outputs.data.buckets['models']}/{MODEL_PREFIX}/")
    upload = upload_directory(
        session.client("s3"),
        root=config.paths.model_repository,
        bucket=outputs.data.buckets["models"],
        prefix=MODEL_PREFIX,
        journal_dir=paths.upload_journal,
        progress=progress,
    )
    progress(
        f"   {len(upload.uploaded)} uploaded, {len(upload.skipped)} unchanged, {len(upload.deleted)} removed"
    )
    progress("== OVMS on the node groups")
    manifests = _render(config, outputs.data, paths)
    k8s_apply.apply_manifests(manifests, kubeconfig=kubeconfig, progress=progress)
    endpoints = service_endpoints(manifests, label_domain=config.kubernetes.label_domain)
    endpoints_file = k8s_endpoints.record_endpoints(config, target=TARGET, endpoints=endpoints)
    progress(f"== ready: endpoints in {endpoints_file}")
    return UpResult(dry_run=False, outputs=outputs, upload=upload, endpoints_file=endpoints_file)


def down(
    config: ToolkitConfig, *, runner: Any, session: Any = None, progress: Progress = print_progress
) -> DownResult:
    partition_of(config.aws.region)
    session = session or preflight.session_for(config.aws.region)
    paths = aws_paths(config)
    names = StackNames.for_prefix(config.aws.resource_prefix)
    cli = CdkCli(runner=runner, region=config.aws.region)
    preflight.caller_identity(session.client("sts"), profile=session.profile_name)
    outputs = outputs_from_cloudformation(session.client("cloudformation"), names.all)
    data = data_outputs(outputs, names) if names.data in outputs else None
    if names.cluster in outputs and data:
        progress("== OVMS workloads")
        cluster_name = outputs[names.cluster].get(CLUSTER_NAME, "")
        kubeconfig = write_kubeconfig(
            session.client("eks"), cluster_name=cluster_name, region=config.aws.region, path=paths.kubeconfig
        )
        # Load balancers or volumes made by Kubernetes would otherwise block deleting the VPC.
        k8s_apply.delete_manifests(_render(config, data, paths), kubeconfig=kubeconfig, progress=progress)
    removed = tuple(name for name in names.removable if name in outputs)
    if removed:
        _synth(cli, config, paths, progress)
        progress(f"== destroy {', '.join(removed)}")
        cli.run(cli.destroy_command(assembly=paths.assembly, stacks=removed), action="destroy")
    else:
        progress("nothing to remove: no cluster, training or network stack is deployed")
    kept: tuple[str, ...] = ()
    if data:
        kept = tuple(f"s3://{b}" for b in data.buckets.values()) + tuple(data.repositories.values())
        progress(f"kept (stack {names.data}, retained even if it is deleted):")
        for item in kept:
            progress(f"   {item}")
    return DownResult(removed=removed, kept=kept)


def _synth(cli: CdkCli, config: ToolkitConfig, paths: AwsPaths, progress: Progress) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp = paths.config_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, paths.config_file)
    progress(f"== synth → {paths.assembly}")
    cli.run(
        cli.synth_command(assembly=paths.assembly, config_file=paths.config_file.resolve()), action="synth"
    )


def _render(config: ToolkitConfig, data: DataOutputs, paths: AwsPaths) -> list[Path]:
    source = S3ModelSource(
        bucket=data.buckets["models"],
        prefix=MODEL_PREFIX,
        region=config.aws.region,
        service_account=config.kubernetes.model_sync_service_account,
    )
    return k8s_render.render_serving(config, target=TARGET, model_source=source, out_dir=paths.manifests)


def _with_caller_as_admin(
    config: ToolkitConfig, identity: preflight.Identity, session: Any, progress: Progress
) -> ToolkitConfig:
    principal = preflight.access_entry_principal(identity, session.client("iam"), warn=progress)
    progress(f"   cluster admin: {principal} (the deploying principal; aws.cluster_admin_arns overrides)")
    return replace(config, "aws", cluster_admin_arns=[principal])


def _identity_or_none(session: Any, progress: Progress) -> preflight.Identity | None:
    try:
        return preflight.caller_identity(session.client("sts"), profile=session.profile_name)
    except DeployError as exc:
        progress(f"note: {exc}")
        return None


def _has_files(root: Path) -> bool:
    return root.is_dir() and any(p.is_file() for p in root.rglob("*"))

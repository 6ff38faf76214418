"""The init container that copies an S3 prefix into a pod volume (aws s3 sync), and its network needs."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from contracts.known_answer import CHECKSUM_FILE
from workloads.k8s.model_source import S3ModelSource, SecretS3ModelSource
from workloads.k8s.security import container_security, guaranteed

IRSA_TOKEN_VOLUME = "aws-iam-token"
IRSA_TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
# EKS Pod Identity agent (link-local, on every node) that hands out the pod's credentials.
POD_IDENTITY_AGENT = "169.254.170.23/32"
# Instance metadata: never reachable from these pods (no node-role credentials).
IMDS = "169.254.169.254/32"
SYNC_CPUS = 1
SYNC_MEMORY_MIB = 512

S3Location = S3ModelSource | SecretS3ModelSource


# The environment variable naming the synced folder that the verify script checks.
VERIFY_DIR_ENV = "BMC_MODEL_DIR"


def verify_script(models: Mapping[str, int | None]) -> str:
    """The shell run as ``sh -c SCRIPT model-sync <aws args>``: sync, then ``sha256sum`` every version.

    ``models``: each served model folder → the version OVMS is pinned to (None: the highest).
    After ``aws "$@"`` (the sync; ``set -e`` stops on its failure), each model folder under
    ``$BMC_MODEL_DIR`` must hold at least one integer version folder; every version folder with a
    ``SHA256SUMS`` (written by ``invoke optimize``) must pass ``sha256sum --check --strict`` in it, and
    the version OVMS serves (the pinned one, else the highest) must be there and have one. Any
    failure exits non-zero, so the pod's OVMS container never starts (init containers run in
    order, each to success). The ``sha256sum`` lines name each file that does not match. Needs only
    a POSIX shell and GNU coreutils (the aws-cli v2 image is Amazon Linux based).
    """
    specs = " ".join(shlex.quote(f"{m}:{'' if v is None else v}") for m, v in models.items())
    return f"""set -eu
aws "$@"
cd "${VERIFY_DIR_ENV}"
for spec in {specs}; do
  model=${{spec%%:*}}
  served=${{spec#*:}}
  latest=
  for dir in "$model"/*/; do
    version=${{dir%/}}
    version=${{version##*/}}
    case $version in ''|*[!0-9]*) continue ;; esac
    if [ -f "$model/$version/{CHECKSUM_FILE}" ]; then
      if ! (cd "$model/$version" && sha256sum --check --strict --quiet {CHECKSUM_FILE}); then
        echo "model-sync: $model version $version does not match its {CHECKSUM_FILE}; OVMS is not started" >&2
        exit 1
      fi
    fi
    if [ -z "$latest" ] || [ "$version" -gt "$latest" ]; then latest=$version; fi
  done
  if [ -z "$latest" ]; then
    echo "model-sync: no version of $model was synced; OVMS is not started" >&2
    exit 1
  fi
  if [ -n "$served" ]; then
    latest=$served
    if [ ! -d "$model/$latest" ]; then
      echo "model-sync: $model version $latest (the one OVMS serves) was not synced; OVMS is not started" >&2
      exit 1
    fi
  fi
  if [ ! -f "$model/$latest/{CHECKSUM_FILE}" ]; then
    echo "model-sync: $model version $latest has no {CHECKSUM_FILE}; OVMS is not started" >&2
    exit 1
  fi
  echo "model-sync: $model version $latest verified"
done
"""


def sync_container(
    *,
    name: str,
    image: str,
    source: S3Location,
    volume: str,
    mount: str,
    upload: bool = False,
    verify_models: Mapping[str, int | None] | None = None,
) -> dict[str, Any]:
    """``aws s3 sync`` from ``source`` into ``mount`` (or back to it with ``upload``).

    With ``verify_models`` (the served model folders → the version OVMS is pinned to, or None),
    the container then checks every synced version against its ``SHA256SUMS``
    (:func:`verify_script`) and fails if one does not match.
    """
    local = mount
    remote = source.uri
    args = [
        "s3",
        "sync",
        local if upload else remote,
        remote if upload else local,
        "--only-show-errors",
        "--no-progress",
    ]
    env: list[dict[str, Any]] = [
        {"name": "AWS_REGION", "value": source.region},
        # Read-only root filesystem: the CLI's cache goes to the emptyDir /tmp.
        {"name": "HOME", "value": "/tmp"},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": volume, "mountPath": mount},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if isinstance(source, SecretS3ModelSource):
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": source.secret_name, "key": key}}})
        if source.endpoint_url:
            args += ["--endpoint-url", source.endpoint_url]
    elif source.role_arn:
        env += [
            {"name": "AWS_ROLE_ARN", "value": source.role_arn},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{IRSA_TOKEN_DIR}/token"},
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
        ]
        mounts.append({"name": IRSA_TOKEN_VOLUME, "mountPath": IRSA_TOKEN_DIR, "readOnly": True})
    command: dict[str, Any] = {}
    if verify_models:
        # The image's entrypoint is the aws CLI; the shell runs it with the same arguments first.
        command = {"command": ["/bin/sh", "-c", verify_script(verify_models), name]}
        env.append({"name": VERIFY_DIR_ENV, "value": mount})
    return {
        "name": name,
        "image": image,
        **command,
        "args": args,
        "env": env,
        "volumeMounts": mounts,
        "resources": guaranteed(SYNC_CPUS, SYNC_MEMORY_MIB),
        "securityContext": container_security(),
    }


def identity_volumes(source: S3Location) -> list[dict[str, Any]]:
    """IRSA: the web-identity token, projected only where it is mounted (the sync container)."""
    if isinstance(source, S3ModelSource) and source.role_arn:
        token = {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}
        return [{"name": IRSA_TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}]
    return []


def pod_annotations(source: S3Location, *, skip_containers: list[str]) -> dict[str, str]:
    """EKS Pod Identity: the webhook injects credentials into every container but these."""
    if isinstance(source, S3ModelSource) and not source.role_arn:
        return {"eks.amazonaws.com/skip-containers": ",".join(skip_containers)}
    return {}


def egress_rules(source: S3Location) -> list[dict[str, Any]]:
    """S3 over HTTPS (anywhere but instance metadata), plus the Pod Identity agent when used."""
    port, protocol = 443, "TCP"
    if isinstance(source, SecretS3ModelSource) and source.endpoint_url:
        url = urlparse(source.endpoint_url)
        port = url.port or (443 if url.scheme == "https" else 80)
    rules = [
        {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [IMDS]}}],
            "ports": [{"port": port, "protocol": protocol}],
        }
    ]
    if isinstance(source, S3ModelSource) and not source.role_arn:
        rules.append(
            {"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT}}], "ports": [{"port": 80, "protocol": "TCP"}]}
        )
    return rules

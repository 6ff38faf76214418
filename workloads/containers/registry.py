"""The registries images go to: a configured one (images.registry) or the account's ECR (login through boto3).

Which one a target uses is the target's choice (workloads.targets).
"""

from __future__ import annotations

import base64
from typing import Any

from contracts.config import ToolkitConfig
from contracts.errors import DeployError
from workloads.containers.build import Command

UNKNOWN_ACCOUNT = "<aws-account-id>"


def ecr_login(config: ToolkitConfig, *, session: Any | None = None) -> tuple[str, Command]:
    """(registry host, the `docker login` command with the token on stdin) from ECR."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        session = session or boto3.session.Session(region_name=config.aws.region)
        response = session.client("ecr", region_name=config.aws.region).get_authorization_token()
        data = response["authorizationData"][0]
        user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    except NoCredentialsError:
        raise DeployError(
            "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        ) from None
    except NoRegionError:
        raise DeployError("no AWS region: set aws.region") from None
    except ClientError as exc:
        raise DeployError(f"ECR login failed: {exc.response['Error'].get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise DeployError(f"ECR login failed: {exc}") from None
    registry = data["proxyEndpoint"].removeprefix("https://").rstrip("/")
    login = Command(("docker", "login", "--username", user, "--password-stdin", registry), stdin=password)
    return registry, login


def configured_registry(config: ToolkitConfig) -> tuple[str, list[Command]] | None:
    """images.registry when it is set (no login: the engine's own credentials push there)."""
    return (config.images.registry, []) if config.images.registry else None


def ecr_registry(
    config: ToolkitConfig, *, push: bool, dry_run: bool, session: Any | None = None
) -> tuple[str, list[Command]]:
    """The account's ECR registry and the login that must run before pushing."""
    try:
        registry, login = ecr_login(config, session=session)
    except DeployError:
        if not dry_run:
            raise
        # Printing only: the commands show where the account id goes.
        registry = f"{UNKNOWN_ACCOUNT}.dkr.ecr.{config.aws.region}.amazonaws.com"
        login = Command(("docker", "login", "--username", "AWS", "--password-stdin", registry), stdin="")
    # A local build needs no login; its tags still name the account's ECR registry.
    return registry, [login] if push else []

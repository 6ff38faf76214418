"""Can the machine running `invoke up` reach the Kubernetes API it is about to create?

Checked before anything is deployed: the workload step comes ~20 minutes into a first `up`, and an
unreachable endpoint would fail only there. With the public-and-private endpoint the allow list is
``aws.endpoint_public_cidrs``, or, when that is empty, this machine's public address as AWS sees it
(/32). With the private endpoint `up` must run where the VPC is reachable, which only the user can
declare (``aws.deploy_from_vpc``).
"""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from contracts.errors import DeployError

# Amazon's what-is-my-address service: the source address AWS sees, i.e. what EKS will check.
CHECKIP_URL = "https://checkip.amazonaws.com"
PUBLIC_AND_PRIVATE = "public-and-private"
PRIVATE = "private"

AddressDetector = Callable[[], str]


def detect_public_address(url: str = CHECKIP_URL, timeout_s: float = 10.0) -> str:
    """This machine's public IPv4 address; a DeployError when it cannot be found out."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read(64).decode("ascii", "replace").strip()
    except (OSError, urllib.error.URLError) as exc:
        raise DeployError(f"cannot detect this machine's public address from {url} ({exc})") from None
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise DeployError(f"{url} answered {text[:40]!r}, not an IPv4 address") from None


@dataclass(frozen=True)
class EndpointPlan:
    # The public endpoint's allow list to deploy with; None for the private-only endpoint.
    public_cidrs: tuple[str, ...] | None
    note: str


def plan_endpoint(
    *,
    access: str,
    public_cidrs: tuple[str, ...],
    deploy_from_vpc: bool,
    detect: AddressDetector = detect_public_address,
) -> EndpointPlan:
    if access == PRIVATE:
        if not deploy_from_vpc:
            raise DeployError(
                "aws.endpoint_access is private: the Kubernetes API will be reachable only inside the "
                "VPC; run `invoke up` from there (or over a VPN into it) with aws.deploy_from_vpc: true, "
                f"or set aws.endpoint_access: {PUBLIC_AND_PRIVATE}"
            )
        return EndpointPlan(None, "Kubernetes API: private only (deploying from inside the VPC)")
    if deploy_from_vpc and public_cidrs:
        return EndpointPlan(
            public_cidrs, f"Kubernetes API: private, and public from {', '.join(public_cidrs)}"
        )
    try:
        address = ipaddress.IPv4Address(detect())
    except DeployError as exc:
        raise DeployError(
            f"{exc}: set aws.endpoint_public_cidrs to the public ranges you deploy from (or "
            "aws.deploy_from_vpc: true when `invoke up` runs inside the VPC)"
        ) from None
    if not public_cidrs:
        return EndpointPlan(
            (f"{address}/32",),
            f"Kubernetes API: private, and public from this machine only ({address}/32; "
            "aws.endpoint_public_cidrs widens it)",
        )
    if not any(address in ipaddress.IPv4Network(c) for c in public_cidrs):
        raise DeployError(
            f"this machine's public address {address} is not in aws.endpoint_public_cidrs "
            f"({', '.join(public_cidrs)}): `invoke up` could not reach the cluster it creates; add "
            f"{address}/32, or set aws.deploy_from_vpc: true when running inside the VPC"
        )
    return EndpointPlan(public_cidrs, f"Kubernetes API: private, and public from {', '.join(public_cidrs)}")

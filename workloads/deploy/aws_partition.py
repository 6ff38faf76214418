"""Which AWS partition a region belongs to, from botocore's bundled partition data (offline).

A region name that looks right but does not exist (``us-east-9``) is refused here, in
milliseconds, instead of as an ``EndpointConnectionError`` from the first API call; the DNS
suffix is the partition's (``amazonaws.com.cn`` in China), never assumed.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

from contracts.errors import DeployError


@dataclass(frozen=True)
class Partition:
    name: str  # aws, aws-cn, aws-us-gov, ...: the second field of an ARN
    dns_suffix: str  # amazonaws.com, amazonaws.com.cn, ...


def partition_of(region: str) -> Partition:
    found = _regions().get(region)
    if found is None:
        nearest = difflib.get_close_matches(region, sorted(_regions()), n=1)
        hint = f" (did you mean {nearest[0]}?)" if nearest else ""
        raise DeployError(f"aws.region {region!r} is not an AWS region{hint}: check aws.region")
    return found


@functools.cache
def _regions() -> dict[str, Partition]:
    from botocore.loaders import create_loader

    regions: dict[str, Partition] = {}
    for partition in create_loader().load_data("partitions")["partitions"]:
        info = Partition(name=partition["id"], dns_suffix=partition["outputs"]["dnsSuffix"])
        # "aws-global" and friends name a partition's global endpoints, not regions.
        regions.update({name: info for name in partition["regions"] if not name.endswith("-global")})
    return regions

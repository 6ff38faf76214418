"""A moto server on loopback for the tests/test_deploy_aws_*.py modules (started once, reset per test)."""

from __future__ import annotations

import fnmatch
import functools
import urllib.request
from typing import Any

import boto3
import pytest

REGION = "us-west-2"


@functools.cache
def _server_url() -> str:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


class MotoSession:
    """Stands in for a boto3 Session: every client talks to the moto server with dummy credentials."""

    profile_name = None

    def __init__(self, url: str, region: str = REGION, overrides: dict[str, Any] | None = None) -> None:
        self.url = url
        self.region = region
        self.overrides = overrides or {}
        self._session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
        )

    def client(self, name: str, **_kwargs: Any) -> Any:
        real = self._session.client(name, endpoint_url=self.url, region_name=self.region)
        override = self.overrides.get(name)
        return override(real) if override else real


@pytest.fixture
def moto_session() -> MotoSession:
    url = _server_url()
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10)
    return MotoSession(url)


# Amazon-owned images as EC2 lists them (moto can register images only under the test account).
HABANA_IMAGES = (
    {
        "ImageId": "ami-0aaaaaaaaaaaaaaa1",
        "Name": "Deep Learning AMI Habana TensorFlow 2.15.0 SynapseAI 1.14.0 (Ubuntu 22.04) 20240201",
        "CreationDate": "2024-02-01T10:00:00.000Z",
    },
    {
        "ImageId": "ami-0aaaaaaaaaaaaaaa2",
        "Name": "Deep Learning AMI Habana TensorFlow 2.15.0 SynapseAI 1.14.0 (Ubuntu 22.04) 20240315",
        "CreationDate": "2024-03-15T10:00:00.000Z",
    },
    {
        "ImageId": "ami-0aaaaaaaaaaaaaaa3",
        "Name": "Deep Learning AMI Habana PyTorch 2.2.0 SynapseAI 1.15.0 (Ubuntu 22.04) 20240501",
        "CreationDate": "2024-05-01T10:00:00.000Z",
    },
)


class Dl1Ec2:
    """moto's EC2 with what it lacks: dl1.24xlarge offerings (in ``zones``), its vCPU count, and
    Amazon's Habana images (``images``, filtered by owner and name as EC2 does)."""

    def __init__(
        self, real: Any, zones: tuple[str, ...] = ("us-west-2b",), images: tuple[dict, ...] = HABANA_IMAGES
    ) -> None:
        self.real = real
        self.zones = zones
        self.images = images
        self.image_queries: list[dict] = []

    def describe_images(self, **kwargs: Any) -> dict:
        self.image_queries.append(kwargs)
        assert kwargs["Owners"] == ["amazon"]
        (names,) = [f["Values"] for f in kwargs["Filters"] if f["Name"] == "name"]
        return {"Images": [i for i in self.images if any(fnmatch.fnmatchcase(i["Name"], n) for n in names)]}

    def describe_instance_type_offerings(self, **kwargs: Any) -> dict:
        (wanted,) = kwargs["Filters"][0]["Values"]
        offers = [
            {"InstanceType": wanted, "Location": z, "LocationType": "availability-zone"} for z in self.zones
        ]
        return {"InstanceTypeOfferings": offers if wanted.startswith("dl1.") else []}

    def describe_instance_types(self, **kwargs: Any) -> dict:
        return {
            "InstanceTypes": [
                {"InstanceType": t, "VCpuInfo": {"DefaultVCpus": 96}} for t in kwargs["InstanceTypes"]
            ]
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class DlQuota:
    """Service Quotas (moto has no EC2 quotas): the DL vCPU quota is ``value``."""

    def __init__(self, _real: Any = None, value: float = 96.0) -> None:
        self.value = value

    def get_service_quota(self, **kwargs: Any) -> dict:
        return {
            "Quota": {
                "ServiceCode": kwargs["ServiceCode"],
                "QuotaCode": kwargs["QuotaCode"],
                "Value": self.value,
            }
        }

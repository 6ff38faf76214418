"""Node prices for cost per million images: the dated config table and the AWS Pricing API.

moto has no Pricing API backend, so the API side is a fake client answering get_products with the
shape AWS returns: PriceList is a list of JSON *strings*, one product each, with OnDemand and
Reserved terms keyed by SKU.offerTermCode and price dimensions by SKU.offerTermCode.rateCode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from contracts.config import load_config
from contracts.errors import BenchError
from workloads.bench.pricing import (
    Price,
    configured_report_prices,
    live_prices,
    on_demand_price,
    pricing_client,
    table_prices,
)

ROOT = Path(__file__).resolve().parents[1]
TODAY = date(2026, 12, 2)


def price_item(instance_type: str, usd: str, *, sku: str = "GB7AJHF5NDPVUD9W") -> str:
    """One get_products PriceList entry as AWS sends it (abridged attributes, real structure)."""
    on_demand_code, rate_code = "JRTCKXETXF", "6YS6EN2CT7"
    reserved_code = "4NA7Y494T4"
    product = {
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "instanceType": instance_type,
                "regionCode": "us-east-1",
                "location": "US East (N. Virginia)",
                "operatingSystem": "Linux",
                "tenancy": "Shared",
                "preInstalledSw": "NA",
                "licenseModel": "No License required",
                "capacitystatus": "Used",
                "vcpu": "2",
                "memory": "4 GiB",
                "physicalProcessor": "Intel Xeon Scalable (Sapphire Rapids)",
                "servicecode": "AmazonEC2",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                f"{sku}.{on_demand_code}": {
                    "priceDimensions": {
                        f"{sku}.{on_demand_code}.{rate_code}": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "description": f"${usd} per On Demand Linux {instance_type} Instance Hour",
                            "appliesTo": [],
                            "rateCode": f"{sku}.{on_demand_code}.{rate_code}",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": f"{usd}0000000"},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": "2026-11-01T00:00:00Z",
                    "offerTermCode": on_demand_code,
                    "termAttributes": {},
                }
            },
            "Reserved": {
                f"{sku}.{reserved_code}": {
                    "priceDimensions": {
                        f"{sku}.{reserved_code}.{rate_code}": {
                            "unit": "Hrs",
                            "pricePerUnit": {"USD": "0.0562000000"},
                            "description": "Linux/UNIX (Amazon VPC), No Upfront reservation",
                        },
                    },
                    "effectiveDate": "2026-10-01T00:00:00Z",
                    "termAttributes": {"LeaseContractLength": "1yr", "PurchaseOption": "No Upfront"},
                }
            },
        },
        "version": "20261120173045",
        "publicationDate": "2026-11-20T17:30:45Z",
    }
    return json.dumps(product)


class FakePricing:
    """get_products as the boto3 pricing client answers it, recording every call."""

    def __init__(self, answers: dict[str, list[str]], error: Exception | None = None) -> None:
        self.answers, self.error, self.calls = answers, error, []

    def get_products(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        filters = {f["Field"]: f["Value"] for f in kwargs["Filters"]}
        return {"FormatVersion": "aws_v1", "PriceList": self.answers.get(filters["instanceType"], [])}


def test_the_default_table_is_dated_and_prices_the_three_default_pools() -> None:
    config = load_config()
    assert set(config.aws.pools) == {"c5", "c6i", "c7i"}
    table = table_prices(config.bench.prices)
    assert {name: price.usd_per_hour for name, price in table.items()} == {
        "c5.large": 0.085,
        "c6i.large": 0.085,
        "c7i.large": 0.08925,
    }
    assert (
        table["c7i.large"].describe()
        == "c7i.large $0.08925/h (bench.prices, us-east-1 on-demand, 2026-12-01)"
    )
    prices = configured_report_prices(config)
    assert {key: price.instance_type for key, price in prices.items()} == {
        "aws/c5": "c5.large",
        "aws/c6i": "c6i.large",
        "aws/c7i": "c7i.large",
    }


def test_the_users_own_price_wins_per_pool_then_per_target() -> None:
    config = load_config({"bench": {"usd_per_hour": {"c7i": 0.07, "vsphere": 0.4}}})
    prices = configured_report_prices(config)
    assert prices["aws/c7i"] == Price(0.07, "bench.usd_per_hour")
    assert prices["aws/c5"].source == "bench.prices, us-east-1 on-demand"
    assert prices["vsphere/icelake"] == prices["vsphere"] == Price(0.4, "bench.usd_per_hour")


def test_the_pricing_api_is_asked_per_instance_type_for_on_demand_shared_linux() -> None:
    client = FakePricing(
        {t: [price_item(t, usd)] for t, usd in (("c5.large", "0.085"), ("c7i.large", "0.08925"))}
    )
    prices = live_prices(client, ["c5.large", "c7i.large"], region="us-east-1", today=TODAY)
    assert prices["c7i.large"] == Price(
        0.08925, "AWS Pricing API, us-east-1 on-demand, effective 2026-11-01", "2026-12-02", "c7i.large"
    )
    assert prices["c5.large"].usd_per_hour == 0.085
    (first, _) = client.calls
    assert first["ServiceCode"] == "AmazonEC2" and first["FormatVersion"] == "aws_v1"
    assert {f["Field"]: f["Value"] for f in first["Filters"]} == {
        "instanceType": "c5.large",
        "regionCode": "us-east-1",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "licenseModel": "No License required",
        "capacitystatus": "Used",
    }
    assert {f["Type"] for f in first["Filters"]} == {"TERM_MATCH"}


def test_live_prices_reach_the_report_for_the_configured_region() -> None:
    config = load_config({"aws": {"region": "us-east-1"}})
    client = FakePricing(
        {
            "c5.large": [price_item("c5.large", "0.085")],
            "c6i.large": [price_item("c6i.large", "0.085")],
            "c7i.large": [price_item("c7i.large", "0.08925")],
        }
    )
    prices = configured_report_prices(config, live=True, client=client)
    assert prices["aws/c7i"].source.startswith("AWS Pricing API, us-east-1")
    assert [call["Filters"][0]["Value"] for call in client.calls] == ["c5.large", "c6i.large", "c7i.large"]


@pytest.mark.parametrize(
    ("price_list", "message"),
    [
        ([], "the AWS Pricing API has no on-demand Linux price for c7i.large in us-east-1"),
        (
            [price_item("c7i.large", "0.08925"), price_item("c7i.large", "0.1785", sku="X2")],
            "the AWS Pricing API has several on-demand prices for c7i.large: $0.08925, $0.1785",
        ),
        (["{not json"], "unexpected AWS Pricing API answer for c7i.large"),
    ],
)
def test_answers_that_do_not_give_one_price_are_one_line_errors(price_list: list[str], message: str) -> None:
    with pytest.raises(BenchError) as caught:
        on_demand_price(price_list, "c7i.large", "us-east-1", fetched=TODAY)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_no_credentials_and_refusals_are_one_line_errors() -> None:
    with pytest.raises(BenchError, match=r"^--live-prices needs AWS credentials \(set AWS_PROFILE"):
        live_prices(FakePricing({}, NoCredentialsError()), ["c5.large"], region="us-east-1")
    denied = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "GetProducts"
    )
    with pytest.raises(BenchError, match=r"^AWS Pricing API refused c5.large: not allowed$"):
        live_prices(FakePricing({}, denied), ["c5.large"], region="us-east-1")


def _no_credentials_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",  # no instance-metadata probe off this machine
        # Were a request ever sent, it would stop at loopback.
        AWS_ENDPOINT_URL_PRICING="http://127.0.0.1:9",
    )
    return env


def test_a_real_client_without_credentials_fails_before_sending(tmp_path: Path, monkeypatch) -> None:
    for key, value in _no_credentials_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith("AWS_") and k not in _no_credentials_env(tmp_path)]:
        monkeypatch.delenv(key)
    client = pricing_client()
    sent: list[Any] = []
    client.meta.events.register("before-send", lambda **kwargs: sent.append(kwargs))
    with pytest.raises(BenchError, match="needs AWS credentials"):
        live_prices(client, ["c7i.large"], region="us-east-1")
    assert sent == []


def test_invoke_bench_report_live_prices_without_credentials_is_one_error_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "--search-root",
            str(ROOT),
            "bench.report",
            "--live-prices",
            "--artifacts-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=_no_credentials_env(tmp_path),
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --live-prices needs AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
        "AWS_SECRET_ACCESS_KEY); without it the report uses bench.prices"
    ]

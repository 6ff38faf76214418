"""Node prices for the report's cost per million images.

Two sources, each price carrying where it came from and its date: the dated table in config
(``bench.prices``, on-demand $/hour per instance type) and, with AWS credentials, the AWS Pricing
API (`invoke bench.report --live-prices`). A pool is priced by its instance type; the user's own
``bench.usd_per_hour`` (keyed by pool or target, e.g. amortised on-prem hosts) wins over both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from contracts.config import PriceTable, ToolkitConfig
from contracts.errors import BenchError

# The Pricing API answers from us-east-1 (also eu-central-1, ap-south-1) whatever region is priced.
PRICING_API_REGION = "us-east-1"
LIVE_SOURCE = "AWS Pricing API"
USER_SOURCE = "bench.usd_per_hour"


@dataclass(frozen=True)
class Price:
    """$/hour of one node, with where the figure came from and the date it holds for."""

    usd_per_hour: float
    source: str
    as_of: str = ""  # YYYY-MM-DD; empty when the source has no date (the user's own figure)
    instance_type: str = ""

    def describe(self) -> str:
        what = f"{self.instance_type} " if self.instance_type else ""
        when = f", {self.as_of}" if self.as_of else ""
        return f"{what}${self.usd_per_hour:g}/h ({self.source}{when})"


def table_prices(table: PriceTable) -> dict[str, Price]:
    """The dated config table: instance type → price."""
    source = f"bench.prices, {table.region} on-demand"
    return {
        instance_type: Price(usd, source, table.as_of, instance_type)
        for instance_type, usd in table.usd_per_hour.items()
    }


def product_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """get_products filters for one on-demand, shared-tenancy Linux instance without extra software."""
    terms = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "licenseModel": "No License required",
        # "Used" is the plain on-demand rate; reservations and dedicated hosts have their own.
        "capacitystatus": "Used",
    }
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in terms.items()]


def on_demand_price(price_list: Sequence[str], instance_type: str, region: str, *, fetched: date) -> Price:
    """The hourly on-demand USD rate in a get_products PriceList (JSON strings, one per product),
    dated the day it was fetched (the source names the date AWS made it effective)."""
    rates: set[float] = set()
    dates: set[str] = set()
    for item in price_list:
        try:
            product = json.loads(item)
            terms = product.get("terms", {}).get("OnDemand", {})
            for term in terms.values():
                for dimension in term.get("priceDimensions", {}).values():
                    usd = float(dimension["pricePerUnit"]["USD"])
                    if dimension.get("unit") == "Hrs" and usd > 0:
                        rates.add(usd)
                        dates.add(str(term.get("effectiveDate", ""))[:10])
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise BenchError(f"unexpected AWS Pricing API answer for {instance_type}: {exc}") from None
    if not rates:
        raise BenchError(f"the AWS Pricing API has no on-demand Linux price for {instance_type} in {region}")
    if len(rates) > 1:
        listed = ", ".join(f"${rate:g}" for rate in sorted(rates))
        raise BenchError(f"the AWS Pricing API has several on-demand prices for {instance_type}: {listed}")
    source = f"{LIVE_SOURCE}, {region} on-demand, effective {max(dates)}"
    return Price(rates.pop(), source, fetched.isoformat(), instance_type)


def live_prices(
    client: Any, instance_types: Iterable[str], *, region: str, today: date | None = None
) -> dict[str, Price]:
    """Ask the Pricing API (a boto3 ``pricing`` client, or anything with its get_products)."""
    fetched = today or datetime.now(UTC).date()
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    prices = {}
    for instance_type in instance_types:
        try:
            response = client.get_products(
                ServiceCode="AmazonEC2",
                Filters=product_filters(instance_type, region),
                FormatVersion="aws_v1",
                MaxResults=100,
            )
        except (NoCredentialsError, PartialCredentialsError):
            raise BenchError(
                "--live-prices needs AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY); without it the report uses bench.prices"
            ) from None
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", str(exc))
            raise BenchError(f"AWS Pricing API refused {instance_type}: {message}") from None
        except BotoCoreError as exc:
            raise BenchError(f"AWS Pricing API: {exc}") from None
        price_list = response.get("PriceList", [])
        prices[instance_type] = on_demand_price(price_list, instance_type, region, fetched=fetched)
    return prices


def pricing_client(session: Any | None = None) -> Any:
    """A boto3 ``pricing`` client on the API's own region."""
    import boto3

    session = session or boto3.session.Session()
    return session.client("pricing", region_name=PRICING_API_REGION)


def report_prices(config: ToolkitConfig, instance_prices: Mapping[str, Price]) -> dict[str, Price]:
    """$/hour per report row key: ``target/pool`` for every pool of every cluster target, and
    ``target`` for the user's target-wide figures. bench.usd_per_hour (pool, then target) wins
    over the instance type's price."""
    from workloads.targets import cluster_targets

    own = {key: Price(float(usd), USER_SOURCE) for key, usd in config.bench.usd_per_hour.items()}
    prices = dict(own)
    for target in cluster_targets():
        for pool, node_pool in target.node_pools(config).items():
            price = own.get(pool) or own.get(target.name) or instance_prices.get(node_pool.instance_type)
            if price is not None:
                prices[f"{target.name}/{pool}"] = price
    return prices


def configured_report_prices(
    config: ToolkitConfig, *, live: bool = False, client: Any | None = None
) -> dict[str, Price]:
    """The report's prices: the config table, or the Pricing API for the table's instance types
    in ``aws.region`` (``client``: a boto3 pricing client; built from the environment if None)."""
    instance_prices = table_prices(config.bench.prices)
    if live:
        instance_prices = live_prices(
            client if client is not None else pricing_client(),
            sorted(config.bench.prices.usd_per_hour),
            region=config.aws.region,
        )
    return report_prices(config, instance_prices)

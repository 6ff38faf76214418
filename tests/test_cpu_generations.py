"""kubernetes.cpu_generations (what each Xeon generation executes natively) and bench.prices."""

from __future__ import annotations

import datetime

import pytest

from contracts.config import CpuGeneration, load_config
from contracts.errors import ConfigError


def test_defaults_serve_three_generations_and_only_sapphire_rapids_has_bf16_and_amx() -> None:
    config = load_config()
    generations = {name: pool.cpu_generation for name, pool in config.aws.pools.items()}
    assert generations == {"c5": "cascadelake", "c6i": "icelake", "c7i": "sapphirerapids"}
    assert config.aws.pools["c7i"].instance_type == "c7i.large"
    assert "c7i.large" in config.kubernetes.node_allocatable
    kubernetes = config.kubernetes
    assert kubernetes.cpu_generations["sapphirerapids"] == CpuGeneration(bf16=True, amx=True)
    assert [g for g in generations.values() if kubernetes.supports_bf16(g)] == ["sapphirerapids"]
    # Cooper Lake has AVX512_BF16 without AMX: the two facts are separate.
    assert kubernetes.cpu_generations["cooperlake"] == CpuGeneration(bf16=True, amx=False)


def test_an_unlisted_generation_has_no_bf16_and_the_table_is_configurable() -> None:
    config = load_config({"kubernetes": {"cpu_generations": {"graniterapids": {"bf16": True, "amx": True}}}})
    assert config.kubernetes.supports_bf16("graniterapids")
    assert not load_config().kubernetes.supports_bf16("graniterapids")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"kubernetes": {"cpu_generations": {"odd": {"amx": True}}}},
            "kubernetes.cpu_generations.odd: amx implies bf16 (AMX-BF16); set bf16: true",
        ),
        ({"kubernetes": {"cpu_generations": {"odd": {"bf16": "maybe"}}}}, "must be true or false"),
        ({"bench": {"prices": {"as_of": "last week"}}}, "bench.prices.as_of must be a date (YYYY-MM-DD)"),
        ({"bench": {"prices": {"region": "virginia"}}}, "bench.prices.region must be an AWS region"),
        (
            {"bench": {"prices": {"usd_per_hour": {"c7i.large": -1}}}},
            "bench.prices.usd_per_hour.c7i.large must be >= 0",
        ),
    ],
)
def test_bad_capabilities_and_prices_are_one_line_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_yaml_date_is_read_as_the_price_tables_date() -> None:
    # YAML reads an unquoted `as_of: 2027-01-15` as a date, not a string.
    config = load_config({"bench": {"prices": {"as_of": datetime.date(2027, 1, 15)}}})
    assert config.bench.prices.as_of == "2027-01-15"

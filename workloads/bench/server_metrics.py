"""Server-side time beside client time: the server's own histograms, before and after a measurement.

A server that keeps Prometheus histograms of its request and inference times (OVMS:
``ovms_request_time_us`` / ``ovms_inference_time_us`` on the REST port's ``/metrics`` once metrics
are enabled; the local server: ``kserve_openvino_request_seconds`` / kserve's
``request_predict_seconds``) is scraped before and after each scenario; the differences of the
histograms' ``_count`` and ``_sum`` give the server's mean request and inference time per request
over exactly that scenario (its warm-up included). Client latency minus server request time is
what the network, the protocol's serialization and the client took.

The scrape is injectable (``scrape(url) -> text``); the default reads over HTTP without a proxy.
A server without the metrics (disabled, another server) leaves the figures out with the reason,
never failing the bench.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

METRICS_PATH = "/metrics"
Scrape = Callable[[str], str]


@dataclass(frozen=True)
class TimeMetrics:
    """Which histograms a server keeps for one model, and their unit."""

    request: str  # the histogram's base name (samples <name>_count, <name>_sum)
    inference: str
    seconds_per_unit: float
    model_label: str  # the label naming the model


OVMS_METRICS = TimeMetrics("ovms_request_time_us", "ovms_inference_time_us", 1e-6, "name")
# workloads.serving.kserve_server (request) and kserve's model timing (predict: queue + inference).
LOCAL_METRICS = TimeMetrics("kserve_openvino_request_seconds", "request_predict_seconds", 1.0, "model_name")
# By the results' runtime label; other KServe v2 servers publish no known histograms.
METRICS_BY_RUNTIME = {"ovms": OVMS_METRICS, "kserve-openvino": LOCAL_METRICS}


@dataclass(frozen=True)
class Totals:
    """A histogram's count and sum over every series of one model (all interfaces, versions)."""

    count: float
    total: float


def histogram_totals(text: str, name: str, label: str, model: str) -> Totals | None:
    """``name``'s count and sum for ``label=model`` in Prometheus text; None when the server has no
    such histogram (metrics off, another server). A histogram without a series for the model yet is
    zero: prometheus_client prints a labelled series only once it was observed."""
    count = total = 0.0
    found = False
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        found = True
        for sample in family.samples:
            if sample.labels.get(label) != model:
                continue
            if sample.name == f"{name}_count":
                count += sample.value
            elif sample.name == f"{name}_sum":
                total += sample.value
    return Totals(count, total) if found else None


@dataclass(frozen=True)
class ServerTime:
    """What the server measured over one scenario: requests and mean times (ms), None if unknown."""

    requests: int
    mean_request_ms: float | None
    inferences: int
    mean_inference_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "mean_request_ms": self.mean_request_ms,
            "inferences": self.inferences,
            "mean_inference_ms": self.mean_inference_ms,
        }


def _delta(before: Totals | None, after: Totals | None, seconds_per_unit: float) -> tuple[int, float | None]:
    if before is None or after is None:
        return 0, None
    count = after.count - before.count
    if count <= 0:  # a server restarted in between resets its counters: no figure, not a negative one
        return 0, None
    return round(count), (after.total - before.total) / count * seconds_per_unit * 1000.0


def server_time(before: str, after: str, metrics: TimeMetrics, model: str) -> ServerTime:
    """The differences between two scrapes of one server, for one model."""

    def totals(text: str, name: str) -> Totals | None:
        return histogram_totals(text, name, metrics.model_label, model)

    requests, request_ms = _delta(
        totals(before, metrics.request), totals(after, metrics.request), metrics.seconds_per_unit
    )
    inferences, inference_ms = _delta(
        totals(before, metrics.inference), totals(after, metrics.inference), metrics.seconds_per_unit
    )
    return ServerTime(requests, request_ms, inferences, inference_ms)


def http_scrape(url: str, timeout: float = 5.0) -> str:
    """GET a Prometheus text page, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return response.read().decode("utf-8", "replace")


def metrics_url(rest_url: str) -> str:
    """The metrics page of a server's REST endpoint (OVMS and kserve serve it on the REST port)."""
    base = rest_url.rstrip("/") if "://" in rest_url else f"http://{rest_url.rstrip('/')}"
    return base + METRICS_PATH


class ServerTimer:
    """Per-scenario server time of one model on one server (``url``: its metrics page, None: none).

    ``measure(scenario)`` scrapes before and after the block; ``as_dict()`` is the results'
    ``server_time`` section: where it was read, per scenario the figures, or why there are none.
    """

    def __init__(
        self, url: str | None, metrics: TimeMetrics | None, model: str, *, scrape: Scrape = http_scrape
    ):
        self.url, self.metrics, self.model, self._scrape = url, metrics, model, scrape
        self.scenarios: dict[str, ServerTime] = {}
        self.reason = ""
        if url is None:
            self.reason = "no REST endpoint known for the server's metrics page"
        elif metrics is None:
            self.reason = "the server publishes no known request/inference time histograms"

    def _read(self) -> str | None:
        if self.reason or self.url is None:
            return None
        try:
            text = self._scrape(self.url)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            self.reason = f"cannot read {self.url}: {' '.join(str(exc).split())[:200]}"
            return None
        assert self.metrics is not None
        if histogram_totals(text, self.metrics.request, self.metrics.model_label, self.model) is None:
            self.reason = (
                f"{self.url} has no {self.metrics.request} histogram for {self.model} "
                "(are the server's metrics enabled?)"
            )
            return None
        return text

    @contextlib.contextmanager
    def measure(self, scenario: str) -> Iterator[None]:
        before = self._read()
        yield
        after = self._read() if before is not None else None
        if before is not None and after is not None and self.metrics is not None:
            self.scenarios[scenario] = server_time(before, after, self.metrics, self.model)

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "source": self.url,
            "scenarios": {name: figures.as_dict() for name, figures in self.scenarios.items()},
        }
        if self.reason:
            document["reason"] = self.reason
        return document


def in_process_timer() -> ServerTimer:
    """In process there is no server: nothing to scrape, said so."""
    timer = ServerTimer(None, None, "")
    timer.reason = "in process: no server"
    return timer


def process_cpu_seconds(pid: int, *, proc: Path = Path("/proc")) -> float:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat`` utime + stime).

    Read before and after a run for the client (this process) and the server: on a machine of few
    cores what the client spends is taken from the server.
    """
    text = (proc / str(pid) / "stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
    fields = text.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")

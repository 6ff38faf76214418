"""`invoke bench.report`: merge benchmark result files into a Markdown table and a bar chart.

The table is the reference paper's Figure 17 (rows = targets/pools; columns = batch inference
images/s and real-time inference latency) done right: every figure is a median over repetitions
with its min–max range, tail latencies sit beside the paper's "average of 10 images", the client
CPU and its INT8-relevant instruction sets are named, and footnotes say which model, which settings
and which caveats each row comes with.

Results are the JSON files written by the bench engine, loaded and validated by
workloads.bench.results. A row is one (target, pool, runtime, protocol, precision, batch_size,
concurrency); when several results share a row, the newest (created_at) wins and a footnote says
which were dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.errors import BenchError
from contracts.files import atomic_write_text, temporary_sibling
from workloads.bench.pricing import Price
from workloads.bench.results import (
    SOURCE_KEY,
    load_results,
    model_version_label,
    realtime_overhead_ms,
    server_request_ms,
)
from workloads.progress import Progress, print_progress

TARGET_ORDER = ("local", "aws", "vsphere", "endpoint", "in-process")
REPORT_MD = "report.md"
REPORT_PNG = "report.png"
MISSING = "—"
BUSY_MARK = "⚠ busy"

SERVER_HEADER = "Server ms real-time (overhead) · batch"
_SERVER_SCENARIOS = ("realtime", "batch")
_SETTINGS_SHOWN = ("repetitions", "min_duration_seconds", "min_requests", "warmup_seconds", "input_format")


# ---------------------------------------------------------------------------------------------
# Rows: merge (newest wins), order, labels


def row_key(result: Mapping[str, Any]) -> tuple[Any, ...]:
    """(target, pool, runtime, protocol, precision, batch_size, concurrency)."""
    settings = result.get("settings") or {}
    return (
        result["target"],
        result.get("pool"),
        result.get("runtime"),
        result.get("protocol"),
        result["model"]["precision"],
        settings.get("batch_size"),
        settings.get("concurrency"),
    )


def merge_results(results: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[str]]:
    """One result per row (the newest by created_at; on a tie the later one), in report order.

    Returns the rows and one footnote per row that had older results dropped.
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for result in results:
        groups.setdefault(row_key(result), []).append(result)
    # Stable sort: among equal created_at the later-loaded result ends up last and wins.
    ordered = {key: sorted(group, key=_created_at) for key, group in groups.items()}
    rows = sorted((group[-1] for group in ordered.values()), key=_sort_key)
    labels = row_labels(rows)
    notes = []
    for row, label in zip(rows, labels, strict=True):
        group = ordered[row_key(row)]
        if len(group) > 1:
            dropped = ", ".join(_describe_result(r) for r in reversed(group[:-1]))
            notes.append(
                f"{label}: {len(group)} results for this row; kept the newest ({_describe_result(row)}), "
                f"dropped {dropped}."
            )
    return rows, notes


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _created_at(result: Mapping[str, Any]) -> datetime:
    value = result.get("created_at")
    return _parse_time(value) if value else datetime.min.replace(tzinfo=UTC)


def _describe_result(result: Mapping[str, Any]) -> str:
    created = result.get("created_at") or "no created_at"
    source = result.get(SOURCE_KEY)
    return f"{created}, {Path(source).name}" if source else str(created)


def _sort_key(result: Mapping[str, Any]) -> tuple[Any, ...]:
    target, pool, runtime, protocol, precision, batch_size, concurrency = row_key(result)
    return (
        TARGET_ORDER.index(target),
        pool or "",
        runtime or "",
        precision,
        protocol or "",
        batch_size or 0,
        concurrency or 0,
    )


def row_labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Short unique labels, "target/pool precision", with runtime, protocol, bs×conc added only to
    tell otherwise identical labels apart."""
    labels = [_base_label(row) for row in rows]
    extras: list[Callable[[Mapping[str, Any]], str]] = [
        lambda r: f"({r.get('runtime')})",
        lambda r: f"[{r.get('protocol')}]",
        lambda r: _bs_conc(r),
    ]
    for extra in extras:
        # Within each group of equal labels, add this detail only if it tells the group apart.
        values: dict[str, set[str]] = {}
        for label, row in zip(labels, rows, strict=True):
            values.setdefault(label, set()).add(extra(row))
        labels = [
            f"{label} {extra(row)}" if len(values[label]) > 1 else label
            for label, row in zip(labels, rows, strict=True)
        ]
    return labels


def _base_label(row: Mapping[str, Any]) -> str:
    target, pool = row["target"], row.get("pool")
    where = target if not pool or pool == target else f"{target}/{pool}"
    return f"{where} {precision_label(row)}"


def precision_label(row: Mapping[str, Any]) -> str:
    """The variant and what executed: ``int8 (ran u8+f32)`` from the layer mix (most layers first);
    ``int8 (hint f32)`` where only the floating-point hint is known (a server's report: an INT8
    model's quantized layers still run in integers), ``fp32 (pinned f32)`` where only the deploy's
    pin is; the variant alone for results that do not say."""
    precision = row["model"]["precision"]
    layers = row.get("layer_precisions") or {}
    if layers:
        ran = "+".join(sorted(layers, key=lambda name: (-layers[name], name)))
        return f"{precision} (ran {ran})"
    hint = row.get("execution_precision")
    if not hint:
        return precision
    verb = "pinned" if row.get("execution_reported_by") == "plugin_config" else "hint"
    return f"{precision} ({verb} {hint})"


def _bs_conc(row: Mapping[str, Any]) -> str:
    settings = row.get("settings") or {}
    return f"{settings.get('batch_size', '?')}×{settings.get('concurrency', '?')}"


# ---------------------------------------------------------------------------------------------
# Markdown table


def markdown_table(results: Sequence[Mapping[str, Any]], prices: Mapping[str, Price]) -> str:
    """The results table followed by its footnotes (Markdown)."""
    if not results:
        raise BenchError("no benchmark results to report; run `invoke bench` first")
    rows, merge_notes = merge_results(results)
    labels = row_labels(rows)
    with_cost = any(_price(row, prices) is not None for row in rows)
    with_server = any(_served(row) and "server_time" in row for row in rows)
    paper_images = {(row.get("settings") or {}).get("paper_images") for row in rows}
    paper_n = next(iter(paper_images)) if len(paper_images) == 1 and None not in paper_images else "N"

    header = [
        "Target",
        "Pool",
        "Runtime",
        "Precision",
        "Batch (bs×conc) images/s median [min–max]",
        f"Real-time avg of {paper_n} images ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        *[SERVER_HEADER] * with_server,
        "Client CPU",
    ]
    if with_cost:
        header.append("$/M images")
    align = ["---"] * 4 + ["---:"] * (5 + with_server) + ["---"] + ["---:"] * with_cost
    lines = [_table_line(header), _table_line(align)]
    for row in rows:
        lines.append(_table_line(_row_cells(row, prices, with_cost, with_server)))

    notes = [
        *_model_notes(rows, labels),
        _known_answer_note(rows, labels),
        *_settings_notes(rows, labels, paper_n),
        *_error_notes(rows, labels),
        *_conditions_notes(rows, labels),
        *(_server_time_notes(rows, labels) if with_server else []),
        *_version_notes(rows, labels),
        *merge_notes,
        *_cpu_caveats(rows, labels),
    ]
    if with_cost:
        notes.append(_cost_note(rows, labels, prices))
    server = "; in the server column also: no figure from the server" if with_server else ""
    notes.append(f"{MISSING} = scenario not run for that row{server}.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"


def _row_cells(
    row: Mapping[str, Any], prices: Mapping[str, Price], with_cost: bool, with_server: bool
) -> list[str]:
    scenarios = row["scenarios"]
    runtime = row.get("runtime") or MISSING
    protocol = row.get("protocol")
    if protocol and protocol != "in-process":
        runtime = f"{runtime} ({protocol})"
    target = f"{row['target']} {BUSY_MARK}" if _busy(row) else row["target"]
    cells = [target, row.get("pool") or MISSING, runtime, precision_label(row)]

    batch = scenarios.get("batch")
    if batch:
        cells.append(f"{_median_range(batch['summary']['images_per_second'])} ({_bs_conc(row)})")
    else:
        cells.append(MISSING)

    realtime = scenarios.get("realtime")
    if realtime:
        summary = realtime["summary"]
        cells.append(_median_range(summary["paper_avg_ms"]))
        cells.extend(_number(summary[metric]["median"]) for metric in ("p50_ms", "p90_ms", "p99_ms"))
    else:
        cells.extend([MISSING] * 4)

    if with_server:
        cells.append(server_cell(row))
    cells.append(cpu_cell(row.get("client")))
    if with_cost:
        cells.append(_money(_row_cost(row, prices)))
    return cells


def _served(row: Mapping[str, Any]) -> bool:
    return row.get("protocol") != "in-process"


def server_cell(row: Mapping[str, Any]) -> str:
    """``3.10 (+0.85) · 52.1``: the server's mean real-time request ms (the client's mean minus it),
    then its mean ms per batch request; a part without a figure is ``—``, a row with neither is."""
    realtime, batch = (server_request_ms(row, name) for name in _SERVER_SCENARIOS)
    if realtime is None and batch is None:
        return MISSING
    overhead = realtime_overhead_ms(row)
    first = MISSING if realtime is None else _number(realtime)
    if overhead is not None:
        first += f" ({'+' if overhead >= 0 else '−'}{_number(abs(overhead))})"
    return f"{first} · {MISSING if batch is None else _number(batch)}"


def _table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _number(value: float) -> str:
    """About three significant figures: 1234, 412, 41.2, 4.12, 0.41."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _median_range(stats: Mapping[str, float]) -> str:
    return f"{_number(stats['median'])} [{_number(stats['min'])}–{_number(stats['max'])}]"


def _batch_median(row: Mapping[str, Any]) -> float | None:
    batch = row["scenarios"].get("batch")
    return batch["summary"]["images_per_second"]["median"] if batch else None


# ---------------------------------------------------------------------------------------------
# Cost


def _price(row: Mapping[str, Any], prices: Mapping[str, Price]) -> Price | None:
    """The node price of a row (workloads.bench.pricing.report_prices keys): its target/pool's,
    else its target's, else None."""
    return prices.get(f"{row['target']}/{row.get('pool')}") or prices.get(row["target"])


def _row_cost(row: Mapping[str, Any], prices: Mapping[str, Price]) -> float | None:
    """$ per million images at the row's median batch throughput; None without a price or figure."""
    price = _price(row, prices)
    return cost_per_million(price.usd_per_hour, _batch_median(row)) if price is not None else None


def cost_per_million(usd_per_hour: float, images_per_second: float | None) -> float | None:
    """$ per million images at a sustained throughput; None when there is no throughput."""
    if not images_per_second or images_per_second <= 0:
        return None
    return usd_per_hour / (images_per_second * 3600) * 1e6


def _money(value: float | None) -> str:
    if value is None:
        return MISSING
    # Three significant figures below $10: pools a few percent apart (c6i vs c7i) stay apart.
    return f"${value:.2f}" if value >= 10 or value == 0 else f"${value:.3g}"


def _cost_note(rows: Sequence[Mapping[str, Any]], labels: Sequence[str], prices: Mapping[str, Price]) -> str:
    groups: dict[str, list[str]] = {}
    for row, label in zip(rows, labels, strict=True):
        price = _price(row, prices)
        if price is not None:
            groups.setdefault(price.describe(), []).append(label)
    used = "; ".join(f"{text} for {', '.join(group)}" for text, group in groups.items())
    return (
        f"$/M images = $/hour ÷ (median batch images/s × 3600) × 10⁶, one node per row: {used}. "
        f"Rows without a price or a batch figure show {MISSING}."
    )


# ---------------------------------------------------------------------------------------------
# CPU column and caveats


def short_cpu_name(cpu_model: str | None) -> str:
    """'Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz' → 'Xeon Platinum 8375C'."""
    if not cpu_model:
        return "unknown CPU"
    name = re.sub(r"\((R|TM|tm|r)\)", " ", cpu_model)
    name = re.sub(r"@\s*[\d.]+\s*[GM]Hz", " ", name)
    name = re.sub(r"\b(CPU|Processor|processor|Intel|AMD|with Radeon Graphics)\b", " ", name)
    name = re.sub(r"\b\d+(st|nd|rd|th) Gen\b", " ", name)
    name = re.sub(r"\b\d+-Core\b", " ", name)
    name = " ".join(name.split())
    return name or cpu_model.strip()


def cpu_cell(machine: Mapping[str, Any] | None) -> str:
    """Short CPU name with `VNNI` / `AMX` badges when its flags say so."""
    if not machine:
        return "unknown CPU"
    flags = machine.get("flags") or {}
    badges = [name for flag, name in (("avx512_vnni", "VNNI"), ("amx_tile", "AMX")) if flags.get(flag)]
    return " ".join([short_cpu_name(machine.get("cpu_model")), *(f"`{badge}`" for badge in badges)])


def _inference_cpu(row: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The machine that ran the model: the server when recorded; the client for local and in-process
    runs (same machine); unknown otherwise."""
    if row.get("server"):
        return row["server"]
    if row["target"] in ("local", "in-process"):
        return row.get("client")
    return None


def _cpu_caveats(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    caveats = []
    clients = sorted({short_cpu_name((row.get("client") or {}).get("cpu_model")) for row in rows})
    if len(clients) > 1:
        caveats.append(
            f"Caveat: client CPUs differ between rows ({'; '.join(clients)}), so client-side costs "
            "(encoding, serialization, Python overhead) are not the same across rows."
        )
    without_vnni = []
    for row, label in zip(rows, labels, strict=True):
        machine = _inference_cpu(row)
        if machine and not (machine.get("flags") or {}).get("avx512_vnni"):
            flags = machine.get("flags") or {}
            cpu = short_cpu_name(machine.get("cpu_model"))
            without_vnni.append(f"{label} ({cpu}{'' if flags.get('avx512f') else ', no AVX-512 at all'})")
    if without_vnni:
        caveats.append(
            f"Caveat: the inference CPU lacks AVX-512 VNNI for {'; '.join(without_vnni)}; "
            "figures from a CPU without VNNI understate INT8 gains."
        )
    return caveats


# ---------------------------------------------------------------------------------------------
# Footnotes


def _model_notes(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for row, label in zip(rows, labels, strict=True):
        model = row["model"]
        sha = model.get("sha256")
        text = (
            f"{model.get('name') or 'unnamed model'} {model_version_label(model)} {model['precision']}, "
            f"{model.get('image_size', '?')}px, "
            f"{f'sha256 {sha[:12]}' if sha else 'sha256 unknown'}"
        )
        groups.setdefault(text, []).append(label)
    return [f"Model {text}: {', '.join(group)}." for text, group in groups.items()]


def _known_answer_note(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    statuses = []
    for row, label in zip(rows, labels, strict=True):
        known = row.get("known_answer")
        if not known:
            statuses.append((label, "not recorded"))
        elif not known.get("images"):
            statuses.append((label, "skipped (0 images)"))
        elif known.get("before") == "pass" and known.get("after") == "pass":
            statuses.append((label, f"pass ({known['images']} images)"))
        else:
            statuses.append((label, f"before {known.get('before')}, after {known.get('after')}"))
    if all(status.startswith("pass") for _, status in statuses):
        images = sorted({row["known_answer"]["images"] for row in rows})
        counts = "/".join(str(n) for n in images)
        return f"Known-answer check ({counts} images, before and after timing): passed for every row."
    listed = "; ".join(f"{label}: {status}" for label, status in statuses)
    return f"Known-answer check (before and after timing): {listed}."


def _settings_notes(rows: Sequence[Mapping[str, Any]], labels: Sequence[str], paper_n: Any) -> list[str]:
    groups: dict[str, list[str]] = {}
    for row, label in zip(rows, labels, strict=True):
        settings = row.get("settings") or {}
        values = {name: settings.get(name, "?") for name in _SETTINGS_SHOWN}
        text = (
            f"{values['repetitions']} repetitions per scenario, each at least "
            f"{values['min_duration_seconds']} s and {values['min_requests']} requests after "
            f"{values['warmup_seconds']} s warm-up, {values['input_format']} input"
        )
        hint = settings.get("performance_hint")
        if hint:
            text += f", server hint {hint}"
        groups.setdefault(text, []).append(label)
    if len(groups) == 1:
        notes = [f"Measurement: {next(iter(groups))} (all rows)."]
    else:
        notes = [f"Measurement: {text} ({', '.join(group)})." for text, group in groups.items()]
    paper = f"{paper_n}" if paper_n != "N" else "settings.paper_images"
    notes.append(
        f"Batch = bs images per request with conc requests in flight; real-time = one image per request, "
        f"one at a time. Real-time avg = mean latency over {paper} single images (the reference paper's "
        "figure). Every figure is the median over repetitions (p50/p90/p99: the median of each "
        "repetition's percentile); brackets are the min–max over repetitions."
    )
    return notes


def _error_notes(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    notes = []
    for row, label in zip(rows, labels, strict=True):
        for name, scenario in row["scenarios"].items():
            errors = sum(int(rep.get("errors") or 0) for rep in scenario.get("repetitions") or [])
            if errors:
                notes.append(f"{label}: {errors} failed request(s) in the {name} scenario.")
    return notes


def _busy(row: Mapping[str, Any]) -> bool:
    return (row.get("conditions") or {}).get("machine") == "busy"


def _conditions_notes(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    """A caveat per row measured on a busy machine; one note for rows that did not record the load."""
    notes = []
    unrecorded = []
    for row, label in zip(rows, labels, strict=True):
        conditions = row.get("conditions")
        if not conditions:
            unrecorded.append(label)
        elif conditions.get("machine") == "busy":
            reasons = "; ".join(conditions.get("reasons") or []) or "no reason recorded"
            notes.append(
                f"Caveat: {label} ({BUSY_MARK}) was measured while the machine was busy with other "
                f"work ({reasons}); its figures may understate the target."
            )
    if unrecorded:
        which = "any row" if len(unrecorded) == len(rows) else ", ".join(unrecorded)
        notes.append(f"Machine load not recorded for {which} (results from an older toolkit).")
    return notes


def _server_time_notes(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    """What the server column means; why a served row that ran batch or real-time has no server
    figure for it, grouped by reason (in-process rows have no server: their ``—`` needs no note)."""
    notes = [
        "Server ms = the server's own mean time per request, from the request-time histogram on its "
        "/metrics page read before and after each scenario (warm-up included): real-time, then per "
        "batch request; (overhead) = the client's real-time mean minus the server's: what the network, "
        "the protocol's serialization and the client took."
    ]
    reasons: dict[str, list[str]] = {}
    unrecorded = []
    for row, label in zip(rows, labels, strict=True):
        if not _served(row):
            continue
        server_time = row.get("server_time")
        if server_time is None:
            unrecorded.append(label)
            continue
        ran = [name for name in _SERVER_SCENARIOS if name in row["scenarios"]]
        if any(server_request_ms(row, name) is None for name in ran):
            reason = server_time.get("reason") or "its metrics counted no requests over the scenario"
            reasons.setdefault(reason, []).append(label)
    notes.extend(f"No server time for {', '.join(group)}: {reason}." for reason, group in reasons.items())
    if unrecorded:
        notes.append(f"Server time not recorded for {', '.join(unrecorded)} (no server_time in the result).")
    return notes


def _version_notes(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for row, label in zip(rows, labels, strict=True):
        versions = row.get("versions") or {}
        parts = [
            f"{name} {versions[name]}" for name in ("toolkit", "openvino", "tensorflow") if versions.get(name)
        ]
        if versions.get("server"):
            parts.append(f"server {versions['server']}")
        groups.setdefault(", ".join(parts) or "versions not recorded", []).append(label)
    if len(groups) == 1:
        return [f"Software: {next(iter(groups))} (all rows)."]
    return [f"Software: {text} ({', '.join(group)})." for text, group in groups.items()]


# ---------------------------------------------------------------------------------------------
# Bar chart

_PRECISION_COLOURS = {"fp32": "#4C72B0", "fp16": "#55A868", "int8": "#DD8452", "bf16": "#C44E52"}


def batch_bar_label(row: Mapping[str, Any], prices: Mapping[str, Price]) -> str:
    """The figure beside a row's batch bar: median images/s, and $ per million images when priced."""
    cost = _row_cost(row, prices)
    text = f"  {_number(_batch_median(row) or 0)}"
    return f"{text} · {_money(cost)}/M images" if cost is not None else text


def bar_chart(
    results: Sequence[Mapping[str, Any]], path: Path, prices: Mapping[str, Price] | None = None
) -> Path:
    """Two panels, one bar per row: batch images/s (median, min–max error bars; $ per million
    images beside it when ``prices`` price the row) and real-time latency (p50 bar, p90/p99
    markers). 1200x500 px for up to 12 rows, taller beyond. Atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if not results:
        raise BenchError("no benchmark results to chart; run `invoke bench` first")
    rows, _ = merge_results(results)
    labels = row_labels(rows)
    positions = list(range(len(rows)))
    colours = [_PRECISION_COLOURS.get(row["model"]["precision"], "#8172B3") for row in rows]
    height = max(5.0, 1.6 + 0.3 * len(rows))

    fig, (batch_ax, latency_ax) = plt.subplots(1, 2, figsize=(12, height), dpi=100, sharey=True)
    try:
        for index, row in enumerate(rows):
            batch = row["scenarios"].get("batch")
            if batch:
                stats = batch["summary"]["images_per_second"]
                batch_ax.barh(
                    index,
                    stats["median"],
                    xerr=[[stats["median"] - stats["min"]], [stats["max"] - stats["median"]]],
                    color=colours[index],
                    capsize=3,
                    height=0.6,
                )
                label = batch_bar_label(row, prices or {})
                batch_ax.text(stats["max"], index, label, va="center", fontsize=8)
            else:
                batch_ax.text(0, index, " not run", va="center", fontsize=8, color="grey")

            realtime = row["scenarios"].get("realtime")
            if realtime:
                summary = realtime["summary"]
                p50, p90, p99 = (summary[m]["median"] for m in ("p50_ms", "p90_ms", "p99_ms"))
                latency_ax.barh(index, p50, color=colours[index], height=0.6)
                latency_ax.plot([p90], [index], marker="D", color="black", markersize=5, linestyle="none")
                latency_ax.plot([p99], [index], marker="x", color="crimson", markersize=7, linestyle="none")
                latency_ax.text(
                    max(p99, p50),
                    index,
                    f"  p50 {_number(p50)} · p99 {_number(p99)}",
                    va="center",
                    fontsize=8,
                )
            else:
                latency_ax.text(0, index, " not run", va="center", fontsize=8, color="grey")

        batch_ax.set_yticks(positions, labels, fontsize=9)
        batch_ax.invert_yaxis()
        batch_ax.set_xlabel("images/s (median over repetitions; bars: min–max)")
        batch_ax.set_title("Batch inference throughput (higher is better)", fontsize=11)
        latency_ax.set_xlabel("ms per image (bar: p50; ◆ p90; × p99)")
        latency_ax.set_title("Real-time inference latency (lower is better)", fontsize=11)
        # Room on the right for the value labels.
        batch_top = max(
            (s["batch"]["summary"]["images_per_second"]["max"] for s in _scenarios(rows, "batch")), default=1
        )
        latency_top = max(
            (s["realtime"]["summary"]["p99_ms"]["median"] for s in _scenarios(rows, "realtime")), default=1
        )
        # Room on the right for the figure (and its $/M images) beside the longest bar.
        batch_ax.set_xlim(0, (batch_top or 1) * (1.6 if prices else 1.2))
        latency_ax.set_xlim(0, (latency_top or 1) * 1.5)
        for ax in (batch_ax, latency_ax):
            ax.grid(axis="x", alpha=0.3)
            ax.set_axisbelow(True)
        precisions = sorted({row["model"]["precision"] for row in rows})
        handles = [Patch(color=_PRECISION_COLOURS.get(p, "#8172B3"), label=p) for p in precisions]
        latency_ax.legend(handles=handles, loc="lower right", fontsize=8)
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return path


def save_figure(fig: Any, path: Path) -> None:
    """``fig`` as a PNG at ``path``, atomically: a reader never sees half a chart."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, "tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _scenarios(rows: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The scenarios of the rows that ran ``name``."""
    return [row["scenarios"] for row in rows if name in row["scenarios"]]


# ---------------------------------------------------------------------------------------------
# The report


def write_report(
    results_paths: Sequence[Path],
    out_dir: Path,
    prices: Mapping[str, Price],
    *,
    progress: Progress = print_progress,
    title: str = "Bone-marrow classifier benchmark",
) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` (table, footnotes, chart link) and ``out_dir/report.png``; results
    of the load modes (sweep, rate, max-rate) add their tables and ``out_dir/curve.png``.

    Returns report.md and the main chart (report.png; curve.png when no result ran batch or
    realtime). Everything is rendered before anything is renamed into place, so a failure (bad
    result, chart error) leaves the previous report, or none, untouched.
    """
    from workloads.bench.load_report import CURVE_PNG, curve_chart, load_mode_sections

    results = load_results(results_paths)
    classic = [r for r in results if set(r["scenarios"]) & {"batch", "realtime"}]
    rows, _ = merge_results(classic)
    progress(f"bench report: {len(results)} result(s) → {len(rows)} row(s)")
    loads = load_mode_sections(results)
    generated = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    markdown = f"# {title}\n\nGenerated {generated} from {len(results)} result file(s).\n\n"
    if classic:
        markdown += (
            f"{markdown_table(classic, prices)}\n"
            f"![Batch throughput and real-time latency per row]({REPORT_PNG})\n"
        )
    if loads:
        markdown += f"\n{loads}\n![Throughput against latency per row and load mode]({CURVE_PNG})\n"

    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, png_path, curve_path = out_dir / REPORT_MD, out_dir / REPORT_PNG, out_dir / CURVE_PNG
    charts = [path for path, drawn in ((png_path, classic), (curve_path, loads)) if drawn]
    staged = {path: temporary_sibling(path, "staged") for path in charts}
    staged_md = temporary_sibling(md_path, "staged")
    try:
        if classic:
            bar_chart(classic, staged[png_path], prices)
        if loads:
            curve_chart(results, staged[curve_path])
        atomic_write_text(staged_md, markdown)
        # The Markdown (which links the charts) goes into place last.
        for path, staging in staged.items():
            os.replace(staging, path)
        os.replace(staged_md, md_path)
    except BaseException:
        for staging in staged.values():
            staging.unlink(missing_ok=True)
        staged_md.unlink(missing_ok=True)
        raise
    written = " and ".join(map(str, charts))
    progress(f"bench report: wrote {md_path} and {written}")
    return md_path, png_path if classic else curve_path

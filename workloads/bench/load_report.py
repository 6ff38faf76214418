"""The report's load-mode sections: the concurrency sweep and request-rate tables, the highest rate
under a p99 bound, and the throughput–latency curve chart (workloads.bench.report writes them).

Each mode's rows merge on their own (newest result per row wins, as the main table's), so a
sweep run never hides a row's batch figures, nor the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workloads.bench.report import MISSING, merge_results, row_labels, save_figure
from workloads.bench.report import _number as number

CURVE_PNG = "curve.png"
_MODE_TITLES = {
    "sweep": "Concurrency sweep (closed loop)",
    "rate": "Request rate (open loop)",
    "max-rate": "Highest rate under the p99 bound",
}


def mode_rows(results: Sequence[Mapping[str, Any]], mode: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, result) per row of the results that ran ``mode``, newest per row, in report order."""
    rows, _ = merge_results([r for r in results if mode in r["scenarios"]])
    return list(zip(row_labels(rows), rows, strict=True))


def _line(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _windows(point: Mapping[str, Any]) -> str:
    count = len(point["windows"])
    return f"{count} stable" if point["stable"] else f"{count} ⚠ not stable"


def _latencies(point: Mapping[str, Any]) -> list[str]:
    return [number(point[key]) for key in ("p50_ms", "p90_ms", "p99_ms")]


def _sweep_table(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    lines = [
        _line(["Row", "Concurrency", "images/s", "requests/s", "p50 ms", "p90 ms", "p99 ms", "Windows"]),
        _line(["---"] + ["---:"] * 6 + ["---"]),
    ]
    for label, row in rows:
        sweep = row["scenarios"]["sweep"]
        for point in sweep["points"]:
            lines.append(
                _line(
                    [
                        f"{label} (bs {sweep['batch_size']})",
                        point["concurrency"],
                        number(point["images_per_second"]),
                        number(point["requests_per_second"]),
                        *_latencies(point),
                        _windows(point),
                    ]
                )
            )
    return lines


def _rate_table(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    header = ["Row", "Offered req/s", "Achieved req/s", "images/s", "p50 ms", "p90 ms", "p99 ms"]
    lines = [
        _line([*header, "Delayed", "Dropped", "Windows"]),
        _line(["---"] + ["---:"] * 8 + ["---"]),
    ]
    for label, row in rows:
        rate = row["scenarios"]["rate"]
        for point in rate["points"]:
            lines.append(
                _line(
                    [
                        f"{label} ({rate['distribution']}, bs {rate['batch_size']})",
                        number(point["offered_rps"]),
                        number(point["requests_per_second"]),
                        number(point["images_per_second"]),
                        *_latencies(point),
                        point["delayed"],
                        point["dropped"],
                        _windows(point),
                    ]
                )
            )
    return lines


def _max_rate_table(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    lines = [
        _line(["Row", "p99 bound ms", "Max req/s", "images/s", "Lowest failed req/s", "Rates tried"]),
        _line(["---"] + ["---:"] * 5),
    ]
    for label, row in rows:
        search = row["scenarios"]["max-rate"]
        best, failed = search["max_rps"], search["failed_rps"]
        lines.append(
            _line(
                [
                    f"{label} ({search['distribution']}, bs {search['batch_size']})",
                    number(search["p99_bound_ms"]),
                    number(best) if best is not None else "none sustained",
                    number(search["max_images_per_second"]) if best is not None else MISSING,
                    number(failed) if failed is not None else "none failed",
                    len(search["steps"]),
                ]
            )
        )
    return lines


_TABLES = {"sweep": _sweep_table, "rate": _rate_table, "max-rate": _max_rate_table}


def load_mode_sections(results: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one section per load mode that any result ran ('' when none did)."""
    sections = []
    for mode, table in _TABLES.items():
        rows = mode_rows(results, mode)
        if rows:
            sections.append(f"## {_MODE_TITLES[mode]}\n\n" + "\n".join(table(rows)))
    if not sections:
        return ""
    rules = {
        f"windows of {w['window_seconds']:g} s until {w['stable_windows']} agree within "
        f"±{w['stability_percent']:g} % (throughput and mean latency), at most {w['max_windows']}"
        for _, row in (r for mode in _TABLES for r in mode_rows(results, mode))
        if (w := (row.get("settings") or {}).get("windows"))
    }
    notes = [
        f"Each point: {'; '.join(sorted(rules))}; its figures pool the last agreeing windows "
        "(⚠ not stable: the last ones measured).",
        "Open loop: requests are sent at scheduled times whatever the answers do, and latency runs "
        "from the scheduled time (queueing included); delayed = sent late because every in-flight "
        "slot was busy, dropped = never sent before its window ended.",
        "Highest rate: the largest request rate whose pooled p99 is within the bound while ≥ 95 % "
        "of the rate its schedule held is answered per second (doubling, then bisection).",
    ]
    return "\n\n".join(sections) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"


def _curves(results: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[tuple[float, float, float]]]]:
    """(legend, [(images/s, p50, p99)]) per row and mode: sweep points in order of concurrency,
    open-loop points (rate points, max-rate steps) in order of offered rate."""
    curves = []
    for mode in _TABLES:
        for label, row in mode_rows(results, mode):
            scenario = row["scenarios"][mode]
            points = scenario["points"] if mode != "max-rate" else scenario["steps"]
            if mode != "sweep":
                points = sorted(points, key=lambda point: point["offered_rps"])
            figures = [(p["images_per_second"], p["p50_ms"], p["p99_ms"]) for p in points]
            curves.append((f"{label} {mode}", figures))
    return curves


def curve_chart(results: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Throughput (images/s) against latency (p99 solid, p50 dotted), one curve per row and mode;
    None (nothing written) when no result ran a load mode. 1000x600 px, written atomically."""
    curves = _curves(results)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6), dpi=100)
    try:
        for legend, figures in curves:
            throughput = [f[0] for f in figures]
            (line,) = ax.plot(throughput, [f[2] for f in figures], marker="o", label=f"{legend} p99")
            ax.plot(throughput, [f[1] for f in figures], linestyle=":", color=line.get_color())
        ax.set_xlabel("throughput, images/s")
        ax.set_ylabel("latency, ms (solid: p99; dotted: p50)")
        ax.set_title("Throughput against latency (right and low is better)", fontsize=11)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return path

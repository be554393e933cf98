"""The report's tables as cells, shared by report.md, the terminal table and report.html: the measured table
(its figure columns from `report.figures`), the drop by stage, parity, throughput, verdicts, flags, estimates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgekd.measure.quality import (
    ACCURACY,
    DROP_FIGURES,
    METRIC_FIGURES,
    STAGES,
    TEACHER_COSINE,
    metric_drop,
    report_metric,
)
from edgekd.report.figures import FIGURES

HEAD = ("artifact", "target", "runtime", "precision", "status", "flags")
AGREEMENT = {ACCURACY: "teacher_agreement", TEACHER_COSINE: "neighbour_accuracy"}  # embeddings: 1-NN on the labels


def measured_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows hold measurements only; estimates live in the report's `estimates` list, never among them."""
    return report["rows"]


def estimate_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Roofline lower bounds for targets not at hand (absent from reports older than 1.1)."""
    return list(report.get("estimates", []))


def measured_columns(metric: str) -> tuple[str, ...]:
    """The measured table's columns (HEAD, then figures by name): the task metric's figures where it has them."""
    quality = (METRIC_FIGURES[metric].name, DROP_FIGURES[metric].name, AGREEMENT[metric])
    return (*HEAD, "size_bytes", "params", "flops", *quality, "mean_kl", "p50_ms", "p90_ms", "p99_ms", "spread",
            "throughput_per_s", "peak_rss_bytes")  # fmt: skip


def headings(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(FIGURES[c].label if c in FIGURES else c for c in columns)


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _p50_cell(row: dict[str, Any]) -> str:
    """p50 with its 95% interval; where the runtime timed itself, its own time and the Python call's overhead
    beside it rather than one mixed figure."""
    lat = row["latency_ms"]
    cell = f"{lat['p50']:.4g}"
    if lat.get("p50_ci95"):
        cell += f" [{lat['p50_ci95'][0]:.4g}-{lat['p50_ci95'][1]:.4g}]"
    if lat.get("runtime_p50") is not None:
        cell += f" (runtime {lat['runtime_p50']:.4g} + call {lat.get('call_overhead_ms', 0.0):.2g})"
    return cell


def _peak_rss(row: dict[str, Any]) -> str:
    peak = FIGURES["peak_rss_bytes"].value(row)
    return "-" if peak is None else human_bytes(peak)


def _flops(row: dict[str, Any]) -> str:
    figure = FIGURES["flops"]  # counted FLOPs, shown in millions
    flops = figure.value(row)
    return "-" if flops is None else format(flops * figure.scale, figure.fmt)


# figures whose cell is more than their value in a format
_CELLS: dict[str, Callable[[dict[str, Any]], str]] = {
    "size_bytes": lambda row: human_bytes(row["size_bytes"]),
    "params": lambda row: f"{row['params']:,}",
    "flops": _flops,
    "p50_ms": _p50_cell,
    "throughput_per_s": lambda row: f"{row['throughput_per_s']:,.0f} (b{row.get('batch_size', '?')})",
    "peak_rss_bytes": _peak_rss,
}


def figure_cell(name: str, row: dict[str, Any]) -> str:
    if name in _CELLS:
        return _CELLS[name](row)
    value = FIGURES[name].value(row)
    return "-" if value is None else format(value, FIGURES[name].fmt)


def row_cells(row: dict[str, Any], columns: tuple[str, ...]) -> list[str]:
    """One row of the measured table; a row that was not measured says why across the figure columns."""
    head = [row["artifact"], row.get("target", "-"), row["runtime"],
            row["precision"] + (f" ({row['quantization']})" if row.get("quantization") else "")]  # fmt: skip
    cells = dict(zip(HEAD, head, strict=False))
    if row["status"] != "ok":
        cells["status"] = f"{row['status']}: {row['reason']}"
        return [cells.get(c, "") for c in columns]
    cells.update(status="ok", flags=", ".join(flag["code"] for flag in row.get("flags", [])))
    return [cells[c] if c in cells else figure_cell(c, row) for c in columns]


STAGE_LABELS = {"distillation": "distillation gap", "export": "export drift", "quantization": "quantization drop",
                "engine": "engine drift"}  # fmt: skip


def stage_drop_lines(report: dict[str, Any]) -> list[tuple[str, str, list[str], str]]:
    """(artifact, target, per-stage cells, total) for every measured student row with an unbroken chain."""
    metric = report_metric(report)
    lines = []
    for row in measured_rows(report):
        stages = row.get("drop_by_stage")
        if row["status"] != "ok" or not stages:
            continue
        cells = [f"{stages.get(stage, 0.0):+.2f}" for stage in STAGES]
        lines.append((row["artifact"], row.get("target", "-"), cells, f"{metric_drop(row, metric):+.2f}"))
    return lines


PARITY_COLUMNS = ("artifact", "target", "max |Δ| vs student", "top-1 agree", "cosine")


def parity_lines(report: dict[str, Any]) -> list[list[str]]:
    """artifact, target, max |difference|, top-1 agreement, cosine: each row against the fp32 PyTorch student."""
    lines = []
    for row in measured_rows(report):
        parity = row.get("student_parity") if row["status"] == "ok" else None
        if parity:
            agree = parity.get("top1_agreement")
            lines.append([row["artifact"], row.get("target", "-"), f"{parity['max_abs_diff']:.3g}",
                          "-" if agree is None else f"{agree * 100:.1f}%", f"{parity['mean_cosine']:.6f}"])  # fmt: skip
    return lines


THROUGHPUT_COLUMNS = ("artifact", "target", "mode", "batch", "samples/s", "streams")


def throughput_lines(report: dict[str, Any]) -> list[list[str]]:
    """artifact, target, mode, batch, samples/s, streams: every throughput figure of the measured rows."""
    lines = []
    for row in measured_rows(report):
        for entry in row.get("throughput", []) if row["status"] == "ok" else []:
            lines.append([row["artifact"], row.get("target", "-"), entry["mode"], str(entry["batch_size"]),
                          f"{entry['per_s']:,.0f}", str(entry.get("streams", "-"))])  # fmt: skip
    return lines


VERDICT_COLUMNS = ("artifact", "budget", "verdict", "detail")


def verdict_lines(report: dict[str, Any]) -> list[list[str]]:
    """The recipe budgets' checks recorded in the report (empty when the recipe declared none)."""
    checks = report.get("verdicts", {}).get("checks", [])
    return [[c["artifact"], c["budget"], c["verdict"], c["detail"]] for c in checks]


def flag_lines(report: dict[str, Any]) -> list[str]:
    return [f"{row['artifact']} on {row.get('target', '-')}: {flag['code']}: {flag['message']}"
            for row in measured_rows(report) for flag in row.get("flags", [])]  # fmt: skip


ESTIMATE_COLUMNS = ("artifact", "target", "runtime", "precision", "latency ms (est.)", "bound", "basis")


def estimate_cells(row: dict[str, Any]) -> list[str]:
    return [row["artifact"], row["target"], row.get("runtime", "-"), row["precision"],
            f">= {row['latency_ms_lower_bound']:.4g}", row["bound"], row["basis"]]  # fmt: skip

"""report.html: the report as one self-contained page (inline CSS and SVG; no script, no network).

It holds the measured table, a Pareto plot of latency against accuracy across artifacts and targets (marker area
from size on disk, estimates drawn hollow and dashed), the accuracy drop by stage, throughput per batch size and
mode, the training curve and layer candidates, the flags, and the estimates in a table of their own.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from edgekd.measure.quality import ACCURACY, METRIC_LABELS, metric_value, report_metric
from edgekd.report.cells import (
    ESTIMATE_COLUMNS,
    PARITY_COLUMNS,
    STAGE_LABELS,
    THROUGHPUT_COLUMNS,
    VERDICT_COLUMNS,
    estimate_cells,
    estimate_rows,
    flag_lines,
    headings,
    human_bytes,
    measured_columns,
    measured_rows,
    parity_lines,
    row_cells,
    stage_drop_lines,
    throughput_lines,
    verdict_lines,
)
from edgekd.report.compare import COMPARE_COLUMNS, REGRESSION, compare_lines, summary
from edgekd.report.recommend import COLLAPSE, recommendation_lines
from edgekd.report.summary import method_line, summary_lines
from edgekd.report.training import training_section_html

VERDICT_CLASSES = {"fail": "bad", "inconclusive": "flagged"}  # the row styles of unmeasured and flagged rows
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
STAGE_COLOURS = ("#4c78a8", "#f58518", "#e45756", "#72b7b2")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1b1f24;max-width:1500px}
h1{font-size:22px;margin:0 0 8px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
ul.summary{margin:4px 0 8px;padding-left:18px;font-size:14px} p.note{font-size:13px;color:#57606a;margin:4px 0}
div.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:2px 5px;text-align:right;white-space:nowrap}
th{background:#f3f5f7} td.l,th.l{text-align:left}
tr.flagged td{background:#fff8c5} tr.bad td{background:#ffebe9;color:#82071e}
tr.estimate td{color:#57606a;font-style:italic}
.flags li{font-size:13px} svg text{font-family:system-ui,sans-serif}
footer{margin-top:28px;font-size:12px;color:#57606a}
"""


class _Raw(str):
    """Markup built here (an inline SVG), inserted unescaped; every other cell is escaped."""


def _table(columns: list[str] | tuple[str, ...], rows: list[list[str]], classes: list[str] | None = None,
           left: int = 1) -> str:  # fmt: skip
    """An HTML table; the first `left` columns are left-aligned, cells are escaped unless _Raw."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{escape(c)}</th>' for i, c in enumerate(columns))
    body = []
    for index, cells in enumerate(rows):
        css = f' class="{classes[index]}"' if classes and classes[index] else ""
        tds = "".join(
            f'<td class="{"l" if i < left else ""}">{c if isinstance(c, _Raw) else escape(c)}</td>'
            for i, c in enumerate(cells)
        )
        body.append(f"<tr{css}>{tds}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _points(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Plot points: every measured ok row, and every estimate with a latency. An estimate's accuracy is that of
    the measured row of the same artifact where there is one, else None (drawn in the band below the plot)."""
    metric = report_metric(report)
    measured = [r for r in measured_rows(report) if r["status"] == "ok"]
    accuracy_of = {r["artifact"]: metric_value(r, metric) for r in measured}
    points = [{"name": r["artifact"], "target": r.get("target", "-"), "p50": r["latency_ms"]["p50"],
               "accuracy": metric_value(r, metric), "size": r.get("size_bytes") or 0, "estimate": False}
              for r in measured]  # fmt: skip
    for row in estimate_rows(report):  # roofline lower bounds: drawn hollow, labelled "est. >="
        points.append({"name": row["artifact"], "target": row["target"], "p50": row["latency_ms_lower_bound"],
                       "accuracy": accuracy_of.get(row["artifact"]), "size": 0, "estimate": True})  # fmt: skip
    return [p for p in points if p["p50"] > 0]


def _pareto_front(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Measured points no other measured point beats on both latency and accuracy, fastest first."""
    measured = sorted((p for p in points if not p["estimate"]), key=lambda p: (p["p50"], -p["accuracy"]))
    front, best = [], -1.0
    for point in measured:
        if point["accuracy"] > best:
            front.append(point)
            best = point["accuracy"]
    return front


def _nice_log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if lo <= value <= hi:
                ticks.append(value)
    return ticks or [lo, hi]


def pareto_svg(report: dict[str, Any], width: int = 1000, height: int = 480) -> str:
    """Latency (log x) against accuracy (y; for embedding tasks cosine to the teacher, x100); marker area grows
    with size on disk; colour = target. Estimates without one sit in a band under the plot, on the same latency
    axis. (Points keep the key "accuracy" for whichever metric the task has.)"""
    label = METRIC_LABELS[report_metric(report)]
    unit = "%" if report_metric(report) == ACCURACY else "x100"
    points = _points(report)
    if not points:
        return '<p class="note">No measured row to plot.</p>'
    banded = [p for p in points if p["accuracy"] is None]
    band = 56 if banded else 0
    left, right, top, bottom = 70, 200, 20, 50 + band
    p50s = [p["p50"] for p in points]
    accs = [p["accuracy"] * 100 for p in points if p["accuracy"] is not None] or [0.0, 100.0]
    x_lo, x_hi = min(p50s) / 1.6, max(p50s) * 1.6
    y_pad = max((max(accs) - min(accs)) * 0.12, 0.5 if unit == "%" else 0.02)  # cosines sit close to 1
    y_lo, y_hi = min(accs) - y_pad, min(max(accs) + y_pad, 100 + y_pad)
    digits = max(1, min(4, 1 - math.floor(math.log10((y_hi - y_lo) / 5))))  # ticks that tell apart
    max_size = max(p["size"] for p in points) or 1
    log_lo, log_span = math.log10(x_lo), math.log10(x_hi) - math.log10(x_lo)
    plot_bottom, axis_y = height - bottom, height - 50

    def sx(v: float) -> float:
        return left + (math.log10(v) - log_lo) / log_span * (width - left - right)

    def sy(point: dict[str, Any]) -> float:
        if point["accuracy"] is None:
            return plot_bottom + band / 2 + 4
        return top + (y_hi - point["accuracy"] * 100) / (y_hi - y_lo) * (plot_bottom - top)

    def radius_of(point: dict[str, Any]) -> float:
        return 4 + 14 * math.sqrt(point["size"] / max_size)

    targets = list(dict.fromkeys(p["target"] for p in points))
    colour = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(targets)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="latency against {label}">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{plot_bottom - top}" '
             'fill="#fbfcfd" stroke="#d0d7de"/>']  # fmt: skip
    if band:
        parts.append(f'<rect x="{left}" y="{plot_bottom + 4}" width="{width - left - right}" height="{band - 8}" '
                     'fill="#f6f8fa" stroke="#d0d7de" stroke-dasharray="4 3"/>'
                     f'<text x="{left + 6}" y="{plot_bottom + 16}" font-size="10.5" fill="#57606a">estimated '
                     f"latency only: {label} not measured on these targets</text>")  # fmt: skip
    for tick in _nice_log_ticks(x_lo, x_hi):
        x = sx(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#eaeef2"/>'
                     f'<text x="{x:.1f}" y="{axis_y + 16}" font-size="11" text-anchor="middle">'
                     f"{tick:g}</text>")  # fmt: skip
    for i in range(6):
        value = y_lo + (y_hi - y_lo) * i / 5
        y = top + (y_hi - value) / (y_hi - y_lo) * (plot_bottom - top)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eaeef2"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                     f"{value:.{digits}f}</text>")  # fmt: skip
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" font-size="12" text-anchor="middle">'
                 "p50 latency at batch 1, ms (log scale) — left is faster</text>"
                 f'<text transform="translate(16 {(top + plot_bottom) / 2}) rotate(-90)" font-size="12" '
                 f'text-anchor="middle">{label}, {unit} — up is better</text>')  # fmt: skip
    front = _pareto_front(points)
    if len(front) > 1:
        path = " ".join(f"{sx(p['p50']):.1f},{sy(p):.1f}" for p in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#8c959f" stroke-width="1.5" '
                     'stroke-dasharray="5 4"/>')  # fmt: skip
    # labels avoid every marker and every label placed before them
    placed = [(sx(p["p50"]) - radius_of(p), sy(p) - radius_of(p), sx(p["p50"]) + radius_of(p), sy(p) + radius_of(p))
              for p in points]  # fmt: skip
    for point in sorted(points, key=lambda p: -p["size"]):  # big markers first, so small ones stay visible
        x, y, radius, c = sx(point["p50"]), sy(point), radius_of(point), colour[point["target"]]
        accuracy = "not measured" if point["accuracy"] is None else f"{point['accuracy'] * 100:.2f}{unit}"
        kind = " (ESTIMATE, lower bound)" if point["estimate"] else ""
        title = escape(f"{point['name']} on {point['target']}: p50 {point['p50']:.4g} ms, {label} {accuracy}, "
                       f"{human_bytes(point['size'])}{kind}")  # fmt: skip
        style = (f'fill="none" stroke="{c}" stroke-width="2" stroke-dasharray="3 2"' if point["estimate"]
                 else f'fill="{c}" fill-opacity="0.55" stroke="{c}" stroke-width="1.2"')  # fmt: skip
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" {style}><title>{title}</title></circle>')
        label = point["name"] + (f" @{point['target']}" if len(targets) > 1 else "")
        label += " (est. ≥)" if point["estimate"] else ""
        area = (left, width - right, top, plot_bottom) if point["accuracy"] is not None else \
            (left, width - right, plot_bottom + 18, plot_bottom + band)  # fmt: skip
        parts.append(_place_label(label, x, y, radius, placed, area))
    parts.append(_legend(width - right + 14, top, targets, colour, any(p["estimate"] for p in points)))
    parts.append("</svg>")
    return "".join(parts)


def _legend(x: float, top: float, targets: list[str], colour: dict[str, str], estimates: bool) -> str:
    parts = [f'<text x="{x}" y="{top + 12}" font-size="12" font-weight="600">target</text>']
    for i, target in enumerate(targets):
        y = top + 30 + i * 18
        parts.append(f'<circle cx="{x + 6}" cy="{y - 4}" r="5" fill="{colour[target]}"/>'
                     f'<text x="{x + 16}" y="{y}" font-size="12">{escape(target)}</text>')  # fmt: skip
    y = top + 40 + len(targets) * 18
    parts.append(f'<circle cx="{x + 6}" cy="{y - 4}" r="5" fill="#57606a" fill-opacity="0.55"/>'
                 f'<text x="{x + 16}" y="{y}" font-size="12">measured</text>')  # fmt: skip
    if estimates:
        y += 18
        parts.append(f'<circle cx="{x + 6}" cy="{y - 4}" r="5" fill="none" stroke="#57606a" stroke-width="2" '
                     f'stroke-dasharray="3 2"/><text x="{x + 16}" y="{y}" font-size="12">estimate (≥: lower '
                     "bound)</text>")  # fmt: skip
    parts.append(f'<line x1="{x}" y1="{y + 14}" x2="{x + 12}" y2="{y + 14}" stroke="#8c959f" '
                 f'stroke-dasharray="5 4" stroke-width="1.5"/><text x="{x + 16}" y="{y + 18}" '
                 'font-size="12">Pareto front</text>'
                 f'<text x="{x}" y="{y + 38}" font-size="11" fill="#57606a">'
                 "marker area ~ size on disk</text>")  # fmt: skip
    return "".join(parts)


def _place_label(text: str, x: float, y: float, radius: float, placed: list[tuple[float, float, float, float]],
                 bounds: tuple[float, float, float, float]) -> str:  # fmt: skip
    """Put a label beside its marker where it overlaps no label placed before (right, left, above, below...)."""
    w, h = 6.3 * len(text), 12.0
    offsets = [(radius + 4, 4), (-radius - 4 - w, 4), (-w / 2, -radius - 5), (-w / 2, radius + 13)]
    offsets += [(dx, 4 + k * 13) for k in (1, -1, 2, -2, 3, -3) for dx in (radius + 4, -radius - 4 - w)]
    x_min, x_max, y_min, y_max = bounds
    choice = offsets[0]
    for dx, dy in offsets:
        box = (x + dx, y + dy - h + 2, x + dx + w, y + dy + 2)
        inside = box[0] >= x_min and box[2] <= x_max and box[1] >= y_min and box[3] <= y_max
        clear = all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed)
        if inside and clear:
            choice = (dx, dy)
            break
    dx, dy = choice
    placed.append((x + dx, y + dy - h + 2, x + dx + w, y + dy + 2))
    leader = ""
    if offsets.index(choice) >= 4:  # moved away from its marker: a thin line says whose label it is
        end_x = x + dx if dx > 0 else x + dx + w
        leader = (f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{end_x:.1f}" y2="{y + dy - 4:.1f}" stroke="#8c959f" '
                  'stroke-width="0.8"/>')  # fmt: skip
    return leader + f'<text x="{x + dx:.1f}" y="{y + dy:.1f}" font-size="11" fill="#24292f">{escape(text)}</text>'


def _stage_bar(cells: list[str], scale: float) -> str:
    """A small stacked bar: each stage's drop as a segment, positive to the right of zero, gains to the left."""
    width, zero = 180, 90
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="14">',
             f'<line x1="{zero}" y1="0" x2="{zero}" y2="14" stroke="#8c959f"/>']  # fmt: skip
    pos = neg = float(zero)
    for value, colour in zip((float(c) for c in cells), STAGE_COLOURS, strict=True):
        length = abs(value) * scale
        if value > 0:
            parts.append(f'<rect x="{pos:.1f}" y="2" width="{length:.1f}" height="10" fill="{colour}"/>')
            pos += length
        elif value < 0:
            neg -= length
            parts.append(f'<rect x="{neg:.1f}" y="2" width="{length:.1f}" height="10" fill="{colour}"/>')
    return _Raw("".join(parts) + "</svg>")


def _stage_section(report: dict[str, Any]) -> str:
    lines = stage_drop_lines(report)
    if not lines:
        return ""
    largest = max(max(sum(max(float(c), 0) for c in cells), sum(max(-float(c), 0) for c in cells))
                  for _, _, cells, _ in lines) or 1.0  # fmt: skip
    scale = 85 / largest
    legend = " ".join(f'<span style="color:{colour}">■</span> {escape(label)}'
                      for colour, label in zip(STAGE_COLOURS, STAGE_LABELS.values(), strict=True))  # fmt: skip
    rows = [[a, t, *cells, total, _stage_bar(cells, scale)] for a, t, cells, total in lines]
    table = _table(["artifact", "target", *STAGE_LABELS.values(), "total", "breakdown"], rows, left=2)
    accuracy = report_metric(report) == ACCURACY
    title = "Accuracy drop against the teacher" if accuracy else "Drop in cosine to the teacher (x100)"
    gain = "gained accuracy" if accuracy else "moved the outputs closer to the teacher's"
    return (f"<h2>{title}, by stage</h2>"
            '<p class="note">Points (teacher minus row), each stage measured on the same held-out samples; '
            f"the stages add up to the total. Negative = the step {gain}.</p>"
            f'<p class="note">{legend}</p>{table}')  # fmt: skip


def _collapsed(row: dict[str, Any]) -> bool:
    return any(flag["code"] == COLLAPSE for flag in row.get("flags", []))


def _recommended_section(report: dict[str, Any]) -> str:
    lines = recommendation_lines(report)
    if not lines:
        return ""
    return "<h2>Recommended</h2>" + '<ul class="summary">' + "".join(f"<li>{escape(x)}</li>" for x in lines) + "</ul>"


def render_html(report: dict[str, Any]) -> str:
    run = report["run"]
    measured = measured_rows(report)
    classes = ["bad" if r["status"] != "ok" or _collapsed(r) else "flagged" if r.get("flags") else "" for r in measured]
    method = method_line(report)
    metric = report_metric(report)
    columns = measured_columns(metric)
    body = [f"<h1>edgekd report: {escape(run['name'])}</h1>",
            '<ul class="summary">' + "".join(f"<li>{escape(line)}</li>" for line in summary_lines(report)) + "</ul>",
            f'<p class="note">Method: {escape(method)}.</p>' if method else "",
            _recommended_section(report),
            f"<h2>Latency against {METRIC_LABELS[metric]}</h2>", pareto_svg(report),
            "<h2>Measured</h2>",
            '<p class="note">Latency at batch 1 (ms); throughput at the batch size shown; drop in points against the '
            "teacher; agree = top-1 agreement with the teacher; KL = mean KL(teacher || row); spread = robust spread "
            "of the timing rounds' medians (std / mean in older reports). Yellow rows carry a flag; red rows were "
            "not measured, or their outputs collapsed against the fp32 student (quality-collapse).</p>",
            _table(headings(columns), [row_cells(r, columns) for r in measured], classes, left=6),
            _stage_section(report), training_section_html(report, _table)]  # fmt: skip
    parity = parity_lines(report)
    if parity:
        body += ["<h2>Parity with the fp32 PyTorch student</h2>", '<p class="note">Each artifact\'s outputs against '
                 "the student's on the same samples: what export, quantization and the engine changed, apart from "
                 "the distillation gap.</p>", _table(PARITY_COLUMNS, parity, left=2)]  # fmt: skip
    through = throughput_lines(report)
    if through:
        body += ["<h2>Throughput</h2>", '<p class="note">sync: one request at a time; openvino-throughput: '
                 "OpenVINO's THROUGHPUT hint with several streams and requests in flight.</p>",
                 _table(THROUGHPUT_COLUMNS, through, left=3)]  # fmt: skip
    verdicts = verdict_lines(report)
    if verdicts:
        body += [f"<h2>Budgets from the recipe: {escape(report['verdicts']['verdict'].upper())}</h2>",
                 '<p class="note"><code>edgekd gate</code> on this run gives the same verdicts, and its exit code, '
                 "for CI.</p>", _table(VERDICT_COLUMNS, verdicts, [VERDICT_CLASSES.get(v[2], "") for v in verdicts],
                                       left=4)]  # fmt: skip
    flags = flag_lines(report)
    if flags:
        body += ["<h2>Flags</h2>", '<ul class="flags">' + "".join(f"<li>{escape(f)}</li>" for f in flags) + "</ul>"]
    estimates = estimate_rows(report)
    if estimates:
        body += ["<h2>Estimates — not measured</h2>",
                 '<p class="note">Modelled for targets not at hand (e.g. a roofline from FLOPs and bytes against the '
                 "profile's peak compute and bandwidth). Drawn hollow in the plot; never mixed into the measured "
                 "table.</p>",
                 _table(ESTIMATE_COLUMNS, [estimate_cells(r) for r in estimates],
                        ["estimate"] * len(estimates), left=4)]  # fmt: skip
    body.append(f"<footer>schema {escape(report['schema_version'])} · edgekd {escape(run['edgekd_version'])} · "
                f"{escape(run['created_at'])} · self-contained page: no script, no network</footer>")  # fmt: skip
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>edgekd report: {escape(run['name'])}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")  # fmt: skip


def render_compare_html(new: dict[str, Any], old: dict[str, Any], comparisons: list) -> str:
    """The deltas between two reports as a page; regressions in red, improvements plain."""
    lines = compare_lines(comparisons)
    classes = ["bad" if cells[-1] == REGRESSION.upper() else "" for cells in lines]
    title = f"edgekd compare: {new['run']['name']} against {old['run']['name']}"
    body = (f"<h1>{escape(title)}</h1><p>{escape(summary(comparisons))}</p>"
            f'<p class="note">new: {escape(new["run"]["created_at"])} · old: {escape(old["run"]["created_at"])}</p>'
            + (_table(COMPARE_COLUMNS, lines, classes, left=3) if lines else ""))  # fmt: skip
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")  # fmt: skip

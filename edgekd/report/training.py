"""The distillation part of the report: how the student was started and trained, in words and as a curve.

`training_lines` feeds the terminal summary, report.md and report.html alike; `training_section_html` adds the
validation curve (distilled student, labels-only twin, teacher line) and the layer candidates' table.
"""

from __future__ import annotations

from html import escape
from typing import Any

CURVE_COLOURS = {"distilled": "#1f77b4", "labels only": "#d62728", "teacher": "#57606a"}


def _distill(report: dict[str, Any]) -> dict[str, Any]:
    return report.get("stages", {}).get("distill", {})


def _figure(value: float, metric: str) -> str:
    return f"{value * 100:.2f}%" if "accuracy" in metric else f"{value:.4f}"


def training_lines(report: dict[str, Any]) -> list[str]:
    """Start -> end of the validation metric, gap recovered, time and samples/s, layer choice, advice."""
    distill = _distill(report)
    kd, curves = distill.get("kd", {}), distill.get("curves", {})
    lines = []
    choice = distill.get("student", {}).get("layer_choice")
    if choice:
        chosen = next(c for c in choice["candidates"] if c["chosen"])
        key = "top1_agreement" if "top1_agreement" in chosen else "cosine"
        others = "; ".join(f"{','.join(map(str, c['layers']))} {c[key]:.3f}" for c in choice["candidates"]
                           if not c["chosen"])  # fmt: skip
        lines.append(f"student layers {','.join(map(str, choice['layers']))} of the teacher ({choice['how']}: "
                     f"{key.replace('_', ' ')} {chosen[key]:.3f} before training"
                     + (f"; other candidates {others}" if others else "") + ")")  # fmt: skip
        if choice.get("widths"):
            width = next(c for c in choice["widths"] if c["chosen"])
            slices = "; ".join(f"{c['name']} {c[key]:.3f}" for c in choice["widths"] if not c["chosen"])
            lines.append(f"student width {distill['student'].get('hidden_size', '?')}: teacher units kept by the "
                         f"slice '{width['name']}' ({key.replace('_', ' ')} {width[key]:.3f} before training"
                         + (f"; other slices {slices}" if slices else "") + ")")  # fmt: skip
    if kd.get("curve"):
        metric = curves.get("metric", "val metric")
        start = f"{_figure(kd['initial_val'], metric)} before training -> " if kd.get("initial_val") is not None else ""
        best = kd.get("best_val_cosine", kd.get("best_val_accuracy"))
        line = (f"distillation: {metric} {start}{_figure(best, metric)} (best epoch {kd['best_epoch']} of "
                f"{len(kd['curve']) - (1 if kd['curve'][0]['epoch'] == 0 else 0)}"
                f"{', stopped early' if kd.get('stopped_early') else ''})")  # fmt: skip
        if kd.get("gap_recovered") is not None:
            line += f"; recovered {kd['gap_recovered'] * 100:.0f}% of the teacher - labels-only gap on the test split"
        if kd.get("train_seconds") is not None:
            rate = f", {kd['samples_per_second']:,.0f} samples/s" if kd.get("samples_per_second") else ""
            line += f"; trained {kd['train_seconds']:.1f} s{rate}"
        lines.append(line)
    defaults = distill.get("defaults", {})
    if defaults.get("filled"):
        filled = ", ".join(f"{k} {v:g}" for k, v in defaults["filled"].items())
        lines.append(f"training defaults for a student {defaults['student_kind']}: {filled}")
    if distill.get("labelled_train") is not None and report.get("task", {}).get("split", {}).get("train"):
        total = report["task"]["split"]["train"]
        if distill["labelled_train"] < total:
            lines.append(f"the student saw the labels of {distill['labelled_train']} of its {total} training "
                         "samples; the teacher taught all of them")  # fmt: skip
    advice = distill.get("advice") or []
    if advice:
        lines.append(advice[0] + " " + "; ".join(advice[1:]))
    return lines


def curve_svg(distill: dict[str, Any], width: int = 640, height: int = 280) -> str:
    """Validation metric per epoch: distilled student, labels-only twin, and the teacher as a dashed line."""
    curves = distill.get("curves", {})
    series = {"distilled": distill.get("kd", {}).get("curve", []),
              "labels only": distill.get("labels_only", {}).get("curve", [])}  # fmt: skip
    series = {name: points for name, points in series.items() if points}
    if not series:
        return ""
    teacher = curves.get("teacher")
    values = [p["val"] for points in series.values() for p in points] + ([teacher] if teacher is not None else [])
    lo, hi = min(values), max(values)
    lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-9 else (lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo))
    last_epoch = max(p["epoch"] for points in series.values() for p in points) or 1
    left, right, top, bottom = 56, 130, 14, 36

    def sx(epoch: float) -> float:
        return left + (width - left - right) * epoch / last_epoch

    def sy(value: float) -> float:
        return top + (height - top - bottom) * (hi - value) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="training curve">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             'fill="none" stroke="#d0d7de"/>']  # fmt: skip
    for i in range(5):
        value = lo + (hi - lo) * i / 4
        parts.append(f'<text x="{left - 6}" y="{sy(value) + 4:.1f}" font-size="11" text-anchor="end">'
                     f"{value:.3f}</text>")  # fmt: skip
    parts.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" font-size="12" text-anchor="middle">'
                 f"epoch (0 = before training), {escape(curves.get('metric', 'val metric'))}</text>")  # fmt: skip
    parts.append(f'<text x="{left}" y="{height - 20}" font-size="11">0</text><text x="{sx(last_epoch):.1f}" '
                 f'y="{height - 20}" font-size="11" text-anchor="end">{last_epoch}</text>')
    legend_y = top + 12
    if teacher is not None:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(teacher):.1f}" y2="{sy(teacher):.1f}" '
                     f'stroke="{CURVE_COLOURS["teacher"]}" stroke-dasharray="5 4"/>')  # fmt: skip
        parts.append(_legend_entry(width - right + 8, legend_y, "teacher", dashed=True))
        legend_y += 18
    for name, points in series.items():
        path = " ".join(f"{sx(p['epoch']):.1f},{sy(p['val']):.1f}" for p in points)
        parts.append(f'<polyline class="curve" data-series="{escape(name)}" points="{path}" fill="none" '
                     f'stroke="{CURVE_COLOURS[name]}" stroke-width="2"/>')  # fmt: skip
        parts.append(_legend_entry(width - right + 8, legend_y, name))
        legend_y += 18
    parts.append("</svg>")
    return "".join(parts)


def _legend_entry(x: float, y: float, name: str, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    return (f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{CURVE_COLOURS[name]}" '
            f'stroke-width="2"{dash}/><text x="{x + 22}" y="{y}" font-size="11">{escape(name)}</text>')  # fmt: skip


def training_section_html(report: dict[str, Any], table) -> str:
    """The "Training" section: the curve and, for a shrunk student, every layer candidate's initial fidelity.
    `table(columns, rows, classes, left)` is the page's own table builder."""
    distill = _distill(report)
    svg = curve_svg(distill)
    choice = distill.get("student", {}).get("layer_choice")
    if not svg and not choice:
        return ""
    html = ["<h2>Training</h2>", '<p class="note">Validation metric after each epoch; epoch 0 is the student as '
            "initialised. The labels-only twin starts from the same weights and trains with the same steps on "
            "the labels alone.</p>", svg]  # fmt: skip
    if choice:
        keys = [k for k in ("cosine", "top1_agreement", "mean_kl") if k in choice["candidates"][0]]
        rows = [[c["name"], ",".join(map(str, c["layers"])), *(f"{c[k]:.4f}" for k in keys),
                 "chosen" if c["chosen"] else ""] for c in choice["candidates"]]  # fmt: skip
        html += [f'<p class="note">Teacher layers the shrunk student was copied from: each candidate measured on '
                 f"{choice['samples']} validation samples before training ({choice['seconds']:.1f} s).</p>",
                 table(["candidate", "teacher layers", *keys, ""], rows, ["" for _ in rows], 2)]  # fmt: skip
        if choice.get("widths"):
            rows = [[c["name"], *(f"{c[k]:.4f}" for k in keys), "chosen" if c["chosen"] else ""]
                    for c in choice["widths"]]  # fmt: skip
            html += ['<p class="note">Teacher units the narrower student was copied from (at the layers chosen): '
                     "each slice measured on the same samples (edgekd.models.width_choice).</p>",
                     table(["slice", *keys, ""], rows, ["" for _ in rows], 1)]  # fmt: skip
    return "".join(html)

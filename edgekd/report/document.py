"""The single report: report.json (versioned schema), report.md, and the table printed to the terminal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
from rich.table import Table

from edgekd.errors import ReportError
from edgekd.fileio import read_json, sha256_json, write_json_atomic, write_text_atomic
from edgekd.measure.quality import ACCURACY, STAGES, metric_drop, metric_value, report_metric
from edgekd.recipe import Recipe
from edgekd.report.recommend import recommendation_lines
from edgekd.report.training import training_lines
from edgekd.runtimes import runtime_versions
from edgekd.targets.this_host import git_sha, host_facts
from edgekd.version import __version__

if TYPE_CHECKING:  # the task module pulls in scikit-learn; the report only names its type
    from edgekd.tasks import TaskData

SCHEMA_VERSION = "1.5"  # 1.x stays additive: every 1.0 report validates against this schema


def report_schema() -> dict[str, Any]:
    return json.loads((resources.files("edgekd") / "schemas" / "report.schema.json").read_text(encoding="utf-8"))


def build_report(
    recipe: Recipe, task: TaskData, stages: dict[str, Any], rows: list[dict[str, Any]], threads: int,
    measurement: dict[str, Any] | None = None,
    estimates: list[dict[str, Any]] | None = None,
    run_name: str | None = None,
    metric: str = ACCURACY,
) -> dict[str, Any]:
    """Assemble and validate the report; `estimates` (roofline bounds) are kept apart from measured rows.
    `metric` is what the rows are judged on: accuracy, or cosine to the teacher for embedding encoders."""
    by_name = {row["artifact"]: row for row in rows}
    teacher, student = by_name["teacher"], by_name.get("student", {})
    distill = stages.get("distill", {})
    labels_only = distill.get("labels_only", {}).get("test_accuracy")
    report = {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "name": run_name or recipe.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "edgekd_version": __version__,
            "runtime_versions": runtime_versions(),
            "host": host_facts(),
            "threads": threads,
            "recipe_hash": sha256_json(recipe.to_dict()),
            "git_sha": git_sha(),
        },
        "task": {"name": task.name, "input": task.input_spec(), "split": task.split,
                 "test_split": "data/test.npz", "eval_batch_size": recipe.measure.eval_batch_size,
                 "metric": metric},  # fmt: skip
        "teacher": {"architecture": recipe.teacher.architecture, "params": teacher.get("params", 0),
                    "accuracy": teacher.get("accuracy"), "origin": stages["teacher"]["origin"]},  # fmt: skip
        "student": {
            "architecture": recipe.student.architecture,
            "params": student.get("params"),
            "accuracy": student.get("accuracy"),
            "labels_only_accuracy": labels_only,
            "kd_gain_points": None if labels_only is None or student.get("accuracy") is None
            else round((student["accuracy"] - labels_only) * 100, 4),
            **({"teacher_cosine": metric_value(student, metric)} if metric != ACCURACY and student else {}),
        },
        "stages": stages,
        "measurement": measurement or {},
        "recipe": recipe.to_dict(),
        "rows": rows,
        "estimates": estimates or [],
    }
    validate_report(report, "the new report")
    return report


def validate_report(report: Any, origin: str) -> None:
    try:
        jsonschema.validate(report, report_schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ReportError(f"{origin} does not match the report schema at '{where}': {exc.message}") from None


def load_report(path: Path) -> dict[str, Any]:
    """Read and validate a report.json (or the report.json inside a run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    report = read_json(path, f"report '{path}' does not exist; run `edgekd distill-and-export` first", ReportError)
    validate_report(report, f"report '{path}'")
    return report


def write_report(report: dict[str, Any], run_dir: Path) -> None:
    from edgekd.report.html import render_html

    write_json_atomic(run_dir / "report.json", report)
    write_text_atomic(run_dir / "report.md", render_markdown(report))
    write_text_atomic(run_dir / "report.html", render_html(report))


def measured_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows hold measurements only; estimates live in the report's `estimates` list, never among them."""
    return report["rows"]


def estimate_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Roofline lower bounds for targets not at hand (absent from reports older than 1.1)."""
    return list(report.get("estimates", []))


COLUMNS = ("artifact", "target", "runtime", "precision", "status", "flags", "size", "params", "MFLOPs", "accuracy",
           "drop (pts)", "agree", "KL", "p50 ms", "p90 ms", "p99 ms", "spread", "thru/s", "peak RSS")  # fmt: skip


def _columns(metric: str) -> tuple[str, ...]:
    """COLUMNS named after the task's metric: for embeddings, cosine to the teacher and 1-NN accuracy."""
    if metric == ACCURACY:
        return COLUMNS
    return tuple({"accuracy": "cosine", "agree": "1-NN acc"}.get(c, c) for c in COLUMNS)


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def metric_cell(row: dict[str, Any], metric: str) -> str:
    """The row's task metric as shown in tables: accuracy in %, or cosine to the teacher (4 decimals)."""
    value = metric_value(row, metric)
    if value is None:
        return "-"
    return f"{value * 100:.2f}%" if metric == ACCURACY else f"{value:.4f}"


def _cells(row: dict[str, Any], metric: str = ACCURACY) -> list[str]:
    head = [row["artifact"], row.get("target", "-"), row["runtime"],
            row["precision"] + (f" ({row['quantization']})" if row.get("quantization") else "")]  # fmt: skip
    if row["status"] != "ok":
        return [*head, f"{row['status']}: {row['reason']}"] + [""] * (len(COLUMNS) - len(head) - 1)
    flags = ", ".join(flag["code"] for flag in row.get("flags", []))
    lat = row["latency_ms"]
    fidelity = row.get("fidelity") or {}
    memory = row.get("memory") or {}
    agree = row["teacher_agreement"] if metric == ACCURACY else row.get("neighbour_accuracy")
    return [
        *head,
        "ok",
        flags,
        human_bytes(row["size_bytes"]),
        f"{row['params']:,}",
        _fmt(row.get("flops"), ".3f", 1e-6),
        metric_cell(row, metric),
        _fmt(metric_drop(row, metric), "+.2f"),
        _fmt(agree, ".1f", 100) + ("%" if agree is not None else ""),
        _fmt(fidelity.get("mean_kl"), ".4f"),
        _p50_cell(lat),
        f"{lat['p90']:.3f}",
        f"{lat['p99']:.3f}",
        _fmt(lat.get("round_spread", lat.get("cv")), ".0%"),  # spread of the round medians (older: std / mean)
        f"{row['throughput_per_s']:,.0f} (b{row.get('batch_size', '?')})",
        "-" if memory.get("peak_rss_bytes") is None else human_bytes(memory["peak_rss_bytes"]),
    ]


def _p50_cell(lat: dict[str, Any]) -> str:
    """p50 with its 95% interval; where the runtime timed itself, its own time and the Python call's overhead
    beside it rather than one mixed figure."""
    cell = f"{lat['p50']:.4g}"
    if lat.get("p50_ci95"):
        cell += f" [{lat['p50_ci95'][0]:.4g}-{lat['p50_ci95'][1]:.4g}]"
    if lat.get("runtime_p50") is not None:
        cell += f" (runtime {lat['runtime_p50']:.4g} + call {lat.get('call_overhead_ms', 0.0):.2g})"
    return cell


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


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


def _method_line(report: dict[str, Any]) -> str | None:
    method = report.get("measurement")
    if not method:
        return None
    policy = method["policy"]
    return (f"timing preset '{method['preset']}': {policy['warmup_runs']} warm-up runs discarded, then at least "
            f"{policy['min_runs']} runs and {policy['min_seconds']:g} s per figure; {method['isolation']} per "
            f"artifact; {method['threads']} threads; throughput at batch sizes "
            f"{', '.join(map(str, method['batch_sizes']))}; percentiles by nearest rank{_rounds_note(method)}")


def _rounds_note(method: dict[str, Any]) -> str:
    """How rounds and intervals were used (reports before 1.3 timed in one round)."""
    rounds = method["policy"].get("rounds")
    if not rounds:
        return ""
    return (f"; timed in {rounds} rounds: p50 [95% interval], spread = robust spread of the round medians "
            f"(flagged noisy above {method.get('noisy_round_spread', 0.1):.0%})")


def _summary_lines(report: dict[str, Any]) -> list[str]:
    run, student, teacher = report["run"], report["student"], report["teacher"]
    judged = ("embeddings judged by cosine to the teacher's" if teacher.get("accuracy") is None
              else f"{teacher['accuracy'] * 100:.2f}%")  # fmt: skip
    lines = [
        f"run '{run['name']}' on {run['host']['cpu']} ({run['threads']} threads), edgekd {run['edgekd_version']}, "
        f"{run['created_at']}",
        f"teacher {teacher['architecture']}: {judged} with {teacher['params']:,} params",
    ]
    judged = (f"{student['accuracy'] * 100:.2f}%" if student.get("accuracy") is not None else
              f"cosine to the teacher {student['teacher_cosine']:.4f}" if student.get("teacher_cosine") is not None
              else None)  # fmt: skip
    if judged:
        line = (f"student {student['architecture']}: {judged} with "
                f"{student['params']:,} params ({teacher['params'] / max(student['params'], 1):.0f}x fewer)")
        if student.get("labels_only_accuracy") is not None:
            line += (f"; trained on labels alone {student['labels_only_accuracy'] * 100:.2f}% "
                     f"(KD gain {student['kd_gain_points']:+.2f} pts)")
        lines.append(line)
    distill = report.get("stages", {}).get("distill", {})
    if distill.get("losses"):
        terms = ", ".join(f"{t['name']} x{t['weight']:g} (final {t['final']:.4g})" for t in distill["losses"])
        lines.append(f"distillation losses: {terms}")
    if distill.get("fidelity"):
        f = distill["fidelity"]
        parts = [f"top-1 agreement {f['top1_agreement'] * 100:.1f}%" if "top1_agreement" in f else "",
                 f"mean KL {f['mean_kl']:.4g}" if "mean_kl" in f else "",
                 f"cosine {f['cosine']:.4f}" if "cosine" in f else ""]  # fmt: skip
        lines.append(f"PyTorch student vs teacher on the {f.get('split', 'test')} split: "
                     + ", ".join(p for p in parts if p))
    lines += training_lines(report)
    parity = report.get("stages", {}).get("export", {}).get("parity")
    if parity:
        verdict = "passed" if parity["passed"] else "FAILED"
        shapes = "".join(f", batch {s['batch']} x {s['sequence']} tokens" for s in parity.get("shapes", []))
        lines.append(f"ONNX parity {verdict}: max |onnx - pytorch| {parity['max_abs_diff']:.2e} "
                     f"(atol {parity['atol']:.0e}) on {parity['samples']} test samples{shapes}")
    interface = report.get("stages", {}).get("export", {}).get("inputs")
    if interface and len(interface["inputs"]) > 1:
        lines.append("ONNX interface: " + ", ".join(f"{v['name']}[{','.join(map(str, v['shape']))}]"
                                                    for v in interface["inputs"]) + " -> " + ", ".join(
                     v["name"] for v in interface["outputs"]))  # fmt: skip
    lines += _graph_choice_lines(report) + _real_length_line(report)
    quantize = report.get("stages", {}).get("quantize", {})
    if quantize.get("calibration_samples"):
        lines.append(f"INT8 static calibrated on {quantize['calibration_samples']} training samples"
                     + calibration_choice(quantize.get("calibration")))
    return lines


def _graph_choice_lines(report: dict[str, Any]) -> list[str]:
    """Which ONNX Runtime graph ships and the measured alternatives (p50 ratio to the graph as exported)."""
    graph = report.get("stages", {}).get("graph")
    if not graph:
        return []
    others = ", ".join(f"{name} {f['ratio']:.2f}x" + ("" if f["passed"] else " (outputs differ)")
                       for name, f in graph["candidates"].items())  # fmt: skip
    return [f"ONNX Runtime fp32 graph chosen by measurement: {graph['chosen']} ({graph['path']}); "
            f"p50 vs as exported: {others}"]


def _real_length_line(report: dict[str, Any]) -> list[str]:
    """Token models: the lengths the real-length latency ran at."""
    real = next((r["latency_real_lengths_ms"] for r in report.get("rows", []) if r.get("latency_real_lengths_ms")),
                None)  # fmt: skip
    if real is None:
        return []
    n = real["lengths"]
    return [f"latency at real lengths (p50_ms_real_lengths): each of {n['samples']} eval texts at its own token count "
            f"(min {n['min']}, median {n['p50']:g}, max {n['max']}; padded {n['padded_to']}); latency_ms at "
            f"{n['padded_to']} tokens"]


def calibration_choice(calibration: dict[str, Any] | None) -> str:
    """', method X (ops: safe), chosen over Y ... on N validation samples' for the summary line."""
    if not calibration:
        return ""
    def figure(c: dict[str, Any]) -> str:
        agree = f"top-1 {c['top1_agreement'] * 100:.1f}%, " if "top1_agreement" in c else ""
        return f"{c['method']} {agree}cosine {c['mean_cosine']:.4f}"
    digest = calibration.get("sha256", "?")[:12]
    text = f", method {calibration['method']} (ops: {calibration['static_ops']}, samples sha256 {digest}...)"
    if calibration["requested"] == "auto":
        text += f", chosen by fidelity to fp32 on {calibration['judged_on']}: " + "; ".join(
            figure(c) for c in calibration["candidates"])
    search = calibration.get("accuracy_aware")
    if search:
        kept = ", ".join(f"{k['node']} ({k['op_type']}, {k['bought_points']:+.2f} pts, {k['latency_cost_ms']:+.3f} ms)"
                         for k in search["kept_float"]) or "none"  # fmt: skip
        verdict = "met" if search["met"] else "NOT met (best model kept)"
        text += (f"; accuracy-aware (max_drop {search['max_drop']:g} pts on validation) {verdict}: "
                 f"{search['all_int8_drop_points']:.2f} -> {search['drop_points']:.2f} pts, kept in float: {kept}; "
                 f"search {search['seconds']:.1f} s")
    return text


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


def _md_table(columns: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in rows]
    return lines + [""]


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# edgekd report: {report['run']['name']}", ""]
    lines += [f"- {line}" for line in _summary_lines(report)]
    recommended = recommendation_lines(report)
    if recommended:
        lines += ["", "## Recommended", "", *[f"- {line}" for line in recommended]]
    method = _method_line(report)
    lines += ["", *([f"Method: {method}.", ""] if method else [])]
    metric = report_metric(report)
    samples = report["task"]["split"].get("test", "?")
    if metric == ACCURACY:
        legend = (f"Accuracy on the {samples}-sample test split; drop = teacher minus row, in percentage points; "
                  "agree = top-1 agreement with the teacher; KL = mean KL(teacher || row).")
    else:
        legend = (f"An embedding encoder: no classes, so each row is judged by the mean cosine of its embeddings "
                  f"with the teacher's on the {samples}-sample test split (the teacher scores 1); drop = "
                  "(1 - cosine) x 100 points; 1-NN acc = leave-one-out nearest-neighbour accuracy on the test "
                  "labels, where there are labels.")
    lines += ["## Measured", "", f"Latency at batch 1; throughput at the batch size shown. {legend}", ""]
    lines += _md_table(_columns(metric), [_cells(row, metric) for row in measured_rows(report)])
    stage_lines = stage_drop_lines(report)
    if stage_lines:
        what = "Accuracy drop" if metric == ACCURACY else "Cosine-to-teacher drop"
        lines += [f"## {what} by stage (points; the stages add up to the total)", ""]
        header = ["artifact", "target", *STAGE_LABELS.values(), "total"]
        lines += _md_table(header, [[a, t, *cells, total] for a, t, cells, total in stage_lines])
    parity = parity_lines(report)
    if parity:
        lines += ["## Parity with the fp32 PyTorch student (same samples)", ""]
        lines += _md_table(PARITY_COLUMNS, parity)
    through = throughput_lines(report)
    if through:
        lines += ["## Throughput", ""]
        lines += _md_table(["artifact", "target", "mode", "batch", "samples/s", "streams"], through)
    flags = flag_lines(report)
    if flags:
        lines += ["## Flags", "", *[f"- {line}" for line in flags], ""]
    verdicts = verdict_lines(report)
    if verdicts:
        lines += [f"## Budgets from the recipe: {report['verdicts']['verdict'].upper()}", "",
                  "`edgekd gate` on this run gives the same verdicts, and its exit code, for CI.", ""]
        lines += _md_table(VERDICT_COLUMNS, verdicts)
    estimates = estimate_rows(report)
    if estimates:
        lines += ["## Estimates (not measured: modelled for targets not at hand)", ""]
        lines += _md_table(ESTIMATE_COLUMNS, [estimate_cells(row) for row in estimates])
    return "\n".join(lines).rstrip() + "\n"


# The terminal is narrow: the columns a reader scans first (report.md / report.html have them all).
TERMINAL_COLUMNS = ("artifact", "precision", "status", "size", "accuracy", "drop (pts)", "p50 ms", "p99 ms", "spread",
                    "thru/s", "flags")  # fmt: skip


def render_table(report: dict[str, Any]) -> Table:
    caption = [*_summary_lines(report), *filter(None, [_method_line(report)]), *flag_lines(report),
               *recommendation_lines(report)]
    table = Table(title=f"edgekd report: {report['run']['name']}", caption="\n".join(caption))
    metric = report_metric(report)
    picks = [COLUMNS.index(c) for c in TERMINAL_COLUMNS]
    for column in (_columns(metric)[i] for i in picks):
        table.add_column(column, justify="left" if column in ("artifact", "precision", "status", "flags")
                         else "right", no_wrap=column == "artifact")  # fmt: skip
    for row in measured_rows(report):
        style = "yellow" if row["status"] != "ok" or row.get("flags") else None
        cells = _cells(row, metric)
        table.add_row(*[cells[i] for i in picks], style=style)
    for row in estimate_rows(report):
        p50 = estimate_cells(row)[4]
        table.add_row(f"{row['artifact']} on {row.get('target', '-')} (ESTIMATE)", row.get("precision", "-"),
                      "estimated", "", "", "", p50, "", "", "", "", style="dim")  # fmt: skip
    return table

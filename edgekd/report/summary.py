"""The report's prose: the summary lines (run, teacher, student, distillation, export, graph choice,
calibration) and the measurement method, shared by report.md, the terminal table and report.html."""

from __future__ import annotations

from typing import Any

from edgekd.report.training import training_lines


def method_line(report: dict[str, Any]) -> str | None:
    method = report.get("measurement")
    if not method:
        return None
    policy = method["policy"]
    return (f"timing preset '{method['preset']}': {policy['warmup_runs']} warm-up runs discarded, then at least "
            f"{policy['min_runs']} runs and {policy['min_seconds']:g} s per figure; {method['isolation']} per "
            f"artifact; {method['threads']} threads; throughput at batch sizes "
            f"{', '.join(map(str, method['batch_sizes']))}; percentiles by nearest rank{_rounds_note(method)}"
            f"{_drift_note(report)}")


def _rounds_note(method: dict[str, Any]) -> str:
    """How rounds and intervals were used (reports before 1.3 timed in one round)."""
    rounds = method["policy"].get("rounds")
    if not rounds:
        return ""
    return (f"; timed in {rounds} rounds: p50 [95% interval], spread = robust spread of the round medians, the "
            "machine's drift shared by the artifacts timed in turns divided out "
            f"(flagged noisy above {method.get('noisy_round_spread', 0.1):.0%})")


def _drift_note(report: dict[str, Any]) -> str:
    """The machine's speed drift during the interleaved rounds, once for the run, where it exceeded the noise
    threshold: every absolute figure carries it (in its interval); ratios between rows in the same rounds less."""
    method = report.get("measurement") or {}
    threshold = method.get("noisy_round_spread", 0.1)
    drifts = [r["latency_ms"]["shared_drift"] for r in report.get("rows", [])
              if (r.get("latency_ms") or {}).get("shared_drift") is not None]  # fmt: skip
    if not drifts or max(drifts) <= threshold:
        return ""
    return (f". Machine drift: this machine's speed wandered by {max(drifts):.0%} between timing rounds, for every "
            "artifact alike (another load on the host, clock scaling): absolute latencies carry it in their "
            "intervals; the ratios between rows, timed in the same rounds, hold better. Re-measure on a quiet "
            "machine before reading absolute figures")


def summary_lines(report: dict[str, Any]) -> list[str]:
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
    lines += accuracy_control_lines(report.get("stages", {}).get("build", {}))
    lines += sequence_bucket_lines(report.get("stages", {}).get("build", {}))
    return lines


def sequence_bucket_lines(build: dict[str, Any]) -> list[str]:
    """Token models: per OpenVINO IR, whether it runs with static sequence buckets, with the measured figures."""
    decisions = build.get("sequence_buckets", {})
    measured = [d for d in decisions.values() if "ms_per_text" in d]
    parts = []
    for artifact, d in decisions.items():
        verdict = "kept" if d["buckets"] else f"dynamic shapes ({d['why']})"
        figures = (f", {d['ms_per_text']['buckets']:.3f} vs {d['ms_per_text']['dynamic']:.3f} ms per text dynamic"
                   if "ms_per_text" in d else "")  # fmt: skip
        parts.append(f"{artifact} {verdict}{figures}")
    if not parts:
        return []
    head = "OpenVINO sequence buckets"
    if measured:
        d = measured[0]
        head += (f" {','.join(map(str, d['candidate_buckets']))} (inputs padded to the next), by measurement on "
                 f"{d['texts']} calibration texts at their real lengths ({d['lengths']['min']}-{d['lengths']['max']} "
                 "tokens)")  # fmt: skip
    return [f"{head}: " + "; ".join(parts) + " (each bucket used is a compiled copy of the model, in the row's "
            "memory; build.openvino_sequence_buckets = false: dynamic only)"]


def accuracy_control_lines(build: dict[str, Any]) -> list[str]:
    """One line per OpenVINO int8 IR NNCF's accuracy control made under the budget: the ops it reverted, the drops."""
    lines = []
    for artifact, record in build.get("accuracy_control", {}).items():
        reverted = ", ".join(f"{op['name']} ({op['op_type']})" for op in record["reverted"]) or "none"
        verdict = "met" if record["met"] else "NOT met (flagged)"
        lines.append(f"{artifact} by NNCF accuracy control (max_drop {record['max_drop']:g} pts on validation, from "
                     f"{record['max_drop_source']}) {verdict}: {record['plain_drop_points']:.2f} -> "
                     f"{record['drop_points']:.2f} pts, {len(record['reverted'])} of {record['quantized_ops']} int8 "
                     f"ops reverted to float: {reverted}; {record['seconds']:.1f} s (`edgekd profile` on a device "
                     "builds plain NNCF: the bundle carries no validation split)")
    return lines


def _graph_choice_lines(report: dict[str, Any]) -> list[str]:
    """Which ONNX Runtime graphs ship and the measured alternatives (p50 ratio to the graph as exported)."""
    graph = report.get("stages", {}).get("graph")
    if not graph:
        return []
    lines = []
    for label, choice in (("fp32", graph), ("int8-dynamic", graph.get("int8_dynamic"))):
        if not choice:
            continue
        others = ", ".join(f"{name} {f['ratio']:.2f}x" + ("" if f["passed"] else " (outputs differ)")
                           for name, f in choice["candidates"].items())  # fmt: skip
        lines.append(f"ONNX Runtime {label} graph chosen by measurement: {choice['chosen']} ({choice['path']}); p50 "
                     "vs as exported (median of paired round ratios; another graph ships only when it is faster "
                     f"beyond the noise margin): {others}")  # fmt: skip
    return lines


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
        source = f", from {search['max_drop_source']}" if "max_drop_source" in search else ""
        text += (f"; accuracy-aware (max_drop {search['max_drop']:g} pts on validation{source}) {verdict}: "
                 f"{search['all_int8_drop_points']:.2f} -> {search['drop_points']:.2f} pts, kept in float: {kept}; "
                 f"search {search['seconds']:.1f} s")
    return text

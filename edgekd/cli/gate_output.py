"""What `edgekd gate` hands a CI job besides its exit code: versioned JSON, a JUnit file (one test case per
check), a Markdown summary for `$GITHUB_STEP_SUMMARY`, and GitHub Actions annotations (one `::error` per
failed check, one `::warning` per inconclusive one)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekd.fileio import write_text_atomic
from edgekd.gate import FAIL, INCONCLUSIVE, PASS, SKIPPED, Check

GATE_JSON_VERSION = "1.0"  # the --json document's own version: fields are only ever added within 1.x


def verdict_document(overall: str, checks: list[Check], code: int, policy: str | None,
                     notes: list[str]) -> dict[str, Any]:  # fmt: skip
    """The --json document: overall verdict, exit code, the inconclusive policy applied, every check."""
    counts = {v: sum(c.verdict == v for c in checks) for v in (PASS, FAIL, INCONCLUSIVE, SKIPPED)}
    return {"gate_version": GATE_JSON_VERSION, "verdict": overall, "exit_code": code,
            "inconclusive_policy": policy, "counts": counts, "notes": notes,
            "checks": [c.to_dict() for c in checks]}  # fmt: skip


def junit_xml(checks: list[Check], policy: str | None = None) -> str:
    """One <testcase> per check (classname = artifact, name = budget): a failed check is a <failure>, an
    inconclusive one a <skipped> (a <failure> under `--inconclusive fail`), a skipped row a <skipped>."""
    suite = ET.Element("testsuite", name="edgekd gate")
    failures = skipped = 0
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=check.artifact, name=check.budget)
        counts_as_failure = check.verdict == FAIL or (check.verdict == INCONCLUSIVE and policy == FAIL)
        if counts_as_failure:
            failures += 1
            ET.SubElement(case, "failure", message=f"{check.verdict}: {check.detail}", type=check.verdict)
        elif check.verdict in (INCONCLUSIVE, SKIPPED) and not (check.verdict == INCONCLUSIVE and policy == PASS):
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{check.verdict}: {check.detail}")
        ET.SubElement(case, "system-out").text = check.detail
    suite.set("tests", str(len(checks)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    root = ET.Element("testsuites", tests=str(len(checks)), failures=str(failures))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, checks: list[Check], policy: str | None = None) -> None:
    write_text_atomic(Path(path), junit_xml(checks, policy))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_summary(overall: str, checks: list[Check], notes: list[str], code: int) -> str:
    """A Markdown section for the job's summary page: the verdict, then one table row per check."""
    icon = {PASS: "✅", FAIL: "❌", INCONCLUSIVE: "⚠️", SKIPPED: "⏭️"}
    lines = [f"## edgekd gate: {icon.get(overall, '')} {overall.upper()} (exit {code})", ""]
    lines += [f"> {_cell(note)}" for note in notes] + ([""] if notes else [])
    lines += ["| artifact | budget | verdict | detail |", "|---|---|---|---|"]
    lines += [f"| {_cell(c.artifact)} | {c.budget} | {icon.get(c.verdict, '')} {c.verdict} | {_cell(c.detail)} |"
              for c in checks]  # fmt: skip
    return "\n".join(lines) + "\n\n"


def _escape_data(text: str) -> str:
    """GitHub's workflow-command escaping of a message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotations(checks: list[Check]) -> list[str]:
    """`::error` for each failed check, `::warning` for each inconclusive one."""
    kinds = {FAIL: "error", INCONCLUSIVE: "warning"}
    return [f"::{kinds[c.verdict]} title={_escape_property(f'edgekd gate: {c.artifact} {c.budget}')}::"
            f"{_escape_data(f'{c.artifact}: {c.budget} {c.verdict}: {c.detail}')}"
            for c in checks if c.verdict in kinds]  # fmt: skip


def publish_to_ci(overall: str, checks: list[Check], notes: list[str], code: int,
                  env: Mapping[str, str] | None = None) -> list[str]:  # fmt: skip
    """Append the summary to $GITHUB_STEP_SUMMARY when it is set; return the annotation lines to print when
    GITHUB_ACTIONS is "true" (empty elsewhere)."""
    env = os.environ if env is None else env
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:  # GitHub's file, appended to by every step
            fh.write(markdown_summary(overall, checks, notes, code))
    return annotations(checks) if env.get("GITHUB_ACTIONS") == "true" else []

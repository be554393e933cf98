"""The report: schema 1.1 written and 1.0 still readable, Markdown and a self-contained HTML page, estimates kept
apart from measurements, `edgekd report` re-rendering, and the page rendered in headless Chromium."""

import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from edgekd.report.document import load_report
from edgekd.report.html import render_html
from edgekd.report.markdown import render_markdown
from edgekd.report.schema import SCHEMA_VERSION, validate_report
from tests.conftest import run_cli

FIXTURE_1_0 = Path(__file__).parent / "fixtures" / "report-1.0.json"


def test_report_written_by_this_version_validates(quick_run):
    report = load_report(quick_run)  # load_report validates against the published schema
    assert report["schema_version"] == SCHEMA_VERSION == "1.5"
    for name in ("report.json", "report.md", "report.html"):
        assert (quick_run / name).is_file(), name


def test_a_1_0_report_stays_readable_and_renders():
    report = load_report(FIXTURE_1_0)
    assert report["schema_version"] == "1.0"
    markdown = render_markdown(report)
    assert "student-onnx-int8-static" in markdown
    assert "<svg" in render_html(report)


def test_schema_rejects_a_broken_row(quick_run):
    report = copy.deepcopy(load_report(quick_run))
    del report["rows"][0]["latency_ms"]
    with pytest.raises(Exception, match="rows/0"):
        validate_report(report, "edited report")


def _with_estimate(report: dict) -> dict:
    """The report plus roofline estimates as the profile stage writes them: a list beside the rows."""
    report = copy.deepcopy(report)
    report["estimates"] = [{
        "artifact": "student-tensorrt-fp16", "target": "jetson-orin-nano", "runtime": "tensorrt", "precision": "fp16",
        "estimate": True, "latency_ms_lower_bound": 0.0021, "bound": "memory", "flops": 47360, "bytes": 20000,
        "peak_ops_per_s": 2.6e12, "memory_bandwidth_bytes_per_s": 68e9,
        "basis": "roofline lower bound at batch 1; not a measurement",
    }]  # fmt: skip
    validate_report(report, "report with an estimate")
    return report


def test_html_is_self_contained_and_draws_estimates_apart(quick_run):
    report = _with_estimate(load_report(quick_run))
    page = render_html(report)
    assert "<script" not in page and "<link" not in page
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}  # the SVG namespace only
    measured, _, estimates = page.partition("Estimates — not measured")
    assert estimates, "estimates have a section of their own"
    assert "jetson-orin-nano" not in measured.split("<h2>Measured</h2>")[1]  # never in the measured table
    assert 'fill="none"' in page and "(est. ≥)" in page  # hollow marker, labelled as a lower bound
    assert "accuracy not measured on these targets" in page  # no accuracy: drawn in the band, not on the axis
    assert "Accuracy drop against the teacher, by stage" in page
    assert "openvino-throughput" in page


def test_markdown_sections(quick_run):
    markdown = render_markdown(_with_estimate(load_report(quick_run)))
    assert "## Accuracy drop by stage" in markdown
    measured, _, estimates = markdown.partition("## Estimates")
    assert "jetson-orin-nano" in estimates and "jetson-orin-nano" not in measured
    assert "Method: timing preset 'quick'" in markdown


def test_report_command_re_renders(quick_run, tmp_path, capsys):
    report = load_report(quick_run)
    code, out, _ = run_cli(["report", str(quick_run), "--format", "md"], capsys)
    assert code == 0 and out == render_markdown(report)
    code, out, _ = run_cli(["report", str(quick_run / "report.json"), "--format", "json"], capsys)
    assert code == 0 and json.loads(out) == report
    target = tmp_path / "page.html"
    code, _, _ = run_cli(["report", str(quick_run), "-f", "html", "-o", str(target)], capsys)
    assert code == 0 and target.read_text() == render_html(report)
    code, out, _ = run_cli(["report", str(quick_run)], capsys)
    assert code == 0 and "student-openvino-fp32" in out


def test_report_command_on_a_missing_report_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["report", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in err and "Traceback" not in err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_renders_in_headless_chromium(quick_run, tmp_path):
    if CHROMIUM is None:
        # CI installs Debian's chromium and sets this: there the test must run, never skip
        assert not os.environ.get("EDGEKD_REQUIRE_CHROMIUM"), "EDGEKD_REQUIRE_CHROMIUM is set but chromium is absent"
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(render_html(_with_estimate(load_report(quick_run))), encoding="utf-8")
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={profile}", "--window-size=1400,2000", f"--screenshot={shot}",
                        page.as_uri()], capture_output=True, timeout=120, check=True)  # fmt: skip
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 2000)
    assert len(data) > 50_000  # a page with a plot and tables, not a blank screen

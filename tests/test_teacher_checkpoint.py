"""A recipe can bring its own teacher checkpoint instead of training one."""

import json

from tests.conftest import QUICK_OVERRIDES, run_cli


def _args(tmp_path, checkpoint):
    args = ["distill-and-export", "--output-dir", str(tmp_path), "--json"]
    args += ["--set", f'teacher.checkpoint="{checkpoint}"']
    for override in QUICK_OVERRIDES:
        args += ["--set", override]
    return args


def test_user_teacher_checkpoint_is_used(quick_run, tmp_path, capsys):
    checkpoint = quick_run / "teacher.safetensors"
    code, out, err = run_cli(_args(tmp_path, checkpoint), capsys)
    assert code == 0, err
    report = json.loads(out)
    original = json.loads((quick_run / "report.json").read_text())
    assert report["teacher"]["origin"] == "user checkpoint"
    assert report["teacher"]["accuracy"] == original["teacher"]["accuracy"]  # same weights, same test split


def test_missing_teacher_checkpoint_names_the_file(tmp_path, capsys):
    code, _, err = run_cli(_args(tmp_path, tmp_path / "nope.safetensors"), capsys)
    assert code == 2
    assert "nope.safetensors" in err and "does not exist" in err


def test_pickle_checkpoint_is_refused(tmp_path, capsys):
    fake = tmp_path / "teacher.pt"
    fake.write_bytes(b"not a safetensors file")
    code, _, err = run_cli(_args(tmp_path, fake), capsys)
    assert code == 2
    assert "teacher.pt" in err and "safetensors" in err

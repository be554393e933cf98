"""edgekd never removes or writes into a directory it did not make: run names are one plain path component,
`--fresh` needs edgekd's marker inside the output directory, and symlinks are never followed."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.errors import UnsafePathError
from edgekd.pipeline.rundirs import MARKER, check_run_name, claim_dir, remove_owned_dir, remove_scratch_dir
from tests.cli_subprocess import run_edgekd


@pytest.fixture()
def precious(tmp_path: Path) -> Path:
    """A folder of the user's, beside the output directory."""
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("my thesis", encoding="utf-8")
    return folder


def _intact(folder: Path) -> bool:
    return (folder / "thesis.txt").read_text(encoding="utf-8") == "my thesis"


@pytest.mark.parametrize("name", ["../precious", "PRECIOUS_ABS", "..", ".", "", "a/b", "-rf", "a\\b"])
def test_run_names_that_are_not_one_component_are_refused_before_anything_is_written(
    tmp_path: Path, precious: Path, name: str
) -> None:
    name = str(precious) if name == "PRECIOUS_ABS" else name
    out = tmp_path / "out"
    result = run_edgekd(["distill-and-export", "-o", str(out), "--run-name", name, "--fresh"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--run-name" in result.stderr and "my-run" in result.stderr  # names the flag, shows a valid example
    assert "Traceback" not in result.stderr
    assert _intact(precious)
    assert not out.exists()


@pytest.mark.parametrize("name", ["../precious", "PRECIOUS_ABS", "..", "../..", "x/../../precious"])
def test_a_recipe_name_that_is_a_path_is_refused(tmp_path: Path, precious: Path, name: str) -> None:
    name = str(precious) if name == "PRECIOUS_ABS" else name
    recipe = tmp_path / "evil.toml"
    recipe.write_text(f"name = {name!r}\n".replace("'", '"'), encoding="utf-8")
    out = tmp_path / "out"
    result = run_edgekd(["distill-and-export", str(recipe), "-o", str(out), "--fresh"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "recipe key 'name'" in result.stderr and "evil.toml" in result.stderr
    assert _intact(precious)
    assert not out.exists()


def test_fresh_refuses_a_directory_without_the_marker(tmp_path: Path) -> None:
    out = tmp_path / "out"
    mine = out / "digits"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    result = run_edgekd(["distill-and-export", "-o", str(out), "--fresh"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "not made by edgekd" in result.stderr and MARKER in result.stderr
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep"


def test_fresh_does_not_follow_a_symlinked_run_directory(tmp_path: Path, precious: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (precious / MARKER).write_text('{"made_by": "edgekd", "kind": "run"}', encoding="utf-8")  # even a marked target
    (out / "digits").symlink_to(precious, target_is_directory=True)
    result = run_edgekd(["distill-and-export", "-o", str(out), "--fresh"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "symbolic link" in result.stderr
    assert _intact(precious) and (out / "digits").is_symlink()


def test_profile_output_dir_of_the_users_is_refused(tmp_path: Path, precious: Path) -> None:
    result = run_edgekd(["profile", str(tmp_path / "bundle.tar.gz"), "-p", "host", "-o", str(precious)], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "not made by edgekd" in result.stderr
    assert _intact(precious) and sorted(p.name for p in precious.iterdir()) == ["thesis.txt"]


def test_claim_then_fresh_removes_only_the_marked_directory(tmp_path: Path, precious: Path) -> None:
    out = tmp_path / "out"
    run_dir = claim_dir(out / "run", "run", root=out)
    (run_dir / "student.onnx").write_bytes(b"x")
    assert claim_dir(out / "run", "run", root=out) == run_dir  # reusing our own directory is fine
    remove_owned_dir(run_dir, root=out)
    assert not run_dir.exists() and out.is_dir()
    with pytest.raises(UnsafePathError, match="not made by edgekd"):
        remove_owned_dir(precious)
    with pytest.raises(UnsafePathError, match="not inside"):
        remove_owned_dir(out / ".." / "precious", root=out)
    with pytest.raises(UnsafePathError, match="not inside"):
        claim_dir(out / ".." / "elsewhere", "run", root=out)
    assert _intact(precious)


def test_a_forged_or_linked_marker_does_not_make_a_directory_removable(tmp_path: Path, precious: Path) -> None:
    out = tmp_path / "out"
    target = out / "run"
    target.mkdir(parents=True)
    (target / MARKER).write_text("not json", encoding="utf-8")
    with pytest.raises(UnsafePathError):
        remove_owned_dir(target, root=out)
    (target / MARKER).unlink()
    (precious / "m").write_text('{"made_by": "edgekd", "kind": "run"}', encoding="utf-8")
    (target / MARKER).symlink_to(precious / "m")
    with pytest.raises(UnsafePathError):
        remove_owned_dir(target, root=out)
    assert target.is_dir()


def test_scratch_dirs_are_removed_only_inside_an_owned_parent(tmp_path: Path, precious: Path) -> None:
    owned = claim_dir(tmp_path / "run", "run")
    (owned / "bundle").mkdir()
    remove_scratch_dir(owned / "bundle", owned)
    assert not (owned / "bundle").exists()
    (owned / "bundle").symlink_to(precious, target_is_directory=True)
    remove_scratch_dir(owned / "bundle", owned)  # the link goes, its target stays
    assert not (owned / "bundle").exists() and _intact(precious)
    (precious / "sub").mkdir()
    with pytest.raises(UnsafePathError):
        remove_scratch_dir(precious / "sub", precious)
    assert (precious / "sub").is_dir()


def test_check_run_name_accepts_plain_names() -> None:
    for name in ("digits", "my-run", "run_2026.12", "été"):
        assert check_run_name(name, "--run-name") == name

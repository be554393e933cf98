"""Directories edgekd owns: a run name is one plain path component, and edgekd removes or overwrites only the
directories it made itself (marked with `.edgekd-run`), never through a symlink and never outside their root.

Why a marker and not a name check alone: `--fresh` deletes a whole tree, so the only safe proof that a tree is
edgekd's to delete is a file edgekd wrote into it when it made it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgekd.errors import UnsafePathError
from edgekd.fileio import write_text_atomic

MARKER = ".edgekd-run"
RUN_NAME_EXAMPLE = "my-run"


def run_name_problem(name: object) -> str | None:
    """What makes `name` unusable as a run directory name (one plain path component), or None."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if name in (".", ".."):
        return f"is '{name}'"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name.startswith("-"):
        return "starts with '-'"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "contains a control character"
    if len(name.encode("utf-8", "surrogateescape")) > 200:
        return "is longer than 200 bytes"
    return None


def run_name_error(name: object, source: str, problem: str) -> str:
    return (f"{source} {name!r} {problem}: a run name is one plain directory name inside the output directory, "
            f"e.g. '{RUN_NAME_EXAMPLE}'")


def check_run_name(name: str, source: str) -> str:
    """`name` if it is one plain path component; else an error naming `source` (a flag or recipe key)."""
    problem = run_name_problem(name)
    if problem:
        raise UnsafePathError(run_name_error(name, source, problem))
    return name


def is_owned(directory: Path, kind: str | None = None) -> bool:
    """True when `directory` is a real directory (not a symlink) holding edgekd's marker (of `kind`, if given)."""
    directory = Path(directory)
    marker = directory / MARKER
    if directory.is_symlink() or not directory.is_dir() or marker.is_symlink() or not marker.is_file():
        return False
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("made_by") == "edgekd" and (kind is None or data.get("kind") == kind)


def _inside(directory: Path, root: Path) -> bool:
    resolved, base = directory.resolve(), root.resolve()
    return resolved != base and resolved.is_relative_to(base)


def _refuse_symlink(directory: Path, what: str) -> None:
    if directory.is_symlink():
        raise UnsafePathError(f"{what} '{directory}' is a symbolic link; edgekd does not write or delete through "
                              "links: remove the link or choose another name")  # fmt: skip


def claim_dir(directory: Path, kind: str, root: Path | None = None) -> Path:
    """Create `directory` (marked as edgekd's) or reuse one edgekd made; refuse a symlink, a directory outside
    `root`, and an existing non-empty directory that edgekd did not make (it would mix our files with yours)."""
    directory = Path(directory)
    _refuse_symlink(directory, f"{kind} directory")
    if root is not None and not _inside(directory, root):
        raise UnsafePathError(f"{kind} directory '{directory}' is not inside '{root}'")
    if directory.exists() and not directory.is_dir():
        raise UnsafePathError(f"{kind} directory '{directory}' exists and is not a directory; choose another path")
    if is_owned(directory):
        return directory
    if directory.is_dir() and any(directory.iterdir()):
        raise UnsafePathError(f"'{directory}' exists and was not made by edgekd (no {MARKER} marker); edgekd "
                              "will not write its files into it: choose another name or output directory, or "
                              "empty it yourself")  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / MARKER, json.dumps({"made_by": "edgekd", "kind": kind}) + "\n")
    return directory


def remove_owned_dir(directory: Path, root: Path | None = None) -> None:
    """Delete `directory` only if edgekd made it (marker present), it is not a symlink and, when `root` is
    given, it resolves inside `root`; anything else is an error and nothing is removed. Missing: nothing to do."""
    directory = Path(directory)
    _refuse_symlink(directory, "directory")
    if not directory.exists():
        return
    if root is not None and not _inside(directory, root):
        raise UnsafePathError(f"refusing to remove '{directory}': it is not inside '{root}'")
    if not is_owned(directory):
        raise UnsafePathError(f"refusing to remove '{directory}': it was not made by edgekd (no {MARKER} "
                              "marker); remove it yourself if you mean to, or choose another name")  # fmt: skip
    shutil.rmtree(directory)


def remove_scratch_dir(directory: Path, parent: Path) -> None:
    """Delete `parent/<name>`, a scratch folder edgekd keeps inside a directory it owns (`parent` must carry the
    marker); a symlink in its place is unlinked, never followed."""
    directory = Path(directory)
    if directory.is_symlink():
        directory.unlink()
        return
    if not directory.exists():
        return
    if directory.parent.resolve() != Path(parent).resolve() or not is_owned(parent):
        raise UnsafePathError(f"refusing to remove '{directory}': its folder '{parent}' was not made by edgekd")
    shutil.rmtree(directory)

"""Atomic writes and hashing: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgekd.errors import WriteError


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success fsync it and rename it into place."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last: some writers (OpenVINO, numpy) insist on it
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        raise_write_error(exc, final)
        raise
    finally:
        tmp.unlink(missing_ok=True)


WRITE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the file system is read-only", errno.EFBIG: "the file is too large"}  # fmt: skip


def raise_write_error(exc: OSError, path: Path) -> None:
    """Turn a full disk (or quota, read-only file system) while writing `path` into a WriteError naming it;
    other OSErrors return and are re-raised by the caller."""
    if exc.errno in WRITE_ERRNOS:
        raise WriteError(f"cannot write '{path}': {WRITE_ERRNOS[exc.errno]} ({exc.strerror}); nothing was "
                         "replaced (the previous file, if any, is intact). Free space and run again") from exc


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path, missing: str, error: type[Exception]) -> Any:
    """Parse a JSON file; a missing file raises `error` with the message `missing`, bad JSON names the file."""
    path = Path(path)
    if not path.is_file():
        raise error(missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"'{path}' is not valid JSON: {exc}") from None


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(data: Any) -> str:
    """A stable hash of plain data (sorted keys), used to key caches and record recipe identity."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


# atomic_path's temp names: "." + stem + "." + mkstemp's 8 random characters + ".tmp" + the real suffix
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9_-]+)?$")


def is_stale_temp_name(name: str) -> bool:
    return bool(_TEMP_NAME.match(name))


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the temp files `atomic_path` left in `directory` (and below) when a process was killed before
    renaming them; only names of its own pattern, never links. Call it where no write is in flight."""
    removed = []
    for path in sorted(Path(directory).rglob(".*.tmp*")):
        if is_stale_temp_name(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_dirs(prefix: str) -> None:
    """Remove `<tempdir>/<prefix><pid>-*` directories whose process is gone (a run killed while measuring)."""
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = path.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and path.is_dir() and not path.is_symlink() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def scratch_cwd() -> Iterator[Path]:
    """Run the block in a fresh temporary working directory, removed afterwards.

    Some of ONNX Runtime's tools write debug files into the current directory (symbolic shape inference saves
    `sym_shape_infer_temp.onnx` and its external data when it cannot infer every shape); a user's directory
    must not collect them. Paths handed to the block must be absolute: resolve them before entering it."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="edgekd-scratch-") as scratch:
        os.chdir(scratch)
        try:
            yield Path(scratch)
        finally:
            os.chdir(previous)

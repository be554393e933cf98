"""What `verify_bundle` checks before a device uses a bundle: the manifest's shape, and that every file the
bundle uses is listed, inside the bundle, a regular file (not a link) and matches its checksum — including
ONNX external data, which no runtime gets to read before edgekd has checked where it points.

A manifest is data from elsewhere: a wrong type anywhere is one `BundleError` naming the field, not a
traceback later. Figures that could be edited in the manifest without touching a checksummed file (the
teacher's accuracy) are recomputed from the checksummed eval samples instead (`edgekd.bundle.files`).
"""

from __future__ import annotations

import stat
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema

from edgekd.errors import BundleError
from edgekd.fileio import sha256_file
from edgekd.runtimes import engine_specs, format_of

_TEXT = {"type": "string", "minLength": 1}
_COUNT = {"type": "integer", "minimum": 0}


def artifact_schema() -> dict[str, Any]:
    """A manifest's artifact entry. Its formats and runtimes are those of the registered runtimes' rows whose
    format travels in a bundle (ONNX, ORT format): a device refuses a bundle holding one it does not know."""
    travelling = [s for s in engine_specs() if format_of(s.format).in_bundle]
    formats = sorted({s.format for s in travelling})
    runtimes = sorted({name for s in travelling for name in (s.runtime, s.measured_by)})
    return {
        "type": "object",
        "required": ["name", "role", "path", "format", "runtime", "precision", "params"],
        "additionalProperties": False,
        "properties": {
            "name": _TEXT, "role": {"enum": ["student", "teacher"]}, "path": _TEXT, "format": {"enum": formats},
            "runtime": {"enum": runtimes}, "precision": _TEXT, "params": _COUNT,
            "quantization": {"type": ["string", "null"]}, "architecture": {"type": ["string", "null"]},
            "source": {"type": ["string", "null"]},
        },
    }  # fmt: skip


MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "run", "recipe_hash", "recipe", "task", "input", "teacher", "student",
                 "artifacts", "eval_samples", "calibration_samples", "files"],
    "properties": {
        "schema_version": {"type": "string"},
        "run": _TEXT,
        "recipe_hash": _TEXT,
        "recipe": {"type": "object"},
        "task": {"type": "object", "required": ["name", "split", "num_classes", "eval_batch_size"],
                 "properties": {"name": _TEXT, "split": {"type": "object"}, "num_classes": _COUNT,
                                "eval_batch_size": {"type": "integer", "minimum": 1},
                                "metric": {"enum": ["accuracy", "teacher_cosine"]}}},
        "input": {"type": "object", "required": ["name", "shape", "dtype"],
                  "properties": {"name": _TEXT, "dtype": _TEXT, "shape": {
                      "type": "array", "minItems": 1, "items": {"anyOf": [_COUNT, _TEXT]}}}},
        "teacher": {"type": "object", "required": ["architecture", "accuracy", "params"],
                    "properties": {"architecture": {"type": ["string", "null"]}, "params": _COUNT,
                                   "accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1}}},
        "student": {"type": "object", "required": ["architecture", "params"],
                    "properties": {"architecture": {"type": ["string", "null"]}, "params": _COUNT}},
        "artifacts": {"type": "array"},  # items: artifact_schema(), from the registry when checked
        "eval_samples": _TEXT,
        "calibration_samples": _TEXT,
        "files": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["sha256", "bytes"],
            "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "bytes": _COUNT}}},
    },
}  # fmt: skip


def check_manifest_shape(manifest: Any, manifest_path: Path) -> None:
    """The manifest has every field a device reads, each of the right type; else the first wrong one, named."""
    schema = {**MANIFEST_SCHEMA, "properties": {**MANIFEST_SCHEMA["properties"],
                                                "artifacts": {"type": "array", "items": artifact_schema()}}}
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(manifest),
                    key=lambda e: list(e.absolute_path))  # fmt: skip
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "(top level)"
        message = errors[0].message if len(errors[0].message) < 200 else errors[0].message[:200] + "..."
        raise BundleError(f"{manifest_path}: field '{where}': {message}; the manifest is damaged or was edited "
                          "(copy the bundle again)")  # fmt: skip


def bundle_file(bundle_dir: Path, rel: str, manifest_path: Path) -> Path:
    """`bundle_dir/rel` after checking that it stays inside the bundle, that no part of it is a link, and
    that it is a regular file."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts or "\\" in rel or ":" in parts[0]:
        raise BundleError(f"{manifest_path}: file entry '{rel}' points outside the bundle; refusing the bundle")
    path = Path(bundle_dir)
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise BundleError(f"bundle file '{rel}' is (or lies under) a symbolic link; bundles hold only plain "
                              "files: copy the bundle again")  # fmt: skip
    if not path.exists():
        raise BundleError(f"bundle file '{rel}' is missing from {bundle_dir}; copy the whole bundle again")
    if not stat.S_ISREG(path.lstat().st_mode):
        raise BundleError(f"bundle file '{rel}' is not a regular file; bundles hold only plain files")
    return path


def check_files(bundle_dir: Path, manifest: dict[str, Any], manifest_path: Path) -> None:
    """Every listed file matches its size and sha256, and every file the bundle uses is listed."""
    files = manifest["files"]
    for rel, entry in files.items():
        path = bundle_file(bundle_dir, rel, manifest_path)
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise BundleError(f"bundle file '{rel}' does not match its checksum in {manifest_path.name}: it was "
                              "modified or damaged in transit; refusing to use it (copy the bundle again)")  # fmt: skip
    used = [a["path"] for a in manifest["artifacts"]] + [manifest["eval_samples"], manifest["calibration_samples"]]
    for rel in used:
        if rel not in files:
            raise BundleError(f"{manifest_path}: the bundle uses '{rel}' but does not list it with a checksum; "
                              "refusing an unverified file (copy the bundle again)")  # fmt: skip
    for artifact in manifest["artifacts"]:
        if format_of(artifact["format"]).onnx_graph:
            check_external_data(bundle_dir, artifact["path"], files, manifest_path)


def check_external_data(bundle_dir: Path, rel: str, files: dict[str, Any], manifest_path: Path) -> None:
    """ONNX external data must name files listed in the bundle, beside or below the model. A model that does
    not parse is left to the runtime: its row becomes `failed` with the runtime's reason."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        model = onnx.load(str(Path(bundle_dir) / rel), load_external_data=False)
    except Exception:  # noqa: BLE001 - damaged protobuf: the runtime's load reports it on the row
        return
    folder = PurePosixPath(rel).parent
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        parts = PurePosixPath(location).parts
        target = (folder / location).as_posix() if parts else ""
        if not parts or PurePosixPath(location).is_absolute() or ".." in parts or target not in files:
            raise BundleError(f"bundle file '{rel}': tensor '{tensor.name}' keeps its data in '{location}', which "
                              "is not a file listed in the bundle; refusing to let a runtime read it")  # fmt: skip

"""The portable bundle: everything `edgekd profile` needs on a device with no access to the training machine.

```
bundle/
  manifest.json          schema version, every file with sha256 and size, input spec, recipe, teacher reference
  recipe.toml
  student*.onnx          the ONNX variants (fp32, int8 dynamic, int8 static QDQ)
  mobile/                ORT-format models + required_operators.config, when a mobile profile was selected
  data/eval.npz          eval inputs (under the input name), labels, the teacher's and the fp32 student's outputs
  data/calibration.npz   calibration inputs, for builders that calibrate on the device
```

The teacher's logits travel with the eval samples so accuracy drop and agreement are computed on the device
exactly as on the host; the fp32 PyTorch student's outputs travel too, for each engine's parity with it.
A bundle is verified before use: a file whose bytes differ from the manifest is refused, and archives are
extracted member by member, refusing absolute paths, `..`, links and devices.
"""

from __future__ import annotations

import shutil
import tarfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgekd import __version__
from edgekd.errors import EdgekdError
from edgekd.fileio import atomic_path, read_json, sha256_file, write_json_atomic
from edgekd.measure_rows import TeacherReference
from edgekd.rundirs import remove_scratch_dir
from edgekd.tasks.base import save_eval_split

MANIFEST = "manifest.json"
MANIFEST_SCHEMA_VERSION = "1.0"
EVAL_SAMPLES = "data/eval.npz"
CALIBRATION_SAMPLES = "data/calibration.npz"
TEACHER_LOGITS = "teacher_logits"
STUDENT_OUTPUTS = "student_outputs"  # the fp32 PyTorch student's: the parity reference on the device


class BundleError(EdgekdError):
    """A bundle is missing, altered, or unsafe to extract."""


def write_eval_samples(path: Path, inputs: np.ndarray, labels: np.ndarray, reference: TeacherReference,
                       input_name: str) -> None:  # fmt: skip
    """Inputs, labels, the teacher's outputs and (where measured) the fp32 PyTorch student's."""
    arrays = {input_name: inputs, "labels": labels, TEACHER_LOGITS: reference.logits}
    if reference.student_outputs is not None:
        arrays[STUDENT_OUTPUTS] = reference.student_outputs
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def write_bundle(bundle_dir: Path, files: dict[str, Path],
                 eval_samples: tuple[np.ndarray, np.ndarray, TeacherReference], calibration: np.ndarray,
                 manifest: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Write a fresh bundle: copy `files` (bundle path -> source), the samples, then the manifest last.
    Built in a sibling directory and renamed into place, so a crash never leaves a half bundle."""
    bundle_dir = Path(bundle_dir)
    staging = bundle_dir.with_name(f".{bundle_dir.name}.tmp")
    remove_scratch_dir(staging, bundle_dir.parent)  # a crashed run's half bundle
    staging.mkdir(parents=True)
    input_name = manifest["input"]["name"]
    for rel, source in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staging / rel)
    write_eval_samples(staging / EVAL_SAMPLES, *eval_samples, input_name)
    save_eval_split(staging / CALIBRATION_SAMPLES, calibration, np.zeros(len(calibration), np.int64), input_name)
    listed = sorted(p for p in staging.rglob("*") if p.is_file())
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "edgekd_version": __version__,
        **manifest,
        "eval_samples": EVAL_SAMPLES,
        "calibration_samples": CALIBRATION_SAMPLES,
        "files": {p.relative_to(staging).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                  for p in listed},  # fmt: skip
    }
    write_json_atomic(staging / MANIFEST, manifest)
    remove_scratch_dir(bundle_dir, bundle_dir.parent)
    staging.rename(bundle_dir)
    return manifest


def archive_bundle(bundle_dir: Path) -> Path:
    """`bundle.tar.gz` beside the bundle directory, members relative to the bundle's name."""
    target = bundle_dir.with_name(f"{bundle_dir.name}.tar.gz")
    with atomic_path(target) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(bundle_dir, arcname=bundle_dir.name)
    return target


def _safe_member_path(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")) or ":" in name.parts[0]:
        raise BundleError(f"archive {archive}: member '{member.name}' would land outside the bundle; refusing it")
    if not (member.isfile() or member.isdir()):
        kind = "link" if member.issym() or member.islnk() else "device or special file"
        raise BundleError(f"archive {archive}: member '{member.name}' is a {kind}; bundles hold only plain files")
    return name


def extract_bundle(archive: Path, target_dir: Path) -> Path:
    """Extract `archive` into `target_dir` after checking every member; returns the bundle directory."""
    archive, target_dir = Path(archive), Path(target_dir)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _safe_member_path(member, archive)
            target_dir.mkdir(parents=True, exist_ok=True)
            for member in members:
                if member.isfile():
                    out = target_dir / _safe_member_path(member, archive)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
                        shutil.copyfileobj(source, fh)
    except tarfile.TarError as exc:
        raise BundleError(f"archive {archive} is not a readable tar archive: {exc}") from None
    manifests = sorted(target_dir.glob(f"*/{MANIFEST}")) + sorted(target_dir.glob(MANIFEST))
    if not manifests:
        raise BundleError(f"archive {archive} holds no {MANIFEST}; it is not an edgekd bundle")
    return manifests[0].parent


def verify_bundle(bundle_dir: Path) -> dict[str, Any]:
    """Read the manifest and check every listed file's size and sha256; returns the manifest."""
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST
    manifest = read_json(manifest_path, f"'{bundle_dir}' is not a bundle: no {MANIFEST} (pass export/<run>/bundle "
                         "or its .tar.gz)", BundleError)  # fmt: skip
    if not str(manifest.get("schema_version", "")).startswith("1."):
        raise BundleError(f"{manifest_path}: unsupported bundle schema '{manifest.get('schema_version')}'; "
                          "upgrade edgekd on this device")  # fmt: skip
    for rel, entry in manifest.get("files", {}).items():
        path = bundle_dir / rel
        if ".." in PurePosixPath(rel).parts or PurePosixPath(rel).is_absolute():
            raise BundleError(f"{manifest_path}: file entry '{rel}' points outside the bundle")
        if not path.is_file():
            raise BundleError(f"bundle file '{rel}' is missing from {bundle_dir}; copy the whole bundle again")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise BundleError(f"bundle file '{rel}' does not match its checksum in {MANIFEST}: it was modified or "
                              "damaged in transit; refusing to use it (copy the bundle again)")  # fmt: skip
    return manifest


def load_eval_samples(bundle_dir: Path, manifest: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, TeacherReference]:
    """Eval inputs, labels and the teacher reference (outputs, and accuracy at the recorded eval batch size;
    None for an embedding teacher)."""
    with np.load(bundle_dir / manifest["eval_samples"], allow_pickle=False) as data:
        inputs, labels, logits = data[manifest["input"]["name"]], data["labels"], data[TEACHER_LOGITS]
        student = data[STUDENT_OUTPUTS] if STUDENT_OUTPUTS in data.files else None  # bundles before 0.1 lack it
    accuracy = manifest["teacher"]["accuracy"]
    return inputs, labels, TeacherReference(logits, None if accuracy is None else float(accuracy), student)

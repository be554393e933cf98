"""The portable bundle: everything `edgekd profile` needs on a device with no access to the training machine.

```
bundle/
  manifest.json          schema version, every file with sha256 and size, input spec, recipe, teacher reference
  recipe.toml
  student*.onnx          the ONNX variants (fp32, int8 dynamic, int8 static QDQ)
  mobile/                ORT-format models + required_operators.config, when a mobile profile was selected
  data/eval.npz          eval inputs (under the graph's input names: input_ids, attention_mask, ... for a text
                         encoder), labels, the teacher's and the fp32 student's outputs
  data/calibration.npz   calibration inputs (the same names), for builders that calibrate on the device
```

The teacher's logits travel with the eval samples so accuracy drop and agreement are computed on the device
exactly as on the host; the fp32 PyTorch student's outputs travel too, for each engine's parity with it.
A bundle is verified before use: a file whose bytes differ from the manifest is refused, and archives are
extracted member by member, refusing absolute paths, `..`, links and devices.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import tarfile
import zlib
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgekd import measure as m
from edgekd.bundle.checks import check_files, check_manifest_shape
from edgekd.errors import BundleError, RecipeError
from edgekd.fileio import atomic_path, raise_write_error, read_json, sha256_file, write_json_atomic
from edgekd.measure.quality import ACCURACY, report_metric
from edgekd.measure.rows import TeacherReference
from edgekd.pipeline.layout import CALIBRATION_SAMPLES, EVAL_SAMPLES, MANIFEST
from edgekd.pipeline.rundirs import remove_scratch_dir
from edgekd.recipe import recipe_from_dict
from edgekd.samples import Inputs, count, read_inputs, save_inputs
from edgekd.tasks.base import save_calibration_samples
from edgekd.version import __version__

MANIFEST_SCHEMA_VERSION = "1.0"
TEACHER_LOGITS = "teacher_logits"
STUDENT_OUTPUTS = "student_outputs"  # the fp32 PyTorch student's: the parity reference on the device


def write_eval_samples(path: Path, inputs: Inputs, labels: np.ndarray, reference: TeacherReference,
                       input_name: str) -> None:  # fmt: skip
    """Inputs (every one the graph takes, by name), labels, the teacher's outputs and (where measured) the fp32
    PyTorch student's."""
    arrays = {"labels": labels, TEACHER_LOGITS: reference.logits}
    if reference.student_outputs is not None:
        arrays[STUDENT_OUTPUTS] = reference.student_outputs
    save_inputs(path, inputs, input_name, **arrays)


def manifest_input_names(manifest: dict[str, Any]) -> list[str]:
    """The graph's input names a bundle's samples are stored under (one, or every input of a text encoder)."""
    spec = manifest["input"]
    return [entry["name"] for entry in spec["inputs"]] if "inputs" in spec else [spec["name"]]


def write_bundle(bundle_dir: Path, files: dict[str, Path],
                 eval_samples: tuple[Inputs, np.ndarray, TeacherReference], calibration: Inputs,
                 manifest: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Write a fresh bundle: copy `files` (bundle path -> source), the samples, then the manifest last.
    Built in a sibling directory and renamed into place, so a crash never leaves a half bundle."""
    bundle_dir = Path(bundle_dir)
    staging = bundle_dir.with_name(f".{bundle_dir.name}.tmp")
    remove_scratch_dir(staging, bundle_dir.parent)  # a crashed run's half bundle
    staging.mkdir(parents=True)
    try:
        manifest = _write_staging(staging, files, eval_samples, calibration, manifest)
    except OSError as exc:
        remove_scratch_dir(staging, bundle_dir.parent)  # never leave a half bundle behind
        raise_write_error(exc, Path(exc.filename or bundle_dir))
        raise
    except BaseException:
        remove_scratch_dir(staging, bundle_dir.parent)
        raise
    remove_scratch_dir(bundle_dir, bundle_dir.parent)
    staging.rename(bundle_dir)
    return manifest


def _write_staging(staging: Path, files: dict[str, Path],
                   eval_samples: tuple[np.ndarray, np.ndarray, TeacherReference], calibration: np.ndarray,
                   manifest: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    input_name = manifest["input"]["name"]
    for rel, source in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staging / rel)
    write_eval_samples(staging / EVAL_SAMPLES, *eval_samples, input_name)
    save_calibration_samples(staging / CALIBRATION_SAMPLES, calibration, input_name)
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
    return manifest


def archive_bundle(bundle_dir: Path) -> Path:
    """`bundle.tar.gz` beside the bundle directory, members relative to the bundle's name."""
    target = bundle_dir.with_name(f"{bundle_dir.name}.tar.gz")
    with atomic_path(target) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(bundle_dir, arcname=bundle_dir.name)
    return target


def _safe_member_path(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    name = PurePosixPath(member.name)  # "./x" is "x"; "." (tar -C bundle .) has no parts: the top directory
    first = name.parts[0] if name.parts else ""
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")) or ":" in first:
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
                if member.isfile() and PurePosixPath(member.name).parts:
                    out = target_dir / _safe_member_path(member, archive)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
                        shutil.copyfileobj(source, fh)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        raise BundleError(f"archive {archive} is damaged or truncated ({type(exc).__name__}: {exc}); copy it "
                          "again") from None  # fmt: skip
    manifests = sorted(target_dir.glob(f"*/{MANIFEST}")) + sorted(target_dir.glob(MANIFEST))
    if not manifests:
        raise BundleError(f"archive {archive} holds no {MANIFEST}; it is not an edgekd bundle")
    return manifests[0].parent


def verify_bundle(bundle_dir: Path) -> dict[str, Any]:
    """Read the manifest, check its fields, and check that every file the bundle uses is listed, inside the
    bundle, a regular file, and matches its size and sha256 (edgekd.bundle.checks); returns the manifest."""
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST
    manifest = read_json(manifest_path, f"'{bundle_dir}' is not a bundle: no {MANIFEST} (pass export/<run>/bundle "
                         "or its .tar.gz)", BundleError)  # fmt: skip
    version = manifest.get("schema_version", "") if isinstance(manifest, dict) else ""
    if not str(version).startswith("1."):
        raise BundleError(f"{manifest_path}: unsupported bundle schema '{version}'; upgrade edgekd on this device")
    check_manifest_shape(manifest, manifest_path)
    check_files(bundle_dir, manifest, manifest_path)
    try:  # its [measure] table sets how the device measures: read it complete and checked
        manifest["recipe"] = recipe_from_dict(manifest["recipe"]).to_dict()
    except RecipeError as exc:
        raise BundleError(f"{manifest_path}: the recipe it carries is invalid: {exc}") from None
    return manifest


def load_eval_samples(bundle_dir: Path, manifest: dict[str, Any]) -> tuple[Inputs, np.ndarray, TeacherReference]:
    """Eval inputs (every input the graph takes), labels and the teacher reference (outputs, and accuracy at the
    recorded eval batch size; None for an embedding teacher). The accuracy is recomputed from the checksummed
    teacher logits and labels: a manifest figure that disagrees was edited, and is refused."""
    path = bundle_dir / manifest["eval_samples"]
    try:
        with np.load(path, allow_pickle=False) as data:
            inputs = read_inputs(data, manifest_input_names(manifest))
            labels, logits = data["labels"], data[TEACHER_LOGITS]
            student = data[STUDENT_OUTPUTS] if STUDENT_OUTPUTS in data.files else None  # bundles before 0.1 lack it
    except (KeyError, ValueError, OSError) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise BundleError(f"bundle file '{manifest['eval_samples']}' does not hold the eval samples (the model's "
                          f"inputs, 'labels' and '{TEACHER_LOGITS}'): {reason}; rebuild the bundle") from None
    _check_eval_inputs(inputs, labels, logits, manifest)
    accuracy = manifest["teacher"]["accuracy"]
    if report_metric(manifest) == ACCURACY:
        recomputed = m.accuracy(logits, labels)
        if accuracy is None or abs(float(accuracy) - recomputed) > 1e-9:
            raise BundleError(f"{MANIFEST}: teacher.accuracy {accuracy} is not the accuracy of the teacher logits in "
                              f"'{manifest['eval_samples']}' ({recomputed:.6g}); the manifest was edited: refusing "
                              "the bundle (copy it again)")  # fmt: skip
        accuracy = recomputed
    return inputs, labels, TeacherReference(logits, None if accuracy is None else float(accuracy), student)


def _check_eval_inputs(inputs: Inputs, labels: np.ndarray, logits: np.ndarray, manifest: dict[str, Any]) -> None:
    """The eval inputs have the manifest's input shape and dtype, one label and one teacher output per sample.
    Token models (several named inputs) are checked for one label and one output per sample."""
    if isinstance(inputs, dict):
        samples_count = count(inputs)
        if not (len(labels) == len(logits) == samples_count) or logits.ndim != 2:
            raise BundleError(f"'{manifest['eval_samples']}': {samples_count} inputs, {len(labels)} labels and "
                              f"teacher outputs shaped {list(logits.shape)} do not belong together")  # fmt: skip
        return
    spec = manifest["input"]
    want = [d if isinstance(d, int) else None for d in spec["shape"][1:]]
    got = list(inputs.shape[1:])
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got, strict=False)) \
            or str(inputs.dtype) != spec["dtype"]:  # fmt: skip
        raise BundleError(f"'{manifest['eval_samples']}': input '{spec['name']}' is {list(inputs.shape)} "
                          f"{inputs.dtype}, but the model expects {spec['shape']} {spec['dtype']}")  # fmt: skip
    if not (len(labels) == len(logits) == len(inputs)) or logits.ndim != 2:
        raise BundleError(f"'{manifest['eval_samples']}': {len(inputs)} inputs, {len(labels)} labels and teacher "
                          f"outputs shaped {list(logits.shape)} do not belong together")  # fmt: skip

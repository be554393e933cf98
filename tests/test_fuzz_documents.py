"""Issue 16: generated and mutated recipes, profiles, budgets files and bundle manifests (wrong types, unknown
keys, nesting, unicode, non-UTF-8 bytes, huge numbers) through the functions the CLI calls. Each document is
either accepted or refused with one EdgekdError line that exits 2, never a traceback. 1,000 documents in all,
250 per kind; a failing document is printed by hypothesis, and the seed is fixed so CI is reproducible."""

from __future__ import annotations

import copy
import json
import math
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from edgekd.errors import EdgekdError

EXAMPLES = 250
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_odd = st.sampled_from(["", "host", "digits", "os:system", "../../etc", "é🙂\u202e", "a\nb"])
_scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True, allow_infinity=True)
            | _text | _odd)  # fmt: skip
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                       max_leaves=6)  # fmt: skip


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a nested document (tables and list items)."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with 1-3 edits: a value replaced by anything, a key deleted, or an unknown key added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(_text)] = draw(_values)
        else:
            parent[path[-1]] = draw(_values)
    return doc


@st.composite
def document_bytes(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """A mutated document as TOML, sometimes with raw bytes flipped, cut or inserted (non-UTF-8 included)."""
    try:
        data = tomli_w.dumps(draw(mutated(base))).encode()
    except (TypeError, ValueError):  # a shape TOML cannot hold: keep the base
        data = tomli_w.dumps(base).encode()
    if draw(st.integers(0, 3)) == 0 and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + draw(st.binary(min_size=0, max_size=4)) + data[at + draw(st.integers(0, 3)):]
    return data


def assert_one_line_exit_2(call) -> None:
    """Run `call`; an error must be an EdgekdError of exit code 2 with a one-line message."""
    try:
        call()
    except EdgekdError as exc:
        message = str(exc)
        assert exc.exit_code == 2, (type(exc).__name__, message)
        assert message and "\n" not in message, repr(message)


def _recipe_base() -> dict[str, Any]:
    from edgekd.recipe import builtin_recipe_text

    base = tomllib.loads(builtin_recipe_text("digits"))
    base.setdefault("budgets", {"max_accuracy_drop": 2.0})
    base.setdefault("distill", {}).setdefault("assistants", [{"architecture": "digits-cnn"}])
    return base


@FUZZ
@seed(16)
@given(data=st.data())
def test_fuzzed_recipes(tmp_path, data):
    from edgekd.pipeline.run import distill_and_export  # noqa: F401 - the module the CLI runs
    from edgekd.recipe import load_recipe
    from edgekd.targets.plan import target_profiles

    path = tmp_path / "fuzzed.toml"
    path.write_bytes(data.draw(document_bytes(_recipe_base())))

    def load_and_resolve():
        recipe = load_recipe(path)  # what `edgekd distill-and-export fuzzed.toml` does first
        target_profiles(recipe.targets, None)  # then its profiles, before anything runs

    assert_one_line_exit_2(load_and_resolve)


@FUZZ
@seed(16)
@given(data=st.data())
def test_fuzzed_profiles(tmp_path, data):
    from edgekd.targets.profiles import load_profile

    base = tomllib.loads((Path(__file__).parents[1] / "profiles" / "jetson-orin-nano-8gb.toml").read_text())
    path = tmp_path / "fuzzed-profile.toml"
    path.write_bytes(data.draw(document_bytes(base)))
    assert_one_line_exit_2(lambda: load_profile(path))


@pytest.fixture(scope="module")
def quick_report(quick_run) -> dict[str, Any]:
    from edgekd.report.document import load_report

    return load_report(quick_run / "report.json")


@FUZZ
@seed(16)
@given(data=st.data())
def test_fuzzed_budgets_files(quick_report, tmp_path, data):
    from edgekd.gate import evaluate, load_budgets

    report = quick_report
    base = {"budgets": {"max_accuracy_drop": 2.0, "max_p95_ms": 5.0, "min_throughput_per_s": 10}}
    path = tmp_path / "fuzzed-budgets.toml"
    path.write_bytes(data.draw(document_bytes(base)))
    assert_one_line_exit_2(lambda: evaluate(report, load_budgets(path), []))  # what `edgekd gate --budgets` does


@pytest.fixture(scope="module")
def fuzz_bundle(quick_run, tmp_path_factory) -> Path:
    bundle = tmp_path_factory.mktemp("fuzz") / "bundle"
    shutil.copytree(quick_run / "bundle", bundle)
    return bundle


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


@FUZZ
@seed(16)
@given(data=st.data())
def test_fuzzed_manifests(fuzz_bundle, data):
    from edgekd.bundle.files import load_eval_samples, verify_bundle
    from edgekd.pipeline.layout import MANIFEST
    from edgekd.pipeline.on_device import _bundle_artifacts, _settings
    from edgekd.targets.profiles import load_profile

    original = fuzz_bundle / "manifest.original.json"
    if not original.exists():
        shutil.copy(fuzz_bundle / MANIFEST, original)
    base = json.loads(original.read_text())
    doc = data.draw(mutated(base))
    text = json.dumps(_json_safe(doc)).encode()
    if data.draw(st.integers(0, 4)) == 0:
        at = data.draw(st.integers(0, len(text) - 1))
        text = text[:at] + data.draw(st.binary(max_size=3)) + text[at + 1:]
    (fuzz_bundle / MANIFEST).write_bytes(text)
    host = load_profile("host")

    def open_as_profile_does():  # edgekd profile BUNDLE: verify, samples, settings, artifacts
        manifest = verify_bundle(fuzz_bundle)
        load_eval_samples(fuzz_bundle, manifest)
        _settings(manifest, host, None)
        _bundle_artifacts(manifest, host)

    try:
        assert_one_line_exit_2(open_as_profile_does)
    finally:
        shutil.copy(original, fuzz_bundle / MANIFEST)

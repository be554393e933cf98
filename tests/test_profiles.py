"""Hardware profiles: every shipped one validates and cites its figures; typos fail with a did-you-mean."""

import json
import re
import tomllib

import pytest

from edgekd.errors import RecipeError
from edgekd.targets.profiles import load_profile, profiles_dir, shipped_profile_names
from tests.conftest import run_cli

REQUIRED = {"host", "x86-avx2", "x86-avx512-vnni", "jetson-orin-nano-8gb", "jetson-orin-nx-16gb",
            "jetson-agx-orin-64gb", "raspberry-pi-5", "android-arm64", "ios-arm64"}  # fmt: skip
FIGURE_KEYS = ("memory_bandwidth_gbps", "fp32", "fp16", "int8")


def test_every_required_profile_is_shipped_and_validates():
    assert REQUIRED <= set(shipped_profile_names())
    for name in shipped_profile_names():
        profile = load_profile(name)
        assert profile.name == name
        assert profile.runtimes and profile.precisions and profile.batch_sizes


@pytest.mark.parametrize("name", sorted(REQUIRED - {"host"}))
def test_every_figure_has_its_source_beside_it(name):
    """A peak or bandwidth figure is a number someone must be able to check: a comment on its line or
    the line above says where it comes from or how it was derived."""
    lines = (profiles_dir() / f"{name}.toml").read_text().splitlines()
    profile = load_profile(name)
    assert profile.memory_bandwidth_gbps > 0 and profile.peak_tops.int8 > 0 and profile.peak_tops.fp32 > 0
    for i, line in enumerate(lines):
        if re.match(rf"^({'|'.join(FIGURE_KEYS)})\s*=", line):
            above = lines[i - 1].lstrip()
            assert "#" in line or above.startswith("#"), f"{name}.toml line {i + 1} has no source: {line}"


def test_known_jetson_figures():
    nano, agx = load_profile("jetson-orin-nano-8gb"), load_profile("jetson-agx-orin-64gb")
    assert nano.memory_bandwidth_gbps == 68.0 and nano.peak_tops.int8 == 20.0  # 40 sparse TOPS, dense = half
    assert agx.memory_bandwidth_gbps == 204.8 and agx.peak_tops.fp32 == 5.3
    nano_text = (profiles_dir() / "jetson-orin-nano-8gb.toml").read_text()
    assert "40 sparse INT8 TOPS" in nano_text and "102 GB/s" in nano_text and "67" in nano_text
    assert "275 sparse INT8 TOPS" in (profiles_dir() / "jetson-agx-orin-64gb.toml").read_text()
    for profile in (nano, agx):
        assert "tensorrt" in profile.runtimes and {"fp16", "int8"} <= set(profile.precisions)
        assert profile.toolchain.jetpack and profile.toolchain.tensorrt


def test_mobile_profiles_record_execution_providers():
    assert "NNAPI" in load_profile("android-arm64").mobile.execution_providers
    assert "CoreML" in load_profile("ios-arm64").mobile.execution_providers


def _write(tmp_path, text):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_users_own_profile_by_path(tmp_path):
    path = _write(tmp_path, 'name = "lab-box"\ndevice_class = "x86"\nmemory_bandwidth_gbps = 25.6\n'
                            '[peak_tops]\nfp32 = 0.5\n')  # fmt: skip
    profile = load_profile(path)
    assert profile.name == "lab-box" and profile.peak_tops.fp32 == 0.5 and profile.peak_tops.int8 == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "x"\ndevice_class = "x86"\nmemory_bandwith_gbps = 1\n', "did you mean 'memory_bandwidth_gbps'"),
        ('name = "x"\ndevice_class = "x86"\nruntimes = ["tensort"]\n', "did you mean 'tensorrt'"),
        ('name = "x"\ndevice_class = "jetsn"\n', "did you mean 'jetson'"),
        ('name = "x"\ndevice_class = "x86"\n[peak_tops]\nfp33 = 1\n', "did you mean 'fp32'"),
        ('name = "x"\ndevice_class = "x86"\nthreads = "four"\n', "'threads' must be an integer"),
        ('name = "x"\ndevice_class = "x86"\nbatch_sizes = [0]\n', "'batch_sizes' must be a list of ints >= 1"),
        ('device_class = "x86"\n', "needs 'name' and 'device_class'"),
    ],
)
def test_bad_profile_fails_with_the_key_and_a_suggestion(tmp_path, text, expected):
    with pytest.raises(RecipeError, match=re.escape(expected)) as info:
        load_profile(_write(tmp_path, text))
    assert "mine.toml" in str(info.value)


def test_unknown_profile_name_suggests_the_closest():
    with pytest.raises(RecipeError, match="did you mean 'jetson-orin-nano-8gb'"):
        load_profile("jetson-orin-nano-8g")


@pytest.mark.openvino
def test_profiles_list_and_show_on_the_cli(capsys, tmp_path):
    code, out, _ = run_cli(["profiles", "list", "--json"], capsys)
    assert code == 0
    listed = {entry["name"]: entry for entry in json.loads(out)}
    assert REQUIRED <= set(listed)
    assert listed["host"]["measurable_here"] is True
    code, out, _ = run_cli(["profiles", "show", "jetson-agx-orin-64gb"], capsys)
    assert code == 0 and "275 sparse INT8 TOPS" in out  # the TOML with its source comments
    code, out, _ = run_cli(["profiles", "show", "host", "--json"], capsys)
    detected = json.loads(out)["detected"]
    assert detected["cores"] >= 1 and isinstance(detected["isa"], list)
    code, _, err = run_cli(["profiles", "show", "rasberry-pi-5"], capsys)
    assert code == 2 and "did you mean 'raspberry-pi-5'" in err


def test_shipped_files_parse_as_plain_toml():
    for name in shipped_profile_names():
        assert tomllib.loads((profiles_dir() / f"{name}.toml").read_text())["name"] == name

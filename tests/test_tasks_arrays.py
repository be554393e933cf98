"""Your own data: an .npz of arrays or a function named by import path, split and checked with clear errors,
and a run on it through the CLI with your own models."""

import textwrap

import numpy as np
import pytest
from sklearn.datasets import make_classification

from edgekd.errors import RecipeError
from edgekd.recipe import TaskSection
from edgekd.report.document import load_report
from edgekd.tasks import load_task
from tests.conftest import run_cli

MODULE = textwrap.dedent("""
    import numpy as np
    from sklearn.datasets import make_classification
    from torch import nn

    def blobs(samples=300, seed=0):
        x, y = make_classification(samples, 16, n_informative=8, n_classes=3, random_state=seed)
        return {"x": x, "y": y}

    def mlp(hidden=32, num_classes=3):
        return nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def broken():
        raise ValueError("disk on fire")

    def encoder(hidden=32, dim=8):
        return nn.Sequential(nn.Linear(16, hidden), nn.Tanh(), nn.Linear(hidden, dim))
""")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mydata"


def _arrays(samples=300):
    x, y = make_classification(samples, 16, n_informative=8, n_classes=3, random_state=0)
    return x, y


def test_an_npz_of_x_and_y_is_split_with_the_seed(tmp_path):
    x, y = _arrays()
    y[:20] = -1  # unlabelled: transfer data, always in training
    np.savez(tmp_path / "data.npz", x=x, y=y)
    task = load_task(TaskSection(name="npz", path=str(tmp_path / "data.npz"), input_name="features"))
    assert task.num_classes == 3 and task.input_name == "features" and task.x_train.dtype == np.float32
    assert len(task.y_train) + len(task.y_val) + len(task.y_test) == 300
    assert (task.y_val >= 0).all() and (task.y_test >= 0).all() and task.split["unlabelled_train"] == 20
    again = load_task(TaskSection(name="npz", path=str(tmp_path / "data.npz")))
    assert np.array_equal(task.x_test, again.x_test)  # seeded
    other = load_task(TaskSection(name="npz", path=str(tmp_path / "data.npz"), seed=1))
    assert not np.array_equal(task.x_test, other.x_test)
    x[0, 0] += 1.0  # edited data: a different fingerprint, so no stale teacher or stage is reused
    np.savez(tmp_path / "data.npz", x=x, y=y)
    assert load_task(TaskSection(name="npz", path=str(tmp_path / "data.npz"))).fingerprint() != task.fingerprint()


def test_given_splits_are_used_as_they_are(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "s.npz", x_train=x[:200], y_train=y[:200], x_val=x[200:250], y_val=y[200:250],
             x_test=x[250:], y_test=y[250:])  # fmt: skip
    task = load_task(TaskSection(name="npz", path=str(tmp_path / "s.npz")))
    assert task.split["method"] == "given" and np.array_equal(task.x_test, x[250:].astype(np.float32))


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((30, 4)), "y": np.zeros(29, np.int64)}, "x has 30 samples but y has 29"),
    ({"inputs": np.zeros((30, 4))}, "expected arrays x_train.*or x and y; found inputs"),
    ({"x": np.zeros((30, 4)), "y": np.zeros(30)}, "'y' must be 1-D integer class indices"),
    ({"x": np.zeros(30), "y": np.zeros(30, np.int64)}, "'x' must be samples x features"),
    ({"x_train": np.zeros((5, 2)), "y_train": np.zeros(5, np.int64), "x_val": np.zeros((5, 2)),
      "y_val": -np.ones(5, np.int64), "x_test": np.zeros((5, 2)), "y_test": np.zeros(5, np.int64)},
     "y_val has unlabelled samples"),
])  # fmt: skip
def test_bad_arrays_name_the_file_and_the_key(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(RecipeError, match=f"bad.npz.*{message}"):
        load_task(TaskSection(name="npz", path=str(tmp_path / "bad.npz")))


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, np.int64))
    with pytest.raises(RecipeError, match="obj.npz.*plain numeric arrays"):
        load_task(TaskSection(name="npz", path=str(tmp_path / "obj.npz")))


def test_a_function_task_and_user_models_end_to_end(user_module, tmp_path, capsys):
    """`task.name = "mydata:blobs"` with kwargs, a factory teacher trained by edgekd and a factory student."""
    args = ["distill-and-export", "--output-dir", str(tmp_path / "export"), "--run-name", "mine"]
    for override in ['task.name="mydata:blobs"', "task.kwargs={samples=240}", 'task.input_name="features"',
                     'teacher.factory="mydata:mlp"', "teacher.factory_kwargs={hidden=64}", "teacher.epochs=5",
                     'student.factory="mydata:mlp"', "student.factory_kwargs={hidden=4}", "distill.epochs=3",
                     "measure.preset=quick", "build.openvino=false", "quantize.calibration_samples=32"]:  # fmt: skip
        args += ["--set", override]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    report = load_report(tmp_path / "export" / "mine")
    assert report["task"]["split"]["num_classes"] == 3 and report["task"]["input"]["name"] == "features"
    assert report["task"]["split"]["train"] + report["task"]["split"]["val"] + report["task"]["split"]["test"] == 240
    rows = {row["artifact"]: row for row in report["rows"]}
    for name in ("teacher", "student", "student-onnx-fp32", "student-onnx-int8-dynamic", "student-onnx-int8-static"):
        assert rows[name]["status"] == "ok", (name, rows[name]["reason"])
    assert rows["teacher"]["accuracy"] > 1 / 3  # learnt something beyond chance on 3 classes


def test_a_function_that_returns_the_wrong_thing_is_a_clear_error(user_module):
    with pytest.raises(RecipeError, match="task.name.*mydata:mlp returned Sequential"):
        load_task(TaskSection(name="mydata:mlp"))
    with pytest.raises(RecipeError, match="task.name.*has no 'nothing'"):
        load_task(TaskSection(name="mydata:nothing"))


def test_your_own_embedding_encoder_on_unlabelled_arrays(user_module, tmp_path, capsys):
    """A trained factory encoder (no classes) teaches a smaller one on an .npz holding only `x`; the rows are
    judged by cosine to the teacher's embeddings. Without a checkpoint there is nothing to distil: a clear error."""
    import torch
    from mydata import encoder
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(encoder(hidden=64).state_dict(), str(tmp_path / "encoder.safetensors"))
    x, y = _arrays(200)
    np.savez(tmp_path / "x.npz", x=x)  # no labels at all
    args = ["distill-and-export", "--output-dir", str(tmp_path / "export"), "--run-name", "enc"]
    overrides = ['task.name="npz"', f'task.path="{tmp_path / "x.npz"}"', 'teacher.hf_output="embedding"',
                 'teacher.factory="mydata:encoder"', "teacher.factory_kwargs={hidden=64}",
                 'student.factory="mydata:encoder"', "student.factory_kwargs={hidden=8}", "distill.epochs=5",
                 'distill.losses=[{name="embedding-cosine"}]', "measure.preset=quick", "build.openvino=false",
                 "quantize.calibration_samples=32"]  # fmt: skip
    set_args = [a for o in overrides for a in ("--set", o)]
    code, _, err = run_cli([*args, *set_args], capsys)
    assert code == 2 and "must come trained" in err and "teacher.checkpoint" in err
    code, _, err = run_cli([*args, *set_args, "--set", f'teacher.checkpoint="{tmp_path / "encoder.safetensors"}"'],
                           capsys)  # fmt: skip
    assert code == 0, err
    report = load_report(tmp_path / "export" / "enc")
    assert report["task"]["metric"] == "teacher_cosine" and report["task"]["split"]["num_classes"] == 0
    rows = {row["artifact"]: row for row in report["rows"]}
    for name in ("student", "student-onnx-fp32", "student-onnx-int8-static"):
        assert rows[name]["status"] == "ok" and rows[name]["accuracy"] is None
        assert 0.0 < rows[name]["fidelity"]["mean_cosine"] <= 1.0
        assert "neighbour_accuracy" not in rows[name]  # nothing to judge it on without labels
    # with labels beside the inputs, each row also says how well its embeddings keep the classes apart
    np.savez(tmp_path / "x.npz", x=x, y=y)
    code, _, err = run_cli([*args, *set_args, "--set", f'teacher.checkpoint="{tmp_path / "encoder.safetensors"}"'],
                           capsys)  # fmt: skip
    assert code == 0, err
    labelled = {row["artifact"]: row for row in load_report(tmp_path / "export" / "enc")["rows"]}
    assert all(0.0 <= labelled[name]["neighbour_accuracy"] <= 1.0 for name in ("teacher", "student-onnx-fp32"))
    assert "1-NN acc" in (tmp_path / "export" / "enc" / "report.md").read_text()


def test_a_model_that_does_not_fit_the_data_is_named_before_training(tmp_path, capsys):
    np.savez(tmp_path / "v.npz", x=_arrays()[0], y=_arrays()[1])
    code, _, err = run_cli(["distill-and-export", "--output-dir", str(tmp_path / "e"), "--set", 'task.name="npz"',
                            "--set", f'task.path="{tmp_path / "v.npz"}"'], capsys)  # the digits CNN takes 8x8 images
    assert code == 2 and "teacher.architecture" in err and "[2, 16]" in err and "Traceback" not in err


def test_an_unexpected_error_is_one_line_with_the_way_to_the_traceback(user_module, tmp_path, capsys):
    code, _, err = run_cli(["distill-and-export", "--output-dir", str(tmp_path / "e"), "--set",
                            'task.name="mydata:broken"'], capsys)  # fmt: skip
    assert code == 1 and "unexpected ValueError: disk on fire" in err and "--debug" in err
    assert "Traceback" not in err

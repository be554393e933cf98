"""User models by import path, with safetensors or state-dict checkpoints, and the pickle opt-in."""

import textwrap

import pytest
import torch
from safetensors.torch import save_file

from edgekd.errors import CheckpointError, RecipeError
from edgekd.models import load_saved_model, load_weights
from edgekd.models.user import build_user_model, read_state_dict
from edgekd.report.document import load_report

MODULE = textwrap.dedent("""
    from torch import nn

    class Mlp(nn.Module):
        def __init__(self, hidden=32, num_classes=10):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU())
            self.head = nn.Linear(hidden, num_classes)

        def forward(self, x):
            return self.head(self.body(x))

    def mlp(hidden=32, num_classes=10):
        return Mlp(hidden, num_classes)

    def not_a_model():
        return 42
""")


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    package = tmp_path / "mymodels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mymodels.nets:mlp"


def test_factory_with_kwargs_and_both_checkpoint_formats(user_package, tmp_path):
    model = build_user_model(user_package, {"hidden": 16}, "teacher.factory")
    assert model.head.in_features == 16
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "lightning-style.ckpt")
    for name in ("w.pt", "w.safetensors", "lightning-style.ckpt"):
        fresh = build_user_model(user_package, {"hidden": 16}, "teacher.factory")
        load_weights(fresh, tmp_path / name)
        assert torch.equal(fresh.head.weight, state["head.weight"]), name


def test_a_pickle_that_needs_code_is_refused_unless_opted_in(user_package, tmp_path):
    model = build_user_model(user_package, {}, "teacher.factory")
    torch.save(model, tmp_path / "whole-model.pt")  # pickles the class: loading it imports and runs code
    with pytest.raises(CheckpointError, match="allow_pickle_code_execution = true"):
        read_state_dict(tmp_path / "whole-model.pt")
    state = read_state_dict(tmp_path / "whole-model.pt", allow_pickle_code_execution=True)
    assert torch.equal(state["head.weight"], model.head.weight)


@pytest.mark.parametrize(("spec", "message"), [
    ("mymodels.nets", "must look like package.module:function"),
    ("mymodels.nope:mlp", "cannot import 'mymodels.nope'"),
    ("mymodels.nets:mpl", "has no 'mpl'"),
    ("mymodels.nets:not_a_model", "returned int, not a torch.nn.Module"),
])  # fmt: skip
def test_bad_import_paths_name_the_recipe_key(user_package, spec, message):
    with pytest.raises(RecipeError, match=rf"recipe key 'student\.factory'.*{message}"):
        build_user_model(spec, {}, "student.factory")


def test_wrong_shapes_name_the_tensor(user_package, tmp_path):
    model = build_user_model(user_package, {"hidden": 16}, "teacher.factory")
    torch.save(model.state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"tensor 'body\.1\.weight' has shape \(16, 64\)"):
        load_weights(build_user_model(user_package, {"hidden": 8}, "teacher.factory"), tmp_path / "w.pt")


def test_user_teacher_and_student_through_the_pipeline(user_package, tmp_path):
    """A factory teacher with a state-dict checkpoint and a factory student, end to end; the run directory
    alone (the .model.json beside each checkpoint) is enough to rebuild both for measuring."""
    from edgekd.cli import main

    torch.manual_seed(0)
    teacher = build_user_model(user_package, {"hidden": 128}, "teacher.factory")
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    args = ["distill-and-export", "--output-dir", str(tmp_path / "export"), "--run-name", "user"]
    for override in [f'teacher.factory="{user_package}"', "teacher.factory_kwargs={hidden=128}",
                     f'teacher.checkpoint="{tmp_path / "teacher.pt"}"', 'teacher.architecture="mlp-128"',
                     f'student.factory="{user_package}"', "student.factory_kwargs={hidden=8}",
                     'student.architecture="mlp-8"', "distill.epochs=2", "distill.train_scratch_baseline=false",
                     "measure.warmup_runs=1", "measure.min_runs=3", "measure.min_seconds=0.01",
                     "build.openvino=false", 'quantize.variants=["int8-dynamic"]']:  # fmt: skip
        args += ["--set", override]
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None)
    run_dir = tmp_path / "export" / "user"
    rows = {row["artifact"]: row for row in load_report(run_dir)["rows"]}
    assert rows["teacher"]["status"] == "ok" and rows["student-onnx-fp32"]["status"] == "ok"
    assert rows["teacher"]["params"] == sum(p.numel() for p in teacher.parameters())
    rebuilt = load_saved_model(run_dir / "teacher.safetensors", "", 10, (user_package, {"hidden": 128}))
    assert torch.equal(rebuilt.head.weight, teacher.head.weight)

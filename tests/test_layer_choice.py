"""Layer choice by measurement: a shrunk student starts from the candidate subset closest to its teacher.

The teacher is a tiny BERT whose middle layers are made identities (their output projections zeroed) and whose
outer layers are made strong, so it computes layer 0 then layer 3 and nothing else: the student copied from
layers 0 and 3 reproduces it, every other subset does not. That subset is not the old fixed rule (0, 2).
"""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="needs the hf extra: pip install \"edgekd[hf]\"")

from edgekd.errors import RecipeError  # noqa: E402
from edgekd.models.hf import HFEncoder  # noqa: E402
from edgekd.models.layer_choice import candidate_layer_subsets, choose_layers  # noqa: E402


def _teacher(output: str) -> HFEncoder:
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=16, num_labels=5,
                        attn_implementation="eager")  # fmt: skip
    torch.manual_seed(0)
    model = BertForSequenceClassification(config) if output == "logits" else BertModel(config)
    encoder = model.bert if output == "logits" else model
    with torch.no_grad():
        for index in (0, 3):  # strong layers (random init barely moves the residual stream): they matter
            for module in encoder.encoder.layer[index].modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.mul_(10.0)
        for index in (1, 2):  # residual + LayerNorm of an already-normalised input: (almost) the identity
            layer = encoder.encoder.layer[index]
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
    return HFEncoder(model, output, pad_token_id=0).eval()


def _inputs(count: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 40, size=(count, 10))
    ids[:, 7:] = 0  # some padding, as real batches have
    return ids.astype(np.int64)


@pytest.mark.parametrize("output", ["embedding", "logits"])
def test_the_subset_that_reproduces_the_teacher_is_chosen(output):
    student, choice = choose_layers(_teacher(output), _inputs(), keep=2, embedding=output == "embedding")
    assert choice.layers == [0, 3] and choice.how == "measured"
    assert student.num_layers == 2 and student.source_layers == (0, 3)
    rows = {tuple(c["layers"]): c for c in choice.candidates}
    assert set(rows) == {tuple(v) for v in candidate_layer_subsets(4, 2).values()}  # every candidate measured
    assert [c["chosen"] for c in choice.candidates].count(True) == 1 and rows[(0, 3)]["chosen"]
    assert rows[(0, 3)]["cosine"] > 0.999  # it is the teacher
    assert max(c["cosine"] for c in choice.candidates if not c["chosen"]) < 0.9
    if output == "logits":
        assert rows[(0, 3)]["top1_agreement"] == 1.0 and rows[(0, 3)]["mean_kl"] < 1e-6


def test_pinned_layers_are_kept_and_still_measured():
    _, choice = choose_layers(_teacher("embedding"), _inputs(), embedding=True, pinned=(1, 2))
    assert choice.layers == [1, 2] and choice.how == "pinned by the recipe"
    assert len(choice.candidates) == 1 and 0 < choice.candidates[0]["cosine"] < 0.99
    with pytest.raises(RecipeError, match="student.teacher_layers"):
        choose_layers(_teacher("embedding"), _inputs(), embedding=True, pinned=(1, 7))


def test_candidates_are_distinct_valid_subsets():
    subsets = candidate_layer_subsets(6, 3)
    assert subsets["evenly spaced from the first"] == [0, 2, 4]
    assert subsets["evenly spaced, first to last"] == [0, 3, 5]
    assert subsets["every other, ending at the last"] == [1, 3, 5]
    assert subsets["top-heavy (first + last ones)"] == [0, 4, 5]
    for keep in range(1, 7):
        values = list(candidate_layer_subsets(6, keep).values())
        assert len({tuple(v) for v in values}) == len(values)
        assert all(len(v) == keep and v == sorted(v) and 0 <= v[0] and v[-1] <= 5 for v in values)


def _teacher_with_idle_units() -> HFEncoder:
    """A 2-layer classifier whose residual units 0-15 are dead (always exactly zero): only 16-31 carry anything,
    so a narrower student copied from the leading units computes nothing, and one from the busy units does."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=16, num_labels=5,
                        attn_implementation="eager")  # fmt: skip
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if "embeddings" in name and tensor.dim() == 2:
                tensor[:, :16] = 0  # nothing enters units 0-15
            elif "LayerNorm" in name:
                tensor[:16] = 0  # and every LayerNorm writes 0 there
            elif name.endswith(("attention.output.dense.weight", "output.dense.weight")):
                tensor[:16] = 0  # nor does any block
            elif name.endswith(("attention.output.dense.bias", "output.dense.bias")):
                tensor[:16] = 0
    return HFEncoder(model, "logits", pad_token_id=0).eval()


def test_a_narrower_student_keeps_the_teachers_busy_units():
    teacher = _teacher_with_idle_units()
    student, choice = choose_layers(teacher, _inputs(), keep=2, hidden_size=16)
    assert student.hf.config.hidden_size == 16 and student.hf.config.intermediate_size == 32
    widths = {c["name"]: c for c in choice.widths}
    assert set(widths) == {"leading", "leading, head-aware", "most active, head-aware"}
    assert widths["most active, head-aware"]["chosen"] and sum(c["chosen"] for c in choice.widths) == 1
    # the leading units are the dead ones: that student's logits do not depend on its input at all
    assert widths["most active, head-aware"]["top1_agreement"] > widths["leading"]["top1_agreement"] + 0.2
    assert "widths" in choice.to_json()


def test_head_aware_slices_keep_each_heads_first_dimensions():
    from edgekd.models.width_choice import WidthSlice, slice_tensor

    value = torch.arange(32.0).repeat(32, 1).T  # row i holds i: which rows were kept shows directly
    kept = slice_tensor("encoder.layer.0.attention.self.query.weight", value, torch.Size([16, 16]),
                        WidthSlice("x", head_dims=[0, 1, 2, 3]), hidden=32, heads=4, intermediate=64)  # fmt: skip
    assert kept[:, 0].tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]
    plain = slice_tensor("encoder.layer.0.attention.self.query.weight", value, torch.Size([16, 16]),
                         WidthSlice("leading"), hidden=32, heads=4, intermediate=64)  # fmt: skip
    assert plain[:, 0].tolist() == list(range(16))

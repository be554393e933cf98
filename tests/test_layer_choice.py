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

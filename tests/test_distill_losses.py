"""Every registered loss against a value computed independently here, in numpy, from fixed inputs."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.distill import LOSSES, CompositeLoss, LossContext, LossSpec
from edgekd.distill.losses import (
    attention_kl_loss,
    attention_transfer_loss,
    cosine_embedding_loss,
    hinton_kd_loss,
    logits_mse_loss,
    uniform_layer_map,
)
from edgekd.errors import RecipeError

RNG = np.random.default_rng(1234)
S_LOGITS = RNG.normal(size=(4, 5))
T_LOGITS = RNG.normal(size=(4, 5)) * 2
LABELS = np.array([0, 3, -1, 4])  # one unlabelled sample


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _ce_labelled(logits, labels):
    mask = labels != -1
    logp = _log_softmax(logits[mask])
    return -logp[np.arange(mask.sum()), labels[mask]].mean()


def test_hinton_kd_golden_with_an_unlabelled_sample():
    temperature, alpha = 3.0, 0.6
    p_t = np.exp(_log_softmax(T_LOGITS / temperature))
    kl = (p_t * (np.log(p_t) - _log_softmax(S_LOGITS / temperature))).sum(axis=1).mean()  # batchmean
    expected = alpha * temperature**2 * kl + (1 - alpha) * _ce_labelled(S_LOGITS, LABELS)
    got = hinton_kd_loss(_t(S_LOGITS), _t(T_LOGITS), torch.tensor(LABELS), temperature, alpha)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_cross_entropy_term_with_no_labelled_sample_is_zero_not_nan():
    loss = CompositeLoss([LossSpec("cross-entropy")], LossContext(1.0, 0.0))
    total, _ = loss({"logits": _t(S_LOGITS)}, {}, torch.full((4,), -1))
    assert total.item() == 0.0


def test_logits_mse_and_embedding_losses_golden():
    assert logits_mse_loss(_t(S_LOGITS), _t(T_LOGITS)).item() == pytest.approx(((S_LOGITS - T_LOGITS) ** 2).mean())
    norms = np.linalg.norm(S_LOGITS, axis=1) * np.linalg.norm(T_LOGITS, axis=1)
    cos = (S_LOGITS * T_LOGITS).sum(axis=1) / norms
    assert cosine_embedding_loss(_t(S_LOGITS), _t(T_LOGITS)).item() == pytest.approx((1 - cos).mean(), rel=1e-10)


def _at_map(features):
    q = (features**2).mean(axis=1).reshape(len(features), -1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_attention_transfer_golden():
    s = RNG.normal(size=(2, 3, 4, 4))
    t = RNG.normal(size=(2, 7, 4, 4))  # channel counts may differ: the map averages channels away
    expected = ((_at_map(s) - _at_map(t)) ** 2).mean()
    assert attention_transfer_loss(_t(s), _t(t)).item() == pytest.approx(expected, rel=1e-10)


def _softmax(x):
    return np.exp(_log_softmax(x))


def test_attention_kl_golden():
    s = _softmax(RNG.normal(size=(2, 3, 4, 4)))
    t = _softmax(RNG.normal(size=(2, 3, 4, 4)))
    expected = (t * (np.log(t) - np.log(s))).sum(axis=-1).mean()
    assert attention_kl_loss(_t(s), _t(t)).item() == pytest.approx(expected, rel=1e-10)


def test_uniform_layer_map_pairs_last_layers():
    assert uniform_layer_map(2, 4) == [2, 4]
    assert uniform_layer_map(3, 12) == [4, 8, 12]
    assert uniform_layer_map(4, 4) == [1, 2, 3, 4]


def test_fitnets_hint_golden_through_its_projection():
    spec = LossSpec("fitnets-hint", student_layers=("s",), teacher_layers=("t",))
    term = LOSSES["fitnets-hint"](spec, LossContext(1.0, 1.0))
    s = RNG.normal(size=(2, 3, 2, 2))
    t = RNG.normal(size=(2, 5, 2, 2))
    term.setup({"feature.s": _t(s)}, {"feature.t": _t(t)})
    conv = term.projections[0]
    assert isinstance(conv, nn.Conv2d) and conv.weight.shape == (5, 3, 1, 1)
    w = conv.weight.detach().double().numpy()[:, :, 0, 0]
    projected = np.einsum("oc,bchw->bohw", w, s)  # a 1x1 convolution without bias
    got = term.double()({"feature.s": _t(s)}, {"feature.t": _t(t)}, torch.zeros(2))
    assert got.item() == pytest.approx(((projected - t) ** 2).mean(), rel=1e-10)


def test_hidden_state_mse_golden_under_a_layer_map():
    # student: embeddings + 2 layers; teacher: embeddings + 4 layers; map [2, 4]; same width, no projection
    hidden_s = {f"hidden.{i}": RNG.normal(size=(2, 3, 4)) for i in range(3)}
    hidden_t = {f"hidden.{i}": RNG.normal(size=(2, 3, 4)) for i in range(5)}
    term = LOSSES["hidden-state-mse"](LossSpec("hidden-state-mse"), LossContext(1.0, 1.0, 2, 4))
    s = {k: _t(v) for k, v in hidden_s.items()}
    t = {k: _t(v) for k, v in hidden_t.items()}
    term.setup(s, t)
    pairs = [(0, 0), (1, 2), (2, 4)]
    expected = np.mean([((hidden_s[f"hidden.{i}"] - hidden_t[f"hidden.{j}"]) ** 2).mean() for i, j in pairs])
    assert term(s, t, None).item() == pytest.approx(expected, rel=1e-10)


def test_attention_kl_term_uses_the_explicit_layer_map():
    att_s = {f"attention.{i}": _softmax(RNG.normal(size=(1, 2, 3, 3))) for i in (1, 2)}
    att_t = {f"attention.{i}": _softmax(RNG.normal(size=(1, 2, 3, 3))) for i in (1, 2, 3)}
    term = LOSSES["attention-kl"](LossSpec("attention-kl", layer_map=(1, 3)), LossContext(1.0, 1.0, 2, 3))
    expected = np.mean([(att_t[f"attention.{j}"] * (np.log(att_t[f"attention.{j}"]) - np.log(att_s[f"attention.{i}"])))
                        .sum(-1).mean() for i, j in [(1, 1), (2, 3)]])  # fmt: skip
    got = term({k: _t(v) for k, v in att_s.items()}, {k: _t(v) for k, v in att_t.items()}, None)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_composite_is_the_weighted_sum_and_reports_each_term():
    loss = CompositeLoss([LossSpec("logits-mse", weight=0.5), LossSpec("embedding-cosine", weight=2.0)],
                         LossContext(1.0, 1.0))  # fmt: skip
    total, terms = loss({"logits": _t(S_LOGITS)}, {"logits": _t(T_LOGITS)}, torch.tensor(LABELS))
    assert set(terms) == {"logits-mse", "embedding-cosine"}
    assert total.item() == pytest.approx(0.5 * terms["logits-mse"].item() + 2.0 * terms["embedding-cosine"].item())
    assert not math.isnan(total.item())


def test_unknown_loss_name_suggests_the_closest():
    with pytest.raises(RecipeError, match=r"unknown loss 'hinton-kl' \(did you mean 'hinton-kd'\?\)"):
        CompositeLoss([LossSpec("hinton-kl")], LossContext(1.0, 1.0))


def test_bad_layer_map_is_a_clear_error():
    term = LOSSES["hidden-state-mse"](LossSpec("hidden-state-mse", layer_map=(1, 9)), LossContext(1.0, 1.0, 2, 4))
    with pytest.raises(RecipeError, match=r"layer_map \[1, 9\] must give one teacher layer \(1\.\.4\)"):
        term.pairs()

"""The KD loss against a value computed by hand, step by step, outside torch."""

import math

import torch

from edgekd.distill import hinton_kd_loss


def _softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    return [e / sum(exps) for e in exps]


def test_hinton_kd_matches_hand_computed_value():
    student = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    teacher = [[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]]
    labels = [1, 2]
    temperature, alpha = 2.0, 0.25

    kl_total = 0.0
    ce_total = 0.0
    for s, t, y in zip(student, teacher, labels, strict=True):
        p_t = _softmax([v / temperature for v in t])
        p_s = _softmax([v / temperature for v in s])
        kl_total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
        ce_total += -math.log(_softmax(s)[y])
    expected = alpha * (kl_total / 2) * temperature**2 + (1 - alpha) * (ce_total / 2)

    got = hinton_kd_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), temperature, alpha)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_kd_term_vanishes_when_student_equals_teacher():
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    pure_kd = hinton_kd_loss(logits, logits.clone(), torch.tensor([2]), temperature=4.0, alpha=1.0)
    assert abs(pure_kd.item()) < 1e-7

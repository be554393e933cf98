"""Distillation losses: plain functions (golden-tested) and a registry of recipe-composable terms.

The functions take tensors and return a scalar. The terms wrap them for a recipe: each names the model
outputs it reads (`logits`, `hidden.<i>`, `attention.<i>`, `feature.<module path>`) so the trainer knows what
to collect from the student and what to compute (or cache) from the teacher, and owns any learned projection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import RecipeError, did_you_mean

Outputs = dict[str, torch.Tensor]
UNLABELLED = -1  # a label of -1 marks a sample with no label: only the teacher teaches it


def labelled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled samples of the batch; 0 when none is labelled."""
    mask = labels != UNLABELLED
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], labels[mask])


def hinton_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton et al. (2015): alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y).

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones as T changes.
    Unlabelled samples (label -1) contribute to the KD term only.
    """
    soft_student = F.log_softmax(student_logits / temperature, dim=-1)
    soft_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kd = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True) * temperature**2
    if alpha == 1.0:
        return kd
    return alpha * kd + (1.0 - alpha) * labelled_cross_entropy(student_logits, labels)


def logits_mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared error between logits (Ba & Caruana, 2014)."""
    return F.mse_loss(student_logits, teacher_logits)


def cosine_embedding_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(student, teacher) over the batch: for encoders that output embeddings, not classes."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis (2017): the L2-normalised mean over channels of squared activations, flattened."""
    return F.normalize(features.pow(2).mean(dim=1).flatten(1), dim=1)


def attention_transfer_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two attention maps (spatial sizes must match)."""
    return (attention_map(student_features) - attention_map(teacher_features)).pow(2).mean()


def attention_kl_loss(student_attention: torch.Tensor, teacher_attention: torch.Tensor) -> torch.Tensor:
    """MiniLM: KL(teacher || student) of the attention distributions (batch, heads, query, key), averaged
    over batch, heads and query positions. Probabilities are clamped so masked (zero) keys stay finite."""
    eps = 1e-12
    t = teacher_attention.clamp_min(eps)
    s = student_attention.clamp_min(eps)
    return (t * (t.log() - s.log())).sum(dim=-1).mean()


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Student layer i (1-based) learns from teacher layer round(i * T / S): the last layers always meet."""
    return [round(i * teacher_layers / student_layers) for i in range(1, student_layers + 1)]


@dataclass(frozen=True)
class LossContext:
    """What a term may need beyond the outputs: the recipe's KD settings and the layer counts."""

    temperature: float
    alpha: float
    student_layers: int = 0
    teacher_layers: int = 0
    # the default layer map when the recipe gives none: a shrunk student's layer i learns from the teacher layer
    # it was copied from (1-based); empty = uniform
    layer_map: tuple[int, ...] = ()


class LossTerm(nn.Module):
    """One named term of a recipe's loss. `setup` sees one batch of outputs, so projections get their sizes."""

    def __init__(self, spec, context: LossContext):
        super().__init__()
        self.spec = spec
        self.context = context

    def student_keys(self) -> list[str]:
        return ["logits"]

    def teacher_keys(self) -> list[str]:
        return self.student_keys()

    def setup(self, student: Outputs, teacher: Outputs) -> None:
        """Create learned parts from example outputs; the default term has none."""

    def forward(self, student: Outputs, teacher: Outputs, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class HintonKD(LossTerm):
    def forward(self, student, teacher, labels):
        return hinton_kd_loss(student["logits"], teacher["logits"], labels, self.context.temperature,
                              self.context.alpha)  # fmt: skip


class CrossEntropy(LossTerm):
    def teacher_keys(self):
        return []

    def forward(self, student, teacher, labels):
        return labelled_cross_entropy(student["logits"], labels)


class LogitsMSE(LossTerm):
    def forward(self, student, teacher, labels):
        return logits_mse_loss(student["logits"], teacher["logits"])


class EmbeddingCosine(LossTerm):
    def forward(self, student, teacher, labels):
        return cosine_embedding_loss(student["logits"], teacher["logits"])


class EmbeddingMSE(LogitsMSE):
    """MSE on embeddings: the same formula as on logits, named for encoders without a head."""


def _linear_projection(student_dim: int, teacher_dim: int) -> nn.Module:
    return nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim, bias=False)


class _PairedFeatures(LossTerm):
    """A term over pairs of intermediate outputs: (student key, teacher key), averaged over the pairs."""

    def pairs(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def student_keys(self):
        return [s for s, _ in self.pairs()]

    def teacher_keys(self):
        return [t for _, t in self.pairs()]


class FitNetsHint(_PairedFeatures):
    """Romero et al. (2015): student feature -> learned 1x1 projection -> MSE against the teacher feature."""

    def pairs(self):
        s_paths, t_paths = self.spec.student_layers, self.spec.teacher_layers
        if not s_paths or len(s_paths) != len(t_paths):
            raise RecipeError(f"loss '{self.spec.name}' needs student_layers and teacher_layers of equal length "
                              "(module paths, e.g. student_layers = [\"3\"], teacher_layers = [\"5\"])")  # fmt: skip
        return [(f"feature.{s}", f"feature.{t}") for s, t in zip(s_paths, t_paths, strict=True)]

    def setup(self, student, teacher):
        projections = []
        for s_key, t_key in self.pairs():
            s, t = student[s_key], teacher[t_key]
            if s.dim() == 4:  # conv features: channel projection by a 1x1 convolution
                proj = nn.Identity() if s.shape[1] == t.shape[1] else nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False)
            else:
                proj = _linear_projection(s.shape[-1], t.shape[-1])
            projections.append(proj)
        self.projections = nn.ModuleList(projections)

    def forward(self, student, teacher, labels):
        losses = []
        for proj, (s_key, t_key) in zip(self.projections, self.pairs(), strict=True):
            s = proj(student[s_key])
            t = teacher[t_key]
            if s.shape != t.shape:
                raise RecipeError(f"loss '{self.spec.name}': projected {s_key} has shape {tuple(s.shape)}, "
                                  f"{t_key} has {tuple(t.shape)}; pick layers with the same spatial size")  # fmt: skip
            losses.append(F.mse_loss(s, t))
        return torch.stack(losses).mean()


class AttentionTransfer(FitNetsHint):
    """Attention transfer between the chosen conv layers; no projection (maps are channel-free)."""

    def setup(self, student, teacher):
        pass

    def forward(self, student, teacher, labels):
        losses = [attention_transfer_loss(student[s], teacher[t]) for s, t in self.pairs()]
        return torch.stack(losses).mean()


class _LayerMapped(_PairedFeatures):
    """Transformer terms under a layer mapping: student layer i <-> teacher layer map[i-1] (uniform default)."""

    prefix = "hidden"
    include_embeddings = True

    def layer_map(self) -> list[int]:
        s, t = self.context.student_layers, self.context.teacher_layers
        if s <= 0 or t <= 0:
            raise RecipeError(f"loss '{self.spec.name}' needs transformer models (hidden states per layer)")
        mapping = list(self.spec.layer_map) or list(self.context.layer_map) or uniform_layer_map(s, t)
        if len(mapping) != s or not all(1 <= j <= t for j in mapping):
            raise RecipeError(f"loss '{self.spec.name}': layer_map {mapping} must give one teacher layer "
                              f"(1..{t}) for each of the {s} student layers")  # fmt: skip
        return mapping

    def pairs(self):
        # hidden.0 is the embedding output; attention.i is layer i's (1-based) attention distribution
        first = [(f"{self.prefix}.0", f"{self.prefix}.0")] if self.include_embeddings else []
        return first + [(f"{self.prefix}.{i}", f"{self.prefix}.{j}") for i, j in enumerate(self.layer_map(), 1)]


class HiddenStateMSE(_LayerMapped):
    """TinyBERT: MSE between hidden states (embeddings and mapped layers), through a learned projection
    when the student is narrower."""

    def setup(self, student, teacher):
        s, t = student["hidden.0"].shape[-1], teacher["hidden.0"].shape[-1]
        self.projection = _linear_projection(s, t)

    def forward(self, student, teacher, labels):
        return torch.stack([F.mse_loss(self.projection(student[s]), teacher[t]) for s, t in self.pairs()]).mean()


class AttentionKL(_LayerMapped):
    """TinyBERT/MiniLM: KL between attention distributions of mapped layers (heads must match)."""

    prefix = "attention"
    include_embeddings = False

    def forward(self, student, teacher, labels):
        return torch.stack([attention_kl_loss(student[s], teacher[t]) for s, t in self.pairs()]).mean()


LOSSES: dict[str, Callable[..., LossTerm]] = {
    "hinton-kd": HintonKD,
    "cross-entropy": CrossEntropy,
    "logits-mse": LogitsMSE,
    "embedding-cosine": EmbeddingCosine,
    "embedding-mse": EmbeddingMSE,
    "fitnets-hint": FitNetsHint,
    "attention-transfer": AttentionTransfer,
    "hidden-state-mse": HiddenStateMSE,
    "attention-kl": AttentionKL,
}


class CompositeLoss(nn.Module):
    """The weighted sum of a recipe's terms; `forward` returns the total and each term's value."""

    def __init__(self, specs: Sequence, context: LossContext):
        super().__init__()
        terms = {}
        for i, spec in enumerate(specs):
            if spec.name not in LOSSES:
                raise RecipeError(f"recipe key 'distill.losses[{i}].name': unknown loss '{spec.name}'"
                                  f"{did_you_mean(spec.name, LOSSES)}; choose from {', '.join(LOSSES)}")  # fmt: skip
            if spec.name in terms:
                raise RecipeError(f"recipe key 'distill.losses[{i}].name': loss '{spec.name}' is listed twice")
            terms[spec.name] = LOSSES[spec.name](spec, context)
        self.terms = nn.ModuleDict(terms)
        self.weights = {spec.name: spec.weight for spec in specs}

    def student_keys(self) -> list[str]:
        return sorted({"logits", *(k for term in self.terms.values() for k in term.student_keys())})

    def teacher_keys(self) -> list[str]:
        return sorted({k for term in self.terms.values() for k in term.teacher_keys()})

    def setup(self, student: Outputs, teacher: Outputs) -> None:
        for term in self.terms.values():
            term.setup(student, teacher)

    def forward(self, student: Outputs, teacher: Outputs, labels: torch.Tensor):
        values = {name: term(student, teacher, labels) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, values

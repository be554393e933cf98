"""Which teacher layers a shrunk student keeps, chosen by measurement rather than by a fixed rule.

A student copied from some of its teacher's layers starts far closer to the teacher from some subsets than
from others: on all-MiniLM-L6-v2 kept to 3 of 6 layers, the cosine to the teacher before any training ranges
from 0.38 (layers 0,2,4) to 0.73 (0,4,5) (benchmarks/results/distill_minilm.md). So a handful of candidate
subsets are each built and run on validation samples, and the student starts from the one closest to the teacher.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from edgekd.errors import RecipeError
from edgekd.measure.quality import mean_cosine, mean_kl, top1_agreement
from edgekd.models.hf import HFEncoder, shrink_encoder, shrunk_layers
from edgekd.models.width_choice import candidate_widths

CHOICE_SAMPLES = 256  # validation samples each candidate runs on: enough to rank them, cheap next to training


def candidate_layer_subsets(teacher_layers: int, keep: int) -> dict[str, list[int]]:
    """Named candidate subsets of `keep` teacher layers (0-based), duplicates dropped (first name wins)."""
    keep = keep or max(teacher_layers // 2, 1)
    if not 1 <= keep <= teacher_layers:
        raise RecipeError(f"recipe key 'student.shrink_layers': {keep} must be between 1 and {teacher_layers}")
    last = teacher_layers - 1
    candidates = {
        "evenly spaced from the first": shrunk_layers(teacher_layers, keep),
        "evenly spaced, first to last": sorted({int(x + 0.5) for x in np.linspace(0, last, keep)}),
        "every other, ending at the last": [last - 2 * i for i in reversed(range(keep))],
        "top-heavy (first + last ones)": [0, *range(teacher_layers - keep + 1, teacher_layers)][:keep],
        "the last ones": list(range(teacher_layers - keep, teacher_layers)),
        "the first ones": list(range(keep)),
    }
    unique: dict[str, list[int]] = {}
    for name, layers in candidates.items():
        valid = len(layers) == keep and len(set(layers)) == keep and all(0 <= i <= last for i in layers)
        if valid and layers not in unique.values():
            unique[name] = layers
    return unique


@dataclass
class LayerChoice:
    layers: list[int]
    how: str  # "measured" or "pinned by the recipe"
    candidates: list[dict[str, Any]] = field(default_factory=list)  # each: name, layers, fidelity figures, chosen
    samples: int = 0  # validation samples each candidate ran on
    seconds: float = 0.0
    # a narrower student (student.shrink_hidden_size): each candidate slice of the teacher's units, at the layers
    # chosen, with its fidelity (models.width_choice); empty when the student keeps the teacher's width
    widths: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {"layers": self.layers, "how": self.how, "samples": self.samples, "seconds": round(self.seconds, 3),
               "candidates": self.candidates}  # fmt: skip
        if self.widths:
            out["widths"] = self.widths
        return out


@torch.no_grad()
def _outputs(model: torch.nn.Module, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    model.eval()
    return torch.cat([model(torch.from_numpy(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)
                      ]).numpy()  # fmt: skip


def initial_fidelity(outputs: np.ndarray, teacher_outputs: np.ndarray, embedding: bool) -> dict[str, float]:
    """Cosine for embeddings; top-1 agreement and mean KL (and cosine) for class logits."""
    figures = {"cosine": round(mean_cosine(outputs, teacher_outputs), 6)}
    if not embedding:
        figures["top1_agreement"] = round(top1_agreement(outputs, teacher_outputs), 6)
        figures["mean_kl"] = round(mean_kl(outputs, teacher_outputs), 6)
    return figures


def _score(figures: dict[str, float], embedding: bool) -> tuple[float, ...]:
    """Higher is closer: cosine for embeddings; agreement first, then lower KL, for classifiers."""
    return (figures["cosine"],) if embedding else (figures["top1_agreement"], -figures["mean_kl"])


def choose_layers(teacher: HFEncoder, inputs: np.ndarray, keep: int = 0, hidden_size: int = 0,
                  embedding: bool = False, pinned: tuple[int, ...] = ()) -> tuple[HFEncoder, LayerChoice]:  # fmt: skip
    """The shrunk student built from the best candidate subset on `inputs` (or from `pinned` layers, measured
    too so the report shows where it starts), and every candidate's initial fidelity."""
    started = time.perf_counter()
    total = teacher.num_layers
    inputs = inputs[:CHOICE_SAMPLES]
    if pinned:
        bad = [i for i in pinned if not 0 <= i < total]
        if bad or len(set(pinned)) != len(pinned):
            raise RecipeError(f"recipe key 'student.teacher_layers': {list(pinned)} must be distinct teacher layers "
                              f"0..{total - 1}")  # fmt: skip
        candidates = {"pinned by the recipe": list(pinned)}
    else:
        candidates = candidate_layer_subsets(total, keep)
    reference = _outputs(teacher, inputs)
    narrower = bool(hidden_size) and hidden_size != teacher.hf.config.hidden_size
    widths = candidate_widths(teacher, *_ids_and_mask(teacher, inputs)) if narrower else [None]
    layer_rows = [{"name": name, "layers": layers} for name, layers in candidates.items()]
    # layers first (at the most-active head-aware slice where narrower), then every slice at the layers chosen
    best, best_row = _best(teacher, layer_rows, lambda row: (row["layers"], widths[-1 if narrower else 0]),
                           inputs, reference, hidden_size, embedding)  # fmt: skip
    width_rows = []
    if narrower:
        width_rows = [{"name": w.name, "slice": w} for w in widths]
        best, best_width = _best(teacher, width_rows, lambda row: (best_row["layers"], row["slice"]), inputs,
                                 reference, hidden_size, embedding)  # fmt: skip
        for row in width_rows:
            del row["slice"]
    choice = LayerChoice(layers=best_row["layers"], how="pinned by the recipe" if pinned else "measured",
                         candidates=layer_rows, seconds=time.perf_counter() - started, samples=len(inputs),
                         widths=width_rows)  # fmt: skip
    return best, choice


def _best(teacher: HFEncoder, rows: list[dict[str, Any]], build: Any, inputs: np.ndarray, reference: np.ndarray,
          hidden_size: int, embedding: bool) -> tuple[HFEncoder, dict[str, Any]]:  # fmt: skip
    """Each row's student built (`build(row)` -> layers, width slice) and run; the closest is marked chosen."""
    best, best_score, best_row = None, None, None
    for row in rows:
        layers, width = build(row)
        student, _ = shrink_encoder(teacher, hidden_size=hidden_size, layers=layers, width=width)
        figures = initial_fidelity(_outputs(student, inputs), reference, embedding)
        row.update(figures, chosen=False)
        score = _score(figures, embedding)
        if best_score is None or score > best_score:
            best, best_score, best_row = student, score, row
    best_row["chosen"] = True
    return best, best_row


def _ids_and_mask(teacher: HFEncoder, inputs: np.ndarray) -> tuple[Any, Any]:
    ids = torch.from_numpy(inputs)
    return ids, (ids != teacher.pad_token_id).long()

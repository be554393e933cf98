"""Training defaults by the kind of student: trained from scratch, or initialised from a pretrained teacher.

A recipe leaves `distill.lr`, `epochs`, `batch_size` at 0 (and `warmup_fraction`, `weight_decay`, `patience` at -1)
to take the values below for its student. One set cannot serve both kinds: the lr that trains a random
student in seconds wipes out the weights a shrunk student copied from its teacher (issue 14: lr 1e-2 left
all-MiniLM-L6-v2 shrunk to 3 layers at cosine 0.32 to its teacher, below the 0.73 it started at).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgekd.recipe import DistillSection


@dataclass(frozen=True)
class StudentKindDefaults:
    kind: str
    lr: float
    epochs: int
    batch_size: int
    warmup_fraction: float
    weight_decay: float
    patience: int
    why: str


FROM_SCRATCH = StudentKindDefaults(
    kind="from scratch", lr=1e-2, epochs=80, batch_size=64, warmup_fraction=0.0, weight_decay=0.0, patience=0,
    why="a randomly initialised student has nothing to keep: a large AdamW lr and many short epochs (the digits "
        "student, 2.7k parameters, converges in ~5 s); no early stop, the best validation epoch is kept",
)  # fmt: skip

PRETRAINED = StudentKindDefaults(
    kind="initialised from the teacher", lr=3e-4, epochs=6, batch_size=32, warmup_fraction=0.06, weight_decay=0.01,
    patience=2,
    why="the student starts from the teacher's pretrained weights, so a small AdamW lr with a short warm-up refines "
        "them instead of overwriting them; measured on all-MiniLM-L6-v2 shrunk 6 -> 3 layers "
        "(benchmarks/results/distill_minilm.md); few epochs suffice, and early stopping ends a run that stopped "
        "improving",
)  # fmt: skip

AUTO_FIELDS = {"lr": 0.0, "epochs": 0, "batch_size": 0, "warmup_fraction": -1.0, "weight_decay": -1.0, "patience": -1}


def defaults_for(pretrained: bool) -> StudentKindDefaults:
    return PRETRAINED if pretrained else FROM_SCRATCH


def resolve_distill(section: DistillSection, pretrained: bool) -> tuple[DistillSection, dict[str, object]]:
    """The section with every field left at its "auto" value replaced by the student kind's default, and a
    record of which ones were (for the report)."""
    defaults = defaults_for(pretrained)
    filled = {name: getattr(defaults, name) for name, auto in AUTO_FIELDS.items() if getattr(section, name) == auto}
    record = {"student_kind": defaults.kind, "filled": filled, "why": defaults.why if filled else ""}
    return dataclasses.replace(section, **filled), record

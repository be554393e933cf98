"""The distillation trainer: AdamW, linear warm-up + cosine decay, gradient clipping, early stopping, best
checkpoint by validation metric, resumable from a checkpoint, and DDP-aware.

Determinism: the batch order of epoch e is a permutation drawn from a generator seeded with (seed, e), so
the sampler position is just (epoch, step) and a resumed run draws the same batches; the global torch RNG
(dropout) is saved in the checkpoint. Under DDP each rank trains on its contiguous share of every global
batch and DDP averages the gradients, so the update equals a single process on the same global batch.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.distill.checkpoint import load_training_state, save_training_state
from edgekd.distill.losses import CompositeLoss
from edgekd.distill.outputs import model_outputs
from edgekd.errors import StageError, TrainingInterrupted
from edgekd.fileio import sha256_json
from edgekd.pipeline.progress import progress_bar, step


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch_size: int  # the global batch: split across ranks under DDP
    seed: int
    weight_decay: float = 0.0
    warmup_fraction: float = 0.0  # share of all steps spent ramping the lr up linearly from 0
    grad_clip: float = 0.0  # max global gradient norm; 0 = no clipping
    patience: int = 0  # stop after this many epochs without a better validation metric; 0 = never
    checkpoint_every: int = 0  # also checkpoint every N steps (the end of each epoch always is); 0 = epochs only


@dataclass
class TrainResult:
    best_epoch: int
    best_val_metric: float
    steps: int
    stopped_early: bool = False
    final_losses: dict[str, float] = field(default_factory=dict)  # last epoch's mean of each term
    history: list[dict[str, Any]] = field(default_factory=list)
    initial_val_metric: float = math.nan  # before the first step: where training started from

    @property
    def train_seconds(self) -> float:
        """Time in training steps (validation excluded), summed over the epochs."""
        return sum(record["seconds"] for record in self.history)

    def samples_per_second(self) -> float:
        seen = sum(record.get("samples", 0) for record in self.history)
        return seen / self.train_seconds if self.train_seconds > 0 else math.nan


Teacher = Any  # LiveTeacher | CachedTeacher: `get(indices) -> outputs`
Evaluate = Callable[[nn.Module], float]  # validation metric, higher is better


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def lr_factor(step_index: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then cosine decay to 0 at `total_steps`."""
    if step_index < warmup_steps:
        return (step_index + 1) / warmup_steps
    progress = (step_index - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class Trainer:
    """Train `model` with `loss` against `teacher` outputs; resumable when given a `checkpoint` path."""

    def __init__(
        self,
        model: nn.Module,
        loss: CompositeLoss,
        config: TrainConfig,
        inputs: np.ndarray,
        labels: np.ndarray,
        evaluate: Evaluate,
        teacher: Teacher | None = None,
        label: str = "student",
        checkpoint: Path | None = None,
        log_path: Path | None = None,
        on_step: Callable[[Trainer, int], None] | None = None,
        identity: str = "",
        distributed: bool = True,
    ):
        self.model, self.loss, self.config = model, loss, config
        self.inputs, self.labels = inputs, torch.from_numpy(labels)
        self.evaluate, self.teacher, self.label = evaluate, teacher, label
        self.checkpoint, self.log_path, self.on_step = checkpoint, log_path, on_step
        self.identity = identity  # what else a resumed checkpoint must match (the teacher, the losses)
        self.rank, self.world = _rank_world() if distributed else (0, 1)
        self._stop_requested = False
        self.steps_per_epoch = math.ceil(len(inputs) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs

    # -- control -------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Checkpoint at the next step and stop (what SIGINT/SIGTERM do)."""
        self._stop_requested = True

    def _identity(self) -> str:
        """What a checkpoint must match to be resumed: the config, the label, the data size, the caller's identity."""
        return sha256_json({"config": asdict(self.config), "label": self.label, "samples": len(self.inputs),
                            "world": self.world, "identity": self.identity})  # fmt: skip

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.inputs), generator=generator)

    def _rank_share(self, idx: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return idx
        return idx.tensor_split(self.world)[self.rank]

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        net = self._wrapped()
        self._setup_loss()
        params = [p for p in list(self.model.parameters()) + list(self.loss.parameters()) if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = int(cfg.warmup_fraction * self.total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, self.total_steps, warmup))
        state = self._fresh_state()
        if self.checkpoint is not None and self.checkpoint.is_file():
            state = self._resume(optimizer, scheduler) or state
        if state["finished"]:
            return self._finish(state)
        if "initial_metric" not in state:
            state["initial_metric"] = float(self.evaluate(self.model))
        with _stop_on_signals(self), progress_bar(f"train {self.label}", total=cfg.epochs) as advance:
            while state["epoch"] < cfg.epochs and not state["finished"]:
                self._run_epoch(net, optimizer, scheduler, state)
                last = state["history"][-1]
                advance(f"loss {last['loss']:.4f}  val {last['val_metric']:.4f}")
        return self._finish(state)

    def _wrapped(self) -> nn.Module:
        if self.world > 1:
            return nn.parallel.DistributedDataParallel(self.model)
        return self.model

    def _setup_loss(self) -> None:
        """One probe forward pass gives the learned projections their sizes."""
        probe = torch.arange(min(2, len(self.inputs)))
        with torch.no_grad():
            self.model.eval()
            student = model_outputs(self.model, torch.from_numpy(self.inputs[probe.numpy()]), self.loss.student_keys())
            teacher = self.teacher.get(probe) if self.teacher is not None else {}
        self.loss.setup(student, teacher)

    def _fresh_state(self) -> dict[str, Any]:
        return {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "sums": {}, "seen": 0, "history": [],
                "best_epoch": 0, "best_metric": -math.inf, "best_state": None, "bad_epochs": 0,
                "finished": False, "stopped_early": False}  # fmt: skip

    def _run_epoch(self, net, optimizer, scheduler, state) -> None:
        cfg = self.config
        epoch_started = time.perf_counter()
        order = self._epoch_order(state["epoch"])
        self.model.train()
        self.loss.train()
        keys = self.loss.student_keys()
        for step_in_epoch in range(state["step_in_epoch"], self.steps_per_epoch):
            if self._stop_requested:
                self._save(optimizer, scheduler, state)
                raise TrainingInterrupted(self._resume_message(state))
            idx = self._rank_share(order[step_in_epoch * cfg.batch_size : (step_in_epoch + 1) * cfg.batch_size])
            student = model_outputs(net, torch.from_numpy(self.inputs[idx.numpy()]), keys)
            with torch.no_grad():
                teacher = self.teacher.get(idx) if self.teacher is not None else {}
            total, terms = self.loss(student, teacher, self.labels[idx])
            if not math.isfinite(total.item()):
                raise StageError(
                    f"training {self.label}: the loss became {total.item()} at step {state['global_step'] + 1} "
                    f"(epoch {state['epoch'] + 1}); nothing non-finite was saved. {self._nan_advice()}"
                )
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            self._average_loss_gradients()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            for name, value in {"total": total, **terms}.items():  # summed as tensors: one sync per epoch
                state["sums"][name] = state["sums"].get(name, 0.0) + value.detach() * len(idx)
            state["seen"] += len(idx)
            state["step_in_epoch"] = step_in_epoch + 1
            state["global_step"] += 1
            if self.on_step is not None:
                self.on_step(self, state["global_step"])
            if cfg.checkpoint_every and state["global_step"] % cfg.checkpoint_every == 0:
                self._save(optimizer, scheduler, state)
        self._end_epoch(state, optimizer, time.perf_counter() - epoch_started)
        self._save(optimizer, scheduler, state)

    def _nan_advice(self) -> str:
        """The settings that govern this training: the teacher's own, or the distillation's."""
        if self.label == "teacher":
            return "Lower teacher.lr, and check that the task's inputs are finite"
        return ("Lower distill.lr, set distill.grad_clip, raise distill.temperature if it is very small (< 0.5), "
                "and check that the task's inputs are finite")

    def _end_epoch(self, state, optimizer, seconds: float) -> None:
        metric = float(self.evaluate(self.model))
        means = {name: float(total) / max(state["seen"], 1) for name, total in state["sums"].items()}
        state["epoch"] += 1
        record = {"epoch": state["epoch"], "step": state["global_step"], "lr": optimizer.param_groups[0]["lr"],
                  "loss": means.get("total", 0.0), "losses": means, "val_metric": metric,
                  "seconds": round(seconds, 4), "samples": state["seen"]}  # fmt: skip
        state["history"].append(record)
        self._log(record)
        state["sums"], state["seen"], state["step_in_epoch"] = {}, 0, 0
        finite = math.isfinite(metric) and all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if finite and metric > state["best_metric"]:
            state.update(best_epoch=state["epoch"], best_metric=metric, bad_epochs=0,
                         best_state={k: v.detach().clone() for k, v in self.model.state_dict().items()})  # fmt: skip
        else:
            state["bad_epochs"] += 1
        if self.config.patience and state["bad_epochs"] >= self.config.patience:
            state["stopped_early"] = True
        state["finished"] = state["stopped_early"] or state["epoch"] >= self.config.epochs

    def _finish(self, state) -> TrainResult:
        if state["best_state"] is not None:
            self.model.load_state_dict(state["best_state"])
        self.model.eval()
        last = state["history"][-1] if state["history"] else {}
        return TrainResult(
            best_epoch=state["best_epoch"],
            best_val_metric=state["best_metric"] if state["best_state"] is not None else float("nan"),
            steps=state["global_step"],
            stopped_early=state["stopped_early"],
            final_losses={k: round(v, 6) for k, v in last.get("losses", {}).items()},
            history=state["history"],
            initial_val_metric=state.get("initial_metric", math.nan),
        )

    def _average_loss_gradients(self) -> None:
        """DDP averages the student's gradients; the loss's own projections live outside it, so do theirs."""
        if self.world == 1:
            return
        for param in self.loss.parameters():
            if param.grad is not None:
                torch.distributed.all_reduce(param.grad)
                param.grad /= self.world

    # -- persistence ---------------------------------------------------------------------------------
    def _save(self, optimizer, scheduler, state) -> None:
        if self.checkpoint is None or self.rank != 0:
            return
        save_training_state(self.checkpoint, {
            "identity": self._identity(),
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "state": {**state, "history": json.dumps(state["history"])},
        })  # fmt: skip

    def _resume(self, optimizer, scheduler) -> dict[str, Any] | None:
        saved = load_training_state(self.checkpoint)
        if saved.get("identity") != self._identity():
            step(f"{self.checkpoint.name} was written by different settings; training {self.label} from the start")
            return None
        self.model.load_state_dict(saved["model"])
        self.loss.load_state_dict(saved["loss"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        state = dict(saved["state"])
        state["history"] = json.loads(state["history"])
        if not state["finished"]:
            step(f"resuming {self.label} at epoch {state['epoch'] + 1}, step {state['global_step']}")
            self._log({"resumed_at_step": state["global_step"]})
        return state

    def _resume_message(self, state) -> str:
        where = f"step {state['global_step']} (epoch {state['epoch'] + 1})"
        if self.checkpoint is None:
            return f"training {self.label} interrupted at {where}; no checkpoint path was set, so it cannot resume"
        return (f"training {self.label} interrupted at {where}; checkpoint saved to {self.checkpoint}. "
                "Run the same command again to resume (add --fresh to start over)")  # fmt: skip

    def _log(self, record: dict[str, Any]) -> None:
        if self.log_path is None or self.rank != 0:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"label": self.label, **record}) + "\n")


class _stop_on_signals:
    """While training, SIGINT/SIGTERM ask the trainer to checkpoint and stop at the next step."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.previous = trainer, {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.trainer._stop_requested:  # a second signal: stop now
            raise KeyboardInterrupt
        self.trainer.request_stop()

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

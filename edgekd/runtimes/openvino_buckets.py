"""Sequence-length buckets for OpenVINO token models, kept only where they measure faster.

OpenVINO's CPU plugin re-prepares a dynamic-shape model whenever the sequence length changes between calls: on
MiniLM-3L's int8 IR, texts of mixed lengths (9-48 tokens) cost ~0.9 ms each against ~0.4 ms for one length
repeated. A model reshaped to a static length pays nothing per call. So a token model whose outputs have no
sequence axis (pooled embeddings, sequence logits) can run as a few static copies (16, 24, 32, 48, ... tokens up to
the export length), each call padded to the next bucket with masked positions, which leave those outputs
unchanged: the padding is masked out of attention and pooling. Whether that is faster is measured at build time
on the calibration texts at their real lengths, against the dynamic model in the same interleaved rounds; the
outputs must agree too. The choice is stored in the IR (rt_info `edgekd/sequence_buckets`) so every loader of it,
edgekd's runner here or on a device, runs it the same way; an app using the IR runs it the same way by padding
to the listed lengths.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from edgekd.samples import MASK, real_lengths, trim_to_length

BUCKETS_KEY = ["edgekd", "sequence_buckets"]
SMALLEST = 16
KEEP_BELOW = 0.95  # buckets ship only when their per-text time is below 95% of the dynamic model's
# and their outputs match the dynamic model's: masked padding changes nothing in float (cosine 0.9999995 measured on
# BERT-4x256 fp32); an int8 IR's kernels round differently per shape (0.99985 on MiniLM-3L int8, whose own error
# to fp32 is ~1e-3), so the bound sits well inside the int8 quality threshold (0.99) and above that rounding
MIN_COSINE = 0.9995
ROUNDS, ROUND_SECONDS, MAX_TEXTS = 3, 0.2, 32


def bucket_lengths(longest: int) -> tuple[int, ...]:
    """16, 24, 32, 48, 64, 96, 128, ... (steps of 1.5x or 1.33x, multiples of 8), up to and ending at `longest`."""
    lengths, n = [], SMALLEST
    while n < longest:
        lengths.append(n)
        n = n * 3 // 2 if (n & (n - 1)) == 0 else n * 4 // 3  # 16 -> 24 -> 32 -> 48 -> 64 -> 96 -> 128
    return (*lengths, longest)


def bucketable(model) -> bool:
    """Every input [batch, sequence] with a dynamic sequence, an attention mask among them, every output of rank 2
    (no sequence axis to cut back)."""
    inputs = list(model.inputs)
    names = {i.get_any_name() for i in inputs}
    if MASK not in names:
        return False
    for port in inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 2 or shape[1].is_static:
            return False
    return all(o.get_partial_shape().rank.is_static and o.get_partial_shape().rank.get_length() == 2
               for o in model.outputs)  # fmt: skip


def padded(feed: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """`feed` padded with zeros (mask 0: positions every layer ignores) to `length` tokens."""
    current = feed[MASK].shape[1]
    if current == length:
        return feed
    return {name: np.ascontiguousarray(np.pad(a, ((0, 0), (0, length - current)))) for name, a in feed.items()}


class BucketedModel:
    """A token model compiled once per bucket on first use (static shapes), the dynamic model beyond the last."""

    def __init__(self, core, model, config: dict[str, Any], buckets: tuple[int, ...]):
        self.core, self.model, self.config, self.buckets = core, model, config, buckets
        self.dynamic = core.compile_model(model, "CPU", config).create_infer_request()
        self.requests: dict[tuple[int, int], Any] = {}

    def bucket(self, length: int) -> int | None:
        return next((b for b in self.buckets if b >= length), None)

    def request(self, batch: int, length: int):
        """The infer request for a [batch, length] feed, and the length to pad it to (None: as it is). Fully
        static shapes: a dynamic batch axis alone keeps the plugin on its dynamic-shape path."""
        bucket = self.bucket(length)
        if bucket is None:
            return self.dynamic, None
        if (batch, bucket) not in self.requests:
            static = self.model.clone()
            static.reshape({port.get_any_name(): [batch, bucket] for port in static.inputs})
            compiled = self.core.compile_model(static, "CPU", self.config)
            self.requests[batch, bucket] = compiled.create_infer_request()
        return self.requests[batch, bucket], bucket

    def prepared(self, feed: dict[str, np.ndarray]):
        """(request, feed padded to its bucket); a feed without a [batch, sequence] mask goes to the dynamic model
        as it is (OpenVINO names what is wrong with it)."""
        mask = feed.get(MASK)
        if mask is None or mask.ndim != 2:
            return self.dynamic, feed
        request, length = self.request(*mask.shape)
        return request, feed if length is None else padded(feed, length)


def buckets_of(model) -> tuple[int, ...]:
    """The buckets an IR was built to run with (rt_info), or () for none."""
    if not model.has_rt_info(BUCKETS_KEY):
        return ()
    text = model.get_rt_info(BUCKETS_KEY).astype(str)
    return tuple(int(n) for n in text.split(",") if n.strip())


def _per_text_ms(call, feeds: list[dict[str, np.ndarray]]) -> float:
    runs, started = 0, time.perf_counter()
    while runs < len(feeds) or time.perf_counter() - started < ROUND_SECONDS:
        call(feeds[runs % len(feeds)])
        runs += 1
    return (time.perf_counter() - started) * 1e3 / runs


def choose_buckets(core, model, config: dict[str, Any], feeds: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Time `model` on `feeds` (batch-1 token feeds, padded: the buckets end at their width) at their real
    lengths, dynamic against bucketed, in interleaved rounds; returns the decision record (`buckets`: the lengths
    to store, empty when the dynamic model stays)."""
    from edgekd.measure.quality import mean_cosine

    if not bucketable(model):
        return {"buckets": [], "why": "not a token model with pooled outputs: runs with dynamic shapes"}
    texts = [trim_to_length(f, max(int(real_lengths(f)[0]), 1)) for f in feeds[:MAX_TEXTS]]
    if not texts:
        return {"buckets": [], "why": "no calibration texts to measure on: runs with dynamic shapes"}
    buckets = bucket_lengths(int(feeds[0][MASK].shape[1]))
    bucketed = BucketedModel(core, model, config, buckets)

    def dynamic(feed):
        bucketed.dynamic.infer(feed)
        return bucketed.dynamic.get_output_tensor(0).data.copy()

    def in_bucket(feed):
        request, feed = bucketed.prepared(feed)
        request.infer(feed)
        return request.get_output_tensor(0).data.copy()

    cosine = mean_cosine(np.concatenate([in_bucket(f) for f in texts]), np.concatenate([dynamic(f) for f in texts]))
    ratios, figures = [], {"dynamic": [], "buckets": []}
    for r in range(ROUNDS):  # each round both, in alternating order; the ratio within a round
        order = (("dynamic", dynamic), ("buckets", in_bucket))[:: 1 if r % 2 == 0 else -1]
        timed = {name: _per_text_ms(call, texts) for name, call in order}
        for name, ms in timed.items():
            figures[name].append(ms)
        ratios.append(timed["buckets"] / timed["dynamic"])
    ratio = statistics.median(ratios)
    keep = ratio < KEEP_BELOW and cosine >= MIN_COSINE
    lengths = sorted(f[MASK].shape[1] for f in texts)
    why = ("faster at real lengths" if keep else f"outputs differ (cosine {cosine:.6f})" if cosine < MIN_COSINE
           else "not faster beyond the 5% margin")  # fmt: skip
    return {"buckets": list(buckets) if keep else [], "candidate_buckets": list(buckets), "why": why,
            "ms_per_text": {k: round(statistics.median(v), 4) for k, v in figures.items()},
            "ratio": round(ratio, 3), "cosine": round(cosine, 7), "texts": len(texts),
            "lengths": {"min": lengths[0], "p50": float(np.median(lengths)), "max": lengths[-1]}}  # fmt: skip

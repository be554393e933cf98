"""A tiny Hugging Face BERT built from a config (random init) and a local text file, made inside the test."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "movie", "food", "day", "was",
         "very", "really", "quite", "a", "an", "it", "is"]  # fmt: skip
POSITIVE, NEGATIVE = WORDS[:4], WORDS[4:8]


def make_tiny_bert(directory: Path, layers: int = 4, num_labels: int = 2, output: str = "logits") -> Path:
    """Save a random-init 4-layer BERT (hidden 32) and its WordPiece tokenizer to `directory`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(str(directory))
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, num_labels=num_labels)  # fmt: skip
    torch.manual_seed(0)
    model = BertForSequenceClassification(config) if output == "logits" else BertModel(config)
    model.save_pretrained(str(directory))
    return directory


def make_text_file(path: Path, samples: int = 80, unlabelled: int = 0) -> Path:
    """JSONL sentences whose label is whether they hold positive words; the first `unlabelled` have no label."""
    import random

    rng = random.Random(0)
    rows = []
    for i in range(samples):
        positive = i % 2 == 0
        words = [rng.choice(WORDS[8:]) for _ in range(4)] + [rng.choice(POSITIVE if positive else NEGATIVE)]
        rng.shuffle(words)
        row = {"text": " ".join(words)}
        if i >= unlabelled:
            row["label"] = "pos" if positive else "neg"
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return path

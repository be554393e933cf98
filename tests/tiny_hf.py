"""A tiny BERT built from a config (random init, no download) and a small text file, for the Hugging Face tests."""

import json
import random
from pathlib import Path

import torch

WORDS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "movie", "food", "day", "was",
         "very", "really", "quite", "a", "an", "it", "is"]  # fmt: skip
POSITIVE, NEGATIVE = WORDS[:4], WORDS[4:8]


def make_tiny_bert(directory: Path, layers: int = 4, num_labels: int = 2, output: str = "logits") -> Path:
    """Save a random-init 4-layer BERT (hidden 32) and its WordPiece tokenizer to `directory`."""
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


def make_sentences_txt(path: Path, samples: int = 96) -> Path:
    """Plain sentences, one per line, no labels: what a sentence-embedding encoder is distilled on."""
    rng = random.Random(1)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
                              for _ in range(samples)) + "\n")  # fmt: skip
    return path


def text_recipe(name: str, data: Path, bert: Path, losses: list[tuple[str, float]], extra: str = "",
                teacher_output: str = "logits") -> str:  # fmt: skip
    """A distill-and-export recipe: `bert` teaches a 2-layer student shrunk from it on `data`, briefly."""
    terms = "".join(f'[[distill.losses]]\nname = "{loss}"\nweight = {weight}\n' for loss, weight in losses)
    return f"""name = "{name}"
[task]
name = "text"
path = "{data}"
max_length = 12
[teacher]
architecture = "{bert.name}"
hf_dir = "{bert}"
hf_output = "{teacher_output}"
[student]
architecture = "{bert.name}-2l"
shrink_layers = 2
[distill]
epochs = 3
lr = 0.001
batch_size = 16
{terms}{extra}"""


def run_recipe(recipe: Path, output_dir: Path) -> Path:
    """`edgekd distill-and-export RECIPE` through the CLI entry point; returns the run directory."""
    from edgekd.cli import main

    try:
        main(["distill-and-export", str(recipe), "--output-dir", str(output_dir)])
    except SystemExit as exc:
        assert exc.code in (0, None), f"distill-and-export exited {exc.code}"
    return output_dir / recipe.stem

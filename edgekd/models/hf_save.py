"""The distilled student as a standard Hugging Face directory that `transformers` (and, for an embedding
encoder, sentence-transformers) loads as it is: config, safetensors weights and the tokenizer, plus for a
mean-pooled embedding the sentence-transformers module files (Transformer -> mean Pooling, no normalisation:
the same vector edgekd's `sentence_embedding` output gives).

The module files name sentence-transformers' own classes, as that format requires; edgekd never reads them back
(it rebuilds models from `<name>.model.json` and the config alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.fileio import write_json_atomic


def save_loadable(encoder: Any, directory: Path, tokenizer: Any = None, max_length: int | None = None) -> Path:
    """Write `encoder.hf` with `save_pretrained` (config.json, model.safetensors) and the tokenizer into
    `directory`; an embedding encoder also gets modules.json, sentence_bert_config.json and 1_Pooling/."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    encoder.hf.save_pretrained(str(directory), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    if encoder.output == "embedding":
        _sentence_transformers_files(directory, int(encoder.hf.config.hidden_size), max_length)
    return directory


def _sentence_transformers_files(directory: Path, hidden_size: int, max_length: int | None) -> None:
    write_json_atomic(directory / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ])  # fmt: skip
    settings: dict[str, Any] = {"do_lower_case": False}
    if max_length:  # the length edgekd tokenized the task at: longer texts are cut the same way
        settings["max_seq_length"] = int(max_length)
    write_json_atomic(directory / "sentence_bert_config.json", settings)
    (directory / "1_Pooling").mkdir(exist_ok=True)
    write_json_atomic(directory / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden_size, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    })  # fmt: skip

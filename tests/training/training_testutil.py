"""Tiny training configs shared by the training tests (imported as ``training_testutil``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from storyedge.config import Config, load_config

DATA_STORIES = 40
DATA_SEED = 0

#: quickstart.yaml shrunk so that one epoch is ~16 steps of a ~10k-parameter model.
TINY = {
    "dataset": {
        "seq_len": 2,
        "batch_size": 8,
        "image_size": 16,
        "max_caption_len": 8,
        "max_reason_len": 8,
        "synthetic_stories": DATA_STORIES,
        "synthetic_seed": DATA_SEED,
    },
    "tokenizer": {"vocab_size": 200},
    "model": {
        "image_feat_dim": 16,
        "image_spatial_dim": 16,
        "cnn_base_filters": 4,
        "text_embed_dim": 12,
        "text_hidden_dim": 12,
        "multimodal_dim": 16,
        "temporal_hidden_dim": 16,
        "decoder_hidden_dim": 16,
        "attention_heads": 2,
    },
    # validation captions off: tracing their graphs costs seconds per run; the runs that check
    # them turn them on
    "training": {"epochs": 2, "log_interval": 4, "lr": 0.01, "quality_windows": 0},
}


def tiny_config_dict(data_dir: Path, save_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny config as a nested dict, with per-section overrides."""
    data = {name: dict(values) for name, values in TINY.items()}
    data["dataset"]["path"] = str(data_dir)
    data["training"]["save_dir"] = str(save_dir)
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a config dict as YAML (on top of quickstart.yaml's other sections)."""
    base = load_config("quickstart.yaml").to_dict()
    for name, values in data.items():
        base[name].update(values)
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def tiny_config(data_dir: Path, save_dir: Path, **sections: dict[str, Any]) -> Config:
    base = load_config("quickstart.yaml")
    flat = {
        f"{name}.{key}": value
        for name, values in tiny_config_dict(data_dir, save_dir, **sections).items()
        for key, value in values.items()
    }
    return base.replace(**flat)

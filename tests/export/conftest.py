"""Fixtures of the export tests: one tiny trained-shaped bundle, exported once per session.

The model is random-init (dims 16, image 16, a WordPiece vocabulary of ~150 trained on a few
synthetic stories) with ``use_reason`` on, so all three encoder inputs and five LSTM layers are
covered. The full export (tflite + onnx × none, fp16, int8-dynamic, int8) runs once per
session: conversion is the slow part.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from storyedge.config import Config, load_config  # noqa: E402

TINY = {
    "dataset.seq_len": 2,
    "dataset.image_size": 16,
    "dataset.max_caption_len": 8,
    "dataset.max_reason_len": 6,
    "dataset.synthetic_stories": 24,
    "tokenizer.vocab_size": 160,
    "model.image_feat_dim": 16,
    "model.image_spatial_dim": 16,
    "model.cnn_base_filters": 4,
    "model.text_embed_dim": 16,
    "model.text_hidden_dim": 16,
    "model.multimodal_dim": 16,
    "model.temporal_hidden_dim": 24,
    "model.decoder_hidden_dim": 32,
    "model.attention_heads": 2,
    "model.use_reason": True,
    "model.use_reason_in_fusion": False,
    "export.validation_windows": 4,
    # story mode's graphs cost conversions: exported where tested (full_export)
    "export.story_mode": False,
}

ALL_QUANTIZE = "none,fp16,int8-dynamic,int8,int4"


@dataclass
class Env:
    root: Path
    config: Config
    run_dir: Path
    config_path: Path


def tiny_config(data_dir: Path, **overrides: object) -> Config:
    return load_config("quickstart.yaml").replace(**{**TINY, "dataset.path": str(data_dir), **overrides})


@pytest.fixture(scope="session")
def make_tiny_config():
    """:func:`tiny_config` for tests that build their own model (``make_tiny_config(data_dir, **overrides)``)."""
    return tiny_config


@pytest.fixture(scope="session")
def export_env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """A tiny random-init bundle (run dir) + its config file + the synthetic data it uses."""
    import keras

    from storyedge.data.loading import load_story_splits
    from storyedge.model.story_model import build_model
    from storyedge.run_dir import save_bundle
    from storyedge.tokenizer import train_wordpiece
    from storyedge.training.prepare import tokenizer_texts

    root = tmp_path_factory.mktemp("export_env")
    cfg = tiny_config(root / "data")
    splits = load_story_splits(cfg.dataset)
    tokenizer = train_wordpiece(list(tokenizer_texts(splits["train"])), cfg.tokenizer.vocab_size)
    keras.utils.set_random_seed(0)
    model = build_model(cfg, tokenizer.vocab_size, tokenizer.pad_id)
    run_dir = root / "run"
    save_bundle(run_dir, model, cfg, tokenizer, {"epoch": 0, "note": "random init (test)"})
    config_path = root / "config.yaml"
    cfg.save(config_path)
    return Env(root, cfg, run_dir, config_path)


@pytest.fixture(scope="session")
def full_export(export_env: Env) -> Path:
    """Every format x every quantization, exported once (Python API, like the CLI does)."""
    from storyedge.export import export_from_checkpoint

    out = export_env.root / "full"
    export_from_checkpoint(
        export_env.run_dir,
        out,
        formats="all",
        quantize=ALL_QUANTIZE,
        calibration_windows=8,
        progress=False,
        story_mode=True,
    )
    return out

"""Shared fixtures of the model tests: tiny configs and random, right-padded inputs."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from storyedge.config import Config, load_config

PAD = 0

TINY_MODEL = {
    "model.image_feat_dim": 16,
    "model.image_spatial_dim": 12,
    "model.cnn_base_filters": 4,
    "model.text_embed_dim": 8,
    "model.text_hidden_dim": 8,
    "model.multimodal_dim": 16,
    "model.temporal_hidden_dim": 12,
    "model.decoder_hidden_dim": 10,
    "model.attention_heads": 2,
    "dataset.image_size": 16,
    "dataset.max_caption_len": 8,
    "dataset.max_reason_len": 6,
    "dataset.seq_len": 3,
}


def tiny_config(**overrides: Any) -> Config:
    """The quickstart config shrunk to tiny dims, with dotted-key overrides."""
    return load_config("quickstart.yaml").replace(**{**TINY_MODEL, **overrides})


def random_inputs(
    cfg: Config, vocab: int, batch: int = 2, seed: int = 0, caption_len: int | None = None
) -> dict[str, np.ndarray]:
    """Random frames and right-padded token ids (several rows really padded) for ``cfg``."""
    rng = np.random.default_rng(seed)
    d = cfg.dataset
    length = caption_len or d.max_caption_len
    k = d.seq_len

    def tokens(shape: tuple[int, ...], max_real: int) -> np.ndarray:
        ids = rng.integers(1, vocab, size=shape).astype(np.int32)
        flat = ids.reshape(-1, shape[-1])
        for row in flat:
            row[rng.integers(1, max_real + 1):] = PAD
        return flat.reshape(shape)

    inputs = {
        "frames": rng.random((batch, k, d.image_size, d.image_size, 3), dtype=np.float32),
        "captions": tokens((batch, k, length), min(length, d.max_caption_len)),
        "target": tokens((batch, d.max_caption_len), d.max_caption_len),
    }
    inputs["captions"][0, 0, :] = rng.integers(1, vocab, size=length)  # one row with no padding
    if cfg.model.use_reason:
        inputs["reason"] = tokens((batch, d.max_reason_len), d.max_reason_len)
    return inputs


@pytest.fixture(scope="session")
def make_config() -> Callable[..., Config]:
    """Factory of tiny configs: ``make_config(**{"model.fusion": "concat"})``."""
    return tiny_config


@pytest.fixture(scope="session")
def make_inputs() -> Callable[..., dict[str, np.ndarray]]:
    """Factory of random inputs: ``make_inputs(cfg, vocab, batch=2, seed=0)``."""
    return random_inputs

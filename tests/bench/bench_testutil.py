"""Shared helpers of the bench tests: the tiny config, CLI flags, numpy toy backends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyedge.config import Config, load_config
from storyedge.manifest import CarriedInput, DecoderSpec, StateTensor
from storyedge.runtime import Backend

TINY = {
    "dataset.name": "synthetic-tiny",
    "dataset.schema": "generic",
    "dataset.seq_len": 3,
    "dataset.image_size": 32,
    "dataset.max_caption_len": 14,
    "dataset.max_reason_len": 12,
    "tokenizer.vocab_size": 120,
    "model.image_feat_dim": 16,
    "model.image_spatial_dim": 16,
    "model.cnn_base_filters": 4,
    "model.text_embed_dim": 16,
    "model.text_hidden_dim": 16,
    "model.multimodal_dim": 16,
    "model.temporal_hidden_dim": 24,
    "model.decoder_hidden_dim": 24,
    "model.attention_heads": 2,
    "model.use_reason": True,
    "export.validation_windows": 4,
    "bench.split": "validation",
    "bench.max_windows": 6,
    "bench.warmup": 1,
    "bench.runs": 3,
}

#: Flags every test bench run gets: small timing. RELAXED: int8-dynamic gates relaxed (the
#: model is random: near-flat next-token distributions make top-1 agreement meaningless).
FAST = ["--warmup", "1", "--runs", "3", "--bandwidth-mb", "16", "--threads", "1"]
RELAXED = ["--gate-int8-dynamic-ppl-max", "100", "--gate-int8-dynamic-top1-min", "0"]


@dataclass
class BenchEnv:
    root: Path
    config: Config
    config_path: Path
    data_dir: Path
    exports: Path


def tiny_config(data_dir: Path, **overrides: object) -> Config:
    return load_config("quickstart.yaml").replace(**{**TINY, "dataset.path": str(data_dir), **overrides})


def toy_decoder(hidden: int, batch: int | None = None) -> DecoderSpec:
    """The toy backends' declared state: none of it is named like the LSTM's ``h`` / ``c``.

    ``memory`` starts as the encoder's ``memory0``, ``pos`` is a step counter starting at 0 and
    advanced by the step's ``pos_out``, and ``ctx`` is carried from the encoder unchanged.
    """
    b = batch or 1
    return DecoderSpec(
        state=[
            StateTensor("memory", [b, hidden], "float32", init="encoder", source="memory0", update="memory_out"),
            StateTensor("pos", [b], "int32", init="constant", value=0, update="pos_out"),
        ],
        carried=[CarriedInput("ctx", "ctx")],
        token="tok",
        logits="scores",
    )


class ToyBackend(Backend):
    """A tiny deterministic RNN: encode pools the inputs into ``memory``; step mixes token, memory
    and the position counter (so a counter that failed to advance would change the logits).

    ``noise`` > 0 perturbs the logits deterministically (a "quantised" copy of the same model).
    """

    format = "toy"

    def __init__(self, name: str = "toy", precision: str = "fp32", vocab: int = 11, hidden: int = 6,
                 seed: int = 0, noise: float = 0.0) -> None:
        rng = np.random.default_rng(seed)
        self.name, self.precision, self.vocab, self.hidden = name, precision, vocab, hidden
        self.embed = rng.normal(size=(vocab, hidden)).astype(np.float32)
        self.w_h = rng.normal(size=(hidden, hidden)).astype(np.float32) * 0.5
        self.w_out = rng.normal(size=(hidden, vocab)).astype(np.float32) * 2
        self.w_pos = rng.normal(size=(vocab,)).astype(np.float32) * 0.3
        self.noise = noise
        self.noise_table = np.random.default_rng(seed + 1).normal(size=(vocab, vocab)).astype(np.float32)
        self.decoder = toy_decoder(hidden)
        self.step_calls = 0

    def run_encoder(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = np.asarray(inputs["frames"], np.float32)
        captions = np.asarray(inputs["captions"])
        b = frames.shape[0]
        pooled = frames.reshape(b, -1).mean(axis=1, keepdims=True) + captions.reshape(b, -1).mean(axis=1, keepdims=True) / 10
        memory = np.tanh(pooled * np.linspace(-1, 1, self.hidden, dtype=np.float32))
        return {"memory0": memory.astype(np.float32), "ctx": pooled.astype(np.float32)}

    def run_step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.step_calls += 1
        token = np.asarray(feeds["tok"], np.int64)
        pos = np.asarray(feeds["pos"], np.int32)
        memory = np.tanh(feeds["memory"] @ self.w_h + self.embed[token] + feeds["ctx"])
        scores = memory @ self.w_out + np.sin(pos.astype(np.float32))[:, None] * self.w_pos
        if self.noise:
            scores = scores + self.noise * self.noise_table[token]
        return {"scores": scores.astype(np.float32), "memory_out": memory.astype(np.float32), "pos_out": pos + 1}


class MarkovBackend(Backend):
    """Next-token distribution depends on the previous token only: ``probs[prev]``."""

    format = "toy"
    precision = "fp32"

    def __init__(self, probs: np.ndarray, name: str = "markov") -> None:
        self.name = name
        self.logp = np.log(np.asarray(probs, np.float64) + 1e-12).astype(np.float32)
        self.calls = 0
        self.decoder = DecoderSpec(
            state=[StateTensor("steps", [1], "int32", init="zeros", update="steps_out")], token="tok", logits="scores"
        )

    def run_encoder(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {}

    def run_step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"scores": self.logp[np.asarray(feeds["tok"], np.int64)], "steps_out": feeds["steps"] + 1}


def toy_windows(n: int, vocab: int = 11, length: int = 7, k: int = 2, seed: int = 0,
                pad: int = 0, bos: int = 2, eos: int = 3) -> dict[str, np.ndarray]:
    """Random windows framed [BOS] … [EOS] with padding of varying length."""
    rng = np.random.default_rng(seed)
    target = np.full((n, length), pad, np.int32)
    for row in target:
        m = int(rng.integers(1, length - 1))
        row[0], row[1: 1 + m], row[1 + m] = bos, rng.integers(4, vocab, size=m), eos
    return {
        "frames": rng.random((n, k, 4, 4, 3), dtype=np.float32),
        "captions": rng.integers(0, vocab, size=(n, k, length)).astype(np.int32),
        "target": target,
    }

"""Shared helpers of the bench tests: the tiny config, CLI flags, numpy toy backends, hand-made reports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyedge.config import Config, load_config
from storyedge.manifest import CarriedInput, DecoderSpec, StateTensor
from storyedge.bench.results import (
    BackendResult,
    BenchReport,
    Budgets,
    GateCheck,
    Gates,
    Host,
    Latency,
    LatencyStats,
    MemoryBandwidth,
    ParityStats,
    ParitySummary,
    Roofline,
    Settings,
    StepFloors,
)
from storyedge.bench.summary import budget_verdicts, summarize
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
    # story mode's graphs: exported and benched in tests/export/test_export_story.py
    "export.story_mode": False,
    "bench.split": "validation",
    "bench.max_windows": 6,
    "bench.warmup": 1,
    "bench.runs": 3,
}

#: Flags every test bench run gets: small timing. RELAXED: int8-dynamic and caption-quality gates
#: relaxed (the model is random: near-flat next-token distributions make top-1 agreement and the
#: captions of a quantized copy meaningless).
FAST = ["--warmup", "1", "--runs", "3", "--bandwidth-mb", "16", "--threads", "1"]
RELAXED = ["--gate-int8-dynamic-ppl-max", "100", "--gate-int8-dynamic-top1-min", "0",
           "--gate-bleu-drop", "100", "--gate-cider-drop", "10", "--gate-exact-match-drop", "1"]


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


def hand_result(name: str, *, precision: str = "fp32", caption_ms: float = 10.0, step_ms: float = 0.5,
                encoder_ms: float = 4.0, size_bytes: int = 2_000_000, passed: bool | None = True,
                fits_in_llc: bool | None = False, floor_multiple: float = 1.5, rss_delta_mb: float = 20.0,
                baseline_rss_mb: float = 100.0) -> BackendResult:
    """A hand-made :class:`BackendResult` (p50 = mean = the given figure); ``passed`` None: no parity
    (latency-only), and the name ``tf-reference`` makes it the reference."""
    def stats(ms: float, count: int) -> LatencyStats:
        return LatencyStats(count, ms, ms, ms * 1.1, ms * 1.2, ms * 1.5, ms * 0.1, ms * 0.9, ms * 2)

    reference = name == "tf-reference"
    parity = None
    if passed is not None:
        parity = ParityStats(name, precision, ppl=10.0, mean_nll=2.3, tokens=100, windows=10)
        if not reference:
            parity.gates["ppl_ratio"] = GateCheck(1.0 if passed else 1.5, "<=", 1.02, passed)
    latency = Latency(12, 1, 3, stats(encoder_ms, 3), stats(step_ms, 36), stats(encoder_ms + step_ms, 3),
                      stats(caption_ms, 3), 12 / (caption_ms / 1e3), 1e3 / step_ms, 12 / (caption_ms / 1e3))
    floor_ms = step_ms / floor_multiple
    roofline = Roofline(1000, 4, floor_ms, floor_multiple, floor_multiple, fits_in_llc)
    return BackendResult(
        name=name, format="tf" if reference else name.split("-")[0], precision=precision,
        layout="reference" if reference else "separate", reference=reference, threads=1, providers=None,
        load_seconds=0.1, size_bytes=0 if reference else size_bytes, decoder_file_bytes=None, first_encode_ms=5.0,
        first_step_ms=1.0, rss_before_mb=300.0, rss_after_mb=300.0 + rss_delta_mb, rss_delta_mb=rss_delta_mb,
        peak_rss_estimate_mb=baseline_rss_mb + max(rss_delta_mb, 0.0), latency=latency, roofline=roofline,
        parity=parity,
    )


def hand_report(results: list[BackendResult], budgets: Budgets | None = None,
                latency_only: bool = False) -> BenchReport:
    """A hand-made :class:`BenchReport` around ``results``: verdicts and summary computed."""
    budgets = budgets or Budgets()
    for r in results:
        r.budgets = budget_verdicts(r, budgets)
    settings = Settings(batch=1, threads=1, warmup=1, runs=3, split="validation", max_windows=6, caption_tokens=12,
                        latency_only=latency_only, backends_filter=None, vocab_size=120, model={"fusion": "attention"},
                        dataset={"seq_len": 3}, budgets=budgets)
    bandwidth = MemoryBandwidth(16, 2, 1, {"sum_f64_1thread": 10.0}, 10.0, 10.0, 12.0, "hand-made", 32 << 20)
    floors = StepFloors({"matrix_params": 100, "vector_params": 10, "embedding_row": 5}, 10.0, 460, 1e-4, 145, 3e-5,
                        "hand-made")
    parity = None if latency_only else ParitySummary("tf-reference", "validation", 10, 100, {})
    return BenchReport(
        storyedge_version="0.0", created="2025-01-01T00:00:00+00:00", export_dir="exports", source={"test": True},
        host=Host("linux", "x86_64", "", 2, {"python": "3.11"}), settings=settings, gates=Gates(),
        memory_bandwidth=bandwidth, roofline=floors, parity=parity, backends=results,
        summary=summarize(results, not latency_only, budgets), baseline_rss_mb=100.0, peak_rss_mb=400.0,
        failed_gates=[line for r in results if r.parity for line in r.parity.failures()],
    )

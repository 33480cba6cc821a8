"""Train-step time at the quickstart size: eager vs ``tf.function`` vs XLA ``jit_compile``.

Random inputs with quickstart.yaml's shapes and batch size; the vocabulary is the configured
WordPiece target size (an upper bound of the trained one). Tracing / compiling happens in a
warm-up call before timing. CI runs with ``--benchmark-disable`` (one call each); for numbers:

    pytest tests/benchmarks/test_train_step.py --benchmark-enable
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from storyedge.config import load_config

PAD, BOS, EOS = 0, 2, 3


def _batch(cfg, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = cfg.dataset
    B, k, L, S = d.batch_size, d.seq_len, d.max_caption_len, d.image_size

    def captions(shape: tuple[int, ...]) -> np.ndarray:
        ids = rng.integers(5, vocab, size=(*shape, L)).astype(np.int32)
        flat = ids.reshape(-1, L)
        for row in flat:
            n = int(rng.integers(4, L))
            row[0], row[n - 1], row[n:] = BOS, EOS, PAD
        return flat.reshape(*shape, L)

    return {
        "frames": rng.uniform(-1, 1, size=(B, k, S, S, 3)).astype(np.float32),
        "captions": captions((B, k)),
        "reason": np.full((B, d.max_reason_len), PAD, np.int32),
        "target": captions((B,)),
    }


@pytest.mark.benchmark(group="train_step")
@pytest.mark.parametrize("mode", ["eager", "function", "jit"])
def test_train_step(benchmark, mode):
    import keras
    import tensorflow as tf

    from storyedge.model.story_model import build_model
    from storyedge.training.step import make_optimizer, make_train_step

    cfg = load_config("quickstart.yaml")
    vocab = cfg.tokenizer.vocab_size
    keras.utils.set_random_seed(0)
    model = build_model(cfg, vocab, PAD)
    optimizer = make_optimizer(cfg.training.lr)
    counter = tf.Variable(0, dtype=tf.int64)
    step = make_train_step(model, optimizer, PAD, cfg.training.clip_norm, counter, mode=mode)
    batch = {key: tf.constant(value) for key, value in _batch(cfg, vocab).items()}

    def run() -> float:
        out = step(batch)
        return float(out["loss_sum"]) / float(out["count"])  # waits for the step to finish

    first = run()  # trace / compile outside the timing
    loss = benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(batch=cfg.dataset.batch_size, mode=mode, vocab=vocab)
    assert math.isfinite(first) and math.isfinite(loss)
    assert first == pytest.approx(math.log(vocab), rel=0.1)  # an untrained model: ~uniform
    assert int(counter.numpy()) >= 2

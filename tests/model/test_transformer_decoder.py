"""The Transformer caption decoder: teacher-forced == step unrolled, the KV-cache mask, shapes."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from storyedge.config import Config
from storyedge.model.story_model import StoryModel, build_model, cache_names, count_params, cross_names

VOCAB = 40
TRANSFORMER = {"model.decoder": "transformer", "model.decoder_layers": 2, "model.decoder_heads": 2,
               "model.decoder_ff_dim": 12}


def transformer_config(make_config: Callable[..., Config], **overrides: Any) -> Config:
    return make_config(**{**TRANSFORMER, **overrides})


def zero_caches(model: StoryModel, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    m = model.config.model
    shape = (batch, m.decoder_heads, model.config.dataset.max_caption_len, m.decoder_hidden_dim // m.decoder_heads)
    return [(np.zeros(shape, np.float32), np.zeros(shape, np.float32)) for _ in range(m.decoder_layers)]


def unrolled(model: StoryModel, inputs: dict[str, np.ndarray], garbage: float | None = None) -> np.ndarray:
    """Logits of ``decode_step`` unrolled over the target; ``garbage``: fill every cache slot
    after the current position with random values of that scale before each step."""
    rng = np.random.default_rng(1)
    state = model.encode(inputs["frames"], inputs["captions"], inputs.get("reason"))
    layers = model.config.model.decoder_layers
    cross = [tuple(state[n] for n in cross_names(i)) for i in range(layers)]
    target = inputs["target"]
    batch = target.shape[0]
    caches = zero_caches(model, batch)
    position = np.zeros((batch,), np.int32)
    logits = []
    for t in range(target.shape[1] - 1):
        if garbage is not None:
            caches = [tuple(_dirty(np.array(c), t, rng, garbage) for c in pair) for pair in caches]
        out = model.decode_step(target[:, t], position, caches, cross)
        caches = [tuple(np.asarray(out[n + "_out"]) for n in cache_names(i)) for i in range(layers)]
        position = np.asarray(out["position_out"])
        assert (position == t + 1).all()
        logits.append(np.asarray(out["logits"]))
    return np.stack(logits, axis=1)


def _dirty(cache: np.ndarray, t: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    cache[:, :, t:, :] = rng.normal(0, scale, cache[:, :, t:, :].shape)
    return cache


@pytest.mark.parametrize("fusion, reason", [("attention", False), ("concat", False), ("text_only", False),
                                            ("attention", True)])
def test_teacher_forced_equals_step_unrolled(make_config, make_inputs, fusion, reason):
    cfg = transformer_config(make_config, **{"model.fusion": fusion, "model.use_reason": reason})
    model = build_model(cfg, VOCAB, 0)
    inputs = make_inputs(cfg, VOCAB, batch=2)
    teacher = np.asarray(model(inputs, training=False))
    assert teacher.shape == (2, cfg.dataset.max_caption_len - 1, VOCAB)
    assert np.abs(teacher - unrolled(model, inputs)).max() < 1e-5


def test_garbage_in_later_cache_slots_changes_nothing(make_config, make_inputs):
    cfg = transformer_config(make_config)
    model = build_model(cfg, VOCAB, 0)
    inputs = make_inputs(cfg, VOCAB, batch=2)
    clean = unrolled(model, inputs)
    assert np.array_equal(clean, unrolled(model, inputs, garbage=100.0))


def test_width_projection_and_shapes(make_config, make_inputs):
    cfg = transformer_config(make_config, **{"model.text_embed_dim": 6, "model.decoder_layers": 1})
    model = build_model(cfg, VOCAB, 0)
    assert model.transformer_decoder.in_proj is not None
    inputs = make_inputs(cfg, VOCAB, batch=1)
    state = model.encode(inputs["frames"], inputs["captions"])
    assert sorted(state) == ["cross_k_0", "cross_v_0"]
    assert tuple(state["cross_k_0"].shape) == (1, 2, cfg.dataset.seq_len + 1, 5)
    assert np.abs(np.asarray(model(inputs)) - unrolled(model, inputs)).max() < 1e-5
    counts = count_params(model)
    assert counts["decoder"] > 0 and not hasattr(model, "decoder_cell")
    paths = [w.path for w in model.weights]
    assert len(set(paths)) == len(paths)  # training checkpoints variables by path
    assert sum(v for k, v in counts.items() if k not in ("total", "trainable")) == counts["total"]


def test_signatures_and_declared_state_come_from_the_model(make_config, make_inputs):
    import tensorflow as tf

    from storyedge.export.context import signature_infos
    from storyedge.model.signatures import (
        decoder_input_specs,
        decoder_output_names,
        decoder_spec,
        decoder_step_fn,
        encoder_fn,
        encoder_output_names,
        step_weight_counts,
    )

    cfg = transformer_config(make_config, **{"model.decoder_layers": 1, "model.use_reason": True})
    model = build_model(cfg, VOCAB, 0)
    specs = decoder_input_specs(model)
    assert [s.name for s in specs] == ["token", "position", "k_cache_0", "v_cache_0", "cross_k_0", "cross_v_0"]
    assert specs[1].dtype == tf.int32 and tuple(specs[2].shape) == (1, 2, 8, 5)
    assert tuple(specs[4].shape) == (1, 2, cfg.dataset.seq_len + 2, 5)  # frames + context + reason
    assert encoder_output_names(model) == ("cross_k_0", "cross_v_0")
    assert decoder_output_names(model) == ("logits", "position_out", "k_cache_0_out", "v_cache_0_out")
    infos = signature_infos(model, 1)
    spec = decoder_spec(model)
    spec.check(infos["encoder"], infos["decoder_step"])  # raises on a mismatch
    # the tf.functions drive like the runtime: zeros state, carried cross K/V
    inputs = make_inputs(cfg, VOCAB, batch=1)
    enc = {k: v.numpy() for k, v in encoder_fn(model)(inputs["frames"], inputs["captions"], inputs["reason"]).items()}
    state = spec.initial_state(enc)
    step = decoder_step_fn(model)
    names = [s.name for s in specs]
    logits = []
    for t in range(cfg.dataset.max_caption_len - 1):
        feeds = {"token": inputs["target"][:, t], **state}
        out = {k: v.numpy() for k, v in step(*(feeds[n] for n in names)).items()}
        state = spec.advance(state, out)
        logits.append(out["logits"])
    assert np.abs(np.stack(logits, 1) - np.asarray(model(inputs))).max() < 1e-5
    w = step_weight_counts(cfg, VOCAB)
    width, ff = 10, 12
    embed = cfg.model.text_embed_dim  # 8 != 10: the input projection is read too
    assert w["matrix_params"] == 6 * width * width + 2 * width * ff + width * VOCAB + embed * width
    assert w["embedding_row"] == cfg.model.text_embed_dim

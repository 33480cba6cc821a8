"""StoryModel: shapes, train/export equivalence, padding, ablations, weights round trip, counts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import pytest

from storyedge.config import Config, load_config
from storyedge.model.story_model import (
    CONTEXT_GATES,
    StoryModel,
    build_model,
    context_dim,
    count_params,
    gates_dim,
)

PAD = 0
VOCAB = 40


def _np(x: Any) -> np.ndarray:
    return np.asarray(x)


def _unrolled_logits(model: StoryModel, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Greedy-free manual unroll of ``decode_step`` over the teacher-forced target."""
    state = model.encode(inputs["frames"], inputs["captions"], inputs.get("reason"))
    h, c, gates = state["h0"], state["c0"], state["context_gates"]
    target = inputs["target"]
    logits = []
    for t in range(target.shape[1] - 1):
        out = model.decode_step(target[:, t], h, c, gates)
        h, c = out["h_out"], out["c_out"]
        logits.append(_np(out["logits"]))
    return np.stack(logits, axis=1)


def test_quickstart_shapes(make_inputs: Callable[..., dict[str, np.ndarray]]) -> None:
    cfg = load_config("quickstart.yaml")
    model = build_model(cfg, vocab_size=500, pad_id=PAD)
    inputs = make_inputs(cfg, 500, batch=2)
    logits = model(inputs)
    assert tuple(logits.shape) == (2, cfg.dataset.max_caption_len - 1, 500)
    state = model.encode(inputs["frames"], inputs["captions"])
    assert tuple(state["h0"].shape) == (2, 96)
    assert tuple(state["c0"].shape) == (2, 96)
    assert tuple(state["context"].shape) == (2, 96) == (2, context_dim(cfg))
    assert tuple(state["context_gates"].shape) == (2, 4 * 96) == (2, gates_dim(cfg))
    # teacher forcing (call) reads the context, so it asks encode for no gates
    assert CONTEXT_GATES not in model.encode(inputs["frames"], inputs["captions"], gates=False)
    step = model.decode_step(inputs["target"][:, 0], state["h0"], state["c0"], state["context_gates"])
    assert tuple(step["logits"].shape) == (2, 500)
    assert tuple(step["h_out"].shape) == tuple(step["c_out"].shape) == (2, 96)
    assert model.config is cfg and model.vocab_size == 500 and model.pad_id == PAD
    assert model.image_encoder is not None and model.image_encoder.num_patches == 16


@pytest.mark.slow  # ~20 s on 2 CPU cores
def test_seed_size_shapes(make_inputs: Callable[..., dict[str, np.ndarray]]) -> None:
    cfg = load_config("storyreasoning.yaml")
    start = time.perf_counter()
    model = build_model(cfg, vocab_size=200, pad_id=PAD)
    inputs = make_inputs(cfg, 200, batch=1)
    logits = model(inputs)
    assert tuple(logits.shape) == (1, 31, 200)
    state = model.encode(inputs["frames"], inputs["captions"], inputs["reason"])
    # use_reason without fusion: the reason vector (2 x 512) joins the temporal output (512)
    assert tuple(state["context"].shape) == (1, 512 + 1024)
    assert tuple(state["h0"].shape) == (1, 512)
    assert model.image_encoder is not None and model.image_encoder.num_patches == 64
    assert time.perf_counter() - start < 120


FUSION_CASES = [
    {"model.fusion": "attention"},
    {"model.fusion": "concat"},
    {"model.fusion": "text_only"},
    {"model.fusion": "attention", "model.use_reason": True},
    {"model.fusion": "concat", "model.use_reason": True, "model.use_reason_in_fusion": True},
]


@pytest.mark.parametrize("overrides", FUSION_CASES, ids=lambda o: "-".join(map(str, o.values())))
def test_teacher_forced_equals_unrolled_decode_step(
    overrides: dict[str, Any],
    make_config: Callable[..., Config],
    make_inputs: Callable[..., dict[str, np.ndarray]],
) -> None:
    cfg = make_config(**overrides)
    model = build_model(cfg, VOCAB, PAD)
    inputs = make_inputs(cfg, VOCAB, batch=3, seed=1)
    teacher = _np(model(inputs, training=False))
    unrolled = _unrolled_logits(model, inputs)
    assert teacher.shape == unrolled.shape == (3, cfg.dataset.max_caption_len - 1, VOCAB)
    assert np.abs(teacher - unrolled).max() < 1e-5
    # the comparison is not vacuous: logits vary along the sequence
    assert np.abs(teacher[:, 1:] - teacher[:, :-1]).max() > 1e-4


def test_dropout_only_when_training(
    make_config: Callable[..., Config], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    cfg = make_config(**{"model.dropout": 0.5})
    model = build_model(cfg, VOCAB, PAD)
    inputs = make_inputs(cfg, VOCAB)
    a, b = _np(model(inputs)), _np(model(inputs))
    np.testing.assert_array_equal(a, b)
    assert np.abs(_np(model(inputs, training=True)) - a).max() > 1e-4


def test_encode_padding_invariance(
    make_config: Callable[..., Config], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    """Captions padded to 8 or to 13 tokens give the same h0, c0 and context."""
    cfg = make_config()
    model = build_model(cfg, VOCAB, PAD)
    inputs = make_inputs(cfg, VOCAB, batch=2)
    longer = np.full((2, 3, 13), PAD, np.int32)
    longer[:, :, :8] = inputs["captions"]
    a = model.encode(inputs["frames"], inputs["captions"])
    b = model.encode(inputs["frames"], longer)
    for key in ("h0", "c0", "context"):
        assert np.abs(_np(a[key]) - _np(b[key])).max() < 1e-6
    # ... while changing a real token does change the state
    changed = inputs["captions"].copy()
    changed[1, 2, 0] = changed[1, 2, 0] % (VOCAB - 1) + 1
    c = model.encode(inputs["frames"], changed)
    assert np.abs(_np(c["h0"][1]) - _np(a["h0"][1])).max() > 1e-6


def test_encode_rows_are_independent_of_the_batch(
    make_config: Callable[..., Config], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    cfg = make_config(**{"model.use_reason": True})
    model = build_model(cfg, VOCAB, PAD)
    inputs = make_inputs(cfg, VOCAB, batch=3)
    full = model.encode(inputs["frames"], inputs["captions"], inputs["reason"])
    one = model.encode(inputs["frames"][1:2], inputs["captions"][1:2], inputs["reason"][1:2])
    for key in ("h0", "c0", "context"):
        assert np.abs(_np(full[key])[1:2] - _np(one[key])).max() < 1e-5


def test_text_only_ignores_images_attention_does_not(
    make_config: Callable[..., Config], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    for fusion, uses_images in (("text_only", False), ("attention", True), ("concat", True)):
        cfg = make_config(**{"model.fusion": fusion})
        model = build_model(cfg, VOCAB, PAD)
        inputs = make_inputs(cfg, VOCAB)
        other = np.random.default_rng(9).random(inputs["frames"].shape, dtype=np.float32)
        a = _np(model.encode(inputs["frames"], inputs["captions"])["context"])
        b = _np(model.encode(other, inputs["captions"])["context"])
        diff = np.abs(a - b).max()
        if uses_images:
            assert diff > 1e-5, fusion
        else:
            assert diff == 0.0
            assert model.image_encoder is None


@pytest.mark.parametrize("in_fusion", [False, True])
def test_reason_changes_the_state(
    in_fusion: bool,
    make_config: Callable[..., Config],
    make_inputs: Callable[..., dict[str, np.ndarray]],
) -> None:
    cfg = make_config(**{"model.use_reason": True, "model.use_reason_in_fusion": in_fusion})
    model = build_model(cfg, VOCAB, PAD)
    inputs = make_inputs(cfg, VOCAB)
    other = make_inputs(cfg, VOCAB, seed=5)["reason"]
    a = model.encode(inputs["frames"], inputs["captions"], inputs["reason"])
    b = model.encode(inputs["frames"], inputs["captions"], other)
    assert np.abs(_np(a["h0"]) - _np(b["h0"])).max() > 1e-5
    width = cfg.model.temporal_hidden_dim + (0 if in_fusion else 2 * cfg.model.text_hidden_dim)
    assert a["context"].shape[-1] == width == context_dim(cfg)
    with pytest.raises(ValueError, match="reason"):
        model.encode(inputs["frames"], inputs["captions"])


def test_weights_round_trip(
    tmp_path: Path,
    make_config: Callable[..., Config],
    make_inputs: Callable[..., dict[str, np.ndarray]],
) -> None:
    cfg = make_config(**{"model.use_reason": True})
    inputs = make_inputs(cfg, VOCAB)
    keras.utils.set_random_seed(1)
    model = build_model(cfg, VOCAB, PAD)
    # move the BatchNorm statistics away from their initial values so they are tested too
    model(inputs, training=True)
    expected = _np(model(inputs))
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    keras.utils.set_random_seed(2)
    fresh = build_model(cfg, VOCAB, PAD)
    assert np.abs(_np(fresh(inputs)) - expected).max() > 1e-4
    fresh.load_weights(path)
    np.testing.assert_array_equal(_np(fresh(inputs)), expected)
    # the shared embedding is one variable, restored once
    assert fresh.caption_encoder.embedding is fresh.token_embedding


def test_get_config_round_trip(make_config: Callable[..., Config]) -> None:
    cfg = make_config(**{"model.fusion": "concat"})
    model = build_model(cfg, VOCAB, PAD)
    clone = StoryModel.from_config(model.get_config())
    assert clone.config == cfg and clone.vocab_size == VOCAB and clone.pad_id == PAD
    assert count_params(clone) == count_params(model)


def test_rejects_pad_outside_vocab(make_config: Callable[..., Config]) -> None:
    with pytest.raises(ValueError, match="pad_id"):
        StoryModel(make_config(), vocab_size=10, pad_id=10)


def test_count_params_per_component(make_config: Callable[..., Config]) -> None:
    cfg = make_config(**{"model.use_reason": True})
    model = build_model(cfg, VOCAB, PAD)
    counts = count_params(model)
    parts = [k for k in counts if k not in ("total", "trainable")]
    assert sum(counts[k] for k in parts) == counts["total"] == model.count_params()
    m = cfg.model
    e, h, v = m.text_embed_dim, m.decoder_hidden_dim, VOCAB
    c = context_dim(cfg)
    assert counts["embedding"] == v * e
    assert counts["decoder"] == 4 * h * (e + c + h + 1) + h * v + v
    assert counts["reason_encoder"] == counts["caption_encoder"] > 0
    assert counts["trainable"] < counts["total"]  # BatchNorm moving statistics
    text_only = count_params(build_model(make_config(**{"model.fusion": "text_only"}), VOCAB, PAD))
    assert text_only["image_encoder"] == 0 and text_only["reason_encoder"] == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"model.use_reason": True},
        {"model.use_reason": True, "model.use_reason_in_fusion": True, "model.fusion": "concat"},
        {"model.fusion": "text_only"},
    ],
    ids=["attention-reason-init", "concat-reason-fusion", "text_only"],
)
def test_every_trainable_weight_gets_a_gradient_with_dynamic_batch(
    overrides: dict[str, Any],
    make_config: Callable[..., Config],
    make_inputs: Callable[..., dict[str, np.ndarray]],
) -> None:
    """A training step traced with an unknown batch size reaches every trainable variable."""
    import tensorflow as tf

    cfg = make_config(**overrides)
    model = build_model(cfg, VOCAB, PAD)
    inputs = make_inputs(cfg, VOCAB, batch=3)
    spec = {k: tf.TensorSpec((None, *v.shape[1:]), v.dtype) for k, v in inputs.items()}
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(input_signature=[spec])
    def grads(batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        with tf.GradientTape() as tape:
            logits = model(batch, training=True)
            loss = loss_fn(batch["target"][:, 1:], logits)
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, gradients = grads(inputs)
    assert np.isfinite(float(loss))
    missing = [v.path for v, g in zip(model.trainable_variables, gradients) if g is None]
    assert not missing
    dense = [np.asarray(tf.convert_to_tensor(g)) for g in gradients]  # embedding: IndexedSlices
    assert all(np.all(np.isfinite(g)) for g in dense)
    assert all(np.abs(g).sum() > 0 for g in dense)

"""Train step: global-norm clipping, and checkpoints restoring step, epoch and optimizer state."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from storyedge.model.story_model import build_model
from storyedge.training.checkpoint import TrainingCheckpoint, read_checkpoint_step
from storyedge.training.step import make_eval_step, make_optimizer, make_train_step

from training_testutil import tiny_config

VOCAB, PAD, BOS, EOS = 30, 0, 2, 3


def _batch(cfg, batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = cfg.dataset
    L = d.max_caption_len

    def caption() -> list[int]:
        n = int(rng.integers(1, L - 1))
        ids = [BOS, *rng.integers(5, VOCAB, size=n - 1).tolist(), EOS]
        return ids + [PAD] * (L - len(ids))

    return {
        "frames": rng.uniform(-1, 1, size=(batch, d.seq_len, d.image_size, d.image_size, 3)).astype(np.float32),
        "captions": np.array([[caption() for _ in range(d.seq_len)] for _ in range(batch)], np.int32),
        "reason": np.full((batch, d.max_reason_len), PAD, np.int32),
        "target": np.array([caption() for _ in range(batch)], np.int32),
    }


@pytest.fixture
def cfg(tmp_path):
    return tiny_config(tmp_path / "data", tmp_path / "run", model={"dropout": 0.0})


def _model(cfg, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    return build_model(cfg, VOCAB, PAD)


def test_clipping_bounds_the_global_norm_of_the_applied_gradient(cfg):
    model = _model(cfg, 0)
    # blow the logits up so that the raw gradient is huge
    kernel = model.logits_proj.kernel
    kernel.assign(kernel * 1e4)
    optimizer = make_optimizer(lr=1e-3)
    clip = 0.25
    step = make_train_step(model, optimizer, PAD, clip_norm=clip, mode="eager")
    out = step(_batch(cfg))
    raw_norm = float(out["grad_norm"])
    assert raw_norm > 100 * clip
    # Adam after one step: m = (1 - beta_1) * g_applied, so m reveals the applied gradient
    inner = optimizer
    moments = [inner._momentums[inner._get_variable_index(v)] for v in model.trainable_variables]
    applied = float(tf.linalg.global_norm([m.value for m in moments])) / (1 - inner.beta_1)
    assert applied == pytest.approx(clip, rel=1e-4)
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_small_gradients_are_not_clipped(cfg):
    model = _model(cfg, 0)
    optimizer = make_optimizer(lr=1e-3)
    step = make_train_step(model, optimizer, PAD, clip_norm=1e6, mode="eager")
    out = step(_batch(cfg))
    moments = [optimizer._momentums[optimizer._get_variable_index(v)] for v in model.trainable_variables]
    applied = float(tf.linalg.global_norm([m.value for m in moments])) / (1 - optimizer.beta_1)
    assert applied == pytest.approx(float(out["grad_norm"]), rel=1e-4)


def test_train_step_increments_the_counter_and_lowers_the_loss(cfg):
    model = _model(cfg, 0)
    optimizer = make_optimizer(lr=1e-2)
    counter = tf.Variable(0, dtype=tf.int64)
    step = make_train_step(model, optimizer, PAD, 1.0, counter, mode="eager")
    evaluate = make_eval_step(model, PAD, mode="eager")
    batch = _batch(cfg)
    first = evaluate(batch)
    for _ in range(3):
        step(batch)
    after = evaluate(batch)
    assert int(counter.numpy()) == 3 and int(optimizer.iterations.numpy()) == 3
    assert float(after["loss_sum"]) / float(after["count"]) < float(first["loss_sum"]) / float(first["count"])


def _all_values(model, optimizer) -> list[np.ndarray]:
    return [v.numpy() for v in model.weights] + [v.numpy() for v in optimizer.variables]


def test_checkpoint_restores_step_epoch_position_and_optimizer_state(cfg, tmp_path):
    model = _model(cfg, 0)
    optimizer = make_optimizer(lr=5e-3)
    ckpt = TrainingCheckpoint(tmp_path / "ckpt", model, optimizer, keep=2)
    step = make_train_step(model, optimizer, PAD, 1.0, ckpt.step, mode="eager")
    for i in range(3):
        step(_batch(cfg, seed=i))
    ckpt.set_best(1.25, epoch=1, bad_epochs=0)
    path = ckpt.save(epoch=1, step_in_epoch=2, elapsed_seconds=7.5)
    assert read_checkpoint_step(path) == 3 and path.endswith("ckpt-3")

    # a fresh model (other init) and a fresh optimizer
    model2 = _model(cfg, 123)
    optimizer2 = make_optimizer(lr=5e-3)
    ckpt2 = TrainingCheckpoint(tmp_path / "ckpt", model2, optimizer2, keep=2)
    step2 = make_train_step(model2, optimizer2, PAD, 1.0, ckpt2.step, mode="eager")
    assert not np.allclose(model2.weights[0].numpy(), model.weights[0].numpy())
    state = ckpt2.restore()
    assert (state.step, state.epoch, state.step_in_epoch) == (3, 1, 2)
    assert state.elapsed_seconds == 7.5 and state.best_val_loss == 1.25 and state.best_epoch == 1
    assert int(optimizer2.iterations.numpy()) == 3
    for a, b in zip(_all_values(model, optimizer), _all_values(model2, optimizer2), strict=True):
        np.testing.assert_array_equal(a, b)  # weights (BN stats too), Adam moments, iterations

    # and training continues identically from there
    batch = _batch(cfg, seed=9)
    step(batch)
    step2(batch)
    assert int(ckpt2.step.numpy()) == 4
    for a, b in zip(_all_values(model, optimizer), _all_values(model2, optimizer2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_checkpoint_manager_keeps_the_last_n(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = make_optimizer(lr=1e-3)
    ckpt = TrainingCheckpoint(tmp_path / "ckpt", model, optimizer, keep=2)
    for n in range(4):
        ckpt.step.assign(n + 1)
        ckpt.save(epoch=0, step_in_epoch=n + 1, elapsed_seconds=0.0)
    assert [read_checkpoint_step(p) for p in ckpt.manager.checkpoints] == [3, 4]

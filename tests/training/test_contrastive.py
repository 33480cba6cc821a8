"""The contrastive alignment loss: InfoNCE closed forms, retrieval recall, a tiny run lowering both
loss terms and logging them, and the heads staying out of the bundle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from storyedge.model.story_model import build_model
from storyedge.training.contrastive import (
    AlignmentAccumulator,
    contrastive_loss_for,
    info_nce,
    recall_keys,
    retrieval_recall,
)
from storyedge.training.step import make_eval_step, make_optimizer, make_train_step

from test_step import PAD, VOCAB, _batch
from training_testutil import tiny_config

ON = {"contrastive_weight": 1.0, "contrastive_temperature": 0.5}


@pytest.mark.parametrize("batch", [2, 5, 16])
def test_info_nce_of_identical_embeddings_is_log_b(batch: int) -> None:
    same = np.tile(np.random.default_rng(0).normal(size=(1, 7)), (batch, 1))
    for temperature in (0.07, 1.0):
        assert abs(float(info_nce(same, same, temperature)) - math.log(batch)) < 1e-6


@pytest.mark.parametrize("batch, temperature", [(2, 1.0), (6, 0.5), (8, 2.0), (4, 0.25)])
def test_info_nce_of_one_hot_matched_pairs_has_its_closed_form(batch: int, temperature: float) -> None:
    eye = np.eye(batch, 10) * 3.0  # scale is irrelevant: cosine similarity
    expected = math.log(1 + (batch - 1) * math.exp(-1 / temperature))
    assert abs(float(info_nce(eye, eye, temperature)) - expected) < 1e-6


def test_info_nce_is_symmetric_mean_of_both_directions() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    assert abs(float(info_nce(a, b, 0.3)) - float(info_nce(b, a, 0.3))) < 1e-6


def test_recall_is_one_on_matched_one_hots_and_zero_under_a_derangement() -> None:
    n = 8
    eye = np.eye(n)
    captions = [f"caption {i}" for i in range(n)]
    assert retrieval_recall(eye, eye, captions) == {key: 1.0 for key in recall_keys()}
    deranged = retrieval_recall(eye, np.roll(eye, 1, axis=0), captions)  # image i ~ caption i+1
    assert deranged["val_i2t_r1"] == 0.0 and deranged["val_t2i_r1"] == 0.0
    # a retrieved caption with the true one's text is a hit: with every text equal, all hit
    assert retrieval_recall(eye, np.roll(eye, 1, axis=0), ["same"] * n)["val_i2t_r1"] == 1.0
    # recall@5 counts the true caption anywhere in the top 5
    near = eye + 0.5 * np.roll(eye, 1, axis=0)  # image i ~ caption i+1 best, caption i second
    assert retrieval_recall(near, np.roll(eye, 1, axis=0), captions)["val_i2t_r5"] == 1.0


def test_accumulator_drops_padding_rows_and_repeated_frames(tmp_path) -> None:
    acc = AlignmentAccumulator(temperature=0.5, pad_id=PAD)
    k, dim = 2, 4
    frames = np.arange(3 * k * 2 * 2 * 3, dtype=np.float32).reshape(3, k, 2, 2, 3)
    captions = np.arange(3 * k * 3, dtype=np.int32).reshape(3, k, 3) + 1
    target = np.array([[2, 5, 3], [2, 6, 3], [PAD, PAD, PAD]], np.int32)  # row 3: padding
    emb = np.eye(3 * k, dim * 2)[:, : 3 * k]
    batch = {"frames": frames, "captions": captions, "target": target}
    acc.add(batch, {"image_emb": emb, "text_emb": emb})
    acc.add(batch, {"image_emb": emb, "text_emb": emb})  # the same frames again: kept once
    assert len(acc.frames) == 4
    result = acc.result()
    assert result["val_i2t_r1"] == 1.0 == result["val_t2i_r1"]
    assert abs(result["val_contrastive_loss"] - math.log(1 + 3 * math.exp(-2))) < 1e-6


def test_off_by_default(tmp_path) -> None:
    assert contrastive_loss_for(tiny_config(tmp_path, tmp_path)) is None


def test_a_few_steps_lower_both_loss_terms(tmp_path) -> None:
    import keras

    cfg = tiny_config(tmp_path / "data", tmp_path / "run", model={"dropout": 0.0}, training=ON)
    keras.utils.set_random_seed(0)
    model = build_model(cfg, VOCAB, PAD)
    contrastive = contrastive_loss_for(cfg)
    step = make_train_step(model, make_optimizer(0.01), PAD, 1.0, contrastive=contrastive)
    batch = _batch(cfg, batch=8)
    first = step(batch)
    for _ in range(30):
        last = step(batch)
    caption = lambda out: float(out["loss_sum"]) / float(out["count"])  # noqa: E731
    assert caption(last) < caption(first)
    assert float(last["contrastive_loss"]) < float(first["contrastive_loss"])
    # the heads were trained too, and the eval step gives normalised embeddings per frame
    assert any(np.any(v.numpy() != 0) for v in contrastive.heads.trainable_variables)
    out = make_eval_step(model, PAD, contrastive=contrastive)(batch)
    frames = 8 * cfg.dataset.seq_len
    assert tuple(out["image_emb"].shape)[0] == frames == tuple(out["text_emb"].shape)[0]
    assert np.allclose(np.linalg.norm(out["image_emb"].numpy(), axis=1), 1.0, atol=1e-5)

"""Deterministic, resumable epoch order and exact (padded) evaluation batches."""

import numpy as np

from storyedge.data.pipeline import WindowArrays
from storyedge.training.batches import (
    epoch_order,
    iter_eval_batches,
    iter_train_batches,
    train_batches_per_epoch,
)

PAD = 0


def _arrays(n: int = 21) -> WindowArrays:
    rng = np.random.default_rng(0)
    return WindowArrays(
        frame_pool=rng.integers(0, 256, size=(n + 1, 4, 4, 3), dtype=np.uint8),
        frame_index=np.stack([np.arange(n), np.arange(n) + 1], axis=1).astype(np.int32),
        captions=rng.integers(1, 9, size=(n, 2, 5)).astype(np.int32),
        reason=rng.integers(1, 9, size=(n, 3)).astype(np.int32),
        target=np.concatenate([np.full((n, 1), 2), np.arange(n)[:, None] + 10, np.zeros((n, 2))], 1).astype(np.int32),
        story_ids=[f"s{i}" for i in range(n)],
        starts=np.zeros(n, np.int32),
    )


def test_epoch_order_is_a_function_of_seed_and_epoch():
    assert np.array_equal(epoch_order(50, 7, 3), epoch_order(50, 7, 3))
    assert not np.array_equal(epoch_order(50, 7, 3), epoch_order(50, 7, 4))
    assert not np.array_equal(epoch_order(50, 7, 3), epoch_order(50, 8, 3))
    assert sorted(epoch_order(50, 7, 3)) == list(range(50))


def test_resuming_at_batch_b_gives_the_rest_of_the_same_epoch():
    arrays = _arrays()
    full = list(iter_train_batches(arrays, 4, seed=1, epoch=2))
    assert len(full) == train_batches_per_epoch(21, 4) == 5  # partial remainder dropped
    rest = list(iter_train_batches(arrays, 4, seed=1, epoch=2, start=3))
    assert len(rest) == 2
    for a, b in zip(full[3:], rest):
        for key in a:
            assert np.array_equal(a[key], b[key])


def test_train_batches_normalise_frames_like_the_data_layer():
    arrays = _arrays()
    batch = next(iter_train_batches(arrays, 4, seed=1, epoch=0))
    order = epoch_order(21, 1, 0)[:4]
    assert np.array_equal(batch["frames"], arrays.frames[order])
    assert batch["frames"].dtype == np.float32 and batch["frames"].min() >= -1.0


def test_eval_batches_cover_every_window_once_and_pad_only_with_padding():
    arrays = _arrays()
    batches = list(iter_eval_batches(arrays, 8, PAD))
    assert [b["target"].shape[0] for b in batches] == [8, 8, 8]
    targets = np.concatenate([b["target"] for b in batches])
    assert np.array_equal(targets[:21], arrays.target)
    assert (targets[21:] == PAD).all()  # padded rows have no token to score
    assert (np.concatenate([b["captions"] for b in batches])[21:] == PAD).all()
    unpadded = list(iter_eval_batches(arrays, 8))
    assert unpadded[-1]["target"].shape[0] == 5

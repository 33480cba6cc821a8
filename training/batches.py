"""Deterministic, resumable batching of :class:`~storyedge.data.pipeline.WindowArrays`.

Why not ``make_tf_dataset`` for training: its shuffle reshuffles on every iteration of the
dataset, so "epoch e, batch b" cannot be found again after a restart. Here the order of epoch
``e`` is ``numpy.random.default_rng([seed, e]).permutation(N)``: a pure function of the seed and
the epoch, so ``--resume`` skips exactly the batches a checkpoint says were done, in O(1).
Frames are gathered from the uint8 pool and normalised per batch with the data layer's own
:func:`~storyedge.data.pipeline.normalize_frames` (the same values ``make_tf_dataset`` gives).

Training drops the last partial batch (one static shape, one trace); evaluation keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from storyedge.data.pipeline import WindowArrays, normalize_frames


def epoch_order(num_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The window order of ``epoch`` (0-based)."""
    return np.random.default_rng([seed, epoch]).permutation(num_windows)


def train_batches_per_epoch(num_windows: int, batch_size: int) -> int:
    """Full batches per training epoch (the partial remainder is dropped)."""
    return num_windows // batch_size


def eval_batches(num_windows: int, batch_size: int) -> int:
    return -(-num_windows // batch_size)


def gather_batch(arrays: WindowArrays, index: np.ndarray) -> dict[str, np.ndarray]:
    """The model inputs ``{frames, captions, reason, target}`` of windows ``index``."""
    return {
        "frames": normalize_frames(arrays.frame_pool[arrays.frame_index[index]]),
        "captions": arrays.captions[index],
        "reason": arrays.reason[index],
        "target": arrays.target[index],
    }


def iter_train_batches(
    arrays: WindowArrays, batch_size: int, seed: int, epoch: int, start: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """Shuffled full batches of ``epoch``, from batch ``start`` on."""
    order = epoch_order(len(arrays), seed, epoch)
    for b in range(start, train_batches_per_epoch(len(arrays), batch_size)):
        yield gather_batch(arrays, order[b * batch_size : (b + 1) * batch_size])


def iter_eval_batches(
    arrays: WindowArrays, batch_size: int, pad_id: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """In-order batches covering every window.

    With ``pad_id``, a partial last batch is filled up to ``batch_size`` with all-padding rows
    (zero frames, ``pad_id`` tokens): their targets are all padding, so a padding-masked loss
    is unchanged, and a compiled eval step sees a single shape (one trace instead of two).
    """
    for lo in range(0, len(arrays), batch_size):
        batch = gather_batch(arrays, np.arange(lo, min(lo + batch_size, len(arrays))))
        missing = batch_size - batch["target"].shape[0]
        if pad_id is not None and missing > 0:
            batch = {key: _pad_rows(value, missing, 0 if key == "frames" else pad_id)
                     for key, value in batch.items()}
        yield batch


def _pad_rows(value: np.ndarray, rows: int, fill: float) -> np.ndarray:
    filler = np.full((rows, *value.shape[1:]), fill, dtype=value.dtype)
    return np.concatenate([value, filler], axis=0)

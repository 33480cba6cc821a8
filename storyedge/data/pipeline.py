"""Windows → numpy arrays → ``tf.data``.

:func:`encode_windows` materialises every window of a split as numpy arrays (the export
validation and the benchmark's parity use these directly; no TensorFlow import).
:func:`make_tf_dataset` wraps them for training / evaluation (TensorFlow imported there only).

Frames are stored once per story frame as uint8 (``frame_pool``) with a per-window index
(``frame_index``): the k frames of overlapping windows are shared, and uint8 is 4x smaller than
float32, which matters at image_size 128. ``WindowArrays.frames`` gives the float32
``[N, k, S, S, 3]`` view, normalised to [-1, 1] as ``x / 127.5 - 1``; ``make_tf_dataset``
gathers and normalises per batch with the same float32 arithmetic (identical values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import datasets
import numpy as np
from PIL import Image

from storyedge.config import DatasetConfig
from storyedge.data.windows import WindowStats, check_window_stats, iter_story_windows
from storyedge.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf


class CaptionTokenizer(Protocol):
    """What the pipeline needs from a tokenizer (:class:`storyedge.tokenizer.StoryTokenizer`)."""

    pad_id: int
    bos_id: int
    eos_id: int

    def encode_caption(self, text: str, max_len: int) -> list[int]: ...

    def encode_text(self, text: str, max_len: int) -> list[int]: ...


def normalize_frames(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels → float32 in [-1, 1] (``x / 127.5 - 1``)."""
    return pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def resize_frame(image: Image.Image, size: int) -> np.ndarray:
    """RGB uint8 ``[size, size, 3]``; bilinear (PIL) when the frame is not already that size."""
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


@dataclass
class WindowArrays:
    """All windows of a split as numpy arrays, in deterministic order (story, then offset).

    ``frames`` (float32 ``[N, k, S, S, 3]`` in [-1, 1]) is computed from ``frame_pool`` /
    ``frame_index`` on access; ``captions`` int32 ``[N, k, L]`` (each framed like a target),
    ``reason`` int32 ``[N, R]``, ``target`` int32 ``[N, L]`` (caption k+1 as
    ``[BOS] tokens [EOS]`` padded to L).
    """

    frame_pool: np.ndarray
    frame_index: np.ndarray
    captions: np.ndarray
    reason: np.ndarray
    target: np.ndarray
    story_ids: list[str]
    #: offset of each window in its story
    starts: np.ndarray
    #: raw text of each target caption
    target_text: list[str] = field(default_factory=list)
    stats: WindowStats = field(default_factory=WindowStats)

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def frames(self) -> np.ndarray:
        """float32 ``[N, k, S, S, 3]`` in [-1, 1]."""
        return normalize_frames(self.frame_pool[self.frame_index])

    @property
    def k(self) -> int:
        """Frames (and captions) per window."""
        return int(self.frame_index.shape[1])

    def take(self, n: int) -> "WindowArrays":
        """The first ``n`` windows (all when fewer)."""
        n = min(n, len(self))
        used = np.unique(self.frame_index[:n])
        remap = np.full(self.frame_pool.shape[0], -1, dtype=np.int32)
        remap[used] = np.arange(used.size, dtype=np.int32)
        return WindowArrays(
            frame_pool=self.frame_pool[used],
            frame_index=remap[self.frame_index[:n]],
            captions=self.captions[:n],
            reason=self.reason[:n],
            target=self.target[:n],
            story_ids=self.story_ids[:n],
            starts=self.starts[:n],
            target_text=self.target_text[:n],
            stats=self.stats,
        )

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{frames, captions, reason, target}`` (materialises ``frames``)."""
        return {
            "frames": self.frames,
            "captions": self.captions,
            "reason": self.reason,
            "target": self.target,
        }


def _encode_caption(tokenizer: CaptionTokenizer, text: str, max_len: int) -> list[int]:
    ids = list(tokenizer.encode_caption(text, max_len))
    if len(ids) != max_len or ids[0] != tokenizer.bos_id or tokenizer.eos_id not in ids:
        raise DataError(
            f"tokenizer.encode_caption returned {len(ids)} ids not framed as [BOS] .. [EOS] "
            f"padded to {max_len}"
        )
    return ids


def _encode_text(tokenizer: CaptionTokenizer, text: str, max_len: int) -> list[int]:
    ids = list(tokenizer.encode_text(text, max_len))
    if len(ids) != max_len:
        raise DataError(f"tokenizer.encode_text returned {len(ids)} ids, expected {max_len}")
    return ids


def encode_windows(
    split_ds: datasets.Dataset,
    tokenizer: CaptionTokenizer,
    cfg: DatasetConfig,
    max_windows: int | None = None,
    split_name: str = "",
) -> WindowArrays:
    """Every window (k = ``cfg.seq_len``) of a generic-layout split, encoded.

    Frames are resized to ``cfg.image_size`` (PIL bilinear); captions and targets use
    ``tokenizer.encode_caption(text, cfg.max_caption_len)``, the reason
    ``tokenizer.encode_text(text, cfg.max_reason_len)``. With ``max_windows``, stops after
    that many windows (the first ones, in story order). Short stories are skipped with one
    warning; none usable, an empty split or an undecodable frame → :class:`DataError`.
    """
    k, size = cfg.seq_len, cfg.image_size
    L, R = cfg.max_caption_len, cfg.max_reason_len
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1, got {max_windows}")
    stats = WindowStats()
    pool: list[np.ndarray] = []
    frame_index: list[list[int]] = []
    captions: list[list[list[int]]] = []
    reason: list[list[int]] = []
    target: list[list[int]] = []
    story_ids: list[str] = []
    starts: list[int] = []
    target_text: list[str] = []
    caption_cache: dict[str, list[int]] = {}

    def caption_ids(text: str) -> list[int]:
        if text not in caption_cache:
            caption_cache[text] = _encode_caption(tokenizer, text, L)
        return caption_cache[text]

    done = False
    for story in iter_story_windows(split_ds, k, stats):
        base = len(pool)
        order = sorted(story.frames)
        position = {i: base + j for j, i in enumerate(order)}
        pool.extend(resize_frame(story.frames[i], size) for i in order)
        reason_ids = _encode_text(tokenizer, story.reason, R)
        for s in story.starts:
            frame_index.append([position[s + j] for j in range(k)])
            captions.append([caption_ids(story.captions[s + j]) for j in range(k)])
            reason.append(reason_ids)
            target.append(caption_ids(story.captions[s + k]))
            target_text.append(story.captions[s + k])
            story_ids.append(story.story_id)
            starts.append(s)
            if max_windows is not None and len(target) >= max_windows:
                done = True
                break
        if done:
            break
    if not done:
        check_window_stats(stats, k, split_name)
    if not target:
        where = f" {split_name}" if split_name else ""
        raise DataError(f"the{where} split has no stories to make windows from")
    return WindowArrays(
        frame_pool=np.stack(pool).astype(np.uint8),
        frame_index=np.asarray(frame_index, dtype=np.int32),
        captions=np.asarray(captions, dtype=np.int32),
        reason=np.asarray(reason, dtype=np.int32),
        target=np.asarray(target, dtype=np.int32),
        story_ids=story_ids,
        starts=np.asarray(starts, dtype=np.int32),
        target_text=target_text,
        stats=stats,
    )


def make_tf_dataset(
    arrays: WindowArrays,
    batch_size: int,
    shuffle: bool,
    seed: int,
    shuffle_buffer: int | None = None,
) -> "tf.data.Dataset":
    """A ``tf.data.Dataset`` of ``{frames, captions, reason, target}`` batches.

    ``shuffle=True`` (training): reshuffled each epoch from ``seed``, last partial batch
    dropped so shapes are static. ``shuffle=False`` (evaluation): in order, the last partial
    batch kept. Prefetched. Frames are gathered from the uint8 pool and normalised per batch.
    """
    import tensorflow as tf  # lazy: the numpy pipeline (bench, export) must not import TensorFlow

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(arrays) == 0:
        raise DataError("no windows to make a dataset from")
    if shuffle and len(arrays) < batch_size:
        raise DataError(
            f"only {len(arrays)} training windows, fewer than one batch of {batch_size}: "
            "lower dataset.batch_size or use more stories"
        )
    pool = arrays.frame_pool
    k = arrays.k
    size = pool.shape[1:]

    def gather(index: np.ndarray) -> np.ndarray:
        return normalize_frames(pool[index])

    def to_batch(item: dict[str, Any]) -> dict[str, Any]:
        frames = tf.numpy_function(gather, [item["frame_index"]], tf.float32, stateful=False)
        frames = tf.ensure_shape(frames, [None, k, *size])
        batch_dim = batch_size if shuffle else None
        frames.set_shape([batch_dim, k, *size])
        return {
            "frames": frames,
            "captions": item["captions"],
            "reason": item["reason"],
            "target": item["target"],
        }

    ds = tf.data.Dataset.from_tensor_slices(
        {
            "frame_index": arrays.frame_index,
            "captions": arrays.captions,
            "reason": arrays.reason,
            "target": arrays.target,
        }
    )
    if shuffle:
        buffer = min(len(arrays), shuffle_buffer or len(arrays))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=shuffle)
    ds = ds.map(to_batch, num_parallel_calls=1, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)

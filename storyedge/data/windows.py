"""Sliding windows over stories: k (frame, caption) pairs in, caption k+1 out.

A window starting at offset ``s`` holds frames and captions ``s .. s+k-1`` and targets caption
``s+k``. A story of ``n`` frames therefore yields ``n - k`` windows (offsets ``0 .. n-k-1``):
e.g. k=3 gives 2 windows for n=5, 1 for n=4 and none for n=3. (The design note's "yields its
k+1 windows" reads as "windows of k+1 captions"; the count per story is ``n - k``.) Stories
shorter than ``k + 1`` frames give no window; they are counted and reported in one warning.

Images are decoded here with Pillow (not by ``datasets``) so that an undecodable frame becomes a
:class:`DataError` naming the story and the frame index. Only the frames a window uses are
decoded (the last frame of a story is never a context frame).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import datasets
from PIL import Image

from storyedge.errors import DataError

log = logging.getLogger(__name__)


def window_starts(num_frames: int, k: int) -> range:
    """Start offsets of the windows of a story with ``num_frames`` frames: ``0 .. n-k-1``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return range(max(0, num_frames - k))


@dataclass
class WindowStats:
    """Counts over one split."""

    stories: int = 0
    #: stories with at least k+1 frames
    used_stories: int = 0
    #: stories shorter than k+1 frames
    skipped_stories: int = 0
    windows: int = 0


@dataclass
class StoryWindows:
    """One story's decoded context frames and its window offsets."""

    story_id: str
    #: frame index -> RGB image, for every frame some window uses
    frames: dict[int, Image.Image]
    captions: list[str]
    reason: str
    starts: list[int] = field(default_factory=list)


def count_windows(split: datasets.Dataset, k: int) -> WindowStats:
    """Window counts from the ``frame_count`` column alone (no image decoding)."""
    stats = WindowStats()
    counts = split["frame_count"] if "frame_count" in split.column_names else [
        len(c) for c in split["captions"]
    ]
    for n in counts:
        stats.stories += 1
        starts = window_starts(int(n), k)
        if len(starts):
            stats.used_stories += 1
            stats.windows += len(starts)
        else:
            stats.skipped_stories += 1
    return stats


def decode_frame(frame: Any, story_id: str, index: int) -> Image.Image:
    """An RGB PIL image from a ``datasets`` image value (dict of bytes/path, or PIL image).

    Anything Pillow cannot read raises :class:`DataError` naming the story and frame index.
    """
    try:
        if isinstance(frame, Image.Image):
            image = frame
        elif isinstance(frame, dict) and frame.get("bytes") is not None:
            image = Image.open(io.BytesIO(frame["bytes"]))
        elif isinstance(frame, dict) and frame.get("path"):
            image = Image.open(frame["path"])
        else:
            raise ValueError("no image bytes or path")
        image.load()
        return image.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a data problem
        raise DataError(
            f"story {story_id!r}: frame {index} is not a readable image "
            f"({type(exc).__name__}: {exc})"
        ) from None


def iter_raw_rows(split: datasets.Dataset, batch_size: int = 64) -> Iterator[dict[str, Any]]:
    """Rows as plain Python values with images left undecoded (``{"bytes", "path"}`` dicts).

    Reads through the Arrow format, so unlike ``cast_column(..., Image(decode=False))`` it
    writes no cache file next to the data.
    """
    for table in split.with_format("arrow").iter(batch_size=batch_size):
        yield from table.to_pylist()


def iter_story_windows(
    split: datasets.Dataset, k: int, stats: WindowStats | None = None
) -> Iterator[StoryWindows]:
    """Yield each usable story's decoded context frames and window offsets, in split order.

    Short stories are skipped (counted in ``stats``); warning and errors are left to
    :func:`check_window_stats`, called by the consumer once iteration ends.
    """
    stats = stats if stats is not None else WindowStats()
    for row in iter_raw_rows(split):
        stats.stories += 1
        frames = row["frames"]
        captions = list(row["captions"])
        story_id = str(row.get("story_id", stats.stories - 1))
        n = min(len(frames), len(captions))
        starts = list(window_starts(n, k))
        if not starts:
            stats.skipped_stories += 1
            continue
        stats.used_stories += 1
        stats.windows += len(starts)
        used = range(0, starts[-1] + k)
        decoded = {i: decode_frame(frames[i], story_id, i) for i in used}
        yield StoryWindows(story_id, decoded, captions, str(row.get("reason") or ""), starts)


def check_window_stats(stats: WindowStats, k: int, split_name: str = "") -> None:
    """Warn once about skipped short stories; raise :class:`DataError` if no story is usable."""
    where = f" in {split_name}" if split_name else ""
    if stats.stories and stats.used_stories == 0:
        raise DataError(
            f"no story has at least k+1 = {k + 1} frames{where} "
            f"({stats.stories} stories; lower dataset.seq_len or use longer stories)"
        )
    if stats.skipped_stories:
        log.warning(
            "skipped %d of %d stories%s shorter than k+1 = %d frames",
            stats.skipped_stories,
            stats.stories,
            where,
            k + 1,
        )

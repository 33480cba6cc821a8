"""Helpers for the data tests (imported by the test modules of this folder)."""

from __future__ import annotations

import hashlib
import io

import datasets
from PIL import Image

from storyedge.data.synthetic import story_features
from storyedge.data.windows import iter_raw_rows


def png_bytes(colour: tuple[int, int, int], size: int = 12) -> bytes:
    """A small solid-colour PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def generic_story(story_id: str, n: int, colour_base: int = 0) -> dict:
    """A generic-layout row with ``n`` distinct solid frames and captions."""
    return {
        "story_id": story_id,
        "frames": [
            {"bytes": png_bytes(((colour_base + 40 * i) % 256, 10 * i, 200)), "path": None}
            for i in range(n)
        ],
        "captions": [f"caption {story_id} number {i}" for i in range(n)],
        "reason": f"reason of {story_id}",
        "frame_count": n,
    }


def generic_dataset(rows: list[dict]) -> datasets.Dataset:
    """A ``Dataset`` in the generic layout from row dicts."""
    columns = {name: [row[name] for row in rows] for name in story_features()}
    return datasets.Dataset.from_dict(columns, features=story_features())


def content_digest(dd: datasets.DatasetDict) -> str:
    """sha256 over every split's story ids, PNG bytes, captions and reasons."""
    h = hashlib.sha256()
    for name in sorted(dd):
        h.update(name.encode())
        for row in iter_raw_rows(dd[name]):
            h.update(row["story_id"].encode())
            for frame in row["frames"]:
                h.update(frame["bytes"])
            for caption in row["captions"]:
                h.update(caption.encode() + b"\0")
            h.update(row["reason"].encode() + b"\1")
            h.update(str(row["frame_count"]).encode())
    return h.hexdigest()

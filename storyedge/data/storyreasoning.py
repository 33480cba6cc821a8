"""Adapter for the ``daniel3303/StoryReasoning`` schema to the generic story layout.

Source columns: ``story_id``, ``images`` (list of images), ``frame_count``, ``chain_of_thought``
(markdown with ``## Image N`` sections) and ``story`` (per-frame text in
``<gdi imageN> ... </gdi>`` segments holding grounding tags such as ``<gdo char1>Bob</gdo>``,
``<gda char1>walks</gda>``, ``<gdl loc1>the park</gdl>``).

Generic layout: ``story_id``, ``frames``, ``captions`` (caption i = text of segment ``image{i}``,
tags stripped to their inner text, whitespace normalised), ``reason`` (the whole chain of thought
as plain text: markdown headings, table rules and emphasis removed) and ``frame_count``.

A row whose segment count, ``frame_count`` and number of images disagree (or whose segments are
not exactly ``image1 .. imageN``) is skipped; the count is logged once per split as a warning.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import datasets

from storyedge.data.synthetic import story_features
from storyedge.errors import DataError

log = logging.getLogger(__name__)

STORYREASONING_COLUMNS = ("story_id", "images", "frame_count", "chain_of_thought", "story")

_SEGMENT_RE = re.compile(r"<gdi\s+image(\d+)\s*>(.*?)</gdi\s*>", re.DOTALL | re.IGNORECASE)
_TAG_RE = re.compile(r"</?gd[a-z]*\b[^>]*>", re.IGNORECASE)
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}(\s.*)?$")
_TABLE_RULE_RE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_SPACE_RE = re.compile(r"\s+")


def is_storyreasoning(column_names: list[str] | tuple[str, ...]) -> bool:
    """True when the columns look like StoryReasoning (``images`` and ``story``)."""
    return "images" in column_names and "story" in column_names


def strip_tags(text: str) -> str:
    """Remove ``<gd*>`` grounding tags (keeping their inner text) and normalise whitespace."""
    return _SPACE_RE.sub(" ", _TAG_RE.sub("", text)).strip()


def parse_story_segments(story: str) -> dict[int, str]:
    """``{image number: caption}`` from the ``<gdi imageN>`` segments of a story text.

    A number appearing twice keeps its first segment (and makes the row fail the count check,
    since the segment count then exceeds the distinct numbers).
    """
    segments: dict[int, str] = {}
    for number, body in _SEGMENT_RE.findall(story):
        segments.setdefault(int(number), strip_tags(body))
    return segments


def chain_of_thought_text(markdown: str) -> str:
    """Plain text of a chain of thought: headings and table rules dropped, pipes and
    emphasis markers removed, whitespace normalised."""
    lines = []
    for line in markdown.splitlines():
        if _HEADING_RE.match(line) or _TABLE_RULE_RE.match(line):
            continue
        line = line.replace("|", " ").replace("**", "").replace("__", "")
        lines.append(line)
    return strip_tags(" ".join(lines))


def _row_check(story: str, frame_count: Any, n_images: int) -> bool:
    segments = _SEGMENT_RE.findall(story or "")
    numbers = sorted(int(n) for n, _ in segments)
    return (
        frame_count is not None
        and len(segments) == int(frame_count) == n_images
        and numbers == list(range(1, n_images + 1))
    )


def adapt_storyreasoning(split: datasets.Dataset, split_name: str = "") -> datasets.Dataset:
    """Map a StoryReasoning split to the generic layout; mismatching rows are skipped.

    Images pass through undecoded (their stored bytes / path), so adapting is cheap.
    """
    missing = [c for c in ("images", "story") if c not in split.column_names]
    if missing:
        raise DataError(
            f"StoryReasoning schema: missing column(s) {', '.join(missing)} "
            f"(columns found: {', '.join(split.column_names)})"
        )
    raw = split.cast_column("images", datasets.Sequence(datasets.Image(decode=False)))
    has_count = "frame_count" in raw.column_names
    n_before = len(raw)

    def keep(batch: dict[str, list[Any]]) -> list[bool]:
        counts = batch["frame_count"] if has_count else [len(im) for im in batch["images"]]
        return [
            _row_check(story, count, len(images))
            for story, count, images in zip(batch["story"], counts, batch["images"])
        ]

    kept = raw.filter(keep, batched=True, batch_size=64, desc=None)
    skipped = n_before - len(kept)
    where = f" in {split_name}" if split_name else ""
    if skipped:
        log.warning(
            "StoryReasoning: skipped %d of %d stories%s whose <gdi imageN> segments do not match "
            "frame_count and the number of images",
            skipped,
            n_before,
            where,
        )
    has_id = "story_id" in kept.column_names
    has_cot = "chain_of_thought" in kept.column_names

    def convert(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in story_features()}
        for j, (story, images) in enumerate(zip(batch["story"], batch["images"])):
            segments = parse_story_segments(story)
            out["story_id"].append(
                str(batch["story_id"][j]) if has_id else f"{split_name or 'row'}-{indices[j]}"
            )
            out["frames"].append(list(images))
            out["captions"].append([segments[i] for i in range(1, len(images) + 1)])
            out["reason"].append(
                chain_of_thought_text(batch["chain_of_thought"][j] or "") if has_cot else ""
            )
            out["frame_count"].append(len(images))
        return out

    return kept.map(
        convert,
        batched=True,
        batch_size=64,
        with_indices=True,
        remove_columns=kept.column_names,
        features=story_features(),
        desc=None,
    )

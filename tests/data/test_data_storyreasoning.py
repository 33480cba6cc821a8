"""The StoryReasoning adapter, on a small local parquet in the real layout."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_testutil import png_bytes

from storyedge.config import DatasetConfig
from storyedge.data.loading import load_story_splits
from storyedge.data.storyreasoning import (
    adapt_storyreasoning,
    chain_of_thought_text,
    parse_story_segments,
    strip_tags,
)
from storyedge.data.synthetic import story_features
from storyedge.data.windows import iter_story_windows
from storyedge.errors import DataError


def _story(n: int, sid: str) -> str:
    parts = []
    for i in range(1, n + 1):
        parts.append(
            f"<gdi image{i}>\n  In scene {i}, <gdo char1>Bob</gdo> <gda char1>walks</gda> to "
            f"<gdl loc1>the   park</gdl> with <gdo bg1 bg2>two dogs</gdo> ({sid}).\n</gdi>"
        )
    return "\n".join(parts)


def _cot(n: int) -> str:
    sections = []
    for i in range(1, n + 1):
        sections.append(
            f"## Image {i}\n### Characters\n| Character ID | Name | Actions |\n"
            f"|--------------|------|---------|\n| char1 | Bob | **walks** in image {i} |\n"
        )
    return "\n".join(sections) + "\n## Narrative\nBob keeps walking."


def _row(sid: str, n_images: int, frame_count: int | None = None, n_segments: int | None = None) -> dict:
    return {
        "story_id": sid,
        "images": [{"bytes": png_bytes((30 * i, 100, 50), size=20), "path": None} for i in range(n_images)],
        "frame_count": n_images if frame_count is None else frame_count,
        "chain_of_thought": _cot(n_images),
        "story": _story(n_images if n_segments is None else n_segments, sid),
    }


SR_FEATURES = datasets.Features(
    {
        "story_id": datasets.Value("string"),
        "images": datasets.Sequence(datasets.Image()),
        "frame_count": datasets.Value("int32"),
        "chain_of_thought": datasets.Value("string"),
        "story": datasets.Value("string"),
    }
)


def _write_parquet(path: Path, rows: list[dict]) -> None:
    """Parquet as the hub stores it (datasets writes the Image feature metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {name: [r[name] for r in rows] for name in SR_FEATURES}
    datasets.Dataset.from_dict(columns, features=SR_FEATURES).to_parquet(str(path))


def _write_plain_parquet(path: Path, rows: list[dict]) -> None:
    """Parquet without HF metadata: images are plain list<struct<bytes, path>>."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), str(path))


@pytest.fixture()
def sr_dir(tmp_path: Path) -> Path:
    train = [_row(f"{i}", 4 + i % 3) for i in range(30)]
    train.append(_row("bad-count", 5, frame_count=6))
    train.append(_row("bad-segments", 5, n_segments=4))
    _write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", train)
    _write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [_row(f"t{i}", 5) for i in range(4)])
    return tmp_path


def test_strip_tags_and_segments() -> None:
    assert strip_tags("<gdo char1>Bob</gdo>  <gda char1>runs</gda>\n to <gdl l1>it</gdl>.") == "Bob runs to it."
    segments = parse_story_segments(_story(3, "x"))
    assert sorted(segments) == [1, 2, 3]
    assert segments[2] == "In scene 2, Bob walks to the park with two dogs (x)."


def test_chain_of_thought_text_drops_headings_and_table_rules() -> None:
    text = chain_of_thought_text(_cot(2))
    assert "#" not in text and "---" not in text and "|" not in text and "**" not in text
    assert "Image 1" not in text  # the "## Image N" headings are gone
    assert "char1 Bob walks in image 1" in text
    assert text.endswith("Bob keeps walking.")


def test_adapter_maps_rows_and_skips_mismatches(sr_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = {"train": [str(p) for p in sorted((sr_dir / "data").glob("train-*.parquet"))]}
    raw = datasets.load_dataset("parquet", data_files=files)["train"]
    with caplog.at_level(logging.WARNING, logger="storyedge.data.storyreasoning"):
        adapted = adapt_storyreasoning(raw, "train")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 of 32 stories in train" in warnings[0]
    assert adapted.features == story_features()
    assert len(adapted) == 30
    assert "bad-count" not in adapted["story_id"] and "bad-segments" not in adapted["story_id"]
    row = adapted[7]
    assert row["story_id"] == "7"
    n = 4 + 7 % 3
    assert row["frame_count"] == n == len(row["frames"]) == len(row["captions"])
    assert row["captions"][0] == "In scene 1, Bob walks to the park with two dogs (7)."
    assert row["captions"][n - 1].startswith(f"In scene {n},")
    assert all("<" not in c for c in row["captions"])
    assert row["reason"].startswith("Character ID Name Actions char1 Bob walks in image 1")
    assert row["frames"][0].size == (20, 20)
    # frames decode through the window code too
    assert next(iter_story_windows(adapted, 3)).frames[0].size == (20, 20)


def test_adapter_handles_parquet_without_image_metadata(tmp_path: Path) -> None:
    _write_plain_parquet(tmp_path / "train-0.parquet", [_row("a", 4), _row("b", 5, frame_count=4)])
    raw = datasets.load_dataset("parquet", data_files={"train": str(tmp_path / "train-0.parquet")})["train"]
    adapted = adapt_storyreasoning(raw, "train")
    assert list(adapted["story_id"]) == ["a"]
    assert adapted[0]["frames"][3].mode == "RGB"


def test_load_story_splits_carves_validation(sr_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = DatasetConfig(name="daniel3303/StoryReasoning", path=str(sr_dir), schema="auto", validation_fraction=0.2)
    with caplog.at_level(logging.INFO, logger="storyedge.data.loading"):
        splits = load_story_splits(cfg)
    assert list(splits) == ["train", "validation", "test"]
    assert any("no validation split: carved" in r.getMessage() for r in caplog.records)
    train, val = set(splits["train"]["story_id"]), set(splits["validation"]["story_id"])
    assert val and train and not (train & val)
    assert train | val == {str(i) for i in range(30)}
    assert len(splits["test"]) == 4
    again = load_story_splits(cfg)
    assert list(again["validation"]["story_id"]) == list(splits["validation"]["story_id"])
    assert list(again["train"]["story_id"]) == list(splits["train"]["story_id"])


def test_storyreasoning_schema_without_its_columns_is_an_error(tmp_path: Path) -> None:
    rows = [{"story_id": "a", "frames": [{"bytes": png_bytes((1, 2, 3)), "path": None}], "captions": ["x"]}]
    _write_plain_parquet(tmp_path / "train-0.parquet", rows)
    cfg = DatasetConfig(name=str(tmp_path), schema="storyreasoning")
    with pytest.raises(DataError, match="missing column.*images.*columns found: story_id, frames, captions"):
        load_story_splits(cfg)

"""load_story_splits: synthetic, local dirs, generic key renaming, offline hub, carving."""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_testutil import content_digest, generic_dataset, generic_story, png_bytes

from storyedge.config import DatasetConfig
from storyedge.data import synthetic
from storyedge.data.loading import (
    carve_split,
    find_parquet_files,
    hash_fraction,
    load_story_splits,
)
from storyedge.data.synthetic import story_features
from storyedge.errors import DataError


def test_synthetic_is_generated_once_then_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = DatasetConfig(name="synthetic", path=str(tmp_path / "syn"), synthetic_stories=10, synthetic_seed=7)
    with caplog.at_level(logging.INFO, logger="storyedge.data.loading"):
        first = load_story_splits(cfg)
    assert any("generating the synthetic dataset" in r.getMessage() for r in caplog.records)
    assert {k: len(v) for k, v in first.items()} == {"train": 8, "validation": 1, "test": 1}
    assert first["train"].features == story_features()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="storyedge.data.loading"):
        second = load_story_splits(cfg)
    assert not any("generating" in r.getMessage() for r in caplog.records)
    assert content_digest(first) == content_digest(second)
    assert content_digest(first) == content_digest(synthetic.generate_synthetic_dataset(10, 7, 64))


def test_synthetic_regenerated_when_settings_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "syn")
    load_story_splits(DatasetConfig(name="synthetic", path=path, synthetic_stories=10))
    with caplog.at_level(logging.WARNING, logger="storyedge.data.loading"):
        splits = load_story_splits(DatasetConfig(name="synthetic", path=path, synthetic_stories=20))
    assert any("regenerating" in r.getMessage() for r in caplog.records)
    assert sum(len(s) for s in splits.values()) == 20


def test_synthetic_frames_are_drawn_at_a_larger_image_size(tmp_path: Path) -> None:
    """At the seed's 128 px the frames are drawn at 128 px (not 64 px frames upscaled); at the
    quickstart's 32 px they stay 64 px (the model input resizes them)."""
    import io

    from PIL import Image

    def frame_side(image_size: int) -> tuple[int, int | None]:
        cfg = DatasetConfig(name="synthetic", path=str(tmp_path / f"syn{image_size}"), synthetic_stories=5,
                            image_size=image_size)
        frame = load_story_splits(cfg)["train"][0]["frames"][0]
        image = frame if isinstance(frame, Image.Image) else Image.open(io.BytesIO(frame["bytes"]))
        return image.size[0], synthetic.read_synthetic_meta(cfg.path)["frame_size"]

    assert frame_side(128) == (128, 128)
    assert frame_side(32) == (64, 64)
    assert frame_side(64) == (64, 64)


def _custom_keys_dataset() -> datasets.Dataset:
    rows = [generic_story(f"s{i}", 4 + i % 2) for i in range(6)]
    return datasets.Dataset.from_dict(
        {
            "imgs": [r["frames"] for r in rows],
            "texts": [r["captions"] for r in rows],
            "why": [r["reason"] for r in rows],
            "story_id": [r["story_id"] for r in rows],
        },
        features=datasets.Features(
            {
                "imgs": datasets.Sequence(datasets.Image()),
                "texts": datasets.Sequence(datasets.Value("string")),
                "why": datasets.Value("string"),
                "story_id": datasets.Value("string"),
            }
        ),
    )


def test_generic_keys_are_renamed(tmp_path: Path) -> None:
    ds = _custom_keys_dataset()
    datasets.DatasetDict({"train": ds, "validation": ds.select([0, 1]), "test": ds.select([2])}).save_to_disk(
        str(tmp_path / "custom")
    )
    cfg = DatasetConfig(name="mine", path=str(tmp_path / "custom"), frames_key="imgs", captions_key="texts", reason_key="why")
    splits = load_story_splits(cfg)
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "validation": 2, "test": 1}
    train = splits["train"]
    assert train.features == story_features()
    assert train[1]["captions"] == ds[1]["texts"]
    assert train[1]["reason"] == "reason of s1"
    assert train[1]["frame_count"] == 5 and len(train[1]["frames"]) == 5
    assert train[1]["frames"][0].mode == "RGB"


def test_generic_reason_is_optional_and_ids_are_made(tmp_path: Path) -> None:
    ds = _custom_keys_dataset().remove_columns(["why", "story_id"])
    ds.to_parquet(str(tmp_path / "train-00000.parquet"))
    ds.select([0, 1]).to_parquet(str(tmp_path / "test-00000.parquet"))
    cfg = DatasetConfig(name=str(tmp_path), frames_key="imgs", captions_key="texts", reason_key="why")
    splits = load_story_splits(cfg)
    everything = list(splits["train"]["story_id"]) + list(splits["validation"]["story_id"])
    assert sorted(everything) == [f"train-{i}" for i in range(6)]
    assert set(splits["train"]["reason"]) == {""}


def test_missing_frames_key_names_key_and_columns(tmp_path: Path) -> None:
    _custom_keys_dataset().save_to_disk(str(tmp_path / "single"))
    cfg = DatasetConfig(name="mine", path=str(tmp_path / "single"), captions_key="texts")
    with pytest.raises(DataError, match=r"frames column 'frames'.*columns found: imgs, texts, why, story_id"):
        load_story_splits(cfg)
    cfg = DatasetConfig(name="mine", path=str(tmp_path / "single"), frames_key="imgs", captions_key="caps")
    with pytest.raises(DataError, match=r"captions column 'caps' \(dataset.captions_key\)"):
        load_story_splits(cfg)


def test_generic_rows_with_mismatched_lengths_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [generic_story(f"s{i}", 5) for i in range(4)]
    rows[2]["captions"] = rows[2]["captions"][:3]
    generic_dataset(rows).save_to_disk(str(tmp_path / "d"))
    with caplog.at_level(logging.WARNING, logger="storyedge.data.loading"):
        splits = load_story_splits(DatasetConfig(name="x", path=str(tmp_path / "d")))
    ids = [i for s in splits.values() for i in s["story_id"]]
    assert sorted(ids) == ["s0", "s1", "s3"]
    assert any("skipped 1 of 4 stories" in r.getMessage() for r in caplog.records)


def test_parquet_layouts_are_found(tmp_path: Path) -> None:
    rows = [{"story_id": "a", "frames": [{"bytes": png_bytes((1, 2, 3)), "path": None}], "captions": ["x"]}]
    (tmp_path / "data").mkdir()
    for name in ("train-00000-of-00002.parquet", "train-00001-of-00002.parquet", "validation-0.parquet", "notes.parquet"):
        pq.write_table(pa.Table.from_pylist(rows), str(tmp_path / "data" / name))
    found = find_parquet_files(tmp_path)
    assert sorted(found) == ["train", "validation"]
    assert [Path(p).name for p in found["train"]] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]


def test_missing_path_and_empty_dir_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_story_splits(DatasetConfig(name="x", path=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no dataset found"):
        load_story_splits(DatasetConfig(name="x", path=str(tmp_path / "empty")))


def test_offline_hub_name_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    name = f"storyedge-tests/not-cached-{uuid.uuid4().hex}"
    with pytest.raises(DataError) as info:
        load_story_splits(DatasetConfig(name=name))
    message = str(info.value)
    assert "\n" not in message
    assert name in message and "could not be reached" in message
    assert "dataset.path: /dir" in message and "parquet" in message and "save_to_disk" in message
    assert attempts == []
    # the library's own offline flags are restored afterwards
    import huggingface_hub.constants

    assert datasets.config.HF_HUB_OFFLINE is False
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False


def test_hash_fraction_is_stable_sha256() -> None:
    assert hash_fraction("validation:story-7") == pytest.approx(0.671303818108941, abs=1e-15)
    assert 0.0 <= hash_fraction("") < 1.0


def test_carve_is_deterministic_and_disjoint() -> None:
    ids = [f"story-{i}" for i in range(400)]
    ds = datasets.Dataset.from_dict({"story_id": ids, "x": list(range(400))})
    rest, val = carve_split(ds, 0.1)
    rest2, val2 = carve_split(ds, 0.1)
    assert list(val["story_id"]) == list(val2["story_id"]) and list(rest["story_id"]) == list(rest2["story_id"])
    assert not set(rest["story_id"]) & set(val["story_id"])
    assert sorted(list(rest["story_id"]) + list(val["story_id"])) == sorted(ids)
    assert 20 <= len(val) <= 60
    assert all(hash_fraction(f"validation:{s}") < 0.1 for s in val["story_id"])
    # membership depends on the id only, not on the order or the other rows
    _, val_sub = carve_split(ds.select(range(399, -1, -2)), 0.1)
    assert set(val_sub["story_id"]) == set(val["story_id"]) & set(ds.select(range(399, -1, -2))["story_id"])


def test_carve_keeps_one_story_for_tiny_train() -> None:
    ds = datasets.Dataset.from_dict({"story_id": ["a", "b"]})
    rest, val = carve_split(ds, 0.01)
    assert len(val) == 1 and len(rest) == 1


def test_load_split_windows_counts_and_names_a_missing_split(tmp_path: Path, tokenizer) -> None:
    from storyedge.data.loading import load_split_windows

    cfg = DatasetConfig(name="synthetic", path=str(tmp_path / "syn"), synthetic_stories=10, synthetic_seed=7)
    windows = load_split_windows(cfg, tokenizer, "train", max_windows=5)
    assert len(windows) == 5 and windows.captions.shape[1:] == (cfg.seq_len, cfg.max_caption_len)
    with pytest.raises(DataError, match=r"split 'dev': the dataset has splits train, validation, test"):
        load_split_windows(cfg, tokenizer, "dev")

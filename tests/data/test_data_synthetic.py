"""The embedded synthetic stories: layout, determinism, atomic writes, learnability."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import pytest
from data_testutil import content_digest

from storyedge.data import synthetic
from storyedge.data.synthetic import (
    COLOURS,
    GRID,
    Thing,
    caption_vocabulary,
    generate_synthetic_dataset,
    learnability_report,
    next_caption_from_window,
    read_frame_state,
    render_frame,
    story_features,
    write_synthetic_dataset,
)
from storyedge.errors import DataError


def test_layout_and_split_sizes(tiny_synthetic: datasets.DatasetDict) -> None:
    assert list(tiny_synthetic) == ["train", "validation", "test"]
    assert {k: len(v) for k, v in tiny_synthetic.items()} == {"train": 16, "validation": 2, "test": 2}
    ids = [sid for split in tiny_synthetic.values() for sid in split["story_id"]]
    assert len(set(ids)) == 20
    vocab = set(caption_vocabulary())
    for split in tiny_synthetic.values():
        assert split.features == story_features()
        for row in split:
            n = row["frame_count"]
            assert 5 <= n <= 7
            assert len(row["frames"]) == len(row["captions"]) == n
            for frame in row["frames"]:
                assert frame.size == (32, 32) and frame.mode == "RGB"
            for caption in row["captions"]:
                words = caption.split()
                assert len(words) <= 10 and caption == caption.lower()
                assert set(words) <= vocab
            assert row["reason"] and set(row["reason"].replace(",", " ,").split()) <= vocab


def test_split_sizes_at_quickstart_scale() -> None:
    assert synthetic.split_sizes(1200) == {"train": 960, "validation": 120, "test": 120}
    assert synthetic.split_sizes(3) == {"train": 1, "validation": 1, "test": 1}


def test_same_seed_same_bytes_different_seed_differs() -> None:
    a = content_digest(generate_synthetic_dataset(12, seed=5, frame_size=32))
    b = content_digest(generate_synthetic_dataset(12, seed=5, frame_size=32))
    c = content_digest(generate_synthetic_dataset(12, seed=6, frame_size=32))
    assert a == b
    assert a != c


def test_story_does_not_depend_on_dataset_size() -> None:
    small = generate_synthetic_dataset(10, seed=1, frame_size=32)["train"]
    large = generate_synthetic_dataset(30, seed=1, frame_size=32)["train"]
    assert small["captions"][:5] == large["captions"][:5]


def test_reason_lists_the_story_events_in_order(tiny_synthetic: datasets.DatasetDict) -> None:
    for row in tiny_synthetic["train"]:
        events = []
        for caption in row["captions"][1:]:
            if " takes " in caption:
                events.append("takes " + caption.split(" takes ", 1)[1])
            if " bounces " in caption:
                events.append("bounces " + caption.split(" bounces ", 1)[1])
        first = row["captions"][0].split()
        expected = f"the {first[1]} {first[2]} keeps moving {first[5]}"
        if events:
            expected += "".join(f", then {e}" for e in events)
        else:
            expected += " and never reaches a wall"
        assert row["reason"] == expected


@pytest.mark.parametrize("frame_size", [32, 64])
def test_read_frame_state_recovers_the_board(frame_size: int) -> None:
    board = {
        (0, 0): Thing("red", "circle"),
        (3, 1): Thing("blue", "triangle"),
        (2, 3): Thing("white", "square"),
        (1, 2): Thing("yellow", "triangle"),
    }
    assert read_frame_state(render_frame(board, frame_size)).as_dict() == board
    assert read_frame_state(render_frame({}, frame_size)).as_dict() == {}


def test_next_caption_reads_positions_from_pixels() -> None:
    actor, item = Thing("green", "square"), Thing("purple", "circle")
    moving_left = ["the green square moves left"]
    # actor at the left wall: bounce; one cell further right: a plain move; an item ahead: take.
    at_wall = render_frame({(0, 1): actor, (3, 3): item}, 32)
    assert next_caption_from_window(moving_left, at_wall) == "the green square bounces off the left wall"
    free = render_frame({(2, 1): actor, (3, 3): item}, 32)
    assert next_caption_from_window(moving_left, free) == "the green square moves left"
    ahead = render_frame({(2, 1): actor, (1, 1): item}, 32)
    assert (
        next_caption_from_window(moving_left, ahead)
        == "the green square moves left and takes the purple circle"
    )
    # after a bounce off the right wall the actor moves left
    bounced = ["the green square bounces off the right wall"]
    assert next_caption_from_window(bounced, free) == "the green square moves left"
    assert next_caption_from_window(["something else"], free) is None


def test_learnability_precondition() -> None:
    """Caption k+1 is a function of (k captions, frame k); the captions alone are ambiguous."""
    ds = generate_synthetic_dataset(300, seed=11, frame_size=32)
    report = learnability_report(ds["train"], k=3)
    assert report.windows > 600
    # the frames + captions determine the next caption ...
    assert report.oracle_accuracy >= 0.99
    assert report.full_deterministic_fraction >= 0.95
    # ... the captions alone do not: about half the next captions take an item that only the
    # frames show, most windows sit in groups with several next captions, and even the
    # in-sample best text-only guess is right for well under two thirds of the windows.
    assert report.image_only_target_fraction >= 0.4
    assert report.text_ambiguous_window_fraction >= 0.6
    assert report.text_ambiguous_group_fraction >= 0.4
    assert report.text_majority_accuracy <= 0.6


def test_learnability_needs_long_enough_stories(tiny_synthetic: datasets.DatasetDict) -> None:
    with pytest.raises(DataError, match="k\\+1 = 8"):
        learnability_report(tiny_synthetic["train"], k=7)


def test_palette_is_distinct_and_grid_is_coarse() -> None:
    colours = list(COLOURS.values())
    for i, a in enumerate(colours):
        for b in colours[i + 1 :]:
            assert sum(abs(x - y) for x, y in zip(a, b)) >= 120
    assert 4 <= GRID <= 5


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    out = write_synthetic_dataset(tmp_path / "syn", 10, seed=2, frame_size=32)
    assert out == tmp_path / "syn"
    loaded = datasets.load_from_disk(str(out))
    assert content_digest(loaded) == content_digest(generate_synthetic_dataset(10, 2, 32))
    assert synthetic.read_synthetic_meta(out) == synthetic.synthetic_meta(10, 2, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no temp leftovers


def test_same_seed_writes_identical_content(tmp_path: Path) -> None:
    a = write_synthetic_dataset(tmp_path / "a", 8, seed=4, frame_size=32)
    b = write_synthetic_dataset(tmp_path / "b", 8, seed=4, frame_size=32)
    assert content_digest(datasets.load_from_disk(str(a))) == content_digest(
        datasets.load_from_disk(str(b))
    )


def test_existing_dir_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    write_synthetic_dataset(out, 5, seed=0, frame_size=32)
    with pytest.raises(DataError, match="already exists"):
        write_synthetic_dataset(out, 5, seed=1, frame_size=32)
    write_synthetic_dataset(out, 6, seed=1, frame_size=32, overwrite=True)
    assert synthetic.read_synthetic_meta(out)["num_stories"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_crash_while_writing_leaves_nothing_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = datasets.DatasetDict.save_to_disk

    def crashing_save(self: datasets.DatasetDict, path: str, **kwargs: object) -> None:
        real_save(self, path, **kwargs)  # the data lands in the temp dir ...
        raise KeyboardInterrupt  # ... and the process is interrupted before the rename

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(tmp_path / "syn", 5, seed=0, frame_size=32)
    assert not (tmp_path / "syn").exists()
    assert os.listdir(tmp_path) == []


def test_frame_size_too_small_is_an_error() -> None:
    from storyedge.errors import UserError

    with pytest.raises(UserError, match="frame_size"):
        generate_synthetic_dataset(5, seed=0, frame_size=8)

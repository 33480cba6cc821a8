"""The embedded synthetic stories: layout, determinism, vocabulary, paraphrases, atomic writes."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest
from data_testutil import content_digest

from storyedge.data import synthetic
from storyedge.data.lexicon import COLOURS, CATEGORY_OF_KIND
from storyedge.data.paraphrase import BOUNCE, MOVE, TAKE, TEMPLATES, parse_caption
from storyedge.data.synthetic import (
    GRID,
    caption_vocabulary,
    generate_synthetic_dataset,
    simulate_story,
    story_features,
    write_synthetic_dataset,
)
from storyedge.errors import DataError

#: stories and seed of the shipped quickstart config (``dataset.synthetic_stories`` / ``_seed``)
DEFAULT_STORIES, DEFAULT_SEED = 1200, 0
#: the longest caption a target can be (words); quickstart.yaml's max_caption_len is this + 2
MAX_TARGET_WORDS = 10
WORD = re.compile(r"[a-z]+")


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
                assert caption == caption.lower() and set(caption.split()) <= vocab
                assert parse_caption(caption) is not None
            for caption in row["captions"][1:]:
                assert len(caption.split()) <= MAX_TARGET_WORDS
            reason_words = row["reason"].replace(",", " ,").replace(";", " ;").split()
            assert row["reason"] and set(reason_words) <= vocab


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


def test_vocabulary_at_the_default_size() -> None:
    """At least 300 word types over the captions and reasons of the quickstart's 1200 stories."""
    stories = [simulate_story(DEFAULT_SEED, i) for i in range(DEFAULT_STORIES)]
    caption_types = {w for s in stories for c in s.captions for w in WORD.findall(c)}
    reason_types = {w for s in stories for w in WORD.findall(s.reason)}
    types = caption_types | reason_types
    assert len(types) >= 300, len(types)
    assert len(caption_types) >= 100, len(caption_types)  # the captions alone are broad too
    assert types <= set(caption_vocabulary())
    # every colour, actor kind and item noun of the lexicon occurs in the captions
    assert set(COLOURS) | set(CATEGORY_OF_KIND) <= caption_types
    assert {n for c in CATEGORY_OF_KIND.values() for n in c.nouns.values()} <= caption_types


def test_captions_vary_in_wording_and_length() -> None:
    stories = [simulate_story(7, i) for i in range(300)]
    lengths = Counter(len(c.split()) for s in stories for c in s.captions[1:])
    assert len(lengths) >= 5 and max(lengths) <= MAX_TARGET_WORDS
    # each event kind is said in every one of its templates, the usual one most often
    for kind in (MOVE, TAKE, BOUNCE):
        words = Counter(
            tuple(w for w in c.split() if w in {"keeps", "heads", "grabs", "hits", "back", "takes", "bounces"})
            for s in stories
            for e, c in zip(s.events, s.captions)
            if e.kind == kind
        )
        assert len(words) == len(TEMPLATES[kind]), (kind, words)
        top_share = words.most_common(1)[0][1] / sum(words.values())
        assert 0.6 <= top_share <= 0.8, (kind, top_share)


def test_reason_lists_the_story_events_in_order(tiny_synthetic: datasets.DatasetDict) -> None:
    for row in tiny_synthetic["train"]:
        events = []
        for caption in row["captions"][1:]:
            parsed = parse_caption(caption)
            assert parsed is not None
            if parsed.kind == TAKE:
                assert parsed.item is not None
                events.append(f"takes the {parsed.item.name(parsed.actor.category)}")
            elif parsed.kind == BOUNCE:
                events.append(f"bounces off the {caption.split(' the ')[-1].split()[0]} wall")
        said = re.findall(r"then (takes the \w+ \w+|bounces off the \w+ wall)", row["reason"])
        assert said == events
        first = parse_caption(row["captions"][0])
        assert first is not None and f" {first.actor.name} called " in row["reason"]
        assert row["reason"].endswith(" and never reaches a wall") == (not events)


def test_palette_is_distinct_and_grid_is_coarse() -> None:
    colours = list(COLOURS.values()) + [synthetic.BACKGROUND]
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
    assert synthetic.read_synthetic_meta(out)["generator_version"] == synthetic.GENERATOR_VERSION == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no temp leftovers


def test_same_seed_writes_identical_content(tmp_path: Path) -> None:
    a = write_synthetic_dataset(tmp_path / "a", 8, seed=4, frame_size=32)
    b = write_synthetic_dataset(tmp_path / "b", 8, seed=4, frame_size=32)
    assert content_digest(datasets.load_from_disk(str(a))) == content_digest(
        datasets.load_from_disk(str(b))
    )


def test_writing_prints_no_datasets_bars(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    datasets.enable_progress_bars()
    write_synthetic_dataset(tmp_path / "syn", 6, seed=0, frame_size=32)
    out, err = capfd.readouterr()
    assert "Saving the dataset" not in out + err
    assert datasets.is_progress_bar_enabled()  # restored for the user's own datasets calls


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

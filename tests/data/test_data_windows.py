"""Sliding windows: counts, skipped short stories, undecodable frames."""

from __future__ import annotations

import logging

import pytest
from data_testutil import generic_dataset, generic_story

from storyedge.data.windows import (
    WindowStats,
    check_window_stats,
    count_windows,
    iter_story_windows,
    window_starts,
)
from storyedge.errors import DataError


@pytest.mark.parametrize(("n", "k", "expected"), [(5, 3, 2), (4, 3, 1), (3, 3, 0), (7, 3, 4), (2, 1, 1), (0, 3, 0)])
def test_window_count_per_story(n: int, k: int, expected: int) -> None:
    assert len(window_starts(n, k)) == expected
    assert list(window_starts(n, k)) == list(range(expected))


def test_window_starts_rejects_bad_k() -> None:
    with pytest.raises(ValueError):
        window_starts(5, 0)


def test_windows_and_skipped_short_story(caplog: pytest.LogCaptureFixture) -> None:
    ds = generic_dataset([generic_story("s5", 5), generic_story("s4", 4), generic_story("s3", 3)])
    stats = WindowStats()
    stories = list(iter_story_windows(ds, 3, stats))
    assert [(s.story_id, s.starts) for s in stories] == [("s5", [0, 1]), ("s4", [0])]
    # only frames some window uses are decoded (the last one never is)
    assert sorted(stories[0].frames) == [0, 1, 2, 3]
    assert sorted(stories[1].frames) == [0, 1, 2]
    assert stories[0].frames[0].mode == "RGB"
    assert (stats.stories, stats.used_stories, stats.skipped_stories, stats.windows) == (3, 2, 1, 3)
    with caplog.at_level(logging.WARNING, logger="storyedge.data.windows"):
        check_window_stats(stats, 3, "train")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 1 of 3 stories in train shorter than k+1 = 4 frames" in warnings[0].getMessage()
    counted = count_windows(ds, 3)
    assert (counted.stories, counted.used_stories, counted.skipped_stories, counted.windows) == (3, 2, 1, 3)


def test_no_warning_when_nothing_skipped(caplog: pytest.LogCaptureFixture) -> None:
    ds = generic_dataset([generic_story("a", 4), generic_story("b", 6)])
    stats = WindowStats()
    assert sum(len(s.starts) for s in iter_story_windows(ds, 3, stats)) == 1 + 3
    with caplog.at_level(logging.WARNING):
        check_window_stats(stats, 3)
    assert not caplog.records


def test_all_stories_too_short_is_an_error() -> None:
    ds = generic_dataset([generic_story("a", 3), generic_story("b", 2)])
    stats = WindowStats()
    assert list(iter_story_windows(ds, 3, stats)) == []
    with pytest.raises(DataError, match=r"no story has at least k\+1 = 4 frames"):
        check_window_stats(stats, 3)


def test_corrupt_image_names_story_and_frame() -> None:
    bad = generic_story("broken-story", 5)
    bad["frames"][1] = {"bytes": b"\x89PNG\r\n\x1a\nnot really a png", "path": None}
    ds = generic_dataset([generic_story("fine", 4), bad])
    with pytest.raises(DataError, match=r"story 'broken-story': frame 1 is not a readable image"):
        list(iter_story_windows(ds, 3))

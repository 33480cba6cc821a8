"""The pixel-reading oracle: boards from pixels, the next event, and the image-only information."""

from __future__ import annotations

import datasets
import pytest

from storyedge.data.lexicon import ACTOR_SHAPES, ITEM_SHAPES, SIZES
from storyedge.data.oracle import learnability_report, next_caption_from_window, read_frame_state
from storyedge.data.synthetic import Glyph, generate_synthetic_dataset, render_frame
from storyedge.errors import DataError

#: How far the pixel oracle must beat the best caption-only guess on the next event.
ORACLE_MARGIN = 0.4


@pytest.mark.parametrize("frame_size", [32, 64, 128])
def test_read_frame_state_recovers_the_board(frame_size: int) -> None:
    items = [
        Glyph(colour, shape, size)
        for colour, (shape, size) in zip(
            ("blue", "white", "yellow", "purple", "green", "blue"),
            [(s, z) for s in ITEM_SHAPES for z in SIZES],
        )
    ]
    cells = [(0, 0), (3, 1), (2, 3), (1, 2), (3, 3), (0, 3), (2, 0)]
    for actor_shape in ACTOR_SHAPES:
        board = dict(zip(cells, [Glyph("red", actor_shape, "big"), *items]))
        assert read_frame_state(render_frame(board, frame_size)).as_dict() == board
    assert read_frame_state(render_frame({}, frame_size)).as_dict() == {}


def test_next_caption_reads_positions_from_pixels() -> None:
    actor = Glyph("green", "ring", "big")  # a robot
    item = Glyph("purple", "circle", "big")
    moving_left = ["the green robot rolls left"]
    # actor at the left wall: bounce; one cell further right: a plain move; an item ahead: take.
    at_wall = render_frame({(0, 1): actor, (3, 3): item}, 32)
    assert next_caption_from_window(moving_left, at_wall) == "the green robot bounces off the left wall"
    free = render_frame({(2, 1): actor, (3, 3): item}, 32)
    assert next_caption_from_window(moving_left, free) == "the green robot rolls left"
    ahead = render_frame({(2, 1): actor, (1, 1): item}, 32)
    assert next_caption_from_window(moving_left, ahead) == (
        "the green robot rolls left and takes the purple wheel"
    )
    # any paraphrase of the last caption will do: after hitting the right wall it moves left
    for bounced in ("the green robot hits the right wall and turns", "the green robot turns back at the right wall"):
        assert next_caption_from_window([bounced], free) == "the green robot rolls left"
    assert next_caption_from_window(["something else"], free) is None
    # the actor's colour is not on the board: no event
    assert next_caption_from_window(["the red robot rolls left"], free) is None


def test_image_only_information_is_present() -> None:
    """The oracle reading pixels gets the next event; the best caption-only guess cannot."""
    ds = generate_synthetic_dataset(300, seed=11, frame_size=32)
    report = learnability_report(ds["train"], k=3)
    assert report.windows > 600
    assert report.oracle_accuracy >= 0.99
    # in-sample majority next event given what the captions say (an upper bound: small groups flatter
    # it) is the most any text-only model gets
    assert report.text_majority_accuracy <= 0.6
    assert report.oracle_accuracy - report.text_majority_accuracy >= ORACLE_MARGIN
    assert report.text_ambiguous_window_fraction >= 0.65
    # about half the next captions take an item whose colour and shape only the frame shows
    assert report.image_only_target_fraction >= 0.35
    # the usual paraphrase (p = 0.7) is the one written about that often
    assert 0.62 <= report.oracle_exact_match <= 0.78


def test_learnability_needs_long_enough_stories(tiny_synthetic: datasets.DatasetDict) -> None:
    with pytest.raises(DataError, match="k\\+1 = 8"):
        learnability_report(tiny_synthetic["train"], k=7)

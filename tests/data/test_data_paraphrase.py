"""Paraphrase templates: the per-event caption distribution, sampling, and reading captions back."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from storyedge.data.lexicon import CATEGORIES, DIRECTIONS
from storyedge.data.paraphrase import (
    BOUNCE,
    EVENT_KINDS,
    MOVE,
    START,
    TAKE,
    TEMPLATES,
    Actor,
    Event,
    Item,
    caption_options,
    parse_caption,
    sample_caption,
)

ACTORS = [Actor("red", c.kind) for c in CATEGORIES] + [Actor("white", CATEGORIES[1].kind)]


def _event(kind: str, actor: Actor, direction: str) -> Event:
    if kind == TAKE:
        return Event(kind, actor, direction, Item("yellow", "triangle", "big"))
    if kind == START:
        return Event(kind, actor, direction, place="misty harbour")
    return Event(kind, actor, direction)


def test_templates_are_skewed_distributions() -> None:
    for kind in EVENT_KINDS:
        probs = [p for _, p in TEMPLATES[kind]]
        assert math.isclose(sum(probs), 1.0) and len(probs) >= 3
        assert probs == sorted(probs, reverse=True) and probs[0] >= 0.5


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_options_sum_to_one_and_read_back(kind: str) -> None:
    for actor in ACTORS:
        for direction in DIRECTIONS:
            event = _event(kind, actor, direction)
            options = caption_options(event)
            assert math.isclose(sum(o.prob for o in options), 1.0)
            assert len({o.text for o in options}) == len(options) == len(TEMPLATES[kind])
            for option in options:
                parsed = parse_caption(option.text)
                assert parsed is not None, option.text
                assert (parsed.kind, parsed.actor, parsed.direction) == (kind, actor, direction)
                assert parsed.direction_after == event.direction_after
                assert parsed.item == event.item


def test_item_nouns_follow_the_actors_category() -> None:
    item = Item("blue", "circle", "big")
    nouns = {c.name: c.nouns["circle"] for c in CATEGORIES}
    for category in CATEGORIES:
        text = caption_options(Event(TAKE, Actor("red", category.kind), "left", item))[0].text
        assert text == f"the red {category.kind} {category.verb} left and takes the blue {nouns[category.name]}"


def test_bounce_direction_after_is_the_opposite() -> None:
    parsed = parse_caption("the green robot hits the right wall and turns")
    assert parsed is not None and parsed.kind == BOUNCE and parsed.direction_after == "left"


def test_sampling_follows_the_template_probabilities() -> None:
    rng = np.random.default_rng(0)
    event = _event(MOVE, ACTORS[0], "up")
    n = 4000
    counts = Counter(sample_caption(event, rng) for _ in range(n))
    for option in caption_options(event):
        se = math.sqrt(option.prob * (1 - option.prob) / n)
        assert abs(counts[option.text] / n - option.prob) < 4 * se


def test_not_a_synthetic_caption() -> None:
    for text in ("", "something else", "the red circle moves left", "the red fox runs sideways"):
        assert parse_caption(text) is None

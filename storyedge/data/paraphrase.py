"""Events of the synthetic world and the ways a caption says them (paraphrase templates).

An :class:`Event` is what happens in one frame (the actor starts, moves, takes an item or
bounces off a wall). Each event kind has a few templates with skewed probabilities
(:data:`TEMPLATES`); a caption is one template drawn at random per caption, independently of
everything else. :func:`caption_options` is that distribution for one event (identical texts
merged), which is what the data's entropy floor (:mod:`storyedge.data.floor`) is computed from.

Every template names the actor and the direction it moves in afterwards (directly, or through
the wall it bounced off), so a caption's event can be read back from its text
(:func:`parse_caption`) whichever paraphrase was drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from storyedge.data.lexicon import (
    CATEGORY_OF_KIND,
    COLOURS,
    DIRECTIONS,
    KINDS,
    OPPOSITE,
    SHAPE_OF_NOUN,
    ITEM_SIZE,
    WALL,
    WALL_TO_DIRECTION,
    Category,
)

START, MOVE, TAKE, BOUNCE = "start", "move", "take", "bounce"
EVENT_KINDS = (START, MOVE, TAKE, BOUNCE)


@dataclass(frozen=True)
class Actor:
    """The story's protagonist: ``"<colour> <kind>"``."""

    colour: str
    kind: str

    @property
    def name(self) -> str:
        """As captions say it."""
        return f"{self.colour} {self.kind}"

    @property
    def category(self) -> Category:
        """The actor's category (motion verb, item nouns)."""
        return CATEGORY_OF_KIND[self.kind]


@dataclass(frozen=True)
class Item:
    """Something the actor can take: drawn as ``shape`` in ``colour`` at ``size`` (the world draws
    items big; the frame reader reads any size)."""

    colour: str
    shape: str
    size: str

    def name(self, category: Category) -> str:
        """``"<colour> <noun>"``, the noun being ``category``'s word for the shape."""
        return f"{self.colour} {category.nouns[self.shape]}"


@dataclass(frozen=True)
class Event:
    """What one frame's caption reports.

    ``direction``: the direction of the step (for :data:`BOUNCE` the direction it was moving
    in when it hit the wall; it moves the opposite way afterwards). ``place``: :data:`START` only.
    """

    kind: str
    actor: Actor
    direction: str
    item: Item | None = None
    place: str | None = None

    @property
    def direction_after(self) -> str:
        """Where the actor heads after this event."""
        return OPPOSITE[self.direction] if self.kind == BOUNCE else self.direction

    @property
    def wall(self) -> str:
        """The wall a :data:`BOUNCE` hits."""
        return WALL[self.direction]


#: Per event kind: (template, probability). Slots: {A} actor name, {v}/{ving} the category's
#: verb, {d} direction, {w} wall, {I} item name, {P} place. Skewed on purpose: the usual
#: phrasing dominates, so the paraphrase entropy stays small next to what the frames tell.
TEMPLATES: dict[str, tuple[tuple[str, float], ...]] = {
    START: (
        ("a {A} starts {ving} {d} in the {P}", 0.6),
        ("in the {P} a {A} starts {ving} {d}", 0.25),
        ("a {A} sets off {d} in the {P}", 0.15),
    ),
    MOVE: (
        ("the {A} {v} {d}", 0.7),
        ("the {A} keeps {ving} {d}", 0.2),
        ("the {A} heads {d}", 0.1),
    ),
    TAKE: (
        ("the {A} {v} {d} and takes the {I}", 0.7),
        ("the {A} {v} {d} and grabs the {I}", 0.2),
        ("the {A} heads {d} and takes the {I}", 0.1),
    ),
    BOUNCE: (
        ("the {A} bounces off the {w} wall", 0.7),
        ("the {A} hits the {w} wall and turns", 0.2),
        ("the {A} turns back at the {w} wall", 0.1),
    ),
}


@dataclass(frozen=True)
class CaptionOption:
    """One way to caption an event, with its probability."""

    text: str
    prob: float


def _fill(template: str, event: Event) -> str:
    category = event.actor.category
    return template.format(
        A=event.actor.name,
        v=category.verb,
        ving=category.verb_ing,
        d=event.direction,
        w=event.wall,
        I=event.item.name(category) if event.item is not None else "",
        P=event.place or "",
    )


def caption_options(event: Event) -> tuple[CaptionOption, ...]:
    """The caption distribution of ``event``: distinct texts with their probabilities (sum 1),
    most likely first."""
    probs: dict[str, float] = {}
    for template, prob in TEMPLATES[event.kind]:
        text = _fill(template, event)
        probs[text] = probs.get(text, 0.0) + prob
    return tuple(CaptionOption(t, p) for t, p in sorted(probs.items(), key=lambda kv: -kv[1]))


def sample_caption(event: Event, rng: np.random.Generator) -> str:
    """One caption of ``event``: a template drawn with its probability (one ``rng.random()``)."""
    u = rng.random()
    templates = TEMPLATES[event.kind]
    total = 0.0
    for template, prob in templates:
        total += prob
        if u < total:
            return _fill(template, event)
    return _fill(templates[-1][0], event)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedCaption:
    """A caption read back into its event's parts (the place is not kept)."""

    kind: str
    actor: Actor
    direction: str
    #: colour and shape of the taken item (:data:`TAKE` only)
    item: Item | None = None

    @property
    def direction_after(self) -> str:
        """Where the actor heads after this caption's event."""
        return OPPOSITE[self.direction] if self.kind == BOUNCE else self.direction


def _alternatives(words: object) -> str:
    return "|".join(sorted(map(re.escape, words), key=lambda w: (-len(w), w)))  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def _patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    colour, kind = _alternatives(COLOURS), _alternatives(KINDS)
    slots = {
        "A": f"(?P<colour>{colour}) (?P<kind>{kind})",
        "v": r"\w+",
        "ving": r"\w+",
        "d": f"(?P<d>{_alternatives(DIRECTIONS)})",
        "w": f"(?P<w>{_alternatives(WALL_TO_DIRECTION)})",
        "I": f"(?P<icolour>{colour}) (?P<inoun>{_alternatives(SHAPE_OF_NOUN)})",
        "P": r"\w+ \w+",
    }
    out = []
    for kind_name, templates in TEMPLATES.items():
        for template, _ in templates:
            regex = re.escape(template)
            for slot, pattern in slots.items():
                regex = regex.replace(re.escape("{" + slot + "}"), pattern)
            out.append((kind_name, re.compile(f"^{regex}$")))
    return tuple(out)


def parse_caption(caption: str) -> ParsedCaption | None:
    """The event a synthetic caption reports (any paraphrase); None when it is not one."""
    text = " ".join(caption.split())
    for kind_name, pattern in _patterns():
        match = pattern.match(text)
        if match is None:
            continue
        groups = match.groupdict()
        actor = Actor(groups["colour"], groups["kind"])
        if kind_name == BOUNCE:
            direction = WALL_TO_DIRECTION[groups["w"]]
        else:
            direction = groups["d"]
        item = None
        if kind_name == TAKE:
            item = Item(groups["icolour"], SHAPE_OF_NOUN[groups["inoun"]], ITEM_SIZE)
        return ParsedCaption(kind_name, actor, direction, item)
    return None

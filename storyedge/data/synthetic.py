"""The embedded, deterministic "visual stories" generator: world simulation, rendering, writing.

World
-----
Each story happens in a place (``"the misty harbour"``) on a ``GRID`` x ``GRID`` board drawn on a
plain dark background. One *actor* (``"red fox"``: a colour and a kind, drawn as its kind's glyph
in its colour) moves one cell per frame in one of four directions; one or two *items* (a
circle, square or triangle in any colour but the actor's) sit still on the
board. After each step, with probability ``P_SPAWN``, a fresh item appears in the empty
on-board cell ahead of the actor, drawn in that frame. Per step, in this order:

1. if the next cell in the actor's direction is off the board, the actor **bounces**: it stays
   in its cell and reverses direction ("the red fox bounces off the left wall");
2. else if the next cell holds an item, the actor moves there and **takes** the item, which
   disappears ("the red fox runs left and takes the blue apple");
3. else the actor **moves** ("the red fox runs left").

Words come from :mod:`storyedge.data.lexicon` (the actor's kind picks its verb and what it
calls items: a fox takes an apple, a robot a wheel) and each caption is a paraphrase drawn per
caption from :mod:`storyedge.data.paraphrase`. Frame 0 is captioned "a red fox starts running
left in the misty harbour" (or a paraphrase); the reason is a short story-telling text with its
own words (time, mood, goal, ending) and the events in order.

Why this shape (the fusion-vs-text-only precondition)
-----------------------------------------------------
Caption t+1's event is a deterministic function of caption t (actor, direction) and frame t
(where the actor is; where the items are, their colour and shape): see
:mod:`storyedge.data.oracle`, which reads the frame's *pixels*. Positions and items appear in
no caption before they matter, so a text-only model must guess whether the next step is a plain
move, a bounce or a take, and which of 15 item looks is taken; a model that reads the frames
need not. Only the paraphrase is left to chance: :mod:`storyedge.data.floor` computes that
entropy, the data's own PPL floor.

Objects fill 84% of a cell (``frame_size / GRID`` pixels): at the quickstart's 32 px model
input an 8 px cell, with saturated colours, so a tiny CNN can read them.

Determinism: story ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``, so it
does not depend on how many stories are generated; frames are drawn without anti-aliasing and
PNG-encoded losslessly, so the same seed gives byte-identical frames.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image, ImageDraw

from storyedge.atomic import atomic_directory
from storyedge.data.lexicon import (
    ACTOR_SIZE,
    ACTOR_SIZE_WORDS,
    BACKGROUND,
    CATEGORIES,
    COLOURS,
    DIRECTIONS,
    ENDINGS,
    GOALS,
    ITEM_SHAPES,
    ITEM_SIZE,
    MOODS,
    NAMES,
    OPPOSITE,
    PLACE_ADJECTIVES,
    PLACE_NOUNS,
    QUIET_ENDING,
    SIZES,
    TIMES,
)
from storyedge.data.paraphrase import (
    BOUNCE,
    MOVE,
    START,
    TAKE,
    TEMPLATES,
    Actor,
    Event,
    Item,
    sample_caption,
)
from storyedge.errors import DataError, UserError

log = logging.getLogger(__name__)

#: Cells per board axis.
GRID = 4
#: Smallest frame that still gives every cell a few pixels (tests render this small).
MIN_FRAME_SIZE = 4 * GRID
#: The frame sizes the world is designed to be read at (``image_size`` 32 .. 128).
READABLE_FRAME_SIZES = (32, 128)
MIN_FRAMES, MAX_FRAMES = 5, 7
#: Probability that an initial item is placed on the actor's line of motion (so it may get taken).
P_ITEM_ON_PATH = 0.6
#: Probability that, after a step, a fresh item appears in the empty cell ahead of the actor.
P_SPAWN = 0.7
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
#: Written beside ``save_to_disk`` output: what was generated (for cache checks).
META_FILE = "storyedge_synthetic.json"
#: Bump when the generated content changes for a given seed.
GENERATOR_VERSION = 3

Cell = tuple[int, int]


def story_features() -> datasets.Features:
    """The generic story layout every loader returns (synthetic, StoryReasoning, generic)."""
    return datasets.Features(
        {
            "story_id": datasets.Value("string"),
            "frames": datasets.Sequence(datasets.Image()),
            "captions": datasets.Sequence(datasets.Value("string")),
            "reason": datasets.Value("string"),
            "frame_count": datasets.Value("int32"),
        }
    )


@dataclass(frozen=True)
class Glyph:
    """What is drawn in one cell: a shape in a palette colour at a size."""

    colour: str
    shape: str
    size: str


def actor_glyph(actor: Actor) -> Glyph:
    """How the actor is drawn: its kind's glyph, big, in its colour."""
    return Glyph(actor.colour, actor.category.glyph, ACTOR_SIZE)


def item_glyph(item: Item) -> Glyph:
    """How an item is drawn."""
    return Glyph(item.colour, item.shape, item.size)


@dataclass
class SimulatedStory:
    """One story before rendering: the board per frame, the events, captions and reason."""

    story_id: str
    boards: list[dict[Cell, Glyph]]
    events: list[Event]
    captions: list[str]
    reason: str


@dataclass
class Story:
    """One generated story: frames as PNG bytes plus captions and reason text."""

    story_id: str
    frames: list[bytes]
    captions: list[str]
    reason: str


# --------------------------------------------------------------------------- rendering


def cell_box(cell: Cell, frame_size: int, size: str = ACTOR_SIZE) -> tuple[int, int, int, int]:
    """Inclusive pixel box of an object of ``size`` drawn in ``cell``."""
    side = frame_size / GRID
    margin = SIZES[size] * side
    x0 = int(round(cell[0] * side + margin))
    y0 = int(round(cell[1] * side + margin))
    x1 = max(x0, int(round((cell[0] + 1) * side - margin)) - 1)
    y1 = max(y0, int(round((cell[1] + 1) * side - margin)) - 1)
    return x0, y0, x1, y1


def _draw(draw: ImageDraw.ImageDraw, glyph: Glyph, cell: Cell, frame_size: int) -> None:
    x0, y0, x1, y1 = cell_box(cell, frame_size, glyph.size)
    fill = COLOURS[glyph.colour]
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    third = max(1, round((x1 - x0 + 1) / 3))
    if glyph.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif glyph.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif glyph.shape == "triangle":
        draw.polygon([(xm, y0), (x1, y1), (x0, y1)], fill=fill)
    elif glyph.shape == "diamond":
        draw.polygon([(xm, y0), (x1, ym), (xm, y1), (x0, ym)], fill=fill)
    elif glyph.shape == "plus":
        draw.rectangle((x0 + third, y0, x1 - third, y1), fill=fill)
        draw.rectangle((x0, y0 + third, x1, y1 - third), fill=fill)
    elif glyph.shape == "ring":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
        draw.rectangle((x0 + third, y0 + third, x1 - third, y1 - third), fill=BACKGROUND)
    elif glyph.shape == "hourglass":
        draw.polygon([(x0, y0), (x1, y0), (xm, ym)], fill=fill)
        draw.polygon([(x0, y1), (x1, y1), (xm, ym)], fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(f"unknown shape {glyph.shape}")


def render_frame(objects: dict[Cell, Glyph], frame_size: int) -> Image.Image:
    """Draw ``objects`` (cell -> glyph) on the plain background; no anti-aliasing."""
    image = Image.new("RGB", (frame_size, frame_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for cell in sorted(objects):
        _draw(draw, objects[cell], cell, frame_size)
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


# --------------------------------------------------------------------------- simulation


def step_event(actor: Actor, pos: Cell, direction: str, items: dict[Cell, Item]) -> tuple[Event, Cell]:
    """One world step from ``pos`` heading ``direction``: (the event, the actor's new cell)."""
    dx, dy = DIRECTIONS[direction]
    nxt = (pos[0] + dx, pos[1] + dy)
    if not (0 <= nxt[0] < GRID and 0 <= nxt[1] < GRID):
        return Event(BOUNCE, actor, direction), pos
    if nxt in items:
        return Event(TAKE, actor, direction, items[nxt]), nxt
    return Event(MOVE, actor, direction), nxt


def _line_cells(pos: Cell, direction: str) -> list[Cell]:
    """Cells (other than ``pos``) on the actor's row (horizontal) or column (vertical)."""
    if DIRECTIONS[direction][0]:
        return [(x, pos[1]) for x in range(GRID) if x != pos[0]]
    return [(pos[0], y) for y in range(GRID) if y != pos[1]]


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _random_item(rng: np.random.Generator, actor: Actor) -> Item:
    colours = [c for c in COLOURS if c != actor.colour]
    return Item(_pick(rng, colours), _pick(rng, ITEM_SHAPES), ITEM_SIZE)


def _spawn_ahead(
    rng: np.random.Generator, actor: Actor, pos: Cell, direction: str, items: dict[Cell, Item]
) -> None:
    """With probability :data:`P_SPAWN`, drop a fresh item into the empty cell ahead of the actor.

    The item is drawn in this frame, so the next caption ("... and takes the <item>") is read
    off this frame's pixels; no earlier caption names it.
    """
    dx, dy = DIRECTIONS[direction]
    ahead = (pos[0] + dx, pos[1] + dy)
    if not (0 <= ahead[0] < GRID and 0 <= ahead[1] < GRID) or ahead in items:
        rng.random()  # keep the draw count fixed per step
        return
    if rng.random() < P_SPAWN:
        items[ahead] = _random_item(rng, actor)


def _reason(rng: np.random.Generator, start: Event, events: list[Event], setting: tuple[str, ...]) -> str:
    """The story-telling reason: setting, name, mood and goal, then the events in order."""
    actor = start.actor
    when, size, mood, name, goal = setting
    text = (f"{when} in the {start.place} a {size} {mood} {actor.name} called {name} is {goal}; "
            f"it {actor.category.verb} {start.direction}")
    said = []
    for event in events:
        if event.kind == TAKE and event.item is not None:
            said.append(f"takes the {event.item.name(actor.category)}")
        elif event.kind == BOUNCE:
            said.append(f"bounces off the {event.wall} wall")
    if not said:
        return f"{text} {QUIET_ENDING}"
    return text + "".join(f", then {s}" for s in said) + f" {_pick(rng, ENDINGS)}"


def simulate_story(seed: int, index: int) -> SimulatedStory:
    """Story ``index`` of ``seed`` before rendering (independent of how many stories are made)."""
    rng = np.random.default_rng([seed, index])
    n_frames = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    actor = Actor(_pick(rng, tuple(COLOURS)), category.kind)
    place = f"{_pick(rng, PLACE_ADJECTIVES)} {_pick(rng, PLACE_NOUNS)}"
    setting = tuple(_pick(rng, words) for words in (TIMES, ACTOR_SIZE_WORDS, MOODS, NAMES, GOALS))
    pos: Cell = (int(rng.integers(GRID)), int(rng.integers(GRID)))
    direction = _pick(rng, tuple(DIRECTIONS))
    items: dict[Cell, Item] = {}
    for _ in range(int(rng.integers(1, 3))):
        line = [c for c in _line_cells(pos, direction) if c not in items]
        off_line = [
            (x, y)
            for x in range(GRID)
            for y in range(GRID)
            if (x, y) != pos and (x, y) not in items and (x, y) not in line
        ]
        choices = line if (line and rng.random() < P_ITEM_ON_PATH) else (off_line or line)
        items[choices[int(rng.integers(len(choices)))]] = _random_item(rng, actor)

    start = Event(START, actor, direction, place=place)
    _spawn_ahead(rng, actor, pos, direction, items)
    glyph = actor_glyph(actor)
    boards = [{**{c: item_glyph(i) for c, i in items.items()}, pos: glyph}]
    events = [start]
    captions = [sample_caption(start, rng)]
    for t in range(1, n_frames):
        event, pos = step_event(actor, pos, direction, items)
        if event.kind == TAKE:
            del items[pos]
        direction = event.direction_after
        if t < n_frames - 1:
            _spawn_ahead(rng, actor, pos, direction, items)
        boards.append({**{c: item_glyph(i) for c, i in items.items()}, pos: glyph})
        events.append(event)
        captions.append(sample_caption(event, rng))
    return SimulatedStory(
        story_id=f"synthetic-{index:05d}",
        boards=boards,
        events=events,
        captions=captions,
        reason=_reason(rng, start, events[1:], setting),
    )


def generate_story(seed: int, index: int, frame_size: int = 64) -> Story:
    """Story ``index`` of ``seed``, rendered at ``frame_size`` (PNG bytes per frame)."""
    sim = simulate_story(seed, index)
    frames = [_png(render_frame(board, frame_size)) for board in sim.boards]
    return Story(sim.story_id, frames, sim.captions, sim.reason)


def caption_vocabulary() -> list[str]:
    """Every word a synthetic caption or reason can use (sorted; punctuation included)."""
    words = {",", ";", "is", "it", "then", "takes", "bounces", "off", "the", "wall", "a", "in"}
    for templates in TEMPLATES.values():
        for template, _ in templates:
            words |= {w for w in template.split() if not w.startswith("{")}
    for category in CATEGORIES:
        words |= {category.kind, category.verb, category.verb_ing, *category.nouns.values()}
    words |= set(COLOURS) | set(ACTOR_SIZE_WORDS) | set(DIRECTIONS) | set(OPPOSITE.values())
    words |= {"top", "bottom", "called"} | set(PLACE_ADJECTIVES) | set(PLACE_NOUNS) | set(MOODS) | set(NAMES)
    for phrase in (*TIMES, *GOALS, *ENDINGS, QUIET_ENDING):
        words |= set(phrase.split())
    return sorted(words)


def split_sizes(num_stories: int) -> dict[str, int]:
    """Stories per split: 80/10/10, validation and test at least one story each."""
    if num_stories < 3:
        raise UserError(f"synthetic dataset needs at least 3 stories (one per split), got {num_stories}")
    n_val = max(1, int(round(num_stories * SPLIT_FRACTIONS["validation"])))
    n_test = max(1, int(round(num_stories * SPLIT_FRACTIONS["test"])))
    return {"train": num_stories - n_val - n_test, "validation": n_val, "test": n_test}


def generate_synthetic_dataset(
    num_stories: int,
    seed: int,
    frame_size: int = 64,
    progress: Callable[[int], Any] | None = None,
) -> datasets.DatasetDict:
    """Generate ``num_stories`` stories as a ``DatasetDict`` (train/validation/test, 80/10/10).

    Stories ``0 .. n_train-1`` are train, the next ``n_validation`` validation, the rest test.
    Columns: ``story_id``, ``frames`` (PNG RGB, ``frame_size`` square), ``captions`` (one per
    frame), ``reason`` and ``frame_count`` (int32). ``progress`` is called with 1 per story.
    """
    if frame_size < MIN_FRAME_SIZE:
        raise UserError(f"synthetic frame_size must be >= {MIN_FRAME_SIZE}, got {frame_size}")
    sizes = split_sizes(num_stories)
    features = story_features()
    out: dict[str, datasets.Dataset] = {}
    index = 0
    for split, size in sizes.items():
        columns: dict[str, list[Any]] = {name: [] for name in features}
        for _ in range(size):
            story = generate_story(seed, index, frame_size)
            columns["story_id"].append(story.story_id)
            columns["frames"].append([{"bytes": b, "path": None} for b in story.frames])
            columns["captions"].append(story.captions)
            columns["reason"].append(story.reason)
            columns["frame_count"].append(len(story.frames))
            index += 1
            if progress is not None:
                progress(1)
        out[split] = datasets.Dataset.from_dict(columns, features=features, split=split)
    return datasets.DatasetDict(out)


def synthetic_meta(num_stories: int, seed: int, frame_size: int) -> dict[str, int]:
    """What a synthetic dataset directory was generated from (stored in :data:`META_FILE`)."""
    return {
        "generator_version": GENERATOR_VERSION,
        "num_stories": num_stories,
        "seed": seed,
        "frame_size": frame_size,
    }


def read_synthetic_meta(directory: str | Path) -> dict[str, int] | None:
    """The meta stored by :func:`write_synthetic_dataset`, or None when absent/unreadable."""
    path = Path(directory) / META_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_synthetic_dataset(
    out_dir: str | Path,
    num_stories: int,
    seed: int,
    frame_size: int = 64,
    overwrite: bool = False,
    progress: Callable[[int], Any] | None = None,
) -> Path:
    """Generate and ``save_to_disk`` the synthetic dataset at ``out_dir``; returns the path.

    Written atomically (:func:`storyedge.atomic.atomic_directory`): into a temporary sibling
    directory that is renamed into place only once complete, so an interrupted run never leaves
    a complete-looking ``out_dir``.
    An existing ``out_dir`` raises :class:`DataError` unless ``overwrite``.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise _exists_error(out)
    ds = generate_synthetic_dataset(num_stories, seed, frame_size, progress=progress)
    with atomic_directory(out, replace=overwrite, exists_error=_exists_error) as tmp, without_datasets_bars():
        ds.save_to_disk(str(tmp))
        (tmp / META_FILE).write_text(
            json.dumps(synthetic_meta(num_stories, seed, frame_size), indent=2) + "\n"
        )
    return out


@contextlib.contextmanager
def without_datasets_bars() -> Iterator[None]:
    """``datasets``' own progress bars off ("Saving the dataset (1/1 shards)", one per split):
    the command that writes the stories has already said so in one line, and a split of a few
    hundred stories saves in milliseconds. Restored on exit."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _exists_error(out: Path) -> DataError:
    return DataError(f"{out} already exists (pass overwrite / --overwrite to replace it)")



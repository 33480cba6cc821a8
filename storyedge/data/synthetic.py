"""The embedded, deterministic "visual stories" generator.

World
-----
Each story happens on a ``GRID`` x ``GRID`` board drawn on a plain dark background. One *actor*
(a coloured shape) moves one cell per frame in one of four directions; one or two *items* (other
coloured shapes, never the actor's colour) sit still on the board. At each frame, with
probability ``P_SPAWN``, a fresh item (random colour other than the actor's, random shape) appears
in the empty on-board cell ahead of the actor, drawn in that frame. Per step, in this order:

1. if the next cell in the actor's direction is off the board, the actor **bounces**: it stays
   in its cell and reverses direction ("the red circle bounces off the left wall");
2. else if the next cell holds an item, the actor moves there and **takes** the item, which
   disappears ("the red circle moves left and takes the blue square");
3. else the actor **moves** ("the red circle moves left").

Frame 0 is captioned "a red circle starts moving left". Every caption names the actor and its
direction, never where anything is, and items are only named at the moment they are taken.

Why this shape (the fusion-vs-text-only precondition)
-----------------------------------------------------
Caption t+1 is a deterministic function of caption t (actor identity and direction) and frame t
(where the actor is; where the items are and what they look like): see
:func:`next_caption_from_window`, which reads the frame's *pixels*. The positions and the items'
colours/shapes appear in no caption before they matter, so a text-only model must guess whether
the next step is a plain move, a bounce or a take, and which item is taken; a model that reads
the frames need not. Because items keep appearing ahead of the actor, about half of the next
captions (k = 3) take an item that no caption so far names. :func:`learnability_report` measures both sides on generated data.

Objects fill ~76% of a cell (``frame_size / GRID`` pixels): at 64 px frames a 16 px cell, at the
quickstart's 32 px model input an 8 px cell, with saturated colours, so a tiny CNN can read them.

Determinism: story ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``, so it
does not depend on how many stories are generated; frames are drawn without anti-aliasing and
PNG-encoded losslessly, so the same seed gives byte-identical frames.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image, ImageDraw

from storyedge.atomic import atomic_directory
from storyedge.data.windows import iter_raw_rows
from storyedge.errors import DataError, UserError

log = logging.getLogger(__name__)

#: Cells per board axis.
GRID = 4
#: Smallest frame that still gives every cell a few pixels.
MIN_FRAME_SIZE = 4 * GRID
MIN_FRAMES, MAX_FRAMES = 5, 7
BACKGROUND = (18, 18, 18)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 50),
    "blue": (40, 80, 245),
    "yellow": (245, 225, 20),
    "purple": (170, 40, 230),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
#: direction -> (dx, dy) in cells; y grows downwards as in image coordinates.
DIRECTIONS: dict[str, tuple[int, int]] = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
#: the wall hit when moving in a direction
WALL = {"left": "left", "right": "right", "up": "top", "down": "bottom"}
WALL_TO_DIRECTION = {wall: d for d, wall in WALL.items()}
#: Probability that an item is placed on the actor's line of motion (so it may get taken).
P_ITEM_ON_PATH = 0.6
#: Probability that, after a step, a fresh item appears in the empty cell ahead of the actor.
P_SPAWN = 0.7
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
#: Written beside ``save_to_disk`` output: what was generated (for cache checks).
META_FILE = "storyedge_synthetic.json"
#: Bump when the generated content changes for a given seed.
GENERATOR_VERSION = 2

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
class Thing:
    """A shape on the board."""

    colour: str
    shape: str

    @property
    def name(self) -> str:
        """``"<colour> <shape>"`` as captions say it."""
        return f"{self.colour} {self.shape}"


@dataclass
class Story:
    """One generated story: frames as PNG bytes plus captions and reason text."""

    story_id: str
    frames: list[bytes]
    captions: list[str]
    reason: str


# --------------------------------------------------------------------------- rendering


def _cell_box(cell: Cell, frame_size: int) -> tuple[int, int, int, int]:
    """Inclusive pixel box of the object drawn in ``cell``."""
    size = frame_size / GRID
    margin = 0.12 * size
    x0 = int(round(cell[0] * size + margin))
    y0 = int(round(cell[1] * size + margin))
    x1 = int(round((cell[0] + 1) * size - margin)) - 1
    y1 = int(round((cell[1] + 1) * size - margin)) - 1
    return x0, y0, x1, y1


def _draw(draw: ImageDraw.ImageDraw, thing: Thing, cell: Cell, frame_size: int) -> None:
    x0, y0, x1, y1 = _cell_box(cell, frame_size)
    fill = COLOURS[thing.colour]
    if thing.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif thing.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif thing.shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(f"unknown shape {thing.shape}")


def render_frame(objects: dict[Cell, Thing], frame_size: int) -> Image.Image:
    """Draw ``objects`` (cell -> thing) on the plain background; no anti-aliasing."""
    image = Image.new("RGB", (frame_size, frame_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for cell in sorted(objects):
        _draw(draw, objects[cell], cell, frame_size)
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


# --------------------------------------------------------------------------- captions


def _start_caption(actor: Thing, direction: str) -> str:
    return f"a {actor.name} starts moving {direction}"


def _move_caption(actor: Thing, direction: str) -> str:
    return f"the {actor.name} moves {direction}"


def _take_caption(actor: Thing, direction: str, item: Thing) -> str:
    return f"the {actor.name} moves {direction} and takes the {item.name}"


def _bounce_caption(actor: Thing, old_direction: str) -> str:
    return f"the {actor.name} bounces off the {WALL[old_direction]} wall"


def caption_vocabulary() -> list[str]:
    """Every word a synthetic caption or reason can use (sorted)."""
    words = {"a", "the", "starts", "moving", "moves", "and", "takes", "bounces", "off", "wall"}
    words |= {"keeps", "then", "never", "reaches", ","}
    words |= set(COLOURS) | set(SHAPES) | set(DIRECTIONS) | set(WALL.values())
    return sorted(words)


# --------------------------------------------------------------------------- simulation


def _step(
    actor: Thing, pos: Cell, direction: str, items: dict[Cell, Thing]
) -> tuple[Cell, str, str, Thing | None, bool]:
    """One world step: (new position, new direction, caption, taken item or None, bounced)."""
    dx, dy = DIRECTIONS[direction]
    nxt = (pos[0] + dx, pos[1] + dy)
    if not (0 <= nxt[0] < GRID and 0 <= nxt[1] < GRID):
        return pos, OPPOSITE[direction], _bounce_caption(actor, direction), None, True
    if nxt in items:
        item = items[nxt]
        return nxt, direction, _take_caption(actor, direction, item), item, False
    return nxt, direction, _move_caption(actor, direction), None, False


def _line_cells(pos: Cell, direction: str) -> list[Cell]:
    """Cells (other than ``pos``) on the actor's row (horizontal) or column (vertical)."""
    if DIRECTIONS[direction][0]:
        return [(x, pos[1]) for x in range(GRID) if x != pos[0]]
    return [(pos[0], y) for y in range(GRID) if y != pos[1]]


def _reason(actor: Thing, start_direction: str, events: list[str]) -> str:
    text = f"the {actor.name} keeps moving {start_direction}"
    if not events:
        return f"{text} and never reaches a wall"
    return text + "".join(f", then {event}" for event in events)


def _spawn_ahead(
    rng: np.random.Generator, actor: Thing, pos: Cell, direction: str, items: dict[Cell, Thing]
) -> None:
    """With probability :data:`P_SPAWN`, drop a fresh item into the empty cell ahead of the actor.

    The item (any colour but the actor's, any shape) is drawn in this frame, so the next caption
    ("... and takes the <item>") is read off this frame's pixels; no earlier caption names it.
    """
    dx, dy = DIRECTIONS[direction]
    ahead = (pos[0] + dx, pos[1] + dy)
    if not (0 <= ahead[0] < GRID and 0 <= ahead[1] < GRID) or ahead in items:
        rng.random()  # keep the draw count fixed per step
        return
    if rng.random() < P_SPAWN:
        colours = [c for c in COLOURS if c != actor.colour]
        items[ahead] = Thing(
            colours[int(rng.integers(len(colours)))], SHAPES[int(rng.integers(len(SHAPES)))]
        )


def generate_story(seed: int, index: int, frame_size: int = 64) -> Story:
    """Story ``index`` of ``seed`` (independent of how many stories are generated)."""
    rng = np.random.default_rng([seed, index])
    colours = list(COLOURS)
    n_frames = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    n_items = int(rng.integers(1, 3))
    picked = rng.permutation(len(colours))[: 1 + n_items]
    actor = Thing(colours[int(picked[0])], SHAPES[int(rng.integers(len(SHAPES)))])
    pos: Cell = (int(rng.integers(GRID)), int(rng.integers(GRID)))
    direction = list(DIRECTIONS)[int(rng.integers(len(DIRECTIONS)))]
    items: dict[Cell, Thing] = {}
    for j in range(n_items):
        line = [c for c in _line_cells(pos, direction) if c not in items]
        off_line = [
            (x, y)
            for x in range(GRID)
            for y in range(GRID)
            if (x, y) != pos and (x, y) not in items and (x, y) not in line
        ]
        choices = line if (line and rng.random() < P_ITEM_ON_PATH) else (off_line or line)
        cell = choices[int(rng.integers(len(choices)))]
        items[cell] = Thing(colours[int(picked[1 + j])], SHAPES[int(rng.integers(len(SHAPES)))])

    start_direction = direction
    _spawn_ahead(rng, actor, pos, direction, items)
    frames = [_png(render_frame({**items, pos: actor}, frame_size))]
    captions = [_start_caption(actor, direction)]
    events: list[str] = []
    for t in range(1, n_frames):
        old_direction = direction
        pos, direction, caption, taken, bounced = _step(actor, pos, direction, items)
        if taken is not None:
            del items[pos]
            events.append(f"takes the {taken.name}")
        if bounced:
            events.append(f"bounces off the {WALL[old_direction]} wall")
        if t < n_frames - 1:
            _spawn_ahead(rng, actor, pos, direction, items)
        frames.append(_png(render_frame({**items, pos: actor}, frame_size)))
        captions.append(caption)
    return Story(
        story_id=f"synthetic-{index:05d}",
        frames=frames,
        captions=captions,
        reason=_reason(actor, start_direction, events),
    )


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
    with atomic_directory(out, replace=overwrite, exists_error=_exists_error) as tmp:
        ds.save_to_disk(str(tmp))
        (tmp / META_FILE).write_text(
            json.dumps(synthetic_meta(num_stories, seed, frame_size), indent=2) + "\n"
        )
    return out


def _exists_error(out: Path) -> DataError:
    return DataError(f"{out} already exists (pass overwrite / --overwrite to replace it)")


# --------------------------------------------------------------------------- learnability


@dataclass(frozen=True)
class FrameState:
    """What a frame shows: the thing in each occupied cell, read from pixels."""

    objects: tuple[tuple[Cell, Thing], ...]

    def as_dict(self) -> dict[Cell, Thing]:
        """``{cell: thing}``."""
        return dict(self.objects)


_TEMPLATE_CACHE: dict[tuple[int, int, int, str], np.ndarray] = {}


def _template(cell: Cell, frame_size: int, shape: str) -> np.ndarray:
    key = (cell[0], cell[1], frame_size, shape)
    if key not in _TEMPLATE_CACHE:
        image = render_frame({cell: Thing("white", shape)}, frame_size)
        _TEMPLATE_CACHE[key] = np.asarray(image)[..., 0] == COLOURS["white"][0]
    return _TEMPLATE_CACHE[key]


def read_frame_state(frame: Image.Image | bytes) -> FrameState:
    """Recover the board from a frame's pixels: per cell, the colour and shape drawn there.

    Colour: the palette colour covering most of the cell's object box; shape: the template
    (rendered with the same drawing code) whose mask best matches those pixels.
    """
    if isinstance(frame, (bytes, bytearray)):
        frame = Image.open(io.BytesIO(frame))
    pixels = np.asarray(frame.convert("RGB")).astype(np.int16)
    frame_size = pixels.shape[0]
    palette = np.array(list(COLOURS.values()), dtype=np.int16)
    names = list(COLOURS)
    objects: list[tuple[Cell, Thing]] = []
    for x in range(GRID):
        for y in range(GRID):
            x0, y0, x1, y1 = _cell_box((x, y), frame_size)
            patch = pixels[y0 : y1 + 1, x0 : x1 + 1]
            dist = np.abs(patch[..., None, :] - palette[None, None]).sum(-1)
            nearest = dist.argmin(-1)
            close = dist.min(-1) < 60
            if close.sum() < 0.25 * close.size:
                continue
            colour_index = int(np.bincount(nearest[close], minlength=len(names)).argmax())
            mask = np.zeros(pixels.shape[:2], dtype=bool)
            mask[y0 : y1 + 1, x0 : x1 + 1] = close & (nearest == colour_index)
            scores = {s: int((_template((x, y), frame_size, s) ^ mask).sum()) for s in SHAPES}
            shape = min(SHAPES, key=lambda s: scores[s])
            objects.append(((x, y), Thing(names[colour_index], shape)))
    return FrameState(tuple(objects))


def _parse_caption(caption: str) -> tuple[Thing, str] | None:
    """(actor, direction after this step) from a synthetic caption; None if not one."""
    words = caption.split()
    if len(words) >= 6 and words[0] == "a" and words[3:5] == ["starts", "moving"]:
        return Thing(words[1], words[2]), words[5]
    if len(words) >= 5 and words[0] == "the" and words[3] == "moves":
        return Thing(words[1], words[2]), words[4]
    if len(words) >= 8 and words[0] == "the" and words[3:5] == ["bounces", "off"]:
        wall = words[6]
        if wall in WALL_TO_DIRECTION:
            return Thing(words[1], words[2]), OPPOSITE[WALL_TO_DIRECTION[wall]]
    return None


def next_caption_from_window(captions: Sequence[str], last_frame: Image.Image | bytes) -> str | None:
    """The synthetic world's next caption, from a window's captions and its last frame's pixels.

    The actor and its direction come from the last caption (text); the actor's cell and the
    items (cell, colour, shape) only from the frame. None when the inputs do not parse.
    """
    if not captions:
        return None
    parsed = _parse_caption(captions[-1])
    if parsed is None:
        return None
    actor, direction = parsed
    board = read_frame_state(last_frame).as_dict()
    actor_cells = [cell for cell, thing in board.items() if thing == actor]
    if len(actor_cells) != 1:
        return None
    items = {cell: thing for cell, thing in board.items() if cell != actor_cells[0]}
    _, _, caption, _, _ = _step(actor, actor_cells[0], direction, items)
    return caption


ACTOR_PLACEHOLDER = "actor"


ITEM_PLACEHOLDER = "item"


def _abstract_caption(caption: str, actor: Thing) -> str:
    return caption.replace(f" {actor.name} ", f" {ACTOR_PLACEHOLDER} ", 1)


def _abstract_context(caption: str, actor: Thing) -> str:
    """Context caption with the actor and any taken item replaced by placeholders.

    A taken item is gone from the board and never named again, so which one it was does not
    bear on what follows; pooling over it keeps the text-only groups from being singletons.
    """
    caption = _abstract_caption(caption, actor)
    if " takes the " in caption:
        caption = caption.split(" takes the ", 1)[0] + f" takes the {ITEM_PLACEHOLDER}"
    return caption


@dataclass
class LearnabilityReport:
    """How predictable caption k+1 is with and without the frames, over a split's windows.

    Windows are grouped by what a model sees; a group whose windows have different next
    captions is ambiguous for that view. The actor's name is replaced by a placeholder in both
    keys and targets (it is copied from the context, and the dynamics do not depend on it), and
    the names of items taken within the context are replaced in the keys (those items are gone),
    so groups pool windows that only differ by which shape plays the actor or by what it took.
    """

    windows: int
    #: windows whose next caption :func:`next_caption_from_window` gets right
    oracle_accuracy: float
    #: groups keyed by (k captions, board read from frame k's pixels)
    full_groups: int
    #: share of those groups with a single next caption
    full_deterministic_fraction: float
    #: groups keyed by the k captions only
    text_groups: int
    #: share of those groups with more than one next caption
    text_ambiguous_group_fraction: float
    #: share of windows that fall in an ambiguous text-only group
    text_ambiguous_window_fraction: float
    #: the best any text-only predictor does on these windows: majority next caption per group
    text_majority_accuracy: float
    #: share of windows whose next caption takes an item no caption of the window names
    #: (its colour and shape are visible only in the frames)
    image_only_target_fraction: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """Plain dict (JSON-serialisable)."""
        return dict(self.__dict__)


def learnability_report(split: datasets.Dataset, k: int) -> LearnabilityReport:
    """Group a split's windows (k frames + captions -> caption k+1) to measure learnability.

    The frames enter only through :func:`read_frame_state` on the window's last frame (pixels).
    """
    full: dict[Any, Counter[str]] = defaultdict(Counter)
    text: dict[Any, Counter[str]] = defaultdict(Counter)
    windows = correct = image_only = 0
    for row in iter_raw_rows(split):
        captions = list(row["captions"])
        frames = row["frames"]
        parsed = _parse_caption(captions[0]) if captions else None
        for start in range(len(captions) - k):
            context = tuple(captions[start : start + k])
            target = captions[start + k]
            last = frames[start + k - 1]["bytes"]
            correct += next_caption_from_window(context, last) == target
            windows += 1
            if " takes the " in target:
                taken = target.split(" takes the ", 1)[1]
                image_only += not any(taken in c for c in context)
            if parsed is None:
                key_text, key_target = context, target
                board: tuple[Any, ...] = read_frame_state(last).objects
            else:
                actor = parsed[0]
                key_text = tuple(_abstract_context(c, actor) for c in context)
                key_target = _abstract_caption(target, actor)
                board = tuple(
                    (cell, Thing(ACTOR_PLACEHOLDER, ACTOR_PLACEHOLDER) if thing == actor else thing)
                    for cell, thing in read_frame_state(last).objects
                )
            full[(key_text, board)][key_target] += 1
            text[key_text][key_target] += 1
    if windows == 0:
        raise DataError(f"no story has at least k+1 = {k + 1} frames")
    ambiguous = [c for c in text.values() if len(c) > 1]
    return LearnabilityReport(
        windows=windows,
        oracle_accuracy=correct / windows,
        full_groups=len(full),
        full_deterministic_fraction=sum(len(c) == 1 for c in full.values()) / len(full),
        text_groups=len(text),
        text_ambiguous_group_fraction=len(ambiguous) / len(text),
        text_ambiguous_window_fraction=sum(sum(c.values()) for c in ambiguous) / windows,
        text_majority_accuracy=sum(c.most_common(1)[0][1] for c in text.values()) / windows,
        image_only_target_fraction=image_only / windows,
    )

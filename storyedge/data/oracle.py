"""The pixel-reading oracle of the synthetic world, and how much of caption k+1 only frames tell.

:func:`read_frame_state` recovers the board (per cell: colour, shape, size) from a frame's
pixels. :func:`next_event_from_window` combines it with the window's last caption (which names
the actor and its direction) to get the next event exactly; :func:`next_caption_from_window`
says that event in its most likely paraphrase. :func:`learnability_report` measures, over a
split's windows, how often the oracle gets the next event right against the best any text-only
predictor can do (the majority next event given what the captions say).
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import datasets
import numpy as np
from PIL import Image

from storyedge.data.lexicon import ACTOR_SHAPES, COLOURS, ITEM_SHAPES, SIZES
from storyedge.data.paraphrase import TAKE, Event, Item, ParsedCaption, caption_options, parse_caption
from storyedge.data.synthetic import GRID, Cell, Glyph, cell_box, render_frame, step_event
from storyedge.data.windows import iter_raw_rows
from storyedge.errors import DataError

#: A pixel belongs to a palette colour when its summed |RGB| distance is below this.
COLOUR_TOLERANCE = 60


@dataclass(frozen=True)
class FrameState:
    """What a frame shows: the glyph in each occupied cell, read from pixels."""

    objects: tuple[tuple[Cell, Glyph], ...]

    def as_dict(self) -> dict[Cell, Glyph]:
        """``{cell: glyph}``."""
        return dict(self.objects)


_MASKS: dict[tuple[int, int, int, str, str], np.ndarray] = {}


def _mask(cell: Cell, frame_size: int, shape: str, size: str) -> np.ndarray:
    """The pixels a (shape, size) glyph covers in ``cell``, rendered by the drawing code."""
    key = (cell[0], cell[1], frame_size, shape, size)
    if key not in _MASKS:
        image = render_frame({cell: Glyph("white", shape, size)}, frame_size)
        _MASKS[key] = np.asarray(image)[..., 0] == COLOURS["white"][0]
    return _MASKS[key]


def read_frame_state(frame: Image.Image | bytes) -> FrameState:
    """Recover the board from a frame's pixels: per cell, the colour, shape and size drawn there.

    Colour: the palette colour covering most of the cell; shape and size: the glyph (rendered
    with the same drawing code) whose mask best matches those pixels.
    """
    if isinstance(frame, (bytes, bytearray)):
        frame = Image.open(io.BytesIO(frame))
    pixels = np.asarray(frame.convert("RGB")).astype(np.int16)
    frame_size = pixels.shape[0]
    palette = np.array(list(COLOURS.values()), dtype=np.int16)
    names = list(COLOURS)
    glyphs = [(shape, size) for shape in ITEM_SHAPES for size in SIZES] + [(s, "big") for s in ACTOR_SHAPES]
    objects: list[tuple[Cell, Glyph]] = []
    for x in range(GRID):
        for y in range(GRID):
            x0, y0, x1, y1 = cell_box((x, y), frame_size, "big")
            patch = pixels[y0 : y1 + 1, x0 : x1 + 1]
            dist = np.abs(patch[..., None, :] - palette[None, None]).sum(-1)
            close = dist.min(-1) < COLOUR_TOLERANCE
            if close.sum() < 0.08 * close.size:
                continue
            nearest = dist.argmin(-1)
            colour_index = int(np.bincount(nearest[close], minlength=len(names)).argmax())
            mask = np.zeros(pixels.shape[:2], dtype=bool)
            mask[y0 : y1 + 1, x0 : x1 + 1] = close & (nearest == colour_index)
            scores = {g: int((_mask((x, y), frame_size, *g) ^ mask).sum()) for g in glyphs}
            shape, size = min(glyphs, key=lambda g: scores[g])
            objects.append(((x, y), Glyph(names[colour_index], shape, size)))
    return FrameState(tuple(objects))


def next_event_from_window(captions: Sequence[str], last_frame: Image.Image | bytes) -> Event | None:
    """The next event, from a window's captions and its last frame's pixels.

    The actor and its direction come from the last caption (text); the actor's cell and the
    items (cell, colour, shape) only from the frame. None when the inputs do not parse.
    """
    if not captions:
        return None
    parsed = parse_caption(captions[-1])
    if parsed is None:
        return None
    actor = parsed.actor
    board = read_frame_state(last_frame).as_dict()
    cells = [c for c, g in board.items() if g.colour == actor.colour and g.shape == actor.category.glyph]
    if len(cells) != 1:
        return None
    items = {
        cell: Item(g.colour, g.shape, g.size)
        for cell, g in board.items()
        if cell != cells[0] and g.shape in ITEM_SHAPES
    }
    event, _ = step_event(actor, cells[0], parsed.direction_after, items)
    return event


def next_caption_from_window(captions: Sequence[str], last_frame: Image.Image | bytes) -> str | None:
    """The next caption the oracle would write: the next event in its most likely paraphrase."""
    event = next_event_from_window(captions, last_frame)
    return None if event is None else caption_options(event)[0].text


# --------------------------------------------------------------------------- learnability

#: Stand-in for an item taken within the context (it is gone; which one it was does not matter).
ITEM_PLACEHOLDER = "item"


def event_signature(parsed: ParsedCaption) -> tuple[Any, ...]:
    """What a caption says, without its wording or its actor: (kind, direction[, item])."""
    item = parsed.item
    return (parsed.kind, parsed.direction) + (
        (item.colour, item.shape) if item is not None else ()
    )


def _context_signature(parsed: ParsedCaption) -> tuple[Any, ...]:
    return (parsed.kind, parsed.direction) + ((ITEM_PLACEHOLDER,) if parsed.kind == TAKE else ())


@dataclass
class LearnabilityReport:
    """How predictable caption k+1's event is with and without the frames, over a split's windows.

    Text-only groups are keyed by what the k captions *say* (event kind and direction, wording
    and actor name removed, taken items replaced by a placeholder, the actor's category kept
    because it picks the item nouns): the paraphrase drawn carries no information, so this is the
    most a text-only predictor can use.
    """

    windows: int
    #: windows whose next event the pixel-reading oracle gets right
    oracle_accuracy: float
    #: windows whose written caption is the oracle's most likely paraphrase (exact text)
    oracle_exact_match: float
    #: groups keyed by the k captions' events only
    text_groups: int
    #: share of windows that fall in a text-only group with more than one next event
    text_ambiguous_window_fraction: float
    #: the best any text-only predictor does on these windows: majority next event per group
    text_majority_accuracy: float
    #: share of windows whose next caption takes an item (its colour and shape are visible only
    #: in the frames)
    image_only_target_fraction: float

    def as_dict(self) -> dict[str, float]:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)


def learnability_report(split: datasets.Dataset, k: int) -> LearnabilityReport:
    """Measure, over a split's windows (k frames + captions -> caption k+1), the pixel oracle
    against the best caption-only guess. The frames enter only through the window's last frame."""
    text: dict[Any, Counter[Any]] = defaultdict(Counter)
    windows = correct = exact = takes = 0
    for row in iter_raw_rows(split):
        captions = list(row["captions"])
        frames = row["frames"]
        for start in range(len(captions) - k):
            context = captions[start : start + k]
            target = captions[start + k]
            windows += 1
            parsed_target = parse_caption(target)
            event = next_event_from_window(context, frames[start + k - 1]["bytes"])
            if parsed_target is None or event is None:
                continue
            options = caption_options(event)
            correct += any(o.text == target for o in options)
            exact += options[0].text == target
            takes += parsed_target.kind == TAKE
            parsed_context = [parse_caption(c) for c in context]
            key = (
                event.actor.category.name,
                tuple(_context_signature(p) if p is not None else c for p, c in zip(parsed_context, context)),
            )
            text[key][event_signature(parsed_target)] += 1
    if windows == 0:
        raise DataError(f"no story has at least k+1 = {k + 1} frames")
    ambiguous = [c for c in text.values() if len(c) > 1]
    return LearnabilityReport(
        windows=windows,
        oracle_accuracy=correct / windows,
        oracle_exact_match=exact / windows,
        text_groups=len(text),
        text_ambiguous_window_fraction=sum(sum(c.values()) for c in ambiguous) / windows,
        text_majority_accuracy=sum(c.most_common(1)[0][1] for c in text.values()) / windows,
        image_only_target_fraction=takes / windows,
    )

"""The synthetic world's words: colours, item shapes and sizes, actor kinds, places, reason text.

Everything here is data (no randomness, no rendering): the simulation
(:mod:`storyedge.data.synthetic`) draws from these tables, the paraphrase templates
(:mod:`storyedge.data.paraphrase`) spell them out, and the frame reader maps pixels back to them.

What a caption can name, and where a reader finds it:

* the **actor** (``"<colour> <kind>"``): named in every caption and drawn in every frame (its
  colour, and its kind as a glyph of its own: a fox is a diamond, an owl a plus, a robot a
  ring, a fish an hourglass);
* the actor's kind picks the motion verb ("runs", "flies", "rolls", "swims") and what the items
  are called;
* an **item** (``"<colour> <noun>"``): colour and shape are visible only in the frame that
  shows it; the noun is the actor kind's word for that shape ("apple" for a fox, "wheel" for a
  robot, ...);
* the **place** and the reason's story-telling words (the actor's name, time, mood, goal,
  ending): text only (caption 0 and the reason).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Palette: every pair differs by at least 120 in summed |RGB| (tested), on a dark background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 50),
    "blue": (40, 80, 245),
    "yellow": (245, 225, 20),
    "purple": (170, 40, 230),
    "white": (245, 245, 245),
}
BACKGROUND = (18, 18, 18)
#: Item shapes (actors have glyphs of their own, :attr:`Category.glyph`).
ITEM_SHAPES = ("circle", "square", "triangle")
#: Item size word -> margin around the object, as a fraction of the cell side (each side).
SIZES: dict[str, float] = {"big": 0.08, "small": 0.22}
ACTOR_SIZE = "big"
#: Items are drawn big (small ones were too hard to read at 32 px within the quickstart's budget).
ITEM_SIZE = "big"
#: How big the reason says the actor is (story-telling only; text).
ACTOR_SIZE_WORDS = ("little", "big", "tiny", "huge", "small", "giant", "young", "plump")

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


@dataclass(frozen=True)
class Category:
    """One actor kind: how it is drawn, how it moves, what it calls the items it takes."""

    name: str
    kind: str
    #: the actor's glyph (never an item shape, so the actor is found by its shape alone too)
    glyph: str
    #: third person ("runs") and -ing form ("running") of the motion verb
    verb: str
    verb_ing: str
    #: item shape -> noun
    nouns: dict[str, str]


CATEGORIES: tuple[Category, ...] = (
    Category("animal", "fox", "diamond", "runs", "running",
             {"circle": "apple", "square": "cake", "triangle": "pear"}),
    Category("bird", "owl", "plus", "flies", "flying",
             {"circle": "berry", "square": "bun", "triangle": "seed"}),
    Category("machine", "robot", "ring", "rolls", "rolling",
             {"circle": "wheel", "square": "battery", "triangle": "cone"}),
    Category("sea", "fish", "hourglass", "swims", "swimming",
             {"circle": "pearl", "square": "sponge", "triangle": "shell"}),
)
CATEGORY_OF_KIND: dict[str, Category] = {c.kind: c for c in CATEGORIES}
KINDS: tuple[str, ...] = tuple(CATEGORY_OF_KIND)
ACTOR_SHAPES: tuple[str, ...] = tuple(c.glyph for c in CATEGORIES)
SHAPES = (*ITEM_SHAPES, *ACTOR_SHAPES)
#: item noun -> shape (nouns are unique across categories)
SHAPE_OF_NOUN: dict[str, str] = {noun: shape for c in CATEGORIES for shape, noun in c.nouns.items()}

# ------------------------------------------------------------------ places and reason text
PLACE_ADJECTIVES = (
    "old", "quiet", "sunny", "dusty", "misty", "busy", "little", "empty", "windy", "hidden",
    "frozen", "shady", "rocky", "muddy", "snowy", "sandy", "shiny", "narrow", "wide", "ancient",
)
PLACE_NOUNS = (
    "garden", "harbour", "kitchen", "forest", "meadow", "market", "library", "station", "village",
    "castle", "valley", "orchard", "beach", "cave", "attic", "barn", "bridge", "park", "yard",
    "plaza", "island", "desert", "swamp", "museum", "factory", "school", "farm", "lake",
    "tower", "field", "river", "hill", "mountain", "pond", "jungle", "garage", "bakery",
    "palace", "temple", "cellar", "hallway", "office", "theatre", "stadium", "airport",
    "canyon", "lighthouse", "windmill", "playground", "workshop",
)
#: the actor's name in the reason
NAMES = (
    "alba", "bruno", "coco", "dario", "elsa", "felix", "greta", "hugo", "iris", "jonas", "kira",
    "leo", "mila", "nico", "olga", "pablo", "quinn", "rosa", "sami", "tilda", "umberto", "vera",
    "walter", "xenia", "yusuf", "zoe", "arlo", "bea", "cyril", "dora", "emil", "fiona", "gus",
    "hazel", "ivan", "juno", "karl", "luna", "max", "nora", "otto", "pia", "rex", "sofia", "theo",
    "ugo", "viola", "wim", "yara", "zeno",
)
TIMES = (
    "one morning", "at dawn", "at noon", "one evening", "at midnight", "on a rainy day",
    "on a windy afternoon", "in early spring", "on a cold winter night", "late in autumn",
    "after breakfast", "before sunset", "during a storm", "on a foggy day",
)
MOODS = (
    "hungry", "curious", "sleepy", "brave", "shy", "cheerful", "grumpy", "clever", "lazy",
    "eager", "gentle", "proud", "nervous", "playful", "restless", "tired", "happy", "lonely",
    "bored", "calm", "clumsy", "polite", "silly", "bold", "careful", "fearless", "moody",
    "patient", "noisy", "friendly", "jolly", "anxious", "dreamy", "thoughtful", "stubborn",
    "sneaky", "merry", "sulky", "wise", "daring",
)
GOALS = (
    "looking for lunch", "searching for treasure", "chasing a rumour", "on its way home",
    "exploring every corner", "trying to find a friend", "hunting for snacks",
    "keen to collect gifts", "late for a meeting", "counting its steps",
    "following a faint smell", "hoping for a surprise", "practising for a race",
    "dreaming about dinner", "escaping the rain", "guarding its secret",
    "wondering where everyone went", "delivering a message", "waiting for the mail",
    "planning a picnic", "humming a tune", "collecting souvenirs", "avoiding puddles",
    "rehearsing a speech",
)
ENDINGS = (
    "and rests at last", "and looks pleased", "and wants more", "and goes to sleep",
    "and feels proud", "and waits patiently", "and smiles", "and dreams of tomorrow",
    "and sings softly", "and returns home tired", "and tells nobody", "and writes a letter",
)
#: the ending of a story in which nothing is taken or hit
QUIET_ENDING = "and never reaches a wall"

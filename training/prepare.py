"""Config → splits → tokenizer → encoded train / validation windows (+ the data's PPL floor).

The tokenizer is trained (WordPiece, padded to ``tokenizer.pad_to_vocab_size`` when set) or
loaded (bert-base-uncased) on the *train* captions and reasons only, and saved into the run
directory; ``--resume`` passes the saved one back in so the token ids never change under a
checkpoint. Data problems (missing keys, every story too short, an unreadable frame) are
raised by the data layer as :class:`DataError` and propagate unchanged. On the embedded
synthetic data the validation windows' PPL floor (:mod:`storyedge.data.floor`, with this
tokenizer) comes along.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets

from storyedge.config import SYNTHETIC_DATASET, Config
from storyedge.data.floor import DataFloor, data_floor
from storyedge.data.loading import load_story_splits
from storyedge.data.pipeline import WindowArrays, encode_windows
from storyedge.errors import DataError
from storyedge.run_dir import TOKENIZER_DIR
from storyedge.tokenizer import StoryTokenizer, build_tokenizer


@dataclass
class PreparedData:
    """What the loop needs: the tokenizer and the encoded train / validation windows."""

    tokenizer: StoryTokenizer
    train: WindowArrays
    validation: WindowArrays
    #: stories per split as loaded
    stories: dict[str, int]
    #: the data's PPL floor on the validation windows (embedded synthetic data), else None
    floor: DataFloor | None = None


def tokenizer_texts(train: datasets.Dataset) -> Iterator[str]:
    """Every caption and reason of the train split (the tokenizer's training text)."""
    for captions in train["captions"]:
        yield from (c for c in captions if c)
    if "reason" in train.column_names:
        yield from (r for r in train["reason"] if r)


def prepare_data(
    cfg: Config, run_dir: str | Path, tokenizer: StoryTokenizer | None = None
) -> PreparedData:
    """Load the splits, build (or reuse) the tokenizer, save it in ``run_dir``, encode windows."""
    splits = load_story_splits(cfg.dataset)
    if tokenizer is None:
        t = cfg.tokenizer
        tokenizer = build_tokenizer(t.name, tokenizer_texts(splits["train"]), t.vocab_size, t.lowercase,
                                    t.pad_to_vocab_size)
        tokenizer.save(Path(run_dir) / TOKENIZER_DIR)
    train = encode_windows(splits["train"], tokenizer, cfg.dataset, split_name="train")
    validation = encode_windows(splits["validation"], tokenizer, cfg.dataset, split_name="validation")
    if len(train) < cfg.dataset.batch_size:
        raise DataError(
            f"only {len(train)} training windows, fewer than one batch of "
            f"{cfg.dataset.batch_size}: lower dataset.batch_size or use more stories"
        )
    floor = None
    if cfg.dataset.name == SYNTHETIC_DATASET:
        floor = data_floor(
            splits["validation"], tokenizer, cfg.dataset.seq_len, cfg.dataset.max_caption_len, "validation"
        )
    return PreparedData(
        tokenizer=tokenizer,
        train=train,
        validation=validation,
        stories={name: len(split) for name, split in splits.items()},
        floor=floor,
    )

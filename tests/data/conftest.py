"""Shared fixtures for the data tests: a tiny generated dataset and a trained WordPiece."""

from __future__ import annotations

import datasets
import pytest

from storyedge.data.synthetic import generate_synthetic_dataset
from storyedge.tokenizer import StoryTokenizer, train_wordpiece


@pytest.fixture(scope="session")
def tiny_synthetic() -> datasets.DatasetDict:
    """20 synthetic stories at 32 px."""
    return generate_synthetic_dataset(20, seed=3, frame_size=32)


@pytest.fixture(scope="session")
def tokenizer(tiny_synthetic: datasets.DatasetDict) -> StoryTokenizer:
    """WordPiece trained on the tiny synthetic captions and reasons (plus generic test text)."""
    texts = [c for split in tiny_synthetic.values() for caps in split["captions"] for c in caps]
    texts += [r for split in tiny_synthetic.values() for r in split["reason"]]
    texts += ["caption number reason of story"] * 3
    return train_wordpiece(texts, vocab_size=200)

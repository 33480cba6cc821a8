"""Tiny synthetic data for the training tests, generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from training_testutil import DATA_SEED, DATA_STORIES


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic stories written once, in the layout ``dataset.name: synthetic`` reads."""
    from storyedge.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "synthetic", DATA_STORIES, DATA_SEED
    )

"""Fixtures of the bench tests: one tiny random-init model, exported once per session.

Tiny dims (16-24), 32 px frames, a WordPiece vocabulary (~120) trained on 20 synthetic stories
written at frame size 32. Exported through the exporter's Python API to TFLite (fp32,
int8-dynamic; separate and multi-signature) and ONNX (fp32, int8-dynamic). The model is random,
so the int8-dynamic gates are relaxed in the tests (a random tiny model's near-flat next-token
distributions make top-1 agreement meaningless); the fp32 gates are the real ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench_testutil import BenchEnv, tiny_config  # noqa: E402


@pytest.fixture(scope="session")
def bench_env(tmp_path_factory: pytest.TempPathFactory) -> BenchEnv:
    """Tiny model + tokenizer + 20 synthetic stories (32 px) + an export of both formats."""
    import keras

    from storyedge.data.loading import load_story_splits
    from storyedge.data.synthetic import write_synthetic_dataset
    from storyedge.errors import CheckFailed
    from storyedge.export import export_model
    from storyedge.model.story_model import build_model
    from storyedge.tokenizer import train_wordpiece
    from storyedge.training.prepare import tokenizer_texts

    root = tmp_path_factory.mktemp("bench_env")
    data_dir = write_synthetic_dataset(root / "data", 20, seed=0, frame_size=32)
    cfg = tiny_config(data_dir)
    config_path = root / "config.yaml"
    cfg.save(config_path)
    splits = load_story_splits(cfg.dataset)
    tokenizer = train_wordpiece(list(tokenizer_texts(splits["train"])), cfg.tokenizer.vocab_size)
    keras.utils.set_random_seed(0)
    model = build_model(cfg, tokenizer.vocab_size, tokenizer.pad_id)
    exports = root / "exports"
    try:
        export_model(
            model, cfg, tokenizer, exports, formats=["tflite", "onnx"], quantize=["none", "int8-dynamic"],
            batch=1, source={"test": "tiny random init"}, progress=False,
        )
    except CheckFailed:
        # A random model's int8 file may miss the exporter's validation tolerance; it is then in
        # rejected/ and absent from the manifest, and the bench covers what the manifest lists.
        assert (exports / "manifest.json").is_file()
    return BenchEnv(root, cfg, config_path, data_dir, exports)


@pytest.fixture
def export_copy(bench_env: BenchEnv, tmp_path: Path) -> Path:
    """A private copy of the export directory, free to corrupt."""
    dst = tmp_path / "exports"
    shutil.copytree(bench_env.exports, dst)
    return dst

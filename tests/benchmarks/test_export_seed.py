"""Seed-size export (V 30522, E 300, H 512, image 128, L 32, R 64, reason on): every format x
quantization of a random-init model, validated on windows of the embedded synthetic stories.

Not in the unit suite (minutes, GBs): ``pytest tests/benchmarks/test_export_seed.py -m seed_size -s``.
Prints the sizes, max diffs and wall times per file; the summary is also written to
``$STORYEDGE_SEED_EXPORT_SUMMARY`` when set.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.seed_size

SEED_VOCAB = 30522


def test_seed_size_export(tmp_path: Path) -> None:
    import keras

    from storyedge.config import load_config
    from storyedge.data.loading import load_story_splits
    from storyedge.data.pipeline import encode_windows
    from storyedge.export import export_model
    from storyedge.export.report import format_table
    from storyedge.manifest import read_manifest, verify_files
    from storyedge.model.story_model import build_model, count_params
    from storyedge.tokenizer import pad_vocabulary, train_wordpiece
    from storyedge.training.prepare import tokenizer_texts

    cfg = load_config("storyreasoning.yaml").replace(
        **{
            "dataset.name": "synthetic",
            "dataset.path": str(tmp_path / "synthetic"),
            "dataset.schema": "auto",
            "dataset.synthetic_stories": 60,
            "tokenizer.name": "wordpiece",
            "tokenizer.vocab_size": SEED_VOCAB,
        }
    )
    splits = load_story_splits(cfg.dataset)
    tokenizer = pad_vocabulary(train_wordpiece(list(tokenizer_texts(splits["train"])), 1000), SEED_VOCAB)
    assert tokenizer.vocab_size == SEED_VOCAB
    windows = encode_windows(splits["validation"], tokenizer, cfg.dataset, max_windows=80)
    keras.utils.set_random_seed(0)
    model = build_model(cfg, tokenizer.vocab_size, tokenizer.pad_id)
    params = count_params(model)
    start = time.perf_counter()
    manifest = export_model(
        model, cfg, tokenizer, tmp_path / "export",
        formats="all", quantize="none,fp16,int8-dynamic,int8",
        validation=windows, validation_windows=8, calibration_windows=64,
        source={"random_init": True, "seed": 0, "params": params},
    )
    wall = time.perf_counter() - start
    print()
    print(format_table(manifest))
    summary = {
        "params": params,
        "wall_seconds": round(wall, 1),
        "seconds": manifest.source["export"]["seconds"],
        "files": {
            f.path: {
                "bytes": f.size_bytes,
                "max_abs_diff": f.validation["max_abs_diff"],
                "reference_max_abs": f.validation["reference_max_abs"],
                "float_ops": f.float_ops,
            }
            for f in manifest.files + manifest.rejected
        },
        "multi_vs_separate": manifest.multi_vs_separate,
    }
    print(json.dumps(summary, indent=1))
    if os.environ.get("STORYEDGE_SEED_EXPORT_SUMMARY"):
        Path(os.environ["STORYEDGE_SEED_EXPORT_SUMMARY"]).write_text(json.dumps(summary, indent=1))
    assert not manifest.rejected
    expected = {f"tflite/{g}.{p}.tflite" for g in ("encoder", "decoder_step", "multi")
                for p in ("fp32", "fp16", "int8-dynamic", "int8")}
    expected |= {f"onnx/{g}.{p}.onnx" for g in ("encoder", "decoder_step") for p in ("fp32", "int8-dynamic")}
    assert {f.path for f in manifest.files} == expected
    verify_files(tmp_path / "export", read_manifest(tmp_path / "export"))
    logits = manifest.file("tflite", "decoder_step", "fp32").signatures["decoder_step"].outputs[0]
    assert logits.shape == [1, SEED_VOCAB]


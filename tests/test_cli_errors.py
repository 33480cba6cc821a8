"""The bad-input and fault battery a newcomer might hit, through the real CLI entry point.

Each case asserts: exit code 2, exactly one ``error:`` line naming the problem, no traceback,
and nothing that existed before overwritten.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from storyedge.app.cli import main

TINY = {
    "dataset": {"seq_len": 2, "image_size": 16, "max_caption_len": 8, "max_reason_len": 6,
                "synthetic_stories": 20},
    "tokenizer": {"vocab_size": 120},
    "model": {"image_feat_dim": 8, "image_spatial_dim": 8, "cnn_base_filters": 4, "text_embed_dim": 8,
              "text_hidden_dim": 8, "multimodal_dim": 8, "temporal_hidden_dim": 8,
              "decoder_hidden_dim": 8, "attention_heads": 2},
    "training": {"epochs": 1},
    "export": {"validation_windows": 2},
    "bench": {"max_windows": 2, "warmup": 1, "runs": 2},
}


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """Run ``storyedge ARGS`` in-process; returns (exit code, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    _, err = capsys.readouterr()
    return exc.value.code, err


def assert_one_line_error(code: int, err: str, expected_code: int, *fragments: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == expected_code, err
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*")) if p.is_file()
    }


def write_config(path: Path, data: dict, **sections: dict) -> Path:
    merged = {name: dict(values) for name, values in data.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(merged))
    return path


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, format="PNG")
    return buffer.getvalue()


def save_generic(path: Path, rows: dict) -> Path:
    """A generic-schema dataset (train + validation) written with save_to_disk."""
    import datasets

    features = datasets.Features({
        key: value for key, value in {
            "story_id": datasets.Value("string"),
            "frames": datasets.Sequence(datasets.Image()),
            "captions": datasets.Sequence(datasets.Value("string")),
            "reason": datasets.Value("string"),
        }.items() if key in rows
    })
    split = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict({"train": split, "validation": split, "test": split}).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny random-init bundle and its fp32 TFLite export, shared by the cases below."""
    import keras

    from storyedge.config import load_config
    from storyedge.data import load_story_splits
    from storyedge.export.exporter import export_from_checkpoint
    from storyedge.model.story_model import build_model
    from storyedge.run_dir import save_bundle
    from storyedge.tokenizer import train_wordpiece

    root = tmp_path_factory.mktemp("cli_errors")
    config_path = write_config(root / "tiny.yaml", TINY, dataset={"path": str(root / "data")})
    cfg = load_config(config_path)
    splits = load_story_splits(cfg.dataset)
    tokenizer = train_wordpiece([c for caps in splits["train"]["captions"] for c in caps], 120)
    keras.utils.set_random_seed(0)
    model = build_model(cfg, tokenizer.vocab_size, tokenizer.pad_id)
    save_bundle(root / "run", model, cfg, tokenizer, {"epoch": 0, "note": "random init (test)"})
    export_from_checkpoint(root / "run", root / "exports", formats="tflite", quantize="none", progress=False)
    return {"root": root, "config": config_path, "run": root / "run", "exports": root / "exports"}


def test_config_typo_is_not_valid_yaml(tmp_path, capsys):
    bad = tmp_path / "typo.yaml"
    bad.write_text("training:\n  epochs: 3\n  lr 0.001\n")
    code, err = run_cli(["train", "--config", str(bad), "--save-dir", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, 2, "typo.yaml", "not valid YAML")
    assert not (tmp_path / "run").exists()


def test_unknown_key(tmp_path, capsys):
    bad = write_config(tmp_path / "c.yaml", TINY, model={"atention_heads": 2})
    code, err = run_cli(["train", "--config", str(bad), "--save-dir", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, 2, "model.atention_heads: unknown key", "attention_heads")


def test_dataset_path_missing(tmp_path, capsys):
    bad = write_config(tmp_path / "c.yaml", TINY, dataset={"name": str(tmp_path / "nowhere")})
    code, err = run_cli(["train", "--config", str(bad), "--save-dir", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, 2, "nowhere")


def test_dataset_missing_frames_key(tmp_path, capsys):
    data = save_generic(tmp_path / "noframes", {
        "story_id": ["a", "b"], "captions": [["x y", "y z", "z x"]] * 2, "reason": ["r", "r"],
    })
    bad = write_config(tmp_path / "c.yaml", TINY, dataset={"name": str(data), "schema": "generic"})
    code, err = run_cli(["train", "--config", str(bad), "--save-dir", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, 2, "frames")


def test_all_stories_too_short(tmp_path, capsys):
    data = save_generic(tmp_path / "short", {
        "story_id": ["a", "b"],
        "frames": [[png((255, 0, 0)), png((0, 255, 0))]] * 2,
        "captions": [["red", "green"]] * 2,
        "reason": ["", ""],
    })
    bad = write_config(tmp_path / "c.yaml", TINY, dataset={"name": str(data)})
    code, err = run_cli(["train", "--config", str(bad), "--save-dir", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, 2, "k+1")


def test_corrupt_image_bytes(tmp_path, capsys):
    data = save_generic(tmp_path / "corrupt", {
        "story_id": ["a", "b"],
        "frames": [[png((255, 0, 0)), b"\x89PNG\r\n\x1a\n garbage", png((0, 0, 255))]] * 2,
        "captions": [["red", "green", "blue"]] * 2,
        "reason": ["", ""],
    })
    bad = write_config(tmp_path / "c.yaml", TINY, dataset={"name": str(data)})
    code, err = run_cli(["train", "--config", str(bad), "--save-dir", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, 2, "image")


def test_device_cuda_without_gpu(env, tmp_path, capsys):
    code, err = run_cli(
        ["train", "--config", str(env["config"]), "--device", "cuda", "--save-dir", str(tmp_path / "run")],
        capsys,
    )
    assert_one_line_error(code, err, 2, "--device cuda", "no GPU")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_export_from_missing_checkpoint(tmp_path, capsys):
    code, err = run_cli(
        ["export", "--checkpoint", str(tmp_path / "no_run"), "--out", str(tmp_path / "out")], capsys
    )
    assert_one_line_error(code, err, 2, "no_run", "not found")
    assert not (tmp_path / "out").exists()


def test_export_into_existing_dir_without_overwrite(env, capsys):
    before = tree_digest(env["exports"])
    code, err = run_cli(
        ["export", "--checkpoint", str(env["run"]), "--out", str(env["exports"]), "--format", "tflite",
         "--quantize", "none"],
        capsys,
    )
    assert_one_line_error(code, err, 2, "--overwrite")
    assert tree_digest(env["exports"]) == before


def test_bench_on_truncated_tflite(env, tmp_path, capsys):
    broken = tmp_path / "exports"
    shutil.copytree(env["exports"], broken)
    victim = broken / "tflite" / "decoder_step.fp32.tflite"
    victim.write_bytes(victim.read_bytes()[:1000])
    code, err = run_cli(["bench", "--exports", str(broken), "--out", str(tmp_path / "bench")], capsys)
    assert_one_line_error(code, err, 2, "decoder_step.fp32.tflite")
    assert not (tmp_path / "bench" / "report.json").exists()


def test_bench_with_manifest_tokenizer_mismatch(env, tmp_path, capsys):
    from storyedge.tokenizer import train_wordpiece

    mismatched = tmp_path / "exports"
    shutil.copytree(env["exports"], mismatched)
    shutil.rmtree(mismatched / "tokenizer")
    train_wordpiece(["completely different words here"] * 5, 50).save(mismatched / "tokenizer")
    code, err = run_cli(["bench", "--exports", str(mismatched), "--out", str(tmp_path / "bench")], capsys)
    assert_one_line_error(code, err, 2, "tokenizer")


def test_generate_with_fewer_than_k_images(env, tmp_path, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(png((255, 0, 0)))
    code, err = run_cli(
        ["generate", "--exports", str(env["exports"]), "--images", str(image), "--captions", "a red circle"],
        capsys,
    )
    assert_one_line_error(code, err, 2, "k = 2 frames and captions; got 1 image(s) and 1 caption(s)")


@pytest.mark.parametrize(
    "sections, fragments",
    [
        ({"model": {"image_encoder": "vit", "vit_patch_size": 5}}, ("model.vit_patch_size", "must divide")),
        ({"model": {"image_encoder": "vit", "vit_heads": 3}}, ("model.vit_heads", "must divide")),
        ({"training": {"contrastive_weight": -1.0}}, ("training.contrastive_weight", ">= 0")),
        ({"training": {"contrastive_temperature": 0.0}}, ("training.contrastive_temperature", "> 0")),
        ({"model": {"fusion": "text_only"}, "training": {"contrastive_weight": 0.5}},
         ("training.contrastive_weight", "text_only has no image vector")),
    ],
)
def test_vit_and_contrastive_bad_config_is_exit_2(sections, fragments, tmp_path, capsys) -> None:
    config = write_config(tmp_path / "bad.yaml", TINY, **sections)
    code, err = run_cli(["train", "--config", str(config), "--save-dir", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, 2, *fragments)
    assert not (tmp_path / "run").exists()

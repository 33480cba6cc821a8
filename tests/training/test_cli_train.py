"""``storyedge train`` end to end (in process): artefacts, bundle, and one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from pathlib import Path

import pytest

from storyedge.app.cli import main
from storyedge.config import load_config
from storyedge.training.report import COMPLETED, SCHEMA_VERSION, read_summary
from training_testutil import tiny_config_dict, write_config

EPOCHS = 2


def run_cli(*args: str) -> tuple[int, str, str]:
    """``storyedge <args>`` in process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
    return int(exit_info.value.code or 0), out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) of every file under ``directory``."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tiny_data_dir, tmp_path_factory):
    """One tiny run through the CLI: (run dir, config path, stdout)."""
    root = tmp_path_factory.mktemp("cli")
    run_dir = root / "run"
    config = write_config(
        root / "tiny.yaml",
        tiny_config_dict(tiny_data_dir, run_dir,
                         training={"epochs": EPOCHS, "checkpoint_every_steps": 5, "quality_windows": 16}),
    )
    code, out, err = run_cli("train", "--config", str(config), "--no-progress")
    assert code == 0, err
    return run_dir, config, out


def test_every_artefact_is_written(trained):
    run_dir, _, out = trained
    for name in ("config.yaml", "history.json", "history.csv", "curves.png", "summary.json"):
        assert (run_dir / name).is_file(), name
    for name in ("tokenizer/tokenizer.json", "tokenizer/vocab.txt", "best/model.weights.h5",
                 "best/config.yaml", "best/tokenizer/tokenizer.json", "best/meta.json",
                 "checkpoints/checkpoint"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "checkpoints").glob("ckpt-*.index"))
    png = (run_dir / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert "device: cpu" in out or "device: cuda" in out
    assert "training summary" in out and "unigram" in out


def test_history_is_consistent(trained):
    run_dir, config, _ = trained
    history = json.loads((run_dir / "history.json").read_text())
    epochs = history["epochs"]
    assert [r["epoch"] for r in epochs] == list(range(1, EPOCHS + 1))
    for record in epochs:
        assert record["val_ppl"] == pytest.approx(math.exp(record["val_loss"]), rel=1e-9)
        assert record["train_ppl"] == pytest.approx(math.exp(record["train_loss"]), rel=1e-9)
        assert record["tokens_per_s"] > 0
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]  # it learns something
    csv_lines = (run_dir / "history.csv").read_text().strip().splitlines()
    assert len(csv_lines) == EPOCHS + 1 and csv_lines[0].startswith("epoch,step,train_loss")
    assert history["unigram_val_ppl"] > 1.0
    summary = read_summary(run_dir)
    best = min(epochs, key=lambda r: r["val_loss"])
    assert summary.status == COMPLETED and summary.schema_version == SCHEMA_VERSION
    assert summary.best_epoch == best["epoch"]
    assert summary.best_val_loss == pytest.approx(best["val_loss"])
    assert summary.best_val_ppl == pytest.approx(math.exp(best["val_loss"]))
    assert summary.unigram_val_ppl == pytest.approx(history["unigram_val_ppl"])
    # the embedded stories: the data's PPL floor (validation windows) beside every trained PPL
    assert 1.0 < history["data_floor_ppl"] < 1.3 and history["data_floor"]["split"] == "validation"
    assert summary.data_floor_ppl == pytest.approx(history["data_floor_ppl"])
    assert 0.0 <= summary.oracle_exact_match == history["oracle_exact_match"] <= 1.0
    assert summary.best_val_ppl > summary.data_floor_ppl
    assert summary.steps == epochs[-1]["step"]
    assert summary.last_epoch == epochs[-1]
    assert summary.params_total == summary.params["total"] > 0
    assert load_config(run_dir / "config.yaml") == load_config(config)


def test_tensorboard_scalars(trained):
    from storyedge.training.tensorboard import read_scalars

    run_dir, _, _ = trained
    scalars = read_scalars(run_dir / "tensorboard")
    history = json.loads((run_dir / "history.json").read_text())["epochs"]
    for tag in ("train/loss", "train/ppl", "epoch/train_loss", "epoch/val_loss", "epoch/val_ppl"):
        assert tag in scalars, sorted(scalars)
    assert [s for s, _ in scalars["epoch/val_loss"]] == [r["epoch"] for r in history]
    assert scalars["epoch/val_loss"][-1][1] == pytest.approx(history[-1]["val_loss"], rel=1e-6)


def test_validation_caption_quality_every_epoch(trained):
    """exact match and BLEU-4 in history.json / .csv, TensorBoard and the epoch line; the best
    bundle's greedy captions rescored give its epoch's figures."""
    from storyedge.captions.generate import texts, window_captions
    from storyedge.captions.scoring import score_captions
    from storyedge.data.loading import load_story_splits
    from storyedge.data.pipeline import encode_windows
    from storyedge.run_dir import load_bundle
    from storyedge.runtime.tf_reference import TFReferenceBackend
    from storyedge.training.tensorboard import read_scalars

    run_dir, config, out = trained
    history = json.loads((run_dir / "history.json").read_text())["epochs"]
    for record in history:
        assert 0.0 <= record["val_exact_match"] <= 1.0 and 0.0 <= record["val_bleu4"] <= 100.0
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["val_exact_match", "val_bleu4"]
    scalars = read_scalars(run_dir / "tensorboard")
    for key in ("val_exact_match", "val_bleu4"):
        assert [v for _, v in scalars[f"epoch/{key}"]] == pytest.approx([r[key] for r in history], rel=1e-6)
    assert out.count("val captions (") == EPOCHS
    bundle = load_bundle(run_dir, expected_config=load_config(config))
    cfg, tok = bundle.config, bundle.tokenizer
    windows = encode_windows(load_story_splits(cfg.dataset)["validation"], tok, cfg.dataset).take(
        cfg.training.quality_windows)
    inputs = {"frames": windows.frames, "captions": windows.captions}
    if cfg.model.use_reason:
        inputs["reason"] = windows.reason
    backend = TFReferenceBackend(bundle.model, batch=3)  # another static batch: the same greedy captions
    ids = window_captions(backend, inputs, batch=3, bos_id=tok.bos_id, eos_id=tok.eos_id,
                          max_new=cfg.dataset.max_caption_len - 1)
    scores = score_captions(texts(tok, ids), texts(tok, [row[1:] for row in windows.target]))
    best = next(r for r in history if r["epoch"] == bundle.meta["epoch"])
    assert scores.bleu4 == pytest.approx(best["val_bleu4"], abs=1e-9)
    assert scores.exact_match == pytest.approx(best["val_exact_match"], abs=1e-12)


def test_best_bundle_reproduces_its_validation_loss(trained):
    from storyedge.data.loading import load_story_splits
    from storyedge.data.pipeline import encode_windows
    from storyedge.run_dir import load_bundle
    from storyedge.training.batches import iter_eval_batches
    from storyedge.training.step import make_eval_step

    run_dir, config, _ = trained
    bundle = load_bundle(run_dir, expected_config=load_config(config))
    cfg = bundle.config
    windows = encode_windows(load_story_splits(cfg.dataset)["validation"], bundle.tokenizer, cfg.dataset)
    evaluate = make_eval_step(bundle.model, bundle.tokenizer.pad_id, mode="eager")
    total = count = 0.0
    for batch in iter_eval_batches(windows, 7):  # another batching: same token-weighted mean
        out = evaluate(batch)
        total, count = total + float(out["loss_sum"]), count + float(out["count"])
    history = json.loads((run_dir / "history.json").read_text())["epochs"]
    best = min(history, key=lambda r: r["val_loss"])
    assert bundle.meta["epoch"] == best["epoch"]
    assert total / count == pytest.approx(best["val_loss"], rel=1e-5)
    assert bundle.meta["val_loss"] == pytest.approx(best["val_loss"], rel=1e-9)


def test_new_run_in_a_used_dir_is_refused_and_leaves_it_alone(trained):
    run_dir, config, _ = trained
    before = snapshot(run_dir)
    code, _, err = run_cli("train", "--config", str(config), "--no-progress")
    assert_one_line_error(code, err, "--resume", "--save-dir")
    assert snapshot(run_dir) == before


def test_resume_with_a_graph_changing_key_names_it(trained):
    run_dir, config, _ = trained
    before = snapshot(run_dir)
    code, _, err = run_cli("train", "--config", str(config), "--fusion", "concat", "--resume")
    assert_one_line_error(code, err, "model.fusion", "'attention'", "'concat'")
    assert snapshot(run_dir) == before


def test_resume_of_a_finished_run_trains_nothing_more(trained, tmp_path):
    run_dir, config, _ = trained
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    steps = read_summary(run_dir).steps
    code, out, err = run_cli("train", "--config", str(config), "--save-dir", str(copy),
                             "--resume", "--no-progress")
    assert code == 0, err
    assert "nothing to train" in out
    summary = read_summary(copy)
    assert summary.resumed_from_step == steps and summary.steps == steps


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def make_config(tiny_data_dir, tmp_path):
    def make(run_dir: Path | None = None, **sections) -> Path:
        data = tiny_config_dict(tiny_data_dir, run_dir or tmp_path / "run", **sections)
        return write_config(tmp_path / "cfg.yaml", data)

    return make


def test_cuda_without_a_gpu_is_a_one_line_error(make_config):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    code, _, err = run_cli("train", "--config", str(make_config()), "--device", "cuda")
    assert_one_line_error(code, err, "--device cuda")


def test_unwritable_save_dir(make_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = run_cli("train", "--config", str(make_config()), "--save-dir", str(blocker / "run"))
    assert_one_line_error(code, err, "save_dir", "cannot write")


def test_resume_without_a_checkpoint(make_config, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("train", "--config", str(make_config(tmp_path / "empty")), "--resume")
    assert_one_line_error(code, err, "no checkpoint")


def test_missing_dataset_key(make_config):
    code, _, err = run_cli(
        "train", "--config", str(make_config(dataset={"captions_key": "story_text"})), "--no-progress"
    )
    assert_one_line_error(code, err, "story_text", "dataset.captions_key")


def test_all_stories_too_short(make_config):
    # synthetic stories have 5-7 frames: k = 7 leaves no window
    code, _, err = run_cli("train", "--config", str(make_config(dataset={"seq_len": 7})), "--no-progress")
    assert_one_line_error(code, err, "k+1 = 8")


def test_corrupt_image(make_config, tmp_path):
    import datasets

    from storyedge.data.synthetic import generate_synthetic_dataset, story_features

    splits = generate_synthetic_dataset(12, seed=5, frame_size=32)
    raw = splits["train"].cast_column("frames", datasets.Sequence(datasets.Image(decode=False)))
    columns = raw.to_dict()
    columns["frames"][2][0] = {"bytes": b"\x89PNG but not really", "path": None}
    splits["train"] = datasets.Dataset.from_dict(columns, features=story_features())
    splits.save_to_disk(str(tmp_path / "corrupt"))
    cfg = make_config(dataset={"name": str(tmp_path / "corrupt"), "path": None})
    code, _, err = run_cli("train", "--config", str(cfg), "--no-progress")
    line = assert_one_line_error(code, err, "frame 0", "not a readable image")
    assert columns["story_id"][2] in line


def test_curves_are_throttled_during_training_and_complete_at_the_end(
    tiny_data_dir, tmp_path, monkeypatch
):
    from storyedge.training import loop
    from storyedge.training.history import History

    rendered: list[int] = []  # number of epochs in each rendered curves.png
    real_plot = History.plot

    def recording_plot(self, run_dir):
        rendered.append(len(self.records))
        real_plot(self, run_dir)

    monkeypatch.setattr(History, "plot", recording_plot)
    monkeypatch.setattr(loop, "CURVES_EVERY_SECONDS", 1e9)
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "tiny.yaml", tiny_config_dict(tiny_data_dir, run_dir, training={"epochs": 3}))
    code, _, err = run_cli("train", "--config", str(config), "--no-progress")
    assert code == 0, err
    # epoch 1 renders, epochs 2 and 3 are within the interval, the end of training renders all 3
    assert rendered == [1, 3]
    assert len(json.loads((run_dir / "history.json").read_text())["epochs"]) == 3
    assert (run_dir / "curves.png").read_bytes().startswith(b"\x89PNG")

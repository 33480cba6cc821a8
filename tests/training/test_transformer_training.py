"""Training with ``model.decoder: transformer``: the train step lowers the loss, and a tiny
``storyedge train`` run lowers the validation loss and writes a bundle that reloads."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from storyedge.app.cli import main
from training_testutil import tiny_config, tiny_config_dict, write_config

TRANSFORMER = {"decoder": "transformer", "decoder_layers": 2, "decoder_heads": 2, "decoder_ff_dim": 32}


def test_transformer_train_step_lowers_the_loss(tmp_path):
    import keras
    import tensorflow as tf

    from storyedge.model.story_model import build_model
    from storyedge.training.step import make_eval_step, make_optimizer, make_train_step
    from test_step import PAD, VOCAB, _batch

    cfg = tiny_config(tmp_path / "data", tmp_path / "run", model={**TRANSFORMER, "dropout": 0.0})
    keras.utils.set_random_seed(0)
    model = build_model(cfg, VOCAB, PAD)
    optimizer = make_optimizer(lr=1e-2)
    step = make_train_step(model, optimizer, PAD, 1.0, tf.Variable(0, dtype=tf.int64), mode="function")
    evaluate = make_eval_step(model, PAD, mode="eager")
    batch = _batch(cfg)
    first = evaluate(batch)
    for _ in range(5):
        step(batch)
    after = evaluate(batch)
    assert float(after["loss_sum"]) / float(after["count"]) < 0.9 * float(first["loss_sum"]) / float(first["count"])


def test_tiny_transformer_run_lowers_val_loss_and_reloads(tiny_data_dir, tmp_path):
    from storyedge.run_dir import load_bundle

    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "tiny.yaml", tiny_config_dict(
        tiny_data_dir, run_dir, model=TRANSFORMER, training={"epochs": 3}))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--config", str(config), "--no-progress"])
    assert int(exit_info.value.code or 0) == 0, err.getvalue()
    epochs = json.loads((run_dir / "history.json").read_text())["epochs"]
    assert len(epochs) == 3 and epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    bundle = load_bundle(run_dir)
    assert bundle.config.model.decoder == "transformer" and hasattr(bundle.model, "transformer_decoder")

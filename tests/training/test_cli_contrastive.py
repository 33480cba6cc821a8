"""``storyedge train`` with the contrastive loss on (tiny, in process): both loss terms and the
recall are logged (stdout, history, curves, TensorBoard), the heads are checkpointed but never in
``best/`` nor in the exported encoder, whose op list equals the loss-off model's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from storyedge.training.contrastive import recall_keys
from storyedge.training.history import CONTRASTIVE_FIELDS
from test_cli_train import run_cli
from training_testutil import tiny_config_dict, write_config

pytestmark = pytest.mark.slow

ON = {"epochs": 2, "contrastive_weight": 1.0, "contrastive_temperature": 0.2, "lr": 0.01}


@pytest.fixture(scope="module")
def trained_on(tiny_data_dir, tmp_path_factory):
    """One tiny run with the contrastive loss on: (run dir, config path, stdout)."""
    root = tmp_path_factory.mktemp("contrastive")
    run_dir = root / "run"
    config = write_config(root / "tiny.yaml", tiny_config_dict(tiny_data_dir, run_dir, training=ON))
    code, out, err = run_cli("train", "--config", str(config), "--no-progress")
    assert code == 0, err
    return run_dir, config, out


def test_both_terms_and_recall_are_logged(trained_on):
    from storyedge.training.tensorboard import read_scalars

    run_dir, _, out = trained_on
    epochs = json.loads((run_dir / "history.json").read_text())["epochs"]
    for record in epochs:
        assert set(CONTRASTIVE_FIELDS) <= set(record)
        assert all(0.0 <= record[key] <= 1.0 for key in recall_keys())
        assert record["val_i2t_r5"] >= record["val_i2t_r1"]
    # both terms go down over the run
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert epochs[-1]["train_contrastive_loss"] < epochs[0]["train_contrastive_loss"]
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert header[-len(CONTRASTIVE_FIELDS):] == list(CONTRASTIVE_FIELDS)
    assert "contrastive train" in out and "R@1 i2t" in out
    scalars = read_scalars(run_dir / "tensorboard")
    for tag in ("train/loss", "train/contrastive_loss", "epoch/train_contrastive_loss",
                "epoch/val_contrastive_loss", "epoch/val_i2t_r1", "epoch/val_t2i_r5"):
        assert tag in scalars, sorted(scalars)
    assert (run_dir / "curves.png").stat().st_size > 5000


def test_heads_are_checkpointed_and_resume_continues(trained_on, tmp_path):
    import tensorflow as tf

    run_dir, config, _ = trained_on
    reader = tf.train.load_checkpoint(str(tf.train.latest_checkpoint(str(run_dir / "checkpoints"))))
    names = reader.get_variable_to_shape_map()
    assert any(n.startswith("extra_weights/") and "image_proj" in n for n in names), sorted(names)[:20]
    with (run_dir / "best" / "model.weights.h5").open("rb") as handle:
        weights = handle.read()
    assert b"contrastive" not in weights and b"image_proj" not in weights


def _export(bundle: Path, out: Path) -> Path:
    from storyedge.export import export_from_checkpoint

    export_from_checkpoint(bundle, out, formats="tflite,onnx", quantize="none", progress=False)
    return out


def test_exported_encoder_has_no_heads_and_the_loss_off_op_list(trained_on, tmp_path):
    import onnx
    from onnx import numpy_helper

    from storyedge.config import load_config
    from storyedge.manifest import read_manifest
    from storyedge.run_dir import load_bundle, save_bundle

    run_dir, _, _ = trained_on
    on = _export(run_dir, tmp_path / "on")
    bundle = load_bundle(run_dir)
    off_cfg = load_config(run_dir / "config.yaml").replace(**{"training.contrastive_weight": 0.0})
    # the trained weights under the loss-off config: the same file graph, op for op
    save_bundle(tmp_path / "off_run", bundle.model, off_cfg, bundle.tokenizer, {"epoch": 0})
    off = _export(tmp_path / "off_run", tmp_path / "off")

    def encoder_ops(export_dir: Path) -> dict[str, dict[str, int]]:
        return {f.format: f.ops for f in read_manifest(export_dir).files if f.graph == "encoder"}

    assert encoder_ops(on) == encoder_ops(off)
    # the files' tensors: every ONNX initializer / TFLite tensor is the model's, none a head's
    heads = _trained_heads(run_dir)
    assert len(heads) == 4  # two kernels, two biases
    onnx_model = onnx.load(str(on / "onnx" / "encoder.fp32.onnx"))
    names = [init.name for init in onnx_model.graph.initializer]
    arrays = [numpy_helper.to_array(init) for init in onnx_model.graph.initializer]
    tflite_names, tflite_arrays = _tflite_tensors(on / "tflite" / "encoder.fp32.tflite")
    for name in names + tflite_names:
        assert "contrastive" not in name and "image_proj" not in name and "text_proj" not in name, name
    for head in heads:
        for array in arrays + tflite_arrays:
            if array.size == head.size:
                assert not np.allclose(array.reshape(-1), head.reshape(-1)), "a head's weight is exported"
                assert not np.allclose(array.T.reshape(-1), head.reshape(-1)) if array.ndim == 2 else True


def _trained_heads(run_dir: Path) -> list[np.ndarray]:
    """The heads' kernels and biases from the run's last checkpoint."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(tf.train.latest_checkpoint(str(run_dir / "checkpoints"))))
    return [reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
            if n.startswith("extra_weights/") and n.endswith("VARIABLE_VALUE") and "OPTIMIZER" not in n
            and reader.get_tensor(n).size > 1]


def _tflite_tensors(path: Path) -> tuple[list[str], list[np.ndarray]]:
    """(names of every tensor, values of every constant tensor) of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    names, arrays = [], []
    for detail in interpreter.get_tensor_details():
        names.append(detail["name"])
        try:
            arrays.append(np.array(interpreter.get_tensor(detail["index"])))
        except ValueError:
            pass  # not a constant (no buffer yet)
    return names, [a for a in arrays if a.size > 1 and math.isfinite(float(np.abs(a).max()))]

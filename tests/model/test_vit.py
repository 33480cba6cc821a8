"""ViT image encoder (``model.image_encoder: vit``): the CNN's contract, train graph = export graph,
builtins-only TFLite over every subgraph."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from storyedge.config import Config
from storyedge.model.layers import ImageEncoder
from storyedge.model.signatures import encoder_fn, encoder_input_names, make_export_archive
from storyedge.model.story_model import build_model, count_params
from storyedge.model.vit import VitImageEncoder

PAD = 0
VOCAB = 37
#: 16 px / patch 4 = a 4x4 grid of tokens: the CNN's patch grid at 16 px (stem stride 2).
VIT = {"model.image_encoder": "vit", "model.vit_patch_size": 4, "model.vit_layers": 2, "model.vit_heads": 2}


def test_vit_outputs_have_the_cnn_shapes(make_config: Callable[..., Config]) -> None:
    cnn = build_model(make_config(), VOCAB, PAD)
    vit = build_model(make_config(**VIT), VOCAB, PAD)
    assert isinstance(cnn.image_encoder, ImageEncoder) and isinstance(vit.image_encoder, VitImageEncoder)
    frames = np.random.default_rng(0).random((5, 16, 16, 3), dtype=np.float32)
    cnn_global, cnn_patches = cnn.image_encoder(frames)
    vit_global, vit_patches = vit.image_encoder(frames)
    assert tuple(vit_global.shape) == tuple(cnn_global.shape) == (5, 16)
    assert tuple(vit_patches.shape) == tuple(cnn_patches.shape) == (5, 16, 12)
    assert vit.image_encoder.num_patches == cnn.image_encoder.num_patches == 16
    assert count_params(vit)["image_encoder"] > 0


def test_vit_patch_grid_follows_the_patch_size(make_config: Callable[..., Config]) -> None:
    model = build_model(make_config(**{**VIT, "model.vit_patch_size": 8}), VOCAB, PAD)
    _, patches = model.image_encoder(np.zeros((1, 16, 16, 3), np.float32))
    assert tuple(patches.shape) == (1, 4, 12)
    with pytest.raises(ValueError, match="does not divide"):
        VitImageEncoder(16, 8, 12, patch_size=5, num_layers=1, heads=2)


def test_vit_concat_has_no_patches_and_sees_the_image(
    make_config: Callable[..., Config], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    cfg = make_config(**VIT, **{"model.fusion": "concat"})
    model = build_model(cfg, VOCAB, PAD)
    global_vec, patches = model.image_encoder(np.zeros((2, 16, 16, 3), np.float32))
    assert patches is None and tuple(global_vec.shape) == (2, 16)
    inputs = make_inputs(cfg, VOCAB, batch=1)
    other = {**inputs, "frames": inputs["frames"][:, ::-1] * 0.5}
    a = np.asarray(model.encode(inputs["frames"], inputs["captions"])["context"])
    b = np.asarray(model.encode(other["frames"], other["captions"])["context"])
    assert np.abs(a - b).max() > 1e-6  # the image reaches the context


@pytest.mark.parametrize("fusion", ["attention", "concat"])
def test_vit_train_graph_equals_export_graph(
    fusion: str, make_config: Callable[..., Config], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    cfg = make_config(**VIT, **{"model.fusion": fusion, "model.use_reason": True})
    model = build_model(cfg, VOCAB, PAD)
    inputs = make_inputs(cfg, VOCAB, batch=1)
    out = encoder_fn(model)(inputs["frames"], inputs["captions"], inputs["reason"])
    ref = model.encode(inputs["frames"], inputs["captions"], inputs["reason"])
    for key in ("h0", "c0", "context_gates"):
        assert np.abs(out[key].numpy() - np.asarray(ref[key])).max() < 1e-5, key
    # the teacher-forced (training) logits are decode_step unrolled from the exported state
    teacher = np.asarray(model(inputs, training=False))
    h, c = out["h0"], out["c0"]
    for t in range(inputs["target"].shape[1] - 1):
        step = model.decode_step(inputs["target"][:, t], h, c, out["context_gates"])
        assert np.abs(np.asarray(step["logits"]) - teacher[:, t]).max() < 1e-5
        h, c = step["h_out"], step["c_out"]


def test_vit_every_weight_gets_a_gradient(
    make_config: Callable[..., Config], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    import tensorflow as tf

    cfg = make_config(**VIT)
    model = build_model(cfg, VOCAB, PAD)
    inputs = make_inputs(cfg, VOCAB, batch=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(inputs, training=True) ** 2)
    names = [v.path for v in model.image_encoder.trainable_variables]
    grads = tape.gradient(loss, model.image_encoder.trainable_variables)
    missing = [n for n, g in zip(names, grads) if g is None or not np.any(np.asarray(tf.convert_to_tensor(g)))]
    assert not missing, missing


@pytest.fixture(scope="module")
def vit_tflite(tmp_path_factory: pytest.TempPathFactory, make_config: Callable[..., Config]) -> dict[str, Any]:
    """A tiny ViT model, its SavedModel and its encoder converted to builtins-only TFLite."""
    from test_signatures import _convert

    cfg = make_config(**VIT)
    model = build_model(cfg, VOCAB, PAD)
    out_dir: Path = tmp_path_factory.mktemp("vit_saved_model")
    make_export_archive(model).write_out(str(out_dir))
    return {"cfg": cfg, "model": model, "encoder": _convert(str(out_dir), "encoder")}


def test_vit_tflite_builtins_only_and_matches_keras(
    vit_tflite: dict[str, Any], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    from ai_edge_litert.interpreter import Interpreter
    from test_signatures import tflite_ops

    builtins, custom = tflite_ops(vit_tflite["encoder"])
    assert not custom, custom  # every subgraph: no Flex, no custom op
    assert {"CONV_2D", "SOFTMAX", "BATCH_MATMUL", "FULLY_CONNECTED"} <= builtins
    cfg, model = vit_tflite["cfg"], vit_tflite["model"]
    runner = Interpreter(model_content=vit_tflite["encoder"]).get_signature_runner("encoder")
    inputs = make_inputs(cfg, VOCAB, batch=1)
    got = runner(**{name: inputs[name] for name in encoder_input_names(cfg)})
    ref = model.encode(inputs["frames"], inputs["captions"])
    for key in ("h0", "c0", "context_gates"):
        assert np.abs(got[key] - np.asarray(ref[key])).max() < 1e-4, key

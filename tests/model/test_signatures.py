"""Export signatures: names and static shapes, tf.function parity, and builtins-only TFLite smoke tests."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import tensorflow as tf

from storyedge.config import Config
from storyedge.model.signatures import (
    decoder_input_specs,
    decoder_step_fn,
    encoder_fn,
    encoder_input_names,
    encoder_input_specs,
    make_export_archive,
)
from storyedge.model.story_model import StoryModel, build_model, context_dim

PAD = 0
VOCAB = 37


def test_specs_are_static_and_named(make_config: Callable[..., Config]) -> None:
    cfg = make_config()
    enc = encoder_input_specs(cfg, batch=2)
    assert [s.name for s in enc] == ["frames", "captions"] == encoder_input_names(cfg)
    assert [tuple(s.shape) for s in enc] == [(2, 3, 16, 16, 3), (2, 3, 8)]
    assert [s.dtype for s in enc] == [tf.float32, tf.int32]
    dec = decoder_input_specs(cfg)
    assert [s.name for s in dec] == ["token", "h", "c", "context_gates"]
    assert [tuple(s.shape) for s in dec] == [(1,), (1, 10), (1, 10), (1, 40)]  # context_gates: the cell's 4 x H gates
    assert [s.dtype for s in dec] == [tf.int32, tf.float32, tf.float32, tf.float32]

    with_reason = make_config(**{"model.use_reason": True})
    enc = encoder_input_specs(with_reason)
    assert [s.name for s in enc] == ["frames", "captions", "reason"]
    assert tuple(enc[2].shape) == (1, 6) and enc[2].dtype == tf.int32
    # the reason widens the context (12 + 16), not the step: its gates stay 4 x H
    assert context_dim(with_reason) == 12 + 16
    assert tuple(decoder_input_specs(with_reason)[3].shape) == (1, 40)


def test_tf_functions_match_the_model(
    make_config: Callable[..., Config], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    cfg = make_config(**{"model.use_reason": True})
    model = build_model(cfg, VOCAB, PAD)
    inputs = make_inputs(cfg, VOCAB, batch=1)
    enc = encoder_fn(model)
    out = enc(inputs["frames"], inputs["captions"], inputs["reason"])
    assert sorted(out) == ["c0", "context_gates", "h0"]
    ref = model.encode(inputs["frames"], inputs["captions"], inputs["reason"])
    for key in out:
        assert np.abs(out[key].numpy() - np.asarray(ref[key])).max() < 1e-5
    step = decoder_step_fn(model)
    token = inputs["target"][:, 0]
    got = step(token, out["h0"], out["c0"], out["context_gates"])
    assert sorted(got) == ["c_out", "h_out", "logits"]
    ref_step = model.decode_step(token, ref["h0"], ref["c0"], ref["context_gates"])
    for key in got:
        assert np.abs(got[key].numpy() - np.asarray(ref_step[key])).max() < 1e-5
    with pytest.raises((TypeError, ValueError)):  # the signature is static: batch 2 is refused
        step(np.zeros([2], np.int32), out["h0"], out["c0"], out["context_gates"])


# -- TFLite smoke tests ----------------------------------------------------------------------


def tflite_ops(model_content: bytes) -> tuple[set[str], set[str]]:
    """(builtin, custom) operator names over every subgraph (WHILE bodies included) of a .tflite.

    ``Interpreter._get_ops_details()`` lists the primary subgraph only; a Flex op inside a
    WHILE body would hide from it.
    """
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - older LiteRT
        from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    fb = schema.Model.GetRootAsModel(model_content, 0)
    codes: list[tuple[str, bool]] = []
    for i in range(fb.OperatorCodesLength()):
        code = fb.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append((code.CustomCode().decode(), True))
        else:
            codes.append((names[builtin], False))
    builtins: set[str] = set()
    custom: set[str] = set()
    for s in range(fb.SubgraphsLength()):
        graph = fb.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            name, is_custom = codes[graph.Operators(o).OpcodeIndex()]
            (custom if is_custom else builtins).add(name)
    return builtins, custom


def _convert(saved_model_dir: str, key: str) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[key])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


EXPORT_CASES = [
    {"model.fusion": "attention"},
    {"model.fusion": "attention", "model.use_reason": True},
    {"model.fusion": "text_only"},
]


@pytest.fixture(
    scope="module", params=EXPORT_CASES, ids=lambda o: "-".join(map(str, o.values()))
)
def exported(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    make_config: Callable[..., Config],
) -> dict[str, Any]:
    """A tiny model, its SavedModel (ExportArchive) and both endpoints converted to TFLite."""
    cfg = make_config(**request.param)
    model = build_model(cfg, VOCAB, PAD)
    out_dir = tmp_path_factory.mktemp("saved_model")
    make_export_archive(model).write_out(str(out_dir))
    return {
        "cfg": cfg,
        "model": model,
        "dir": out_dir,
        "encoder": _convert(str(out_dir), "encoder"),
        "decoder_step": _convert(str(out_dir), "decoder_step"),
    }


def _interpreter(blob: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=blob)


def test_tflite_builtins_only(exported: dict[str, Any]) -> None:
    for key in ("encoder", "decoder_step"):
        interpreter = _interpreter(exported[key])
        top_level = {op["op_name"] for op in interpreter._get_ops_details()}
        assert not any(name.startswith("Flex") for name in top_level), (key, top_level)
        builtins, custom = tflite_ops(exported[key])
        assert top_level <= builtins
        assert not custom, (key, custom)  # no Flex (nor any other custom) op in any subgraph
    encoder_ops = tflite_ops(exported["encoder"])[0]
    # the Keras 3 LSTMs convert to a WHILE loop of builtins (the fused
    # UNIDIRECTIONAL_SEQUENCE_LSTM is only produced for Keras 2 LSTM functions)
    assert "WHILE" in encoder_ops or "UNIDIRECTIONAL_SEQUENCE_LSTM" in encoder_ops
    if exported["cfg"].model.fusion == "attention":
        assert {"CONV_2D", "SOFTMAX", "BATCH_MATMUL"} <= encoder_ops
    assert {"FULLY_CONNECTED", "GATHER"} <= tflite_ops(exported["decoder_step"])[0]


def test_tflite_signatures_keep_stable_names(exported: dict[str, Any]) -> None:
    cfg = exported["cfg"]
    enc = _interpreter(exported["encoder"]).get_signature_list()["encoder"]
    assert sorted(enc["inputs"]) == sorted(encoder_input_names(cfg))  # text_only keeps frames
    assert sorted(enc["outputs"]) == ["c0", "context_gates", "h0"]
    dec = _interpreter(exported["decoder_step"]).get_signature_list()["decoder_step"]
    assert sorted(dec["inputs"]) == ["c", "context_gates", "h", "token"]
    assert sorted(dec["outputs"]) == ["c_out", "h_out", "logits"]
    loaded = tf.saved_model.load(str(exported["dir"]))
    assert set(loaded.signatures) >= {"encoder", "decoder_step"}


def test_tflite_matches_keras(
    exported: dict[str, Any], make_inputs: Callable[..., dict[str, np.ndarray]]
) -> None:
    cfg: Config = exported["cfg"]
    model: StoryModel = exported["model"]
    encoder = _interpreter(exported["encoder"]).get_signature_runner("encoder")
    decoder = _interpreter(exported["decoder_step"]).get_signature_runner("decoder_step")
    for seed in (0, 1):
        inputs = make_inputs(cfg, VOCAB, batch=1, seed=seed)
        assert (inputs["captions"] == PAD).any()  # padded captions are exercised
        feed = {name: inputs[name] for name in encoder_input_names(cfg)}
        got = encoder(**feed)
        ref = model.encode(inputs["frames"], inputs["captions"], inputs.get("reason"))
        for key in ("h0", "c0", "context_gates"):
            assert np.abs(got[key] - np.asarray(ref[key])).max() < 1e-4, key
        # three decoder steps fed back through TFLite, compared with the model's logits
        h, c, gates = got["h0"], got["c0"], got["context_gates"]
        teacher = np.asarray(model(inputs))
        for t in range(3):
            out = decoder(token=inputs["target"][:, t], h=h, c=c, context_gates=gates)
            assert np.abs(out["logits"] - teacher[:, t]).max() < 1e-4
            h, c = out["h_out"], out["c_out"]


def test_static_functions_of_many_batches_trace_without_the_retracing_warning(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    """An export traces the encoder and the story graphs once per reference (its own batch and the
    calibration's): TensorFlow would count those as retracing one function."""
    from storyedge.model.signatures import story_fn, story_input_specs, story_spec

    cfg = make_config(**{"model.use_reason": True})
    model = build_model(cfg, VOCAB, PAD)
    graph = story_spec(model).frame_graph
    with caplog.at_level("WARNING", logger="tensorflow"):
        for batch in range(1, 8):
            specs = story_input_specs(model, graph, batch)
            fn = story_fn(model, graph, batch)
            fn(*(tf.zeros(s.shape, s.dtype) for s in specs))
            assert fn.experimental_get_tracing_count() == 1
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]

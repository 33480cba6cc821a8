"""The export-time tracing switches of storyedge.export.graphs: same numbers, another graph."""

from __future__ import annotations

import collections
from typing import Any
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from storyedge.export.graphs import (  # noqa: E402
    hoisted_lstm_inputs,
    lstm_layers,
    onnx_plain_gathers,
    steps_per_iteration,
)
from storyedge.export.tflite import _builtin_names, _schema, op_name  # noqa: E402

#: steps, rows, input width, hidden width of the probe model (the caption Bi-LSTM's layout, tiny)
STEPS, ROWS, INPUTS, HIDDEN = 7, 3, 5, 6


def two_lstm_model(steps: int = STEPS) -> keras.Model:
    """An LSTM over the sequence feeding a last-state LSTM (both layer kinds the encoder uses)."""
    keras.utils.set_random_seed(3)
    x = keras.Input((steps, INPUTS), batch_size=ROWS)
    seq = keras.layers.LSTM(HIDDEN, return_sequences=True)(x)
    last = keras.layers.LSTM(HIDDEN)(seq)
    return keras.Model(x, [seq, last])


def traced(model: keras.Model, steps: int = STEPS) -> tf.types.experimental.ConcreteFunction:
    fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((ROWS, steps, INPUTS))])
    return fn.get_concrete_function()


def subgraph_ops(content: bytes) -> list[collections.Counter[str]]:
    """Op counts of each subgraph of a flatbuffer (0: the main graph; WHILE bodies after it)."""
    schema, names = _schema(), _builtin_names()
    model = schema.Model.GetRootAs(content, 0)
    out = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        out.append(collections.Counter(op_name(schema, model, graph.Operators(o), names)[0]
                                       for o in range(graph.OperatorsLength())))
    return out


def test_hoisted_input_projection_keeps_the_numbers_and_is_restored() -> None:
    model = two_lstm_model()
    x = np.random.default_rng(0).standard_normal((ROWS, STEPS, INPUTS)).astype(np.float32)
    plain = [t.numpy() for t in traced(model)(tf.constant(x))]
    with hoisted_lstm_inputs(model):
        assert all("inner_loop" in vars(layer) for layer in lstm_layers(model))
        hoisted = [t.numpy() for t in traced(model)(tf.constant(x))]
    assert not any("inner_loop" in vars(layer) for layer in lstm_layers(model))
    for a, b in zip(plain, hoisted):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-6


def to_tflite(model: keras.Model, saved: Path, steps: int = STEPS) -> bytes:
    """The model through an export archive (traced now, as the exporter does) to a TFLite flatbuffer."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda x: dict(zip(("seq", "last"), model(x, training=False))),
                         input_signature=[tf.TensorSpec((ROWS, steps, INPUTS), name="x")])
    archive.write_out(str(saved), verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serve"]).convert()


def test_hoisted_tflite_loop_body_keeps_only_the_recurrent_product(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    model = two_lstm_model()
    x = np.random.default_rng(1).standard_normal((ROWS, STEPS, INPUTS)).astype(np.float32)
    want = [t.numpy() for t in traced(model)(tf.constant(x))]
    plain = subgraph_ops(to_tflite(model, tmp_path / "plain"))
    with hoisted_lstm_inputs(model):
        content = to_tflite(model, tmp_path / "hoisted")
    hoisted = subgraph_ops(content)
    products = ("FULLY_CONNECTED", "BATCH_MATMUL")
    # as Keras traces it, each WHILE body multiplies x_t by W and h by U: two products a step
    assert [sum(g[p] for p in products) for g in plain[1:] if g["LOGISTIC"]] == [2, 2]
    # hoisted: one product (h U) a step, x W done once over the sequence in the main graph
    assert [sum(g[p] for p in products) for g in hoisted[1:] if g["LOGISTIC"]] == [1, 1]
    assert plain[0]["WHILE"] == hoisted[0]["WHILE"] == 2
    assert sum(hoisted[0][p] for p in products) == sum(plain[0][p] for p in products) + 2
    got = Interpreter(model_content=content).get_signature_runner("serve")(x=x)
    for a, b in zip(want, (got["seq"], got["last"])):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-5


@pytest.mark.parametrize(("length", "most", "steps"), [(32, 4, 4), (64, 2, 2), (3, 4, 3), (6, 4, 3), (7, 4, 1),
                                                       (1, 4, 1), (8, 1, 1)])
def test_steps_per_iteration_is_the_largest_divisor_up_to_most(length: int, most: int, steps: int) -> None:
    assert steps_per_iteration(length, most) == steps


def test_chunked_loop_runs_four_steps_an_iteration_with_the_same_numbers(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    steps = 8
    model = two_lstm_model(steps)
    x = np.random.default_rng(2).standard_normal((ROWS, steps, INPUTS)).astype(np.float32)
    want = [t.numpy() for t in traced(model, steps)(tf.constant(x))]
    with hoisted_lstm_inputs(model, most_steps=4):
        chunked = [t.numpy() for t in traced(model, steps)(tf.constant(x))]
        content = to_tflite(model, tmp_path / "chunked", steps)
    for a, b in zip(want, chunked):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-6
    ops = subgraph_ops(content)
    # each WHILE body: four recurrent products h U and four cells' gates, so 8 / 4 = 2 iterations
    assert [g["FULLY_CONNECTED"] + g["BATCH_MATMUL"] for g in ops[1:] if g["LOGISTIC"]] == [4, 4]
    assert [g["TANH"] for g in ops[1:] if g["LOGISTIC"]] == [8, 8]
    assert ops[0]["WHILE"] == 2
    got = Interpreter(model_content=content).get_signature_runner("serve")(x=x)
    for a, b in zip(want, (got["seq"], got["last"])):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-5


#: the caption Bi-LSTM probe: tokens per row, pad id, vocabulary, embedding and hidden widths
CAPTION_LEN, PAD, VOCAB, EMBED = 12, 0, 20, 5


def caption_encoder_model(rows: int) -> tuple[keras.Model, Any]:
    """A padding-exact Bi-LSTM (the model's CaptionEncoder) over [rows, CAPTION_LEN] token ids."""
    from storyedge.model.layers import CaptionEncoder

    keras.utils.set_random_seed(4)
    encoder = CaptionEncoder(keras.layers.Embedding(VOCAB, EMBED), HIDDEN, PAD)
    tokens = keras.Input((CAPTION_LEN,), batch_size=rows, dtype="int32")
    per_token, pooled, _ = encoder(tokens)
    return keras.Model(tokens, [per_token, pooled]), encoder


def padded_tokens(lengths: list[int]) -> np.ndarray:
    rng = np.random.default_rng(5)
    out = np.full((len(lengths), CAPTION_LEN), PAD, np.int32)
    for row, n in zip(out, lengths):
        row[:n] = rng.integers(1, VOCAB, n)
    return out


@pytest.mark.parametrize("project_in_loop", [False, True], ids=["hoisted-projection", "in-loop-projection"])
def test_bi_lstm_loops_stop_after_the_longest_real_token_with_the_same_outputs(
        tmp_path: Path, project_in_loop: bool) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from storyedge.export.graphs import length_bounded_direction

    lengths = [5, 2, 0]  # the longest row has 5 real tokens; an all-pad row
    model, encoder = caption_encoder_model(len(lengths))
    tokens = padded_tokens(lengths)
    want = [t.numpy() for t in model(tokens, training=False)]
    # one direction on its own: 4 steps an iteration -> 2 iterations (8 steps) of 12, the rest left zero
    x = encoder.embedding(tokens)
    bounded = length_bounded_direction(4, project_in_loop)(encoder.forward_lstm, x, tf.constant(lengths)).numpy()
    full = encoder.forward_lstm(x).numpy()
    assert np.abs(bounded[:, :8] - full[:, :8]).max() < 1e-6
    assert not bounded[:, 8:].any() and full[:, 8:].any()
    with hoisted_lstm_inputs(model, most_steps=4, project_in_loop=project_in_loop):
        assert "run_direction" in vars(encoder)
        traced_out = [t.numpy() for t in model(tokens, training=False)]
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda t: dict(zip(("per_token", "pooled"), model(t, training=False))),
                             input_signature=[tf.TensorSpec((len(lengths), CAPTION_LEN), tf.int32, name="t")])
        archive.write_out(str(tmp_path / "bounded"), verbose=False)
    assert "run_direction" not in vars(encoder)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "bounded"), signature_keys=["serve"])
    content = converter.convert()
    assert not [op for ops in subgraph_ops(content) for op in ops if op.startswith("Flex")]
    # each direction's body: four steps' recurrent products h U, and the chunk's x W where it is in the loop
    bodies = [g for g in subgraph_ops(content)[1:] if g["LOGISTIC"]]
    assert [g["FULLY_CONNECTED"] + g["BATCH_MATMUL"] for g in bodies] == [4 + project_in_loop] * 2
    # the outputs are written in place, not by rebuilding the buffer (SLICE + SLICE + CONCATENATION)
    assert [(g["DYNAMIC_UPDATE_SLICE"], g["SLICE"]) for g in bodies] == [(1, 0)] * 2
    got = Interpreter(model_content=content).get_signature_runner("serve")(t=tokens)
    for a, b, c in zip(want, traced_out, (got["per_token"], got["pooled"])):
        assert np.abs(a - b).max() < 1e-6 and np.abs(a - c).max() < 1e-5 and np.isfinite(c).all()
    padding = padded_tokens(lengths) == PAD
    assert not got["per_token"][padding].any()  # exactly zero at padding, as the Keras encoder


@pytest.mark.parametrize("project_in_loop", [False, True], ids=["hoisted-projection", "in-loop-projection"])
def test_pooled_only_bi_lstm_loops_keep_one_state_per_row_with_the_same_pooled_vector(
        tmp_path: Path, project_in_loop: bool) -> None:
    from ai_edge_litert.interpreter import Interpreter

    lengths = [5, 2, 0, 7]  # rows ending in the first and the second 4-step chunk; an all-pad row
    model, encoder = caption_encoder_model(len(lengths))
    tokens = padded_tokens(lengths)
    want = encoder(tokens)[1].numpy()
    assert np.array_equal(encoder(tokens, pooled_only=True).numpy(), want)
    with hoisted_lstm_inputs(model, most_steps=4, project_in_loop=project_in_loop):
        assert "final_state" in vars(encoder)
        traced = encoder(tokens, pooled_only=True).numpy()
        archive = keras.export.ExportArchive()
        archive.track(encoder)
        archive.add_endpoint("serve", lambda t: {"pooled": encoder(t, pooled_only=True)},
                             input_signature=[tf.TensorSpec((len(lengths), CAPTION_LEN), tf.int32, name="t")])
        archive.write_out(str(tmp_path / "pooled"), verbose=False)
    assert "final_state" not in vars(encoder)
    assert np.abs(traced - want).max() < 1e-6
    content = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "pooled"), signature_keys=["serve"]).convert()
    ops = subgraph_ops(content)
    bodies = [g for g in ops[1:] if g["LOGISTIC"]]
    # each body keeps a row's state at its last real token (one select a step) and writes no outputs
    assert [(g["SELECT_V2"], g["DYNAMIC_UPDATE_SLICE"]) for g in bodies] == [(4, 0)] * 2
    assert ops[0]["BATCH_MATMUL"] == 1  # the backward input's reversal; no reversal of its outputs
    got = Interpreter(model_content=content).get_signature_runner("serve")(t=tokens)["pooled"]
    assert np.abs(got - want).max() < 1e-5 and not got[2].any() and got[[0, 1, 3]].all(axis=1).all()


def _lookup_ops(table: np.ndarray) -> tuple[Any, set[str]]:
    """An embedding-style ``keras.ops.take`` traced for [2, 3] int32 ids, and its TF op types."""
    fn = tf.function(lambda ids: keras.ops.take(table, ids, axis=0),
                     input_signature=[tf.TensorSpec((2, 3), tf.int32, name="ids")])
    return fn, {op.type for op in fn.get_concrete_function().graph.get_operations()}


def test_onnx_plain_gathers_trace_take_as_one_gather_that_onnx_wraps_like_keras(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    tf2onnx = pytest.importorskip("tf2onnx")
    table = np.arange(12, dtype=np.float32).reshape(6, 2)
    ids = np.array([[0, 5, 2], [-1, -6, 3]], np.int32)  # negative ids count from the back in Keras
    _, keras_ops = _lookup_ops(table)
    assert {"Less", "SelectV2", "GatherV2"} <= keras_ops
    with onnx_plain_gathers():
        fn, plain_ops = _lookup_ops(table)
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17)
    assert "GatherV2" in plain_ops and not plain_ops & {"Less", "SelectV2", "AddV2"}
    assert [n.op_type for n in proto.graph.node] == ["Gather"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: ids})[0]
    np.testing.assert_array_equal(got, np.asarray(keras.ops.take(table, ids, axis=0)))
    _, restored = _lookup_ops(table)
    assert restored == keras_ops  # Keras' own take again after the switch

"""storyedge.export.tflite_loops: a WHILE loop's body observed at every iteration, not only its last."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
litert = pytest.importorskip("ai_edge_litert.interpreter")

from storyedge.export.tflite import _builtin_names, _schema  # noqa: E402
from storyedge.export.tflite_loops import LoopReplay, subgraph_model  # noqa: E402

STEPS, WIDTH = 5, 4


def loop_model() -> bytes:
    """A float TFLite ``WHILE`` whose body scales ``x`` by ``STEPS - 1 - t``: largest at the first
    iteration, zero at the last."""

    @tf.function(input_signature=[tf.TensorSpec((1, WIDTH), tf.float32)])
    def f(x: tf.Tensor) -> tf.Tensor:
        def body(t: tf.Tensor, acc: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return t + 1, acc + tf.tanh(x * tf.cast(STEPS - 1 - t, tf.float32))

        return tf.while_loop(lambda t, acc: t < STEPS, body, [tf.constant(0), tf.zeros((1, WIDTH))])[1]

    return tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()


def test_every_iteration_of_a_loop_body_is_observed() -> None:
    schema = _schema()
    content = loop_model()
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    interpreter = litert.Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                                     experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    x = np.array([[0.1, -0.2, 0.05, 0.3]], np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    loops = LoopReplay(model, schema, _builtin_names(), lambda sg, index: True)
    (op,) = loops.loops(0)
    body = op.builtinOptions.bodySubgraphIndex
    largest: dict[int, float] = {}

    def observe(sg: int, index: int, value: np.ndarray) -> None:
        assert sg == body
        if value.dtype == np.float32 and value.size:
            largest[index] = max(largest.get(index, 0.0), float(np.abs(value).max()))

    assert loops.observe(interpreter, 0, observe) == STEPS
    scaled = (STEPS - 1) * np.abs(x).max()  # the first iteration's x * 4, before its tanh
    assert any(np.isclose(v, scaled) for v in largest.values()), largest
    # what LiteRT itself kept of the body after the run: only the last iteration (x * 0)
    kept = [np.abs(interpreter.get_tensor(i, body)).max() for i in largest if interpreter.get_tensor(i, body).size]
    assert not any(np.isclose(v, scaled) for v in kept)
    # the replayed loop ends where the real one did: the same sum of tanh
    want = sum(np.tanh(x * (STEPS - 1 - t)) for t in range(STEPS))
    np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), want, atol=1e-6)


def test_a_subgraph_model_keeps_only_the_buffers_it_reads() -> None:
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(loop_model(), 0)
    body = LoopReplay(model, schema, _builtin_names(), lambda sg, index: True).loops(0)[0].builtinOptions.bodySubgraphIndex
    alone = schema.ModelT.InitFromPackedBuf(subgraph_model(model, schema, body), 0)
    assert len(alone.subgraphs) == 1 and len(alone.buffers) == len(model.buffers)
    assert len(alone.subgraphs[0].tensors) == len(model.subgraphs[body].tensors)
    assert len(model.subgraphs) == 3  # the model itself is left as it was

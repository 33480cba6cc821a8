"""Export-time tracing switches that change how the same math is laid out as a graph.

The story model's Keras 3 ``LSTM`` layers trace (TensorFlow backend, CPU) to a ``tf.while_loop``
over ``TensorList`` ops. Each converter wants something different from that loop, and no
switch below changes what the graph computes beyond float rounding (export validation checks it):

* **TFLite** — :func:`tflite_rnn_layout`. By default the converter keeps the loop as a builtin
  ``WHILE`` op (Keras 3 no longer tags its LSTM with ``tf._implements``, so there is no fused
  ``UNIDIRECTIONAL_SEQUENCE_LSTM``): builtins only, and the fp32 / fp16 / dynamic-range files use
  it (``loop`` / ``chunked``), full-integer int8 too (``chunked``), calibrated without TF 2.21's
  calibrator, which *segfaults* on a Keras LSTM ``WHILE`` body (reproduced on a bare
  ``keras.layers.LSTM``; :mod:`storyedge.export.tflite_loops` replays the loops instead). Every
  sequence length is static, so ``--portable`` int8 traces the LSTMs with ``unroll=True``
  (``unrolled``): straight-line ``FULLY_CONNECTED`` / ``LOGISTIC`` / ``TANH`` / ``MUL`` / ``ADD``
  ops sharing one copy of the weights, no ``WHILE`` (whose carried tensors the quantizer leaves
  float), all in integer kernels. The fused kernel *can* be had: a ``tf.function`` with the
  Keras-2 composite contract (``experimental_attributes={"api_implements": "lstm_<id>",
  "time_major": False, "go_backwards": False}``, Keras 2's ``standard_lstm`` argument order and
  5 outputs) converts to one builtin ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (parity 2e-7), but LiteRT
  runs that op outside XNNPACK: at the seed's caption Bi-LSTM shape it measured 1.4-3.3x slower
  (fp32) and no faster (int8-dynamic) than the ``WHILE`` loop, so it is not used. Why not unroll everything: at the seed
  size (L 32, R 64) the unrolled fp32 encoder ran at 314 ms vs 176 ms with ``WHILE`` (LiteRT,
  2 threads) and converts 3x slower. In both loop layouts each LSTM's input product ``x·W + b``
  is traced before the loop, over the whole sequence (:func:`hoisted_lstm_inputs`): Keras traces
  it into every step, where it is a one-row product per token; the body keeps ``h·U``. The
  padding-exact Bi-LSTMs' loops stop after the longest real token
  (:func:`length_bounded_direction`, which writes its outputs with ``DYNAMIC_UPDATE_SLICE``); in
  the int8-dynamic files they project each iteration's
  tokens in the loop instead (:data:`~storyedge.export.plan.IN_LOOP_PROJECTION_LAYOUTS`). Each
  ``WHILE`` iteration runs several time steps (2 in the float files' ``loop``, 4 in the
  int8-dynamic files' ``chunked``: :data:`~storyedge.export.plan.LOOP_STEPS`, where the figures
  are), since LiteRT copies the loop-carried tensors once per iteration.
  (ONNX keeps Keras' own trace: the rewriter above needs both products in the body.)
* **ONNX** — :func:`onnx_fusable_lstms`. tf2onnx's TF2 LSTM rewriter turns the Keras while loop
  into one ONNX ``LSTM`` node when the cell's ops match its pattern
  ``MatMul(x, W) + MatMul(h, R)`` → ``BiasAdd``. Keras 3's TensorFlow ``ops.add`` rewrites
  ``a + b`` as ``BiasAdd(a, squeeze(b))`` whenever ``b`` can be squeezed to a vector — which the
  recurrent term ``h @ R`` of shape ``[1, 4H]`` can at batch 1. The LSTM whose batch is 1 (the
  temporal LSTM at ``--batch 1``) then does not match and stays an ONNX ``Loop`` (the caption
  LSTMs run at batch B·k and were fused). The switch makes ``ops.add`` of two same-rank tensors a
  plain ``AddV2`` while tracing, so every LSTM layer becomes an ``LSTM`` node.
  :func:`onnx_plain_gathers` traces ``keras.ops.take`` (the token embeddings' lookup) as a bare
  ``GatherV2``: ONNX's ``Gather`` counts negative indices from the back itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
import tensorflow as tf
from keras import ops
from keras.src import backend as keras_backend  # its rnn(): no public alias in Keras 3
from tensorflow.compiler.tf2xla.python import xla  # dynamic_update_slice: no public alias

from storyedge.export.plan import IN_LOOP_PROJECTION_LAYOUTS, LOOP_STEPS, RNN_LAYOUTS, UNROLLED_LAYOUT
from storyedge.model.layers import CaptionEncoder, lstm_cell_update


def _layers_of(model: keras.Model, kind: type) -> list[Any]:
    """Every layer of class ``kind`` inside ``model``, each once (shared layers appear once)."""
    seen: dict[int, Any] = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, kind):
            seen.setdefault(id(layer), layer)
    return list(seen.values())


def rnn_layers(model: keras.Model) -> list[keras.layers.RNN]:
    """Every Keras ``RNN`` layer (``LSTM`` ...) inside ``model``, each once."""
    return _layers_of(model, keras.layers.RNN)


def encoder_lstm_count(model: keras.Model) -> int:
    """Number of ``keras.layers.LSTM`` layers (all in the encoder: the LSTM decoder is a cell and
    the Transformer decoder has no RNN, so its step is straight-line for every layout)."""
    return sum(isinstance(layer, keras.layers.LSTM) for layer in rnn_layers(model))


@contextlib.contextmanager
def unrolled_rnns(model: keras.Model) -> Iterator[None]:
    """Trace every RNN layer of ``model`` unrolled (static lengths); restored on exit."""
    layers = [layer for layer in rnn_layers(model) if not layer.unroll]
    for layer in layers:
        layer.unroll = True
    try:
        yield
    finally:
        for layer in layers:
            layer.unroll = False


def lstm_layers(model: keras.Model) -> list[keras.layers.LSTM]:
    """Every Keras ``LSTM`` layer inside ``model``, each once."""
    return [layer for layer in rnn_layers(model) if isinstance(layer, keras.layers.LSTM)]


def steps_per_iteration(length: int, most: int) -> int:
    """The largest number of time steps ≤ ``most`` that divides ``length`` (1 when none does)."""
    return max(u for u in range(1, max(1, min(most, length)) + 1) if length % u == 0)


def hoisted_inner_loop(layer: keras.layers.LSTM, most_steps: int = 1) -> Callable[..., Any]:
    """``layer.inner_loop`` with the input projection ``x·W + b`` of every step done before the
    loop, as one matmul over the whole sequence; the loop body keeps ``h·U`` and the gates.

    With ``most_steps`` > 1 one loop iteration runs u consecutive time steps (u: the largest
    divisor of the length up to ``most_steps``; 1 with a mask or ``go_backwards``), so the loop
    runs length / u times. The same sums in another order: float32 results move by rounding
    only (export validation holds them to the fp32 tolerance). Inference only: no dropout masks.
    """
    cell = layer.cell

    def inner_loop(sequences: Any, initial_state: Any, mask: Any, training: bool = False) -> Any:
        projected = _input_projection(cell, sequences)
        length, gates = sequences.shape[1], projected.shape[-1]
        u = 1 if mask is not None or layer.go_backwards else steps_per_iteration(length, most_steps)
        if u > 1:
            projected = ops.reshape(projected, (-1, length // u, u * gates))

        def step(projected_t: Any, states: list[Any]) -> tuple[Any, list[Any]]:
            h, c, outputs = _cell_steps(cell, _side_by_side(projected_t, u), *states)
            return (ops.concatenate(outputs, axis=-1) if u > 1 else h), [h, c]

        last, outputs, states = keras_backend.rnn(  # the arguments keras.layers.RNN.inner_loop passes
            step,
            projected,
            list(initial_state),
            go_backwards=layer.go_backwards,
            mask=mask,
            unroll=layer.unroll,
            input_length=length // u,
            zero_output_for_mask=layer.zero_output_for_mask,
            return_all_outputs=layer.return_sequences,
        )
        if u > 1:  # the step's output was the u hidden states side by side
            last = states[0]
            outputs = ops.reshape(outputs, (-1, outputs.shape[1] * u, outputs.shape[-1] // u))
        return last, outputs, states

    return inner_loop


def _input_projection(cell: Any, sequences: Any) -> Any:
    """``x·W + b`` of every time step at once: [N, L, E] -> [N, L, 4H]."""
    projected = ops.matmul(sequences, cell.kernel)
    return projected + cell.bias if cell.use_bias else projected


def _cell_steps(cell: Any, projections: list[Any], h: Any, c: Any) -> tuple[Any, Any, list[Any]]:
    """Consecutive LSTM cell steps, one per input projection ``x_t·W + b`` [N, 4H] of
    ``projections``: (h, c, the hidden state of each step)."""
    outputs = []
    for z in projections:
        h, c = lstm_cell_update(cell, z + ops.matmul(h, cell.recurrent_kernel), c)
        outputs.append(h)
    return h, c, outputs


def _side_by_side(projected: Any, steps: int) -> list[Any]:
    """The ``steps`` projections [N, 4H] laid side by side in ``projected`` [N, steps·4H]."""
    gates = projected.shape[-1] // steps
    return [projected[:, j * gates:(j + 1) * gates] for j in range(steps)] if steps > 1 else [projected]


def length_bounded_direction(most_steps: int = 1, project_in_loop: bool = False) -> Callable[..., Any]:
    """A :meth:`CaptionEncoder.run_direction` whose loop stops after the longest real token.

    The padding-exact Bi-LSTM never reads an output at padding, so the loop runs
    ``ceil(max(lengths) / u)`` iterations of u time steps (u as in :func:`hoisted_inner_loop`)
    instead of ``L / u``: a data-dependent ``WHILE`` condition, the outputs after the last
    iteration left zero. The real tokens' outputs are the same sums as Keras' loop (float32
    rounding only); a caption of 12 of 32 tokens runs 3 iterations, not 8.

    The input projection ``x·W + b`` is hoisted before the loop (one matmul over the whole
    sequence), or with ``project_in_loop`` done by each iteration for its u steps' tokens (one
    [u·N, E] x [E, 4H] product): the loop then carries the [L, N, E] tokens instead of the
    [L, N, 4H] projection, which LiteRT copies once an iteration, and projects no padding chunk.

    Each iteration writes its u outputs into a loop-carried ``[L / u, N, u·H]`` tensor with
    ``dynamic_update_slice`` (one builtin ``DYNAMIC_UPDATE_SLICE``). A ``TensorArray`` write, as
    Keras' loop does it, converts to two ``SLICE`` and a ``CONCATENATION`` that rebuild the whole
    buffer every iteration: at the seed size (int8-dynamic, LiteRT, 2 threads, interleaved, outputs
    bit-identical) one direction over 3 rows went from 0.97 to 0.80 ms, the encoder from 8.5 to
    7.7 ms, the frame graph from 2.8 to 2.4 ms and the reason graph from 1.9 to 1.1 ms (fp32:
    encoder 20.4 to 19.3, frame 6.3 to 6.0, reason 3.6 to 3.1 ms).

    Two other bodies were slower at the seed's caption shape (3 rows, 24 real tokens, 4 steps an
    iteration, ``CompiledModel``, interleaved, int8-dynamic / fp32, outputs bit-identical): both
    directions in one loop with their gate math on one stacked [2N, 4H] tensor (93 ops a body
    instead of 2 × 61), 2.34 → 2.44 / 6.68 → 7.35 ms; and a body without ``GATHER`` or
    ``DYNAMIC_UPDATE_SLICE`` (tokens and outputs in rotating buffers read and written by static
    slices, so every op of the body is XNNPACK's), 2.49 → 2.57 / 7.10 → 7.47 ms.
    """

    def run_direction(lstm: keras.layers.LSTM, x: Any, lengths: Any, training: bool = False) -> Any:
        chunks = _ChunkedInputs(lstm.cell, x, lengths, most_steps, project_in_loop)
        rows, length, u, units = x.shape[0], x.shape[1], chunks.u, lstm.cell.units
        outputs = tf.zeros((chunks.chunks, rows, u * units))  # iteration i writes outputs[i]

        def body(i: Any, h: Any, c: Any, outputs: Any) -> tuple[Any, Any, Any, Any]:
            h, c, hs = _cell_steps(lstm.cell, chunks.projections(i), h, c)
            chunk = ops.concatenate(hs, axis=-1) if u > 1 else h
            return i + 1, h, c, xla.dynamic_update_slice(outputs, chunk[None], tf.stack([i, 0, 0]))

        *_, outputs = chunks.loop(body, outputs)
        return tf.reshape(tf.transpose(outputs, (1, 0, 2)), (rows, length, units))

    return run_direction


def length_bounded_final_state(most_steps: int = 1, project_in_loop: bool = False) -> Callable[..., Any]:
    """A :meth:`CaptionEncoder.final_state` whose loop, as :func:`length_bounded_direction`'s,
    stops after the longest real token, and carries only the state after each row's last real
    token instead of every step's output.

    LiteRT copies every loop-carried tensor once an iteration, and a pooled-only Bi-LSTM (the
    reason's) reads one state per row: each step keeps its ``h`` where it is the row's last real
    token (a ``SELECT_V2``), so neither the ``[L / u, N, u·H]`` output buffer nor the reversal of
    the backward outputs nor the gather of the last step is left. The kept state is the same
    float as the step's output (all-pad row: zeros).
    """

    def final_state(lstm: keras.layers.LSTM, x: Any, lengths: Any, training: bool = False) -> Any:
        chunks = _ChunkedInputs(lstm.cell, x, lengths, most_steps, project_in_loop)
        last_step = tf.reshape(lengths - 1, (-1, 1))

        def body(i: Any, h: Any, c: Any, kept: Any) -> tuple[Any, Any, Any, Any]:
            h, c, hs = _cell_steps(lstm.cell, chunks.projections(i), h, c)
            steps_left = last_step - i * chunks.u  # the row's last real token is step j of this chunk
            for j, h_j in enumerate(hs):
                kept = tf.where(tf.equal(steps_left, j), h_j, kept)
            return i + 1, h, c, kept

        *_, kept = chunks.loop(body, tf.zeros((x.shape[0], lstm.cell.units)))
        return kept

    return final_state


class _ChunkedInputs:
    """The loop of :func:`length_bounded_direction` / :func:`length_bounded_final_state`: its
    u-step chunks of the inputs (or of their projection) and a ``while_loop`` of
    ``ceil(max(lengths) / u)`` iterations over them."""

    def __init__(self, cell: Any, x: Any, lengths: Any, most_steps: int, project_in_loop: bool) -> None:
        rows, length = x.shape[0], x.shape[1]
        self.cell, self.rows, self.project_in_loop = cell, rows, project_in_loop
        self.u = u = steps_per_iteration(length, most_steps)
        self.chunks = chunks = length // u
        if project_in_loop:  # chunk i holds its u steps' tokens step-major: [u·N, E]
            carried = tf.reshape(tf.transpose(tf.reshape(x, (rows, chunks, u, x.shape[-1])), (1, 2, 0, 3)),
                                 (chunks, u * rows, x.shape[-1]))
        else:  # chunk i holds its u steps' projections side by side: [N, u·4H]
            projected = _input_projection(cell, x)
            carried = tf.transpose(tf.reshape(projected, (rows, chunks, u * projected.shape[-1])), (1, 0, 2))
        # the inputs as a time-major TensorArray, as Keras' own loop reads them (a strided slice of
        # the projection inside the body ran each iteration about 2x slower)
        self.inputs = tf.TensorArray(tf.float32, size=chunks, element_shape=carried.shape[1:]).unstack(carried)
        self.iterations = (tf.reduce_max(lengths) + u - 1) // u

    def projections(self, i: Any) -> list[Any]:
        """The input projections ``x_t·W + b`` [N, 4H] of chunk ``i``'s u steps."""
        if not self.project_in_loop:
            return _side_by_side(self.inputs.read(i), self.u)
        projected = _input_projection(self.cell, self.inputs.read(i))
        return [projected[j * self.rows:(j + 1) * self.rows] for j in range(self.u)]

    def loop(self, body: Callable[..., Any], carried: Any) -> list[Any]:
        """``body(i, h, c, carried)`` over the chunks from zero states -> (i, h, c, carried)."""
        zeros = tf.zeros((self.rows, self.cell.units))
        return tf.while_loop(lambda i, *_: i < self.iterations, body, (tf.constant(0), zeros, zeros, carried),
                             maximum_iterations=self.chunks)


def caption_encoders(model: keras.Model) -> list[CaptionEncoder]:
    """Every padding-exact Bi-LSTM (:class:`CaptionEncoder`: captions, reason) inside ``model``."""
    return _layers_of(model, CaptionEncoder)


@contextlib.contextmanager
def hoisted_lstm_inputs(model: keras.Model, most_steps: int = 1, project_in_loop: bool = False) -> Iterator[None]:
    """Trace every ``LSTM`` layer of ``model`` with :func:`hoisted_inner_loop` (``most_steps``
    time steps a loop iteration at most), the Bi-LSTMs' directions with
    :func:`length_bounded_direction` and their final states with
    :func:`length_bounded_final_state` (``project_in_loop`` passed on); restored on exit."""
    layers, encoders = lstm_layers(model), caption_encoders(model)
    for layer in layers:
        layer.inner_loop = hoisted_inner_loop(layer, most_steps)
    for encoder in encoders:
        encoder.run_direction = length_bounded_direction(most_steps, project_in_loop)
        encoder.final_state = length_bounded_final_state(most_steps, project_in_loop)
    try:
        yield
    finally:
        for layer in layers:
            del layer.inner_loop  # the instance attribute: the class's method shows through again
        for encoder in encoders:
            del encoder.run_direction, encoder.final_state


@contextlib.contextmanager
def tflite_rnn_layout(model: keras.Model, layout: str) -> Iterator[None]:
    """``loop`` / ``chunked`` (WHILE loops of up to :data:`~storyedge.export.plan.LOOP_STEPS` time
    steps an iteration, input projections hoisted or, in
    :data:`~storyedge.export.plan.IN_LOOP_PROJECTION_LAYOUTS`, the Bi-LSTMs' done in the loop:
    :func:`hoisted_lstm_inputs`) or ``unrolled`` (:func:`unrolled_rnns`)."""
    if layout not in RNN_LAYOUTS:
        raise ValueError(f"unknown RNN layout {layout!r}")
    if layout == UNROLLED_LAYOUT:
        context = unrolled_rnns(model)
    else:
        context = hoisted_lstm_inputs(model, LOOP_STEPS[layout], layout in IN_LOOP_PROJECTION_LAYOUTS)
    with context:
        yield


@contextlib.contextmanager
def onnx_fusable_lstms() -> Iterator[None]:
    """Trace ``keras.ops.add`` of two same-rank (≥ 2) tensors as ``AddV2``, not ``BiasAdd``."""
    # lazy: Keras internals, only touched while tracing for ONNX
    from keras.src.backend.common import dtypes
    from keras.src.backend.tensorflow import numpy as tf_numpy

    original = tf_numpy.add

    def add(x1: Any, x2: Any) -> Any:
        if (
            tf.is_tensor(x1)
            and tf.is_tensor(x2)
            and x1.shape.rank is not None
            and x1.shape.rank >= 2
            and x1.shape.rank == x2.shape.rank
        ):
            dtype = dtypes.result_type(x1.dtype, x2.dtype)
            return tf.add(tf.cast(x1, dtype), tf.cast(x2, dtype))
        return original(x1, x2)

    tf_numpy.add = add
    try:
        yield
    finally:
        tf_numpy.add = original


@contextlib.contextmanager
def onnx_plain_gathers() -> Iterator[None]:
    """Trace ``keras.ops.take`` of dense indices as a bare ``GatherV2``.

    Keras' TensorFlow ``take`` first maps each negative index ``i`` to ``i + n`` (``Less``,
    ``AddV2``, ``SelectV2``), which tf2onnx lowers to 9 nodes in front of the ``Gather``: a third
    of the nodes of the LSTM decoder step, which looks up one token embedding a step. ONNX's
    ``Gather`` already counts negative indices from the back, so the ONNX graph computes the same
    for every index without them."""
    # lazy: Keras internals, only touched while tracing for ONNX
    from keras.src.backend.tensorflow import numpy as tf_numpy

    original = tf_numpy.take

    def take(x: Any, indices: Any, axis: int | None = None) -> Any:
        if isinstance(indices, (tf.SparseTensor, tf.RaggedTensor)):
            return original(x, indices, axis=axis)
        x, indices = tf_numpy.convert_to_tensor(x), tf_numpy.convert_to_tensor(indices)
        if axis is None:
            return tf.gather(tf.reshape(x, (-1,)), indices)
        return tf.gather(x, indices, axis=axis)

    tf_numpy.take = take
    try:
        yield
    finally:
        tf_numpy.take = original

"""ONNX conversion through ``tf2onnx.convert.from_function``, checks and dynamic quantization.

``tf2onnx.convert.from_keras`` does not work with Keras 3; ``from_function`` on the static,
stably named ``tf.function``s of :mod:`storyedge.model.signatures` does. The graph inputs and
outputs are renamed to the clean documented names (no ``:0``) and the outputs ordered as
documented (``h0, c0, context`` / ``logits, h_out, c_out``). Every Keras LSTM layer must come out
as one ONNX ``LSTM`` node (see :func:`storyedge.export.graphs.onnx_fusable_lstms` for what makes
the batch-1 one fuse) and no ``Loop`` / ``Scan`` / ``TensorList*`` may remain: :func:`check_onnx`.
The Bi-LSTMs' nodes get the rows' real-token counts as ``sequence_lens``
(:mod:`storyedge.export.onnx_lengths`).

``int8-dynamic``: ``onnxruntime.quantization.quantize_dynamic`` (7-bit int8 weights, see
:func:`quantize_onnx_dynamic`; ``MatMulInteger``, ``DynamicQuantizeLSTM``, int8 ``Gather`` for
the embedding; the convolutions become int8 patch products: :mod:`.onnx_conv_int8`).
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storyedge.errors import CheckFailed
from storyedge.export.onnx_conv_int8 import int8_convs_in_file
from storyedge.export.onnx_lengths import bound_bilstm_lengths
from storyedge.export.onnx_quantize import dynamic_int8, step_products_to_nbits8
from storyedge.model.signatures import (
    decoder_input_specs,
    decoder_output_names,
    decoder_step_fn,
    encoder_fn,
    encoder_input_specs,
    encoder_output_names,
    story_fn,
    story_input_specs,
    story_output_specs,
    story_spec,
)

LEFTOVER_OPS = ("Loop", "Scan", "If")
CATCH_ERRORS_ENV = "TF2ONNX_CATCH_ERRORS"


@contextlib.contextmanager
def optimizers_without_proto_sync() -> Iterator[None]:
    """tf2onnx's graph optimizers without rewriting every node's protobuf after each pass.

    Each of tf2onnx's optimizer passes (about 24 per graph) ends by copying every node's
    attributes back into its ``NodeProto``, the constants' tensors among them: at the seed size
    that copied the 62 MB logits matrix each pass, 4.7 of the decoder step's 15 s and 6.1 of the
    encoder's 20 s. Nothing between the passes reads those protobufs (the optimizers work on the
    nodes' own inputs and attributes), and ``make_model`` writes every node's protobuf once at the
    end, so the passes run as they were, less the copy and the node-count logging.
    """
    # lazy: tf2onnx imports TensorFlow
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    original = GraphOptimizerBase.optimize

    def optimize(self: Any, graph: Any, iteration: int) -> Any:
        self.opt_iteration = iteration
        graph = self._optimize(graph)  # noqa: SLF001 - the pass itself, as GraphOptimizerBase.optimize runs it
        graph.delete_unused_nodes(graph.outputs)
        return graph

    GraphOptimizerBase.optimize = optimize
    try:
        yield
    finally:
        GraphOptimizerBase.optimize = original


def _strip(name: str) -> str:
    return name.split(":")[0]


def convert_onnx(model: Any, graph: str, batch: int, opset: int) -> Any:
    """``onnx.ModelProto`` of the ``encoder`` or ``decoder_step`` graph, IO named as documented."""
    # lazy: tf2onnx and the graph switches import TensorFlow
    import tf2onnx

    from storyedge.export.graphs import onnx_fusable_lstms, onnx_plain_gathers

    if graph == "encoder":
        fn, specs, outputs = encoder_fn(model, batch), encoder_input_specs(model, batch), encoder_output_names(model)
    elif graph == "decoder_step":
        fn, specs = decoder_step_fn(model, batch), decoder_input_specs(model, batch)
        outputs = decoder_output_names(model)
    elif graph in story_spec(model).graphs:
        fn, specs = story_fn(model, graph, batch), story_input_specs(model, graph, batch)
        outputs = tuple(s.name for s in story_output_specs(model, graph, batch))
    else:
        raise ValueError(f"unknown graph {graph!r}")
    # tf2onnx deep-copies the whole graph (constants included) before each optimizer pass unless
    # TF2ONNX_CATCH_ERRORS is set (its value is not read, only its presence): at the seed size
    # that took the encoder's conversion from 8.6 to 5.6 GB peak. An optimizer that fails then
    # fails the export instead of being skipped silently.
    previous = os.environ.get(CATCH_ERRORS_ENV)
    os.environ[CATCH_ERRORS_ENV] = "FALSE"
    try:
        with onnx_fusable_lstms(), onnx_plain_gathers(), optimizers_without_proto_sync():
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset)
    finally:
        if previous is None:
            os.environ.pop(CATCH_ERRORS_ENV, None)
        else:
            os.environ[CATCH_ERRORS_ENV] = previous
    _rename_io(proto, [s.name for s in specs], list(outputs))
    _bound_bilstms(proto, graph, model.pad_id)
    proto.producer_name = "storyedge (tf2onnx)"
    proto.doc_string = f"storyedge {graph}: inputs {', '.join(s.name for s in specs)} -> {', '.join(outputs)}"
    return proto


def _bound_bilstms(proto: Any, graph: str, pad_id: int) -> None:
    """Both directions of every token input's Bi-LSTM run for the real tokens only
    (:func:`~storyedge.export.onnx_lengths.bound_bilstm_lengths`)."""
    bounded = bound_bilstm_lengths(proto, pad_id)
    if any(count != 2 for count in bounded.values()):
        found = ", ".join(f"{name} {count}" for name, count in bounded.items())
        raise CheckFailed(f"ONNX {graph}: Bi-LSTM LSTM nodes per token input: {found}; expected 2 each")


def _rename_io(proto: Any, inputs: list[str], outputs: list[str]) -> None:
    """Clean ``name:0`` IO names to ``name`` everywhere and order the outputs as ``outputs``."""
    graph = proto.graph
    renames: dict[str, str] = {}
    for value in list(graph.input) + list(graph.output):
        clean = _strip(value.name)
        if clean != value.name:
            renames[value.name] = clean
    if renames:
        for node in _all_nodes(graph):
            node.input[:] = [renames.get(n, n) for n in node.input]
            node.output[:] = [renames.get(n, n) for n in node.output]
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            value.name = renames.get(value.name, value.name)
    found_in = [v.name for v in graph.input if v.name not in {i.name for i in graph.initializer}]
    if found_in != inputs:
        raise CheckFailed(f"ONNX graph inputs {found_in} differ from the documented {inputs}")
    by_name = {v.name: v for v in graph.output}
    if sorted(by_name) != sorted(outputs):
        raise CheckFailed(f"ONNX graph outputs {sorted(by_name)} differ from the documented {outputs}")
    ordered = [by_name[name] for name in outputs]
    copies = [type(v)() for v in ordered]
    for copy, value in zip(copies, ordered):
        copy.CopyFrom(value)
    del graph.output[:]
    graph.output.extend(copies)


def _all_nodes(graph: Any) -> list[Any]:
    """Nodes of ``graph`` and of every subgraph (Loop / If bodies)."""
    # lazy: onnx is a heavy optional runtime
    import onnx

    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                nodes.extend(_all_nodes(attr.g))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    nodes.extend(_all_nodes(sub))
    return nodes


def onnx_ops(proto: Any) -> dict[str, int]:
    """op_type → count over the graph and its subgraphs (non-default domains prefixed)."""
    counts: collections.Counter[str] = collections.Counter()
    for node in _all_nodes(proto.graph):
        domain = node.domain if node.domain not in ("", "ai.onnx") else ""
        counts[f"{domain}.{node.op_type}" if domain else node.op_type] += 1
    return dict(sorted(counts.items()))


def check_onnx(proto: Any, graph: str, expected_lstms: int, precision: str = "fp32") -> dict[str, int]:
    """``onnx.checker.check_model(full_check=True)``, the LSTM count and no loop leftovers.

    Returns the op counts. :class:`CheckFailed` on any problem.
    """
    # lazy: onnx is a heavy optional runtime
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001 - checker raises ValidationError / InferenceError
        raise CheckFailed(f"ONNX {graph} ({precision}): onnx.checker failed: {str(exc).splitlines()[0][:300]}") from None
    ops = onnx_ops(proto)
    leftovers = sorted(
        op for op in ops if op.split(".")[-1] in LEFTOVER_OPS or "TensorList" in op or "TensorArray" in op
    )
    if leftovers:
        raise CheckFailed(
            f"ONNX {graph} ({precision}): unfused control flow left by tf2onnx: {', '.join(leftovers)}"
        )
    if graph != "decoder_step":  # the encoder, or a story-mode graph (the step's LSTM is a cell)
        lstm_op = "LSTM" if precision == "fp32" else "com.microsoft.DynamicQuantizeLSTM"
        found = ops.get(lstm_op, 0) + (ops.get("LSTM", 0) if lstm_op != "LSTM" else 0)
        if found != expected_lstms:
            raise CheckFailed(
                f"ONNX {graph} ({precision}): {found} LSTM node(s) for {expected_lstms} Keras LSTM "
                "layer(s) (tf2onnx did not fuse them all)"
            )
    return ops


#: Op types ``quantize_dynamic`` leaves float: its ``ConvInteger`` ran slower than ONNX Runtime's
#: fp32 ``Conv`` (seed size, 2 threads: frame graph 21.9 ms against 9.8 ms, encoder 45.5 against
#: 21.7 ms), so the convolutions are then made int8 patch products instead
#: (:mod:`storyedge.export.onnx_conv_int8`).
DYNAMIC_FLOAT_OPS = ("Conv",)


def quantize_onnx_dynamic(src: str | Path, dst: str | Path, decoder_step: bool = False) -> None:
    """Dynamic-range int8 of an fp32 ONNX file: per-channel ``QInt8`` weights, ``reduce_range``,
    every op type ONNX Runtime's dynamic quantizer knows but :data:`DYNAMIC_FLOAT_OPS`, then the
    convolutions as int8 patch products (:func:`storyedge.export.onnx_conv_int8.convs_to_int8`).
    ``decoder_step``: the one-row products first become 8-bit ``MatMulNBits``
    (:func:`storyedge.export.onnx_quantize.step_products_to_nbits8`, a contrib op: not under
    ``--portable``), which ONNX Runtime runs faster.

    ``reduce_range`` (7-bit weights): full-range int8 weights make ONNX Runtime's u8 x s8
    kernels saturate their int16 intermediate sums on x86 CPUs without VNNI (AVX2). Measured
    on the trained quickstart model (decoder logits up to 14.9), logits max |diff| from the
    reference state: 0.82 with the defaults, 0.15 with ``reduce_range``, 0.06 with
    ``reduce_range`` + ``per_channel`` (what is used; encoder context 0.04 of 1.0).
    """
    # lazy: onnxruntime is a heavy optional runtime
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    staged = Path(dst).with_suffix(".nbits8.onnx")
    if decoder_step:
        step_products_to_nbits8(src, staged)
        src = staged
    try:
        dynamic_int8(src, dst, [op for op in IntegerOpsRegistry if op not in DYNAMIC_FLOAT_OPS])
        int8_convs_in_file(dst)
    finally:
        staged.unlink(missing_ok=True)


def onnx_io(path: str | Path) -> dict[str, dict[str, tuple[list[int], str]]]:
    """``{"inputs": {name: (shape, dtype)}, "outputs": {...}}`` as ONNX Runtime sees the file."""
    # lazy: onnxruntime is a heavy optional runtime
    import onnxruntime as ort

    dtypes = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int64)": "int64"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {
        "inputs": {i.name: ([int(d) for d in i.shape], dtypes.get(i.type, i.type)) for i in session.get_inputs()},
        "outputs": {o.name: ([int(d) for d in o.shape], dtypes.get(o.type, o.type)) for o in session.get_outputs()},
    }

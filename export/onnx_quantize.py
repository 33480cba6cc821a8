"""ONNX precisions derived from the fp32 file: fp16, static int8 (QDQ), int4 (MatMulNBits) and a
portable int8-dynamic.

* **fp16** — onnxconverter-common's ``convert_float_to_float16`` with float32 inputs / outputs
  kept (``keep_io_types``) and :data:`FP16_BLOCKED_OPS` left in float32. Two repairs make its
  output pass ``onnx.checker`` on tf2onnx graphs (1.16): a graph output that is also read
  inside the graph (``context``, read by ``init_h``) gets its own ``Identity`` first, else the
  converter feeds the internal reader the float32 output cast; and tf2onnx's ``Cast(to=float)``
  nodes (int masks made float) are retargeted to float16, which the converter does not do; an
  initializer shared by a blocked and an unblocked op is split in two.
* **int8** — ``onnxruntime.quantization.quantize_static``: QDQ format, per-channel int8
  weights, int8 activations calibrated on :mod:`.calibration`'s samples with MinMax, Entropy
  or Percentile. ONNX Runtime has no QDQ LSTM: the encoder's LSTM nodes stay float (the
  coverage report lists them).
* **int4** — ``MatMulNBitsQuantizer`` (symmetric, ``block_size`` weights per scale): every
  ``MatMul`` with a constant weight whose input dim the block size divides becomes
  ``com.microsoft::MatMulNBits``. tf2onnx writes the logits projection as ``Gemm``, which the
  quantizer does not take: such a ``Gemm`` is first rewritten as ``MatMul`` + ``Add``. The
  standard-domain alternative (int4 ``DequantizeLinear`` with ``block_size``) needs opset 21;
  tf2onnx 1.17 converts to 18 at most, so ONNX int4 is non-portable.
* **int8-dynamic, portable** — ``quantize_dynamic`` restricted to ops with standard-domain
  integer forms (``MatMulInteger``, ``ConvInteger``, int8 ``Gather``): the LSTMs stay float
  instead of becoming ``com.microsoft::DynamicQuantizeLSTM``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from storyedge.constants import ONNX_OPSET_MAX, ONNX_STANDARD_INT4_OPSET
from storyedge.export.calibration import ort_data_reader, ort_method

#: Ops kept float32 in fp16 files: onnxconverter-common's defaults, the LSTM (ONNX Runtime's
#: CPU provider has no float16 LSTM kernel) and the comparisons on the int masks.
FP16_EXTRA_BLOCKED = ("LSTM", "Less", "Greater", "Equal", "LessOrEqual", "GreaterOrEqual")
#: Dynamic int8 op types with a standard-domain integer form (``--portable``).
PORTABLE_DYNAMIC_OPS = ("MatMul", "Conv", "Gather")
#: Why ONNX int4 is not portable (recorded in the manifest's coverage notes).
INT4_NOTE = (
    f"int4 weights live in com.microsoft MatMulNBits (ONNX Runtime only): standard int4 "
    f"(DequantizeLinear with a block size) needs opset {ONNX_STANDARD_INT4_OPSET}, and tf2onnx "
    f"converts to opset {ONNX_OPSET_MAX} at most"
)
FLOAT, FLOAT16 = 1, 10


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizers log advice ("consider pre-processing") on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def blocked_fp16_ops() -> list[str]:
    """Every op type :func:`to_fp16` leaves in float32."""
    # lazy: onnxconverter_common imports onnx
    from onnxconverter_common import float16

    return list(float16.DEFAULT_OP_BLOCK_LIST) + list(FP16_EXTRA_BLOCKED)


def _detach_outputs(proto: Any) -> None:
    """Give every graph output that a node also reads its own ``Identity`` (see module doc)."""
    # lazy: onnx is a heavy optional runtime
    import onnx

    graph = proto.graph
    outputs = {o.name for o in graph.output}
    read = {i for n in graph.node for i in n.input} & outputs
    for name in sorted(read):
        inner = f"{name}__inner"
        for node in graph.node:
            node.input[:] = [inner if x == name else x for x in node.input]
            node.output[:] = [inner if x == name else x for x in node.output]
        graph.node.append(onnx.helper.make_node("Identity", [inner], [name], name=f"{name}__output"))


def _split_shared_initializers(proto: Any, blocked: set[str]) -> None:
    """Give the blocked (float32) readers of an initializer that unblocked readers share their
    own copy: tf2onnx de-duplicates constants (a scalar 1.0 feeds a blocked ``Max`` and a GELU
    ``Add``), and the converter keeps an initializer a blocked op reads in float32 for all."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                readers.setdefault(name, []).append(node)
    for name, nodes in readers.items():
        kinds = {n.op_type in blocked for n in nodes}
        if kinds != {True, False}:
            continue
        copy = type(inits[name])()
        copy.CopyFrom(inits[name])
        copy.name = f"{name}__fp32"
        graph.initializer.append(copy)
        for node in nodes:
            if node.op_type in blocked:
                node.input[:] = [copy.name if x == name else x for x in node.input]


def to_fp16(src: str | Path, dst: str | Path) -> None:
    """float16 weights and math, float32 IO, :func:`blocked_fp16_ops` kept float32."""
    # lazy: onnx and onnxconverter_common are heavy optional runtimes
    import onnx
    from onnxconverter_common import float16

    proto = onnx.load(str(src))
    _detach_outputs(proto)
    _split_shared_initializers(proto, set(blocked_fp16_ops()))
    casts = {n.name for n in proto.graph.node if n.op_type == "Cast" and n.attribute[0].i == FLOAT}
    half = float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=blocked_fp16_ops())
    for node in half.graph.node:
        if node.name in casts:
            node.attribute[0].i = FLOAT16
    del half.graph.value_info[:]  # stale float32 entries; the checker re-infers them
    onnx.save(half, str(dst))


def gemm_to_matmul(proto: Any) -> int:
    """Rewrite each plain ``Gemm`` (alpha = beta = 1, no transA, constant B) as ``MatMul`` +
    ``Add`` in place (B transposed when transB); returns how many were rewritten."""
    # lazy: onnx is a heavy optional runtime
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    rewritten = 0
    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plain = (node.op_type == "Gemm" and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
                 and not attrs.get("transA", 0) and node.input[1] in inits)
        if not plain:
            graph.node.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            w = numpy_helper.to_array(inits[weight]).T.copy()
            weight = f"{weight}__t"
            graph.initializer.append(numpy_helper.from_array(w, weight))
        product = f"{node.output[0]}__matmul"
        has_bias = len(node.input) > 2 and node.input[2]
        graph.node.append(onnx.helper.make_node(
            "MatMul", [node.input[0], weight], [product if has_bias else node.output[0]], name=f"{node.name}__matmul"))
        if has_bias:
            graph.node.append(onnx.helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}__bias"))
        rewritten += 1
    return rewritten


def _indivisible_matmuls(proto: Any, block_size: int) -> list[str]:
    """Names of the MatMul nodes with a constant weight whose input dim ``block_size`` does not divide."""
    inits = {i.name: i for i in proto.graph.initializer}
    out = []
    for node in proto.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            dims = list(inits[node.input[1]].dims)
            if len(dims) == 2 and dims[0] % block_size:
                out.append(node.name)
    return out


def to_int4(src: str | Path, dst: str | Path, block_size: int) -> list[str]:
    """4-bit blockwise weights (MatMulNBits); returns the MatMul nodes left float because
    ``block_size`` does not divide their input dim."""
    # lazy: onnx / onnxruntime are heavy optional runtimes
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    proto = onnx.load(str(src))
    gemm_to_matmul(proto)
    skipped = _indivisible_matmuls(proto, block_size)
    with _quiet_root_logger():
        quantizer = MatMulNBitsQuantizer(proto, bits=4, block_size=block_size, is_symmetric=True,
                                         nodes_to_exclude=skipped)
        quantizer.process()
    onnx.save(quantizer.model.model, str(dst))
    return skipped


def to_int8_static(src: str | Path, dst: str | Path, feeds: list[dict[str, np.ndarray]], method: str) -> None:
    """QDQ int8 (per-channel weights, int8 activations) calibrated on ``feeds`` with ``method``."""
    # lazy: onnx / onnxruntime are heavy optional runtimes
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    proto = onnx.load(str(src))
    gemm_to_matmul(proto)  # per-channel QDQ of a MatMul weight; the same math as the Gemm
    staged = Path(dst).with_suffix(".prep.onnx")
    onnx.save(proto, str(staged))
    try:
        with _quiet_root_logger():
            quantize_static(
                str(staged), str(dst), ort_data_reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=ort_method(method),
            )
    finally:
        staged.unlink(missing_ok=True)


def to_int8_dynamic_portable(src: str | Path, dst: str | Path) -> None:
    """Dynamic int8 with standard-domain ops only (the LSTMs stay float); same settings as
    :func:`storyedge.export.onnx_export.quantize_onnx_dynamic` otherwise."""
    # lazy: onnxruntime is a heavy optional runtime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=list(PORTABLE_DYNAMIC_OPS))

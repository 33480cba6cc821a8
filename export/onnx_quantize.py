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
  weights, 8-bit activations (uint8: ONNX Runtime's x86 kernels take uint8 x int8 and would
  convert int8 activation pairs anyway, which needs one ``DequantizeLinear`` per
  ``QuantizeLinear``) calibrated on :mod:`.calibration`'s samples with MinMax, Entropy or
  Percentile. ONNX Runtime has no QDQ LSTM: the encoder's LSTM nodes get int8 weights as
  ``com.microsoft::DynamicQuantizeLSTM`` (:func:`quantize_lstms`), and a decoder step's one-row
  products 8-bit ``MatMulNBits`` (:func:`step_products_to_nbits8`); ``--portable`` keeps both
  standard. ONNX Runtime dequantizes a weight on every call unless its ``DequantizeLinear`` fuses into a
  ``QLinearMatMul`` / ``QLinearConv`` (45 ms per step at the seed size before the three repairs
  here: one QDQ pair per reader, graph outputs read before their QDQ pair, the embedding's rows
  gathered before dequantizing). Each pair then gets its own scale and zero point
  (:func:`dedicate_qdq_constants`), else ONNX Runtime merges the pairs of one tensor again and
  neither reader fuses, and each tensor is quantized once (:func:`share_quantize_nodes`), else
  its producer does not fuse; weights that still cannot fuse are stored float
  (:func:`fold_unfused_weights`).
* **int4** — ``MatMulNBitsQuantizer`` (symmetric, ``block_size`` weights per scale): every
  ``MatMul`` with a constant weight whose input dim the block size divides becomes
  ``com.microsoft::MatMulNBits``, computing in int8 (:data:`NBITS_ACCURACY_LEVEL`). tf2onnx
  writes the logits projection as ``Gemm``, which the quantizer does not take: such a ``Gemm``
  is first rewritten as ``MatMul`` + ``Add``. The
  standard-domain alternative (int4 ``DequantizeLinear`` with ``block_size``) needs opset 21;
  tf2onnx 1.17 converts to 18 at most, so ONNX int4 is non-portable.
* **int8-dynamic, portable** — ``quantize_dynamic`` restricted to ops with standard-domain
  integer forms (``MatMulInteger``, int8 ``Gather``; the convolutions become standard-domain
  int8 patch products in every int8-dynamic file, :mod:`.onnx_conv_int8`): the LSTMs stay float
  instead of becoming ``com.microsoft::DynamicQuantizeLSTM``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storyedge.constants import ONNX_OPSET_MAX, ONNX_STANDARD_INT4_OPSET
from storyedge.export.calibration import ort_data_reader, ort_method
from storyedge.export.onnx_conv_int8 import int8_convs_in_file
from storyedge.export.onnx_graph import drop_unread_initializers
from storyedge.quiet import quiet_root_logger

#: Ops kept float32 in fp16 files: onnxconverter-common's defaults, the LSTM (ONNX Runtime's
#: CPU provider has no float16 LSTM kernel) and the comparisons on the int masks.
FP16_EXTRA_BLOCKED = ("LSTM", "Less", "Greater", "Equal", "LessOrEqual", "GreaterOrEqual")
#: Dynamic int8 op types with a standard-domain integer form (``--portable``); ``Conv`` is left to
#: :func:`storyedge.export.onnx_conv_int8.convs_to_int8`, as in the default file.
PORTABLE_DYNAMIC_OPS = ("MatMul", "Gather")
#: Why ONNX int4 is not portable (recorded in the manifest's coverage notes).
INT4_NOTE = (
    f"int4 weights live in com.microsoft MatMulNBits (ONNX Runtime only): standard int4 "
    f"(DequantizeLinear with a block size) needs opset {ONNX_STANDARD_INT4_OPSET}, and tf2onnx "
    f"converts to opset {ONNX_OPSET_MAX} at most"
)
FLOAT, FLOAT16 = 1, 10
#: The only op types a static-int8 decoder step quantizes (``float_state``): the recurrent cell's
#: element-wise gates, products and sums stay float, as in the TFLite full-int8 step
#: (:data:`storyedge.export.tflite.INT8_STEP_INTEGER_OPS` says why).
INT8_STEP_OPS = ("MatMul", "Gemm", "Gather")
#: ``MatMulNBits``' compute: 4 = int8 (activations quantized per block on each call, like the
#: dynamic-range kernels), where 0 dequantizes the weights to float32. Seed-size decoder step,
#: 2 threads, block 32, interleaved: 0.242 ms against 0.716 ms, logits max |diff| from fp32
#: 0.0087 against 0.0086 (the 4-bit weights' error).
NBITS_ACCURACY_LEVEL = 4
#: Weights per scale of the 8-bit ``MatMulNBits`` products of an int8-dynamic decoder step: the
#: largest of these that divides the input dim of its largest product (seed size: 128; block 32
#: ran the logits projection at half the speed).
NBITS8_BLOCKS = (128, 64, 32, 16)


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
    with quiet_root_logger():
        quantizer = MatMulNBitsQuantizer(proto, bits=4, block_size=block_size, is_symmetric=True,
                                         accuracy_level=NBITS_ACCURACY_LEVEL, nodes_to_exclude=skipped)
        quantizer.process()
    onnx.save(quantizer.model.model, str(dst))
    return skipped


def step_products_to_nbits8(src: str | Path, dst: str | Path) -> list[str]:
    """Write ``src`` with each one-row product whose input dim the block (:data:`NBITS8_BLOCKS`)
    divides as a ``com.microsoft::MatMulNBits`` of 8-bit blockwise weights computing in int8
    (:data:`NBITS_ACCURACY_LEVEL`); returns the products left as they were.

    For a decoder step's products (one row), ONNX Runtime's ``MatMulNBits`` beats the
    per-channel ``DynamicQuantizeMatMul`` that ``quantize_dynamic`` writes: the seed-size
    logits projection [1, 512] x [512, 30522] took 0.25 ms against 0.40 ms (2 threads, best of
    10, 20 interleaved rounds), its blockwise scales being finer than one per channel. With more
    rows it loses (96 rows: 1.11 ms against 0.48 ms), so the encoders keep ``quantize_dynamic``.
    """
    # lazy: onnx / onnxruntime are heavy optional runtimes
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    proto = onnx.load(str(src))
    gemm_to_matmul(proto)
    inits = {i.name: i for i in proto.graph.initializer}
    shapes = [list(inits[n.input[1]].dims) for n in proto.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    largest = max((d for d in shapes if len(d) == 2), key=lambda d: d[0] * d[1], default=[0, 0])
    block = next((b for b in NBITS8_BLOCKS if largest[0] % b == 0), 0)
    if not block:
        onnx.save(proto, str(dst))
        return [n.name for n in proto.graph.node if n.op_type == "MatMul"]
    skipped = _indivisible_matmuls(proto, block)
    with quiet_root_logger():
        quantizer = MatMulNBitsQuantizer(proto, bits=8, block_size=block, is_symmetric=True,
                                         accuracy_level=NBITS_ACCURACY_LEVEL, nodes_to_exclude=skipped)
        quantizer.process()
    onnx.save(quantizer.model.model, str(dst))
    return skipped


def to_int8_static(src: str | Path, dst: str | Path, feeds: list[dict[str, np.ndarray]], method: str,
                   float_state: bool = False, contrib_ops: bool = False) -> None:
    """QDQ int8 (per-channel int8 weights, uint8 activations) calibrated on ``feeds`` with ``method``;
    ``float_state``: only :data:`INT8_STEP_OPS` are quantized (a decoder step). ``contrib_ops``
    (not under ``--portable``): ONNX Runtime's contrib kernels where its QDQ ones are missing or
    slower: the LSTM nodes become ``DynamicQuantizeLSTM`` (:func:`quantize_lstms`), a decoder
    step's one-row products 8-bit ``MatMulNBits`` (:func:`step_products_to_nbits8`; seed size:
    step 0.311 ms with ``QLinearMatMul``, 0.231 ms in the int8-dynamic file with these)."""
    # lazy: onnx / onnxruntime are heavy optional runtimes
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    proto = onnx.load(str(src))
    gemm_to_matmul(proto)  # per-channel QDQ of a MatMul weight; the same math as the Gemm
    _detach_outputs(proto)  # else the output's DequantizeLinear cannot fuse into its reader
    staged = Path(dst).with_suffix(".prep.onnx")
    onnx.save(proto, str(staged))
    try:
        if float_state and contrib_ops:
            step_products_to_nbits8(staged, staged)
        with quiet_root_logger():
            quantize_static(
                str(staged), str(dst), ort_data_reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=ort_method(method),
                # one QDQ pair per reader: ONNX Runtime fuses a DequantizeLinear into a MatMul / Conv
                # only when that node is its sole reader (else the weight is dequantized every call)
                extra_options={"DedicatedQDQPair": True},
                op_types_to_quantize=list(INT8_STEP_OPS) if float_state else None,
            )
        quantized = onnx.load(str(dst))
        outputs_before_quantize(quantized)
        gather_before_dequantize(quantized)
        dedicate_qdq_constants(quantized)
        share_quantize_nodes(quantized)
        onnx.save(quantized, str(dst))
        fold_unfused_weights(dst)
        if contrib_ops:
            quantize_lstms(dst)
    finally:
        staged.unlink(missing_ok=True)


def quantize_lstms(path: str | Path) -> None:
    """Give the LSTM nodes of a static int8 file int8 weights, in place: ONNX Runtime has no
    QDQ (static) LSTM, so they become ``com.microsoft::DynamicQuantizeLSTM`` with the
    int8-dynamic file's settings (:func:`dynamic_int8`), activations quantized per call.
    Seed size, 2 threads: encoder 10.7 -> 7.2 ms, file 52.8 -> 26.7 MB; the outputs' distance
    from fp32 stays that of the static int8 activations."""
    dynamic_int8(path, path, ["LSTM"])


def dynamic_int8(src: str | Path, dst: str | Path, op_types: Sequence[str]) -> None:
    """``quantize_dynamic`` of ``op_types`` with every dynamic int8 file's settings: per-channel
    ``QInt8`` weights and ``reduce_range``
    (:func:`storyedge.export.onnx_export.quantize_onnx_dynamic` says why)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # lazy: heavy optional runtime

    with quiet_root_logger():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=list(op_types))


#: readers a ``DequantizeLinear`` of their input fuses into (``QLinearConv`` / ``QLinearMatMul``)
FUSING_READERS = ("Conv", "MatMul", "Gemm")


def dedicate_qdq_constants(proto: Any) -> int:
    """Give the Q/DQ pair in front of each convolution's or product's input its own scale and
    zero-point initializers; returns how many were copied.

    ``DedicatedQDQPair`` writes one Q/DQ pair per reader of a tensor, but those pairs read the same
    tensor and the same initializers, and ONNX Runtime's common-subexpression elimination merges
    them back into one pair with two readers, which then fuses into neither (a ``DequantizeLinear``
    fuses into a ``QLinearConv`` / ``QLinearMatMul`` only when that node is its sole reader). At the
    seed size 8 of the encoder's 11 convolutions and 8 of its 22 weighted products stayed float
    that way. With their own initializer names these pairs are no longer common subexpressions, so
    every ONNX Runtime session fuses them, without any session option. Other pairs keep sharing,
    and so do those of a gather's output: merged, they let ONNX Runtime gather the rows of the int8
    embedding table itself (a float table would be 4x the bytes).
    """
    from onnx import TensorProto  # lazy: onnx is a heavy optional runtime

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    copies = []
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in inits]:
        reads = readers.get(dq.output[0], [])
        quant = producer.get(dq.input[0])
        if len(reads) != 1 or reads[0].op_type not in FUSING_READERS or quant is None \
                or quant.op_type != "QuantizeLinear" or getattr(producer.get(quant.input[0]), "op_type", "") == "Gather":
            continue
        for node in (quant, dq):  # a copy even for the first: the pairs of other readers keep the original
            for slot, name in enumerate(node.input[1:], start=1):
                if name in inits:
                    copy = TensorProto()
                    copy.CopyFrom(inits[name])
                    copy.name = f"{name}_dedicated{len(copies)}"
                    copies.append(copy)
                    node.input[slot] = copy.name
    graph.initializer.extend(copies)
    drop_unread_initializers(graph)
    return len(copies)


def share_quantize_nodes(proto: Any) -> int:
    """Quantize each tensor once: where several ``QuantizeLinear`` nodes read one tensor with the
    same scale and zero point (one per reader, from ``DedicatedQDQPair``), the first one's output
    feeds every reader's ``DequantizeLinear`` and the others go; returns how many went.

    ONNX Runtime fuses a convolution or product with the ``QuantizeLinear`` after it (and drops a
    ``Relu`` between them) only when that node's output has that one reader. At the seed size the
    stem convolution's output had two, so it ran in float, NCHW, and both of its int8 readers
    transposed their input to NHWC first (0.8 ms of the static int8 encoder). Each
    ``DequantizeLinear`` keeps its own scale and zero point (:func:`dedicate_qdq_constants`), so
    they stay apart and each still fuses into its reader. This needs uint8 activations: ONNX
    Runtime's int8-to-uint8 rewrite of a pair skips a ``QuantizeLinear`` with several readers.
    """
    from onnx import numpy_helper  # lazy: onnx is a heavy optional runtime

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}

    def constants(node: Any) -> tuple[bytes, ...] | None:
        if any(name not in inits for name in node.input[1:]):
            return None
        return tuple(numpy_helper.to_array(inits[name]).tobytes() for name in node.input[1:])

    kept: dict[tuple[str, tuple[bytes, ...]], str] = {}
    renamed: dict[str, str] = {}
    for node in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        values = constants(node)
        if values is None:
            continue
        first = kept.setdefault((node.input[0], values), node.output[0])
        if first != node.output[0]:
            renamed[node.output[0]] = first
            graph.node.remove(node)
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name in renamed:
                node.input[slot] = renamed[name]
    if renamed:
        drop_unread_initializers(graph)
    return len(renamed)


def fold_unfused_weights(path: str | Path) -> list[str]:
    """Store as float the int8 weights whose ``DequantizeLinear`` ONNX Runtime would run on every
    call: it fuses a weight's ``DequantizeLinear`` into ``QLinearMatMul`` / ``QLinearConv`` only
    where the whole node unit is quantized, and otherwise dequantizes the full matrix per call
    (3 ms for a 1536 x 512 matrix whose product is a graph output). Which ones remain is read
    from ONNX Runtime's own optimized graph, so the rule follows the installed runtime. Returns
    the folded weights' names (the coverage report then counts their readers as float)."""
    # lazy: onnx / onnxruntime are heavy optional runtimes
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    remaining = {n.name for n in optimized.graph.node if n.op_type == "DequantizeLinear"}
    folded = []
    for node in list(proto.graph.node):
        if node.op_type != "DequantizeLinear" or node.name not in remaining or node.input[0] not in inits:
            continue
        if any(x not in inits for x in node.input[1:]):
            continue
        values = _dequantize(node, [numpy_helper.to_array(inits[x]) for x in node.input])
        proto.graph.initializer.append(numpy_helper.from_array(values, node.output[0]))
        proto.graph.node.remove(node)
        folded.append(node.input[0])
    if folded:
        drop_unread_initializers(proto.graph)
        onnx.save(proto, str(path))
    return folded


def _dequantize(node: Any, arrays: list[np.ndarray]) -> np.ndarray:
    """``(q - zero_point) * scale`` of a ``DequantizeLinear`` (per tensor or along ``axis``)."""
    q, scale = arrays[0], arrays[1]
    zero = arrays[2] if len(arrays) > 2 else np.zeros_like(scale, dtype=q.dtype)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32)).astype(np.float32)


def outputs_before_quantize(proto: Any) -> int:
    """Point each output ``Identity`` of :func:`_detach_outputs` back at the float tensor the
    quantizer wrapped in ``QuantizeLinear`` -> ``DequantizeLinear``. While the graph output reads
    that ``DequantizeLinear`` too, ONNX Runtime does not fuse it into the next ``MatMul`` and
    dequantizes the MatMul's whole weight on every call (40 ms per step for the 512 x 30522
    logits projection, against 0.4 ms fused); the output also keeps full float precision.
    Returns how many outputs were rerouted."""
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    rerouted = 0
    for node in graph.node:
        if node.op_type != "Identity" or node.output[0] not in outputs:
            continue
        dq = producer.get(node.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            node.input[0] = q.input[0]
            rerouted += 1
    return rerouted


def gather_before_dequantize(proto: Any) -> int:
    """Rewrite ``Gather(DequantizeLinear(W_int8), ids)`` as ``DequantizeLinear(Gather(W_int8,
    ids))`` for per-tensor (scalar) scales: the same numbers, but ONNX Runtime then dequantizes
    the gathered rows instead of the whole embedding table on every call (3 ms per step for a
    30522 x 300 table). Returns how many Gathers were rewritten."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    rewritten = 0
    for gather in [n for n in graph.node if n.op_type == "Gather"]:
        dq = producer.get(gather.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        if readers[dq.output[0]] != 1 or any(inits[x].dims for x in dq.input[1:] if x in inits):
            continue
        if any(x not in inits for x in dq.input[1:]):
            continue
        rows = f"{gather.output[0]}__int8"
        dq.input[0], dq.output[0], gather.input[0] = rows, gather.output[0], dq.input[0]
        gather.output[0] = rows
        rewritten += 1
    if rewritten:
        _topological_sort(graph)
    return rewritten


def _topological_sort(graph: Any) -> None:
    """Order ``graph.node`` so every node follows the producers of its inputs."""
    produced = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(x in produced for x in n.input)]
        if not ready:
            raise ValueError("graph has a cycle or an undefined input")
        for node in ready:
            ordered.append(node)
            produced.update(node.output)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)


def to_int8_dynamic_portable(src: str | Path, dst: str | Path) -> None:
    """Dynamic int8 with standard-domain ops only (the LSTMs stay float); same settings as
    :func:`storyedge.export.onnx_export.quantize_onnx_dynamic` otherwise."""
    dynamic_int8(src, dst, PORTABLE_DYNAMIC_OPS)
    int8_convs_in_file(dst)

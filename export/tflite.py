"""TFLite conversion (builtins only), quantization variants and flatbuffer inspection.

The SavedModel comes from :func:`storyedge.model.signatures.make_export_archive` (endpoints
``encoder`` / ``decoder_step``), its LSTMs traced in its precision's layout
(:func:`storyedge.export.plan.rnn_layout`, :mod:`.graphs`). Each file
is converted from it with ``signature_keys``: one key for the separate files, every story-mode
key for the story file, whose signatures share one copy of the weights (the multi-signature file
is merged from the separate ones: :mod:`.tflite_merge`).

Precisions (``--quantize`` name → label): ``none`` → fp32; ``fp16`` → float16 weights
(dequantized at load, float math); ``int8-dynamic`` → int8 weights, activations quantized on the
fly by the kernels that can (dynamic range); ``int8`` → full integer: int8 weights *and*
activations calibrated on a representative dataset, ``TFLITE_BUILTINS_INT8`` with
``TFLITE_BUILTINS`` as the fallback for ops without an int8 kernel, float32 inputs / outputs
kept (``QUANTIZE`` / ``DEQUANTIZE`` at the edges). Never ``SELECT_TF_OPS`` (Flex).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storyedge.errors import CheckFailed
from storyedge.export.tflite_loops import LoopReplay
from storyedge.export.tflite_partitions import one_partition_loop_bodies
from storyedge.export.tflite_ranges import separate_disagreeing_weights, shared_weight_ranges, table_ranges
from storyedge.tflite_schema import builtin_names as _builtin_names
from storyedge.tflite_schema import pack_model
from storyedge.tflite_schema import schema as _schema

#: One representative sample: (signature key, {input name: array}).
Sample = tuple[str, dict[str, np.ndarray]]


@dataclass
class TFLiteInfo:
    """What is inside a ``.tflite`` flatbuffer."""

    #: op name → count over every subgraph (``WHILE`` bodies included).
    ops: dict[str, int]
    #: custom (non-builtin) op codes, ``Flex*`` among them; must be empty.
    custom_ops: list[str]
    #: ops (excluding QUANTIZE / DEQUANTIZE) with a float32 output: for int8, what stayed float.
    float_ops: dict[str, int]
    #: ops whose outputs are int8 / int16 (quantized kernels).
    quantized_ops: dict[str, int] = field(default_factory=dict)
    subgraphs: int = 1


def op_name(schema: Any, model: Any, op: Any, names: dict[int, str]) -> tuple[str, bool]:
    """An operator's name in a flatbuffer ``model`` and whether it is a custom op."""
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.CustomCode() or b"?").decode(), True
    return names.get(builtin, f"BUILTIN_{builtin}"), False


def inspect_tflite(content: bytes) -> TFLiteInfo:
    """Op counts, custom ops and float/quantized ops of every subgraph of a flatbuffer."""
    schema = _schema()

    names = _builtin_names()
    model = schema.Model.GetRootAs(content, 0)
    ops: collections.Counter[str] = collections.Counter()
    float_ops: collections.Counter[str] = collections.Counter()
    quantized: collections.Counter[str] = collections.Counter()
    custom: set[str] = set()
    int_types = {schema.TensorType.INT8, schema.TensorType.INT16, schema.TensorType.UINT8}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name, is_custom = op_name(schema, model, op, names)
            if is_custom:
                custom.add(name)
            ops[name] += 1
            outputs = [op.Outputs(i) for i in range(op.OutputsLength())]
            types = {graph.Tensors(t).Type() for t in outputs if t >= 0}
            if name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            if schema.TensorType.FLOAT32 in types:
                float_ops[name] += 1
            elif types & int_types:
                quantized[name] += 1
    return TFLiteInfo(
        ops=dict(sorted(ops.items())),
        custom_ops=sorted(custom),
        float_ops=dict(sorted(float_ops.items())),
        quantized_ops=dict(sorted(quantized.items())),
        subgraphs=model.SubgraphsLength(),
    )


def interpreter_op_names(path: str | Path) -> list[str]:
    """Op names LiteRT reports for the file (``Interpreter._get_ops_details()``)."""
    # lazy: ai_edge_litert is a heavy optional runtime
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def check_builtins_only(path: str | Path, info: TFLiteInfo) -> None:
    """:class:`CheckFailed` when a Flex (TF select) or any other custom op is in the file.

    Two views: LiteRT's own op list (``_get_ops_details``, the primary subgraph) and the
    flatbuffer's operator codes (every subgraph).
    """
    flex = [name for name in interpreter_op_names(path) if name.startswith("Flex") or name == "DELEGATE"]
    flex += [name for name in info.custom_ops if name not in flex]
    if flex:
        raise CheckFailed(
            f"{Path(path).name}: needs op(s) outside the TFLite builtins: {', '.join(flex)} "
            "(Flex / custom ops are not available on edge runtimes)"
        )


def convert_tflite(
    saved_model_dir: str | Path,
    signature_keys: list[str],
    precision: str,
    representative: Callable[[], Iterable[Sample]] | None = None,
    integer_only: bool = False,
) -> bytes:
    """Convert signatures of a SavedModel to a builtins-only ``.tflite`` at ``precision``.

    ``representative`` (``int8`` only) yields ``(signature_key, inputs)`` samples; samples of
    keys not converted here are skipped. ``integer_only`` (``int8``, ``--portable``): the
    activation products run on integer kernels too (:data:`INT8_FLOAT_PRODUCT_OPS`).
    """
    # lazy: tensorflow
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=list(signature_keys)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp32":
        pass
    elif precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if representative is None:
            raise ValueError("int8 (full integer) needs a representative dataset")
        float_ops = INT8_DENYLISTED_OPS + ([] if integer_only else INT8_FLOAT_PRODUCT_OPS)
        return _convert_full_int8(converter, signature_keys, representative, float_ops)
    else:
        raise ValueError(f"unknown TFLite precision {precision!r}")
    return converter.convert()


#: Ops kept float in full-int8 files. ``ONE_HOT`` (the Bi-LSTM's padding-aware reversal builds a
#: permutation from it): the quantizer leaves its on/off values unquantized, so the int8 kernel
#: writes raw 0/1 that dequantize to 0.50 / 0.51 and scramble the reversed sequence.
INT8_DENYLISTED_OPS = ["ONE_HOT"]
#: Ops full-int8 files keep float unless ``--portable``: ``BATCH_MATMUL`` (the products of two
#: activations: the cross-modal attention's and the Bi-LSTMs' token reversal). LiteRT's int8
#: kernel, which XNNPACK does not take, ran them about 6x slower than float: seed-size encoder,
#: op by op, 1.13 ms against 0.18 ms for its six; whole encoder in an interleaved A/B (both
#: orders) 6.79 / 7.18 -> 5.90 / 6.66 ms, story mode 2.31 / 2.34 -> 2.01 / 2.17 ms.
INT8_FLOAT_PRODUCT_OPS = ["BATCH_MATMUL"]
#: In a full-int8 decoder step only these ops compute in integer; every other op of the step's
#: signature (the recurrent cell's gates, products and sums) stays float32. The step's state is
#: carried from call to call: an LSTM cell state reaches |c| ~ 57 on trained seed-size weights, where
#: one int8 scale (0.45) moves tanh(c) across zero and flips h (max |diff| 1.3 of 1.0 after a single
#: step). The element-wise work is O(H) next to the O(H x V) products, so it costs little.
INT8_STEP_INTEGER_OPS = frozenset({"FULLY_CONNECTED", "BATCH_MATMUL", "GATHER", "QUANTIZE", "DEQUANTIZE"})
#: Signatures whose element-wise ops stay float in full-int8 files.
INT8_FLOAT_STATE_SIGNATURES = ("decoder_step",)
#: A calibrated range narrower than this (a tensor constant over the representative data, e.g.
#: uniform attention at random init) is widened to it: a near-zero output scale makes
#: ``input_scale * weight_scale / output_scale`` exceed what XNNPACK's int8 kernels accept
#: (< 256), and the delegate then refuses the whole graph ("failed to create XNNPACK runtime").
MIN_CALIBRATED_RANGE = 1e-3


def _convert_full_int8(converter: Any, signature_keys: list[str], representative: Callable[[], Iterable[Sample]],
                       float_ops: list[str]) -> bytes:
    """Full-integer conversion in three explicit steps instead of ``convert()``'s one, without
    TF's calibrator.

    1. The float model (the converter as it is: builtins, no optimization).
    2. :func:`_calibration_ranges`: min / max of every float activation observed by LiteRT
       (no delegate, all tensors preserved) over the representative samples, per signature,
       and inside the LSTMs' ``WHILE`` loops at every iteration (:mod:`.tflite_loops`).
       TF 2.21's calibrator segfaults on a ``WHILE`` body, and recorded ``[0, 1e-38]`` for a
       live conv output of our encoder (a ResNet shortcut whose zero bias buffer is shared with
       two other convs) in some runs, which zeroes that path and trips XNNPACK; LiteRT's own
       forward pass has neither problem. Then :mod:`.tflite_ranges`' rules: a table lookup gets
       the table's range, and the products over one weight one input and one output range.
    3. ``mlir_quantize`` (the quantizer ``convert()`` uses) with ``float_ops`` kept float,
       float32 inputs / outputs, then read-only buffer de-duplication, a buffer of its own for
       each quantization of a shared weight that still differs (:mod:`.tflite_ranges`), and the
       loop bodies laid out for one XNNPACK partition each (:mod:`.tflite_partitions`).
    """
    # lazy: tensorflow
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert

    samples = [(k, v) for k, v in representative() if k in signature_keys]
    if not samples:
        raise ValueError(f"no representative samples for {signature_keys}")
    calibrated = _calibration_ranges(converter.convert(), samples)  # the float model, its ranges ours
    quantized = tfl_convert.mlir_quantize(
        calibrated,
        disable_per_channel=False,
        input_data_type=tf.float32,
        output_data_type=tf.float32,
        denylisted_ops=list(float_ops),
        denylisted_nodes=float_state_nodes(calibrated, signature_keys),
    )
    try:
        quantized = tfl_convert.deduplicate_readonly_buffers(quantized)
    except Exception:  # noqa: BLE001 - an optimisation only
        pass
    model = _schema().ModelT.InitFromPackedBuf(bytes(quantized), 0)
    changed = separate_disagreeing_weights(model)
    changed += one_partition_loop_bodies(model)
    return pack_model(model, len(quantized)) if changed else bytes(quantized)


def float_state_nodes(content: bytes, signature_keys: list[str]) -> list[str]:
    """Output tensor names (the quantizer's node names) of the ops of
    :data:`INT8_FLOAT_STATE_SIGNATURES` outside :data:`INT8_STEP_INTEGER_OPS`."""
    schema = _schema()
    names = _builtin_names()
    model = schema.Model.GetRootAs(content, 0)
    subgraphs = {
        model.SignatureDefs(i).SignatureKey().decode(): model.SignatureDefs(i).SubgraphIndex()
        for i in range(model.SignatureDefsLength())
    }
    nodes: list[str] = []
    for key in signature_keys:
        if key not in INT8_FLOAT_STATE_SIGNATURES or key not in subgraphs:
            continue
        graph = model.Subgraphs(subgraphs[key])
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            if op_name(schema, model, op, names)[0] in INT8_STEP_INTEGER_OPS:
                continue
            nodes += [graph.Tensors(op.Outputs(i)).Name().decode() for i in range(op.OutputsLength())]
    return nodes


def _calibration_ranges(calibrated: bytes, samples: list[Sample]) -> bytes:
    """Overwrite the min / max statistics of every float activation with LiteRT-observed ones."""
    # lazy: ai_edge_litert is a heavy optional runtime
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(calibrated, 0)
    interpreter = Interpreter(
        model_content=bytes(calibrated),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    buffers = model.buffers or []

    def is_activation(tensor: Any) -> bool:
        if tensor.type != schema.TensorType.FLOAT32:
            return False
        buf = buffers[tensor.buffer] if 0 <= tensor.buffer < len(buffers) else None
        if buf is None:
            return True
        return (buf.data is None or len(buf.data) == 0) and not getattr(buf, "size", 0)

    ranges: dict[tuple[int, int], list[float]] = {}

    def wanted(sg: int, index: int) -> bool:
        return is_activation(model.subgraphs[sg].tensors[index])

    def observe(sg: int, index: int, value: np.ndarray) -> None:
        if value.size == 0:
            return
        lo, hi = float(np.min(value)), float(np.max(value))
        seen = ranges.get((sg, index))
        ranges[(sg, index)] = [lo, hi] if seen is None else [min(seen[0], lo), max(seen[1], hi)]

    loops = LoopReplay(model, schema, _builtin_names(), wanted)
    runners: dict[str, Any] = {}
    for key, inputs in samples:
        runner = runners.get(key) or runners.setdefault(key, interpreter.get_signature_runner(key))
        feeds = {n: np.asarray(inputs[n], d["dtype"]) for n, d in runner.get_input_details().items()}
        runner(**feeds)
        sg = runner._subgraph_index  # noqa: SLF001
        for index in range(len(model.subgraphs[sg].tensors)):
            if not wanted(sg, index):
                continue
            try:
                value = interpreter.get_tensor(index, sg)
            except ValueError:
                continue
            observe(sg, index, value)
        loops.observe(interpreter, sg, observe)  # every iteration of the loops' bodies
    table_ranges(model, schema, ranges)
    shared_weight_ranges(model, ranges)
    for (sg, index), (lo, hi) in ranges.items():
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        if hi - lo < MIN_CALIBRATED_RANGE:
            if lo >= 0:
                hi = lo + MIN_CALIBRATED_RANGE
            else:
                mid = (lo + hi) / 2
                lo, hi = mid - MIN_CALIBRATED_RANGE / 2, mid + MIN_CALIBRATED_RANGE / 2
        tensor = model.subgraphs[sg].tensors[index]
        if tensor.quantization is None:
            tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.min = [lo]
        tensor.quantization.max = [hi]
    return pack_model(model, max(1024, len(calibrated)))


def tflite_io(path: str | Path) -> dict[str, dict[str, dict[str, tuple[list[int], str]]]]:
    """``{signature: {"inputs": {name: (shape, dtype)}, "outputs": {...}}}`` as LiteRT sees them."""
    # lazy: ai_edge_litert is a heavy optional runtime
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    out: dict[str, dict[str, dict[str, tuple[list[int], str]]]] = {}
    for key in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(key)
        out[key] = {
            kind: {
                name: ([int(d) for d in detail["shape"]], np.dtype(detail["dtype"]).name)
                for name, detail in details.items()
            }
            for kind, details in (
                ("inputs", runner.get_input_details()),
                ("outputs", runner.get_output_details()),
            )
        }
    return out

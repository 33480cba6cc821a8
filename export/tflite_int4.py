"""TFLite int4: 4-bit blockwise weights through ai-edge-quantizer, from the fp32 flatbuffer.

Every ``FULLY_CONNECTED`` op with a constant weight whose input dim the block size divides gets
symmetric int4 weights with one scale per ``block_size`` inputs (ai-edge-quantizer's dynamic
recipe: activations stay float32 and the kernel quantizes them on the fly). ai-edge-quantizer
refuses a blockwise weight the block does not divide, so those are left float (named in the
coverage notes), and so are convolutions (it has no blockwise int4 ``CONV_2D``) and the
embedding tables (a ``GATHER``, not the ``EMBEDDING_LOOKUP`` it quantizes).
"""

from __future__ import annotations

import re
from typing import Any

from storyedge.errors import CheckFailed
from storyedge.export.coverage import buffer_bytes
from storyedge.export.tflite import _builtin_names, _schema


def fc_weights(content: bytes) -> list[tuple[str, int]]:
    """(output tensor name, weight input dim) of every FULLY_CONNECTED op with a constant weight."""
    schema = _schema()
    names = _builtin_names()
    model = schema.Model.GetRootAs(content, 0)
    out = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            if names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode())) != "FULLY_CONNECTED":
                continue
            weight = graph.Tensors(op.Inputs(1))
            if weight.Buffer() <= 0 or buffer_bytes(model, weight.Buffer()) == 0:
                continue
            shape = weight.ShapeAsNumpy()
            out.append((graph.Tensors(op.Outputs(0)).Name().decode(), int(shape[-1])))
    return out


def quantize_int4(content: bytes, block_size: int) -> tuple[bytes, list[str]]:
    """(the int4 flatbuffer, output names of the FC ops left float because ``block_size`` does not
    divide their input dim). :class:`CheckFailed` when no FC weight can take the block size."""
    # lazy: ai_edge_quantizer imports scipy, ml_dtypes and ai_edge_litert (seconds)
    from ai_edge_quantizer import qtyping, quantizer

    weights = fc_weights(content)
    chosen = [name for name, dim in weights if dim % block_size == 0]
    left = [name for name, dim in weights if dim % block_size]
    if not chosen:
        raise CheckFailed(f"int4: the block size {block_size} divides the input dim of no fully-connected weight")
    granularity = getattr(qtyping.QuantGranularity, f"BLOCKWISE_{block_size}")
    q = quantizer.Quantizer(bytearray(content))
    # ai-edge-quantizer matches the regex against an op's scope: its output names joined by ";" + ";"
    regex = "^(" + "|".join(re.escape(n) for n in chosen) + ");"
    q.add_dynamic_config(regex=regex, operation_name=qtyping.TFLOperationName.FULLY_CONNECTED, num_bits=4,
                         granularity=granularity)
    result: Any = q.quantize()
    return bytes(result.quantized_model), left

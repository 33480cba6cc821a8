"""The TFLite flatbuffer schema and its object API, shared by the export (conversion,
calibration, coverage) and the bench (per-op profile): the schema module, builtin op names,
and packing a ``ModelT`` back into a file's bytes."""

from __future__ import annotations

from typing import Any

import flatbuffers


def schema() -> Any:
    """The TFLite flatbuffer schema module (ai-edge-litert's, else TensorFlow's copy)."""
    try:
        from ai_edge_litert import schema_py_generated as module  # lazy: heavy optional runtime
    except ImportError:  # older ai-edge-litert
        from tensorflow.lite.python import schema_py_generated as module  # lazy: imports TensorFlow
    return module


def builtin_names() -> dict[int, str]:
    """Builtin operator code -> name (``FULLY_CONNECTED`` ...)."""
    return {
        value: name
        for name, value in vars(schema().BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def builtin_op_name(model: Any, op: Any, names: dict[int, str]) -> str | None:
    """The builtin name of ``op`` in an object-API ``model`` (``ModelT``); None for custom ops
    (the flatbuffer reader's twin: :func:`storyedge.export.tflite.op_name`)."""
    code = model.operatorCodes[op.opcodeIndex]
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode))


def pack_model(model: Any, size: int = 1024) -> bytes:
    """An object-API ``model`` as ``.tflite`` bytes (``size``: the builder's first buffer)."""
    builder = flatbuffers.Builder(size)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())

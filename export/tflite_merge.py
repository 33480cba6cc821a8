"""One multi-signature ``.tflite`` file assembled from single-signature files of the same precision.

Converting the multi-signature file from the SavedModel again repeated, at the seed size, the
work of its two single-signature conversions (a full-int8 multi file took the converter 41 s,
its encoder and decoder-step files 28 and 20 s). :func:`merge_signatures` instead puts the
converted files' subgraphs, operator codes and buffers into one model: each signature keeps
exactly the ops, tensors and quantization of its own file, so the multi file computes what the
separate files compute. Constant buffers with the same bytes are stored once (the token embedding
the encoder and the decoder step share), unless their int8 readers are quantized differently,
which XNNPACK's weight cache must see as separate buffers
(:func:`~storyedge.export.tflite_ranges.separate_disagreeing_weights`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from storyedge.errors import CheckFailed
from storyedge.export.tflite_ranges import separate_disagreeing_weights
from storyedge.tflite_schema import pack_model
from storyedge.tflite_schema import schema as _schema

#: The metadata entry whose value (a version string) the merged file takes the highest of.
MIN_RUNTIME_VERSION = "min_runtime_version"
#: Builtin-option fields that hold subgraph indices (WHILE, IF, CALL_ONCE, the StableHLO ops).
SUBGRAPH_FIELD_SUFFIXES = ("SubgraphIndex", "SubgraphIndices")
SUBGRAPH_FIELDS = frozenset({"subgraph"})


def merge_signatures(contents: list[bytes]) -> bytes:
    """The ``.tflite`` bytes of one model holding every signature of ``contents`` (files of one
    precision, distinct signature keys), in that order; :class:`CheckFailed` for files this
    cannot merge (buffers stored outside the flatbuffer, repeated signature keys)."""
    schema = _schema()
    models = [schema.ModelT.InitFromPackedBuf(content, 0) for content in contents]
    merged = models[0]
    _check_mergeable(models)
    buffers = _BufferTable(merged.buffers, _metadata_buffers(merged))
    opcodes = _OpcodeTable(merged.operatorCodes)
    versions = [_min_runtime_version(merged)]
    names = {t.name for graph in merged.subgraphs for t in graph.tensors or []}
    for model in models[1:]:
        skipped = _metadata_buffers(model) | {0}  # its metadata (the first file's is kept) and the empty sentinel
        buffer_map = [0 if i in skipped else buffers.add(buffer) for i, buffer in enumerate(model.buffers)]
        opcode_map = [opcodes.add(code) for code in model.operatorCodes]
        offset = len(merged.subgraphs)
        prefix = b"/".join(sig.signatureKey for sig in model.signatureDefs or []) + b"/"
        for graph in model.subgraphs:
            _remap_subgraph(graph, buffer_map, opcode_map, offset)
            _unique_tensor_names(graph, names, prefix)
            merged.subgraphs.append(graph)
        for signature in model.signatureDefs:
            signature.subgraphIndex += offset
            merged.signatureDefs.append(signature)
        versions.append(_min_runtime_version(model))
    merged.buffers, merged.operatorCodes = buffers.buffers, opcodes.codes
    _set_min_runtime_version(merged, max(versions, key=_version_key))
    separate_disagreeing_weights(merged)
    return pack_model(merged, sum(len(c) for c in contents))


def _check_mergeable(models: list[Any]) -> None:
    keys = [s.signatureKey.decode() for m in models for s in m.signatureDefs or []]
    if len(set(keys)) != len(keys):
        raise CheckFailed(f"cannot merge TFLite files: repeated signature keys {sorted(keys)}")
    for model in models:
        if getattr(model, "externalBuffers", None) or any((b.offset or 0) > 1 for b in model.buffers or []):
            raise CheckFailed("cannot merge TFLite files whose buffers lie outside the flatbuffer (over 2 GB)")


class _BufferTable:
    """The merged file's buffers: constant data stored once, empty buffers (activations) each
    their own; ``private``: indices never shared (metadata)."""

    def __init__(self, buffers: list[Any], private: set[int]) -> None:
        self.buffers = list(buffers)
        self._by_digest: dict[bytes, int] = {}
        for index, buffer in enumerate(self.buffers):
            digest = _digest(buffer)
            if digest is not None and index not in private:
                self._by_digest.setdefault(digest, index)

    def add(self, buffer: Any) -> int:
        digest = _digest(buffer)
        if digest is not None and digest in self._by_digest:
            return self._by_digest[digest]
        self.buffers.append(buffer)
        if digest is not None:
            self._by_digest[digest] = len(self.buffers) - 1
        return len(self.buffers) - 1


def _digest(buffer: Any) -> bytes | None:
    data = buffer.data
    if data is None or len(data) == 0:
        return None
    return hashlib.sha256(memoryview(data).cast("B")).digest() + len(data).to_bytes(8, "little")


class _OpcodeTable:
    """The merged file's operator codes, each (builtin, custom code, version) once."""

    def __init__(self, codes: list[Any]) -> None:
        self.codes = list(codes)
        self._index = {_opcode_key(code): i for i, code in enumerate(self.codes)}

    def add(self, code: Any) -> int:
        key = _opcode_key(code)
        if key not in self._index:
            self.codes.append(code)
            self._index[key] = len(self.codes) - 1
        return self._index[key]


def _opcode_key(code: Any) -> tuple:
    return code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version


def _remap_subgraph(graph: Any, buffer_map: list[int], opcode_map: list[int], subgraph_offset: int) -> None:
    """Point a subgraph of a file being merged at the merged file's buffers, operator codes and subgraphs."""
    for tensor in graph.tensors or []:
        tensor.buffer = buffer_map[tensor.buffer]
    for op in graph.operators or []:
        op.opcodeIndex = opcode_map[op.opcodeIndex]
        for options in (op.builtinOptions, op.builtinOptions2):
            if options is not None:
                _shift_subgraph_fields(options, subgraph_offset)


def _unique_tensor_names(graph: Any, names: set[bytes], prefix: bytes) -> None:
    """Rename the tensors whose names the merged model already has (``prefix`` + name, numbered
    if need be): tools such as ai-edge-quantizer key tensors by name across the whole model."""
    for tensor in graph.tensors or []:
        name = tensor.name or b""
        if name in names:
            name = candidate = prefix + name
            number = 1
            while name in names:
                number += 1
                name = candidate + b"_%d" % number
            tensor.name = name
        names.add(name)


def _shift_subgraph_fields(options: Any, offset: int) -> None:
    for name, value in vars(options).items():
        if name in SUBGRAPH_FIELDS or name.endswith(SUBGRAPH_FIELD_SUFFIXES):
            if isinstance(value, int):
                setattr(options, name, value + offset)
            elif value is not None:
                setattr(options, name, [int(v) + offset for v in value])


def _metadata_buffers(model: Any) -> set[int]:
    return {entry.buffer for entry in model.metadata or []} | set(model.metadataBuffer or [])


def _metadata_buffer(model: Any, name: str) -> Any | None:
    for entry in model.metadata or []:
        if entry.name is not None and entry.name.decode() == name:
            return model.buffers[entry.buffer]
    return None


def _min_runtime_version(model: Any) -> str:
    buffer = _metadata_buffer(model, MIN_RUNTIME_VERSION)
    if buffer is None or buffer.data is None:
        return ""
    return bytes(buffer.data).split(b"\0", 1)[0].decode()


def _set_min_runtime_version(model: Any, version: str) -> None:
    buffer = _metadata_buffer(model, MIN_RUNTIME_VERSION)
    if buffer is not None and version:
        # the converter pads the string with NULs to a fixed width: keep the width
        width = max(len(buffer.data), len(version) + 1)
        buffer.data = np.frombuffer(version.encode().ljust(width, b"\0"), np.uint8)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())

"""Full-int8 TFLite files quantize every product over shared weights alike, so LiteRT's
``CompiledModel`` with XNNPACK's weight cache (how the runtime runs encoders) computes what the
``Interpreter`` does."""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from storyedge.bench.runner import backend_notes
from storyedge.export.tflite_ranges import separate_disagreeing_weights
from storyedge.runtime import find_spec, load_backend, open_export
from storyedge.runtime.litert_compiled import CompiledSignature, compiled_model_available, load_compiled_model
from storyedge.runtime.litert_signature import open_interpreter
from storyedge.tflite_schema import PACKED_WEIGHT_OPS, builtin_names, builtin_op_name, pack_model, schema, weight_cache_safe

INT8_FILES = ("encoder.int8.tflite", "multi.int8.tflite", "story.int8.tflite")


def _quantization(tensor) -> tuple:
    q = tensor.quantization
    return tuple(np.asarray(q.scale).round(12)), tuple(np.asarray(q.zeroPoint))


def _shared_weight_readers(path: Path) -> list[list[tuple]]:
    """Per constant weight buffer read by several int8 products: each reader's (input, output)
    quantization."""
    sch, names = schema(), builtin_names()
    model = sch.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    readers: dict[int, list[tuple]] = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            if builtin_op_name(model, op, names) not in PACKED_WEIGHT_OPS:
                continue
            x, w, y = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
            if x.type != sch.TensorType.INT8 or model.buffers[w.buffer].data is None:
                continue
            readers.setdefault(w.buffer, []).append((_quantization(x), _quantization(y)))
    return [r for r in readers.values() if len(r) > 1]


@pytest.mark.parametrize("name", INT8_FILES)
def test_products_over_shared_weights_read_and_write_one_quantization(full_export: Path, name: str) -> None:
    shared = _shared_weight_readers(full_export / "tflite" / name)
    # the LSTM loop bodies run several steps an iteration over one recurrent kernel
    assert len(shared) >= 3
    for readers in shared:
        assert len(set(readers)) == 1, readers


@pytest.mark.parametrize("name", INT8_FILES)
def test_range_rules_leave_no_weight_to_copy(full_export: Path, name: str) -> None:
    """The ranges made every shared weight's readers agree before quantization: no buffer had to
    be copied afterwards (the file holds each weight once)."""
    sch = schema()
    model = sch.ModelT.InitFromPackedBuf((full_export / "tflite" / name).read_bytes(), 0)
    contents = [hashlib.sha1(bytes(b.data)).digest() for b in model.buffers if b.data is not None and len(b.data) > 64]
    assert len(contents) == len(set(contents))


def _random_feeds(runner, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for name, detail in runner.get_input_details().items():
        if detail["dtype"] == np.int32:  # token ids of the tiny vocabulary, padding included
            feeds[name] = rng.integers(0, 40, detail["shape"]).astype(np.int32)
        else:
            feeds[name] = (rng.random(detail["shape"]) * 2 - 1).astype(np.float32)
    return feeds


@pytest.mark.skipif(not compiled_model_available(), reason="ai-edge-litert without the CompiledModel API")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-dynamic", "int8", "int4"])
def test_weight_cached_compiled_model_matches_the_interpreter(full_export: Path, precision: str) -> None:
    """Every signature the runtime runs through ``CompiledModel`` (all but the decoder step) of
    every TFLite file of a precision gives the ``Interpreter``'s outputs."""
    rng = np.random.default_rng(0)
    checked = []
    for path in sorted((full_export / "tflite").glob(f"*.{precision}.tflite")):
        interpreter = open_interpreter(path, 2)
        model = load_compiled_model(path, 2)
        for signature in interpreter.get_signature_list():
            if signature == "decoder_step":
                continue
            plain = interpreter.get_signature_runner(signature)
            compiled = CompiledSignature(model, signature)
            for _ in range(2):
                feeds = _random_feeds(plain, rng)
                expected, got = plain(**feeds), compiled(feeds)
                for output, value in expected.items():
                    np.testing.assert_allclose(got[output], value, rtol=0, atol=1e-6, err_msg=f"{path.name} {output}")
            checked.append((path.name, signature))
    # encoder, multi's encoder, story's frame / reason / story / frame_story graphs
    assert len(checked) == 6, checked


def _shift_one_reader(model) -> tuple[int, list, object]:
    """Quantize the first step's input (a ``QUANTIZE`` of the carried state, read by nothing else)
    and output apart from the other readers of its weights, as the exporter did before it made
    them agree;
    returns the weight buffer, its readers (graph, op) and the op shifted."""
    names = builtin_names()
    readers: dict[int, list] = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            if builtin_op_name(model, op, names) == "FULLY_CONNECTED":
                readers.setdefault(graph.tensors[op.inputs[1]].buffer, []).append((graph, op))
    buffer, ops = next((b, r) for b, r in readers.items() if len(r) >= 3)
    graph, apart = ops[0]
    shifted = copy.deepcopy(graph.tensors[apart.inputs[0]].quantization)
    shifted.zeroPoint = np.asarray(shifted.zeroPoint) + 3
    graph.tensors[apart.inputs[0]].quantization = shifted
    rescaled = copy.deepcopy(graph.tensors[apart.outputs[0]].quantization)
    rescaled.scale = np.asarray(rescaled.scale) * 1.25
    graph.tensors[apart.outputs[0]].quantization = rescaled
    return buffer, ops, apart


def test_a_reader_quantized_apart_gets_its_own_copy_of_the_weights(full_export: Path) -> None:
    model = schema().ModelT.InitFromPackedBuf((full_export / "tflite" / "encoder.int8.tflite").read_bytes(), 0)
    buffer, ops, apart = _shift_one_reader(model)
    buffers = len(model.buffers)

    assert separate_disagreeing_weights(model) == 1
    assert len(model.buffers) == buffers + 1
    assert bytes(model.buffers[buffers].data) == bytes(model.buffers[buffer].data)
    kept = {g.tensors[op.inputs[1]].buffer for g, op in ops if op is apart}
    moved = {g.tensors[op.inputs[1]].buffer for g, op in ops if op is not apart}
    assert kept == {buffer} and moved == {buffers}  # the first reader's quantization keeps the buffer
    assert separate_disagreeing_weights(model) == 0  # every reader now agrees with its buffer's others


@pytest.mark.skipif(not compiled_model_available(), reason="ai-edge-litert without the CompiledModel API")
def test_a_file_whose_readers_disagree_runs_without_the_weight_cache(full_export: Path, tmp_path: Path) -> None:
    content = (full_export / "tflite" / "encoder.int8.tflite").read_bytes()
    assert weight_cache_safe(content)
    model = schema().ModelT.InitFromPackedBuf(content, 0)
    _shift_one_reader(model)
    older = tmp_path / "older.int8.tflite"
    older.write_bytes(pack_model(model, len(content)))
    assert not weight_cache_safe(older.read_bytes())

    interpreter = open_interpreter(older, 2)
    interpreter.allocate_tensors()
    plain = interpreter.get_signature_runner("encoder")
    compiled = CompiledSignature(load_compiled_model(older, 2), "encoder")
    feeds = _random_feeds(plain, np.random.default_rng(1))
    expected, got = plain(**feeds), compiled(feeds)
    for output, value in expected.items():
        np.testing.assert_allclose(got[output], value, rtol=0, atol=1e-6, err_msg=output)


@pytest.mark.skipif(not compiled_model_available(), reason="ai-edge-litert without the CompiledModel API")
def test_the_backend_notes_a_file_it_runs_without_the_weight_cache(full_export: Path, tmp_path: Path) -> None:
    older = tmp_path / "older"
    shutil.copytree(full_export, older)
    encoder = older / "tflite" / "encoder.int8.tflite"
    content = encoder.read_bytes()
    model = schema().ModelT.InitFromPackedBuf(content, 0)
    _shift_one_reader(model)
    encoder.write_bytes(pack_model(model, len(content)))

    backend = load_backend(find_spec(open_export(older, verify=False), "tflite", "int8", "separate"), threads=2)
    assert len(backend.notes) == 1
    assert backend.notes[0].startswith("encoder.int8.tflite ran without XNNPACK's weight cache")
    assert backend_notes([SimpleNamespace(backend=backend)]) == [f"{backend.name}: {backend.notes[0]}"]
    current = load_backend(find_spec(open_export(full_export), "tflite", "int8", "separate"), threads=2)
    current.run_graph("frame_story_encoder", _random_feeds(
        open_interpreter(full_export / "tflite" / "story.int8.tflite", 1).get_signature_runner("frame_story_encoder"),
        np.random.default_rng(2)))
    assert current.notes == ()  # its encoder and the story file it loaded on use run with the cache

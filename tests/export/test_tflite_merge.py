"""The multi-signature TFLite file merged from the encoder and decoder-step files: every
signature computes exactly what its own file computes, shared constants are stored once, and
subgraph references (the LSTMs' WHILE loops) follow their subgraphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storyedge.errors import CheckFailed
from storyedge.export.tflite_merge import _shift_subgraph_fields, merge_signatures
from storyedge.manifest import read_manifest
from storyedge.tflite_schema import builtin_names, builtin_op_name, schema


def _read(export: Path, graph: str, precision: str) -> bytes:
    return (export / "tflite" / f"{graph}.{precision}.tflite").read_bytes()


def _feeds(runner, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for name, detail in runner.get_input_details().items():
        shape = tuple(int(d) for d in detail["shape"])
        if np.dtype(detail["dtype"]) == np.int32:
            feeds[name] = rng.integers(1, 40, shape).astype(np.int32)
        else:
            feeds[name] = rng.random(shape, dtype=np.float32)
    return feeds


def _runner(content: bytes, key: str):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content, num_threads=1).get_signature_runner(key)


def _while_targets(content: bytes) -> list[tuple[int, int, int]]:
    """(subgraph, cond, body) of every WHILE op."""
    sch = schema()
    model = sch.ModelT.InitFromPackedBuf(content, 0)
    names = builtin_names()
    return [(s, op.builtinOptions.condSubgraphIndex, op.builtinOptions.bodySubgraphIndex)
            for s, graph in enumerate(model.subgraphs) for op in graph.operators
            if builtin_op_name(model, op, names) == "WHILE"]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("order", [("encoder", "decoder_step"), ("decoder_step", "encoder")])
def test_merged_signatures_compute_exactly_what_their_files_do(full_export: Path, precision: str,
                                                              order: tuple[str, str]) -> None:
    parts = [_read(full_export, graph, precision) for graph in order]
    merged = merge_signatures(parts)
    rng = np.random.default_rng(7)
    for key, content in zip(order, parts):
        alone, inside = _runner(content, key), _runner(merged, key)
        feeds = _feeds(alone, rng)
        want, got = alone(**feeds), inside(**feeds)
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


def test_loops_of_the_second_file_point_at_their_own_subgraphs(full_export: Path) -> None:
    encoder = _read(full_export, "encoder", "fp32")
    step = _read(full_export, "decoder_step", "fp32")
    loops = _while_targets(encoder)
    assert loops, "the fp32 encoder's LSTMs are WHILE loops"
    step_subgraphs = schema().Model.GetRootAs(step, 0).SubgraphsLength()
    merged = _while_targets(merge_signatures([step, encoder]))
    assert merged == [(s + step_subgraphs, c + step_subgraphs, b + step_subgraphs) for s, c, b in loops]


@pytest.mark.parametrize("precision", ["fp32", "int8-dynamic", "int8"])
def test_the_export_merges_its_multi_file_and_stores_the_shared_embedding_once(full_export: Path,
                                                                              precision: str) -> None:
    encoder, step = _read(full_export, "encoder", precision), _read(full_export, "decoder_step", precision)
    merged = merge_signatures([encoder, step])
    assert _read(full_export, "multi", precision) == merged
    manifest = read_manifest(full_export)
    cfg = manifest.config["model"]
    embedding = manifest.tokenizer["vocab_size"] * cfg["text_embed_dim"] * (4 if precision == "fp32" else 1)
    assert len(merged) <= len(encoder) + len(step) - embedding
    model = schema().Model.GetRootAs(merged, 0)
    keys = {model.SignatureDefs(i).SignatureKey().decode(): model.SignatureDefs(i).SubgraphIndex()
            for i in range(model.SignatureDefsLength())}
    assert keys == {"encoder": 0, "decoder_step": schema().Model.GetRootAs(encoder, 0).SubgraphsLength()}
    names = [t.name for g in schema().ModelT.InitFromPackedBuf(merged, 0).subgraphs for t in g.tensors]
    assert len(set(names)) == len(names)  # ai-edge-quantizer (int4) keys tensors by name


def test_repeated_signature_keys_are_refused(full_export: Path) -> None:
    step = _read(full_export, "decoder_step", "fp32")
    with pytest.raises(CheckFailed, match="repeated signature keys"):
        merge_signatures([step, step])


def test_subgraph_fields_of_every_option_kind_shift() -> None:
    sch = schema()
    loop = sch.WhileOptionsT()
    loop.condSubgraphIndex, loop.bodySubgraphIndex = 1, 2
    case = sch.StablehloCaseOptionsT()
    case.branchSubgraphIndices = [3, 4]
    call = sch.CallOptionsT()
    call.subgraph = 5
    for options in (loop, case, call):
        _shift_subgraph_fields(options, 10)
    assert (loop.condSubgraphIndex, loop.bodySubgraphIndex, case.branchSubgraphIndices, call.subgraph) == (11, 12, [13, 14], 15)

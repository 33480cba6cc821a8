"""Joining a frame and a story graph into one ONNX graph whose weights stay in their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from storyedge.errors import CheckFailed  # noqa: E402
from storyedge.export.onnx_frame_story import MIN_SHARED_BYTES, join_frame_story  # noqa: E402
from storyedge.manifest import StorySpec  # noqa: E402
from onnx_graphs import run, save_graph  # noqa: E402 - needs onnx and onnxruntime, skipped above

K, D, X, HEADS = 3, 16, 24, 8
SPEC = StorySpec(window=K, frame_graph="frame_encoder", story_graph="story_encoder", frame_inputs={"x": "xs"},
                 fused="fused_frame", story_fused="fused_frames", story_reason="heads",
                 frame_story_graph="frame_story_encoder", earlier_fused="earlier")


def _frame_graph(rng: np.random.Generator, output_name: str = "fused_frame") -> onnx.GraphProto:
    """x [1, X] → tanh(x · W) = fused_frame [1, D]; a small scale initializer stays inline."""
    w = numpy_helper.from_array(rng.standard_normal((X, D)).astype(np.float32), "w")
    scale = numpy_helper.from_array(np.array([0.5], np.float32), "scale")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Mul", ["xw", "scale"], ["scaled"]),
             helper.make_node("Tanh", ["scaled"], [output_name])]
    if output_name != "fused_frame":
        nodes.append(helper.make_node("Identity", [output_name], ["fused_frame"]))
    return helper.make_graph(nodes, "frame", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, X])],
                             [helper.make_tensor_value_info("fused_frame", TensorProto.FLOAT, [1, D])], [w, scale])


def _story_graph(rng: np.random.Generator) -> onnx.GraphProto:
    """fused_frames [1, K, D] → mean over frames · W (+ heads) = h0 [1, HEADS]."""
    w = numpy_helper.from_array(rng.standard_normal((D, HEADS)).astype(np.float32), "w")  # same name as the frame's
    bias = numpy_helper.from_array(np.full((HEADS,), 0.25, np.float32), "bias")
    nodes = [helper.make_node("ReduceMean", ["fused_frames"], ["mean"], axes=[1], keepdims=0),
             helper.make_node("MatMul", ["mean", "w"], ["proj"]), helper.make_node("Add", ["proj", "bias"], ["biased"]),
             helper.make_node("Add", ["biased", "heads"], ["h0"])]
    inputs = [helper.make_tensor_value_info("fused_frames", TensorProto.FLOAT, [1, K, D]),
              helper.make_tensor_value_info("heads", TensorProto.FLOAT, [1, HEADS])]
    return helper.make_graph(nodes, "story", inputs, [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, HEADS])],
                             [w, bias])


def _files(tmp_path: Path, frame_output: str = "fused_frame") -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    frame, story = tmp_path / "frame_encoder.fp32.onnx", tmp_path / "story_encoder.fp32.onnx"
    save_graph(_frame_graph(rng, frame_output), frame)
    save_graph(_story_graph(rng), story)
    return frame, story, tmp_path / "frame_story_encoder.fp32.onnx"


def test_joined_graph_equals_the_two_calls_and_reads_their_weights_in_place(tmp_path: Path) -> None:
    frame, story, joined = _files(tmp_path)
    assert join_frame_story(frame, story, joined, SPEC) == 2  # the two weight matrices
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, X)).astype(np.float32)
    earlier = rng.standard_normal((1, K - 1, D)).astype(np.float32)
    heads = rng.standard_normal((1, HEADS)).astype(np.float32)
    fused_one, h0_one = run(joined, {"x": x, "earlier": earlier, "heads": heads})
    (fused,) = run(frame, {"x": x})
    (h0,) = run(story, {"fused_frames": np.concatenate([earlier, fused[:, None]], axis=1), "heads": heads})
    assert np.array_equal(fused_one, fused) and np.array_equal(h0_one, h0)
    proto = onnx.load(str(joined), load_external_data=False)
    assert [i.name for i in proto.graph.input] == ["x", "earlier", "heads"]
    assert [o.name for o in proto.graph.output] == ["fused_frame", "h0"]
    external = {t.name: {e.key: e.value for e in t.external_data} for t in proto.graph.initializer
                if t.data_location == TensorProto.EXTERNAL}
    assert {name: place["location"] for name, place in external.items()} == {
        "w": frame.name, "story/w": story.name}
    assert all(len(t.raw_data) < MIN_SHARED_BYTES for t in proto.graph.initializer)  # scale, bias, glue axes
    place = external["w"]
    raw = frame.read_bytes()[int(place["offset"]):int(place["offset"]) + int(place["length"])]
    assert np.array_equal(np.frombuffer(raw, np.float32).reshape(X, D),
                          numpy_helper.to_array(onnx.load(str(frame)).graph.initializer[0]))
    assert joined.stat().st_size < (X * D + D * HEADS) * 4  # smaller than the weights it reads


def test_a_frame_graph_defining_the_story_input_is_refused(tmp_path: Path) -> None:
    frame, story, joined = _files(tmp_path, frame_output="fused_frames")
    with pytest.raises(CheckFailed, match="already defines 'fused_frames'"):
        join_frame_story(frame, story, joined, SPEC)
    assert not joined.exists()

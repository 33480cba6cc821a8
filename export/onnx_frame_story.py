"""The ONNX frame + story graph: story mode's newest frame and story graph in one call, no second
copy of any weight.

A story caption costs the new frame's graph and the story graph. As two ONNX Runtime sessions
that is two calls, and the story graph's call starts cold: its session's threads have gone to
sleep (``session.force_spinning_stop``) and it pays its own call overhead. Seed size, 2 threads,
each next caption followed by its 32 steps, interleaved with full-window captions: fp32 frame +
story 6.00 → 5.73 ms in one call (÷ full window 0.393 → 0.376), static int8 2.66 → 2.58 ms
(0.450 → 0.436).

:func:`join_frame_story` writes that graph from the precision's frame and story files as they
are (quantized, checked): the frame graph's nodes, ``Unsqueeze`` + ``Concat`` of the new fused
vector after the k-1 earlier ones (``earlier_fused``), then the story graph's nodes (names
prefixed). Its initializers of :data:`MIN_SHARED_BYTES` or more are ONNX external data that
points at their own bytes inside the frame and story files (``location`` / ``offset`` /
``length``: an initializer's ``raw_data`` is stored contiguously in its file), so the file is a
graph of some hundred kilobytes, not a third copy of the weights; its outputs are the two
calls' bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from storyedge.errors import CheckFailed
from storyedge.manifest import StorySpec

#: initializers at least this large are read in place from the frame / story file; smaller ones
#: (scales, zero points, shapes) are copied, which costs less than their external-data records
MIN_SHARED_BYTES = 256
#: name prefix of the story graph's nodes and tensors inside the joined graph
STORY_PREFIX = "story/"
#: name prefix of the nodes and tensors that join the two graphs
GLUE_PREFIX = "storyedge_frame_story_"


def join_frame_story(frame_path: Path, story_path: Path, dst: Path, spec: StorySpec) -> int:
    """Write the frame + story graph ``spec.frame_story_graph`` of the frame and story files at
    ``dst`` (in their folder); returns how many initializers it reads from them in place."""
    # lazy: onnx is a heavy optional runtime
    import onnx
    from onnx import compose

    if spec.earlier_fused is None or dst.parent != frame_path.parent or dst.parent != story_path.parent:
        raise ValueError("the frame + story graph needs earlier_fused and one folder for the three files")
    frame_bytes, story_bytes = frame_path.read_bytes(), story_path.read_bytes()
    frame = onnx.load_model_from_string(frame_bytes)
    story = compose.add_prefix(onnx.load_model_from_string(story_bytes), STORY_PREFIX, rename_inputs=False,
                               rename_outputs=False)
    shared = _point_at(frame, frame_bytes, frame_path.name) + _point_at(story, story_bytes, story_path.name)
    model = _joined(frame, story, spec)
    onnx.save(model, str(dst))
    return shared


def _joined(frame: Any, story: Any, spec: StorySpec) -> Any:
    """One model: ``frame``'s graph, the glue, ``story``'s graph (prefixed, inputs kept)."""
    # lazy: onnx is a heavy optional runtime
    from onnx import TensorProto, helper, numpy_helper

    f, s = frame.graph, story.graph
    fused_out = next(o for o in f.output if o.name == spec.fused)
    batch, *vector = [d.dim_value for d in fused_out.type.tensor_type.shape.dim]
    earlier = helper.make_tensor_value_info(str(spec.earlier_fused), TensorProto.FLOAT,
                                            [batch, spec.window - 1, *vector])
    axes, new = f"{GLUE_PREFIX}axes", f"{GLUE_PREFIX}new_fused"
    defined = {n for node in f.node for n in node.output} | {i.name for i in f.initializer}
    if spec.story_fused in defined:
        raise CheckFailed(f"ONNX frame + story graph: the frame graph already defines {spec.story_fused!r}")
    glue = [helper.make_node("Unsqueeze", [spec.fused, axes], [new], name=f"{GLUE_PREFIX}Unsqueeze"),
            helper.make_node("Concat", [str(spec.earlier_fused), new], [spec.story_fused], axis=1,
                             name=f"{GLUE_PREFIX}Concat")]
    inputs = list(f.input) + [earlier]
    inputs += [i for i in s.input if i.name != spec.story_fused and i.name not in {x.name for x in inputs}]
    graph = helper.make_graph(
        list(f.node) + glue + list(s.node), str(spec.frame_story_graph), inputs, list(f.output) + list(s.output),
        list(f.initializer) + [numpy_helper.from_array(np.array([1], np.int64), axes)] + list(s.initializer),
    )
    opsets: dict[str, int] = {}
    for op in list(frame.opset_import) + list(story.opset_import):
        opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = max(frame.ir_version, story.ir_version)
    model.producer_name = frame.producer_name
    model.doc_string = f"storyedge {spec.frame_story_graph}: the frame and story graphs in one call"
    return model


def _point_at(model: Any, data: bytes, location: str) -> int:
    """Turn ``model``'s initializers of :data:`MIN_SHARED_BYTES` or more into external data that
    points at their bytes inside ``data``, the file ``location`` it was parsed from; returns how many."""
    # lazy: onnx is a heavy optional runtime
    from onnx import TensorProto

    count = 0
    for tensor in model.graph.initializer:
        raw = tensor.raw_data
        if len(raw) < MIN_SHARED_BYTES:
            continue
        offset = data.find(raw)
        if offset < 0:  # cannot happen for a file onnx wrote; checked all the same
            raise CheckFailed(f"ONNX frame + story graph: {tensor.name} not found in {location}")
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        count += 1
    return count

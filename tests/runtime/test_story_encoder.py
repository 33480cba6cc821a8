"""StoryEncoder's one-call path: which graph each push runs and what it feeds the frame + story graph."""

from __future__ import annotations

import numpy as np
import pytest

from storyedge.manifest import StorySpec
from storyedge.runtime import StoryEncoder

K, D = 3, 4
SPEC = StorySpec(window=K, frame_graph="frame_encoder", story_graph="story_encoder", frame_inputs={"caption": "captions"},
                 fused="fused_frame", story_fused="fused_frames", frame_story_graph="frame_story_encoder",
                 earlier_fused="earlier")


class GraphRecorder:
    """A backend whose frame graph maps caption c to the vector [c, c, c, c] and whose story graph
    sums the window; it records every call. ``knows_shape``: whether it reads the earlier
    frames' input shape from its files."""

    name = "recorder"
    story = SPEC

    def __init__(self, knows_shape: bool) -> None:
        self.knows_shape = knows_shape
        self.calls: list[tuple[str, dict[str, np.ndarray]]] = []

    def graph_input_shape(self, graph: str, name: str) -> tuple[int, ...] | None:
        assert (graph, name) == ("frame_story_encoder", "earlier")
        return (1, K - 1, D) if self.knows_shape else None

    def run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append((graph, feeds))
        fused = np.full((1, D), float(feeds["caption"][0, 0]), np.float32)
        if graph == "frame_encoder":
            return {"fused_frame": fused}
        assert graph == "frame_story_encoder" and feeds["earlier"].shape == (1, K - 1, D)
        return {"fused_frame": fused, "h0": feeds["earlier"].sum(axis=1) + fused}


def _push(story: StoryEncoder, caption: int) -> None:
    story.push({"captions": np.array([[caption]], np.int32)})


@pytest.mark.parametrize("knows_shape", [True, False])
def test_pushes_before_the_window_fills(knows_shape: bool) -> None:
    backend = GraphRecorder(knows_shape)
    story = StoryEncoder(backend)  # type: ignore[arg-type]
    for caption in (1, 2, 3):
        _push(story, caption)
    graphs = [g for g, _ in backend.calls]
    if knows_shape:  # zeros stand in for the frames not cached yet; the frame graph never runs
        assert graphs == ["frame_story_encoder"] * 3
        earlier = [f["earlier"][0, :, 0].tolist() for _, f in backend.calls]
        assert earlier == [[0.0, 0.0], [0.0, 1.0], [1.0, 2.0]]
    else:
        assert graphs == ["frame_encoder", "frame_encoder", "frame_story_encoder"]
    assert story.outputs()["h0"].tolist() == [[6.0] * D]  # only the full window's outputs are kept
    assert [v[0, 0] for v in story._fused] == [1.0, 2.0, 3.0]


def test_outputs_before_a_full_window_are_refused() -> None:
    story = StoryEncoder(GraphRecorder(knows_shape=True))  # type: ignore[arg-type]
    _push(story, 1)
    with pytest.raises(ValueError, match="needs 3 encoded frames, has 1"):
        story.outputs()

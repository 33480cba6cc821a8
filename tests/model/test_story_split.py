"""Story mode's split of the encoder: frame + reason + story graphs compose to the full encoder."""

from __future__ import annotations

import numpy as np
import pytest

from typing import Callable

from storyedge.config import Config
from storyedge.model.signatures import encoder_fn, story_fn, story_spec
from storyedge.model.story_model import build_model
from storyedge.runtime.story import StoryEncoder
from storyedge.runtime.tf_reference import TFReferenceBackend

VOCAB = 40

#: (the plain reason-in-context LSTM model is covered by the sliding-window test below and the export tests)
VARIANTS = {
    "reason-in-fusion": {"model.use_reason": True, "model.use_reason_in_fusion": True},
    "text-only": {"model.fusion": "text_only"},
    "transformer-reason": {"model.use_reason": True, "model.decoder": "transformer", "model.decoder_hidden_dim": 8,
                           "model.decoder_heads": 2, "model.decoder_ff_dim": 16, "model.decoder_layers": 1},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_story_graphs_compose_to_the_encoder(variant: str, make_config: Callable[..., Config],
                                            make_inputs: Callable[..., dict]) -> None:
    """Frame by frame (batch 1, one frame per call) + the story graph == the full-window encoder."""
    cfg = make_config(**VARIANTS[variant])
    model = build_model(cfg, VOCAB, 0)
    inputs = make_inputs(cfg, VOCAB, batch=1, seed=3)
    names = ["frames", "captions"] + (["reason"] if cfg.model.use_reason else [])
    full = {k: v.numpy() for k, v in encoder_fn(model)(*(inputs[n] for n in names)).items()}
    spec = story_spec(model)
    assert spec.graphs[-1] == "story_encoder" and ("reason_encoder" in spec.graphs) == cfg.model.use_reason
    story = StoryEncoder(TFReferenceBackend(model))
    story.push_window({n: inputs[n] for n in names})
    got = story.outputs()
    assert sorted(got) == sorted(full)
    for name in full:
        assert np.max(np.abs(got[name] - full[name])) < 1e-5, name
    if variant == "reason-in-fusion":
        with pytest.raises(ValueError, match="reason_vec"):
            model.encode_frame(inputs["frames"][:, 0], inputs["captions"][:, 0])
        assert [s.name for s in story_fn(model, "frame_encoder").input_signature] == ["frame", "caption", "reason_vector"]
    if variant == "text-only":
        assert [s.name for s in story_fn(model, "frame_encoder").input_signature] == ["caption"]


@pytest.mark.parametrize("one_call", [True, False])
def test_sliding_window_reuses_cached_frames(one_call: bool, make_config: Callable[..., Config],
                                            make_inputs: Callable[..., dict]) -> None:
    """Pushing frame k+1 gives the state of the window of frames 2..k+1, each frame encoded once;
    with ``one_call`` each frame after the first k-1 runs the frame + story graph instead."""
    cfg = make_config(**{"model.use_reason": True})
    model = build_model(cfg, VOCAB, 0)
    k = cfg.dataset.seq_len
    story = make_inputs(cfg.replace(**{"dataset.seq_len": k + 1}), VOCAB, batch=1, seed=5)
    backend = TFReferenceBackend(model)
    calls: list[str] = []
    run_graph = backend.run_graph
    backend.run_graph = lambda g, f: (calls.append(g), run_graph(g, f))[1]  # type: ignore[method-assign]
    encoder = StoryEncoder(backend, one_call)
    encoder.begin(story)
    for i in range(k + 1):
        encoder.push({"frames": story["frames"][:, i], "captions": story["captions"][:, i]})
    got = encoder.outputs()
    pushes = ["frame_encoder"] * (k - 1) + ["frame_story_encoder"] * 2 if one_call else ["frame_encoder"] * (k + 1)
    assert calls == ["reason_encoder"] + pushes + ([] if one_call else ["story_encoder"])
    # the reason's terms of the decoder's start are cached with the reason, not recomputed per caption
    assert [s.name for s in story_fn(model, "story_encoder").input_signature] == ["fused_frames", "reason_heads"]
    assert [s.name for s in story_fn(model, "frame_story_encoder").input_signature] == [
        "frame", "caption", "earlier_fused_frames", "reason_heads"]
    assert story_spec(model).story_reason == "reason_heads"
    window = [story["frames"][:, 1:], story["captions"][:, 1:], story["reason"]]
    full = encoder_fn(model)(*window)
    for name, value in full.items():
        assert np.max(np.abs(got[name] - value.numpy())) < 1e-5, name

"""The LSTM decoder's start split into the story's and the reason's terms."""

from __future__ import annotations

from typing import Callable

import numpy as np

from storyedge.config import Config
from storyedge.model.story_heads import caches_reason_heads, reason_heads, reason_heads_dim, story_heads
from storyedge.model.story_model import build_model


def test_split_heads_equal_the_heads_of_the_whole_context(make_config: Callable[..., Config]) -> None:
    cfg = make_config(**{"model.use_reason": True})
    assert caches_reason_heads(cfg)
    assert not caches_reason_heads(cfg.replace(**{"model.use_reason_in_fusion": True}))
    assert not caches_reason_heads(cfg.replace(**{"model.use_reason": False}))
    model = build_model(cfg, 40, 0)
    rng = np.random.default_rng(0)
    story = rng.normal(size=(2, cfg.model.temporal_hidden_dim)).astype(np.float32)
    reason = rng.normal(size=(2, model.context_dim - story.shape[1])).astype(np.float32)
    context = np.concatenate([story, reason], axis=1)
    heads = np.asarray(reason_heads(model, reason))
    assert heads.shape == (2, reason_heads_dim(cfg)) == (2, 6 * cfg.model.decoder_hidden_dim)
    h0, c0, gates = (np.asarray(x) for x in story_heads(model, story, heads))
    np.testing.assert_allclose(h0, np.asarray(model.init_h(context)), atol=1e-5)
    np.testing.assert_allclose(c0, np.asarray(model.init_c(context)), atol=1e-5)
    np.testing.assert_allclose(gates, np.asarray(model.context_gates(context)), atol=1e-5)
    # the reason's terms hold what the story's rows do not: without them the heads differ
    without = np.asarray(story_heads(model, story, np.zeros_like(heads))[1])
    assert np.max(np.abs(without - c0)) > 1e-3

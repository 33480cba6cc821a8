"""Story mode's split of the LSTM decoder's starting state into the story's part and the reason's.

The LSTM decoder starts from the context ``[story, reason]`` (temporal LSTM output ++ reason
vector): ``h0 = tanh(context·W_h + b_h)``, ``c0 = context·W_c + b_c`` and the context's share of
the cell's gates ``context·W_g + b_g``. Each product is ``story·W[:Ds] + reason·W[Ds:]``, and the
reason is the same for every caption of a story. Story mode therefore computes the reason's
terms once per story (:func:`reason_heads`, in the reason graph) and, per caption, only the
story's rows (:func:`story_heads`): at the seed size 3.1M of the heads' 4.7M weights (the
reason's 1024 of the context's 1536 rows) are read once a story instead of once a caption.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keras import ops

from storyedge.config import Config

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.model.story_model import StoryModel

#: The reason graph's output (and story graph's input) holding the reason's terms of the heads.
REASON_HEADS = "reason_heads"


def caches_reason_heads(cfg: Config) -> bool:
    """Whether story mode caches the reason's terms: an LSTM decoder whose context holds the
    reason vector (a reason that is not in the fusion)."""
    m = cfg.model
    return m.decoder == "lstm" and m.use_reason and not m.use_reason_in_fusion


def reason_heads_dim(cfg: Config) -> int:
    """Width of :data:`REASON_HEADS`: h0's and c0's terms (H each) and the gates' (4H)."""
    return 6 * cfg.model.decoder_hidden_dim


def _head_kernels(model: "StoryModel") -> list[Any]:
    """The heads' kernels over the context rows, in :data:`REASON_HEADS` order: init_h, init_c,
    the decoder cell's context rows (its input is embed(token) ++ context)."""
    return [model.init_h.kernel, model.init_c.kernel, model.context_kernel()]


def reason_heads(model: "StoryModel", reason_vec: Any) -> Any:
    """The reason's terms ``reason·W[Ds:]`` of h0, c0 and the context gates, side by side [B, 6H]."""
    rows = model.config.model.temporal_hidden_dim
    return ops.concatenate([ops.matmul(reason_vec, ops.cast(k[rows:], reason_vec.dtype))
                            for k in _head_kernels(model)], axis=-1)


def story_heads(model: "StoryModel", story: Any, heads: Any) -> tuple[Any, Any, Any]:
    """(h0, c0, context gates) from the temporal LSTM's output ``story`` [B, Ds] and the cached
    :func:`reason_heads` ``heads`` [B, 6H]: the encoder's outputs, summed in another order."""
    hidden = model.config.model.decoder_hidden_dim
    rows = story.shape[-1]
    terms = [heads[:, :hidden], heads[:, hidden:2 * hidden], heads[:, 2 * hidden:]]
    biased = zip((model.init_h, model.init_c, model.decoder_cell), _head_kernels(model), terms)
    h0, c0, gates = (_biased(layer, ops.matmul(story, ops.cast(k[:rows], story.dtype)) + term)
                     for layer, k, term in biased)
    return model.init_h.activation(h0), model.init_c.activation(c0), gates


def _biased(layer: Any, x: Any) -> Any:
    return x + ops.cast(layer.bias, x.dtype) if layer.use_bias else x

"""The Transformer caption decoder: pre-norm layers with a static-shape key/value cache.

Shapes: B batch, W width (``decoder_hidden_dim``), h heads, d = W / h, L cache length
(``max_caption_len``), M memory slots (k fused frames + the story context [+ the reason]).

* :class:`StoryMemory` builds the memory ``[B, M, W]`` the decoder cross-attends to.
* :class:`TransformerDecoderLayer` - ``x + SelfAttn(LN(x))``, ``x + CrossAttn(LN(x), memory)``,
  ``x + FF(LN(x))``. :meth:`~TransformerDecoderLayer.cross_kv` precomputes the cross K/V once
  per caption; :meth:`~TransformerDecoderLayer.step` runs one position against a KV cache,
  :meth:`~TransformerDecoderLayer.sequence` all positions under a causal mask (teacher forcing).

Export-shaped on purpose (builtins-only TFLite, plain ONNX): the cache write is
``cache * (1 - onehot) + onehot * k_t`` with ``onehot = (arange(L) == position)`` (no scatter),
and the self-attention mask ``arange(L) <= position`` is built from the position in the graph.
The masked softmax multiplies by the 0/1 mask instead of adding a large negative constant
(which would overflow in fp16 and wreck the int8 range of the scores): masked slots get exactly
zero weight, so whatever a later cache slot holds cannot change the logits.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops


def split_heads(x: Any, heads: int) -> Any:
    """``[B, T, W]`` -> ``[B, heads, T, W / heads]``."""
    batch, steps, width = x.shape
    return ops.transpose(ops.reshape(x, (-1, steps, heads, width // heads)), (0, 2, 1, 3))


def merge_heads(x: Any) -> Any:
    """``[B, heads, T, d]`` -> ``[B, T, heads * d]``."""
    _, heads, steps, depth = x.shape
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, steps, heads * depth))


def attention_weights(q: Any, k: Any, mask: Any = None) -> Any:
    """Scaled dot-product attention weights ``[B, h, Tq, Tk]``; ``mask`` (0/1 float, broadcast to
    the scores) zeroes slots.

    Masked softmax without a large constant: ``s = scores * mask``, ``e = exp(s - max s) * mask``,
    weights ``e / sum e`` (the row always holds at least one unmasked slot).
    """
    scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(q.shape[-1])
    if mask is None:
        return ops.softmax(scores, axis=-1)
    masked = scores * mask
    e = ops.exp(masked - ops.max(masked, axis=-1, keepdims=True)) * mask
    return e / ops.sum(e, axis=-1, keepdims=True)


def attend(q: Any, k: Any, v: Any, mask: Any = None) -> Any:
    """Scaled dot-product attention (:func:`attention_weights` applied to ``v``)."""
    return ops.matmul(attention_weights(q, k, mask), v)


def write_cache(cache: Any, new: Any, position: Any) -> Any:
    """``cache`` [B, h, L, d] with slot ``position`` [B] replaced by ``new`` [B, h, 1, d]."""
    slots = cache.shape[2]
    onehot = ops.cast(ops.equal(ops.arange(slots, dtype="int32")[None, :], position[:, None]), cache.dtype)
    onehot = ops.reshape(onehot, (-1, 1, slots, 1))
    return cache * (1.0 - onehot) + onehot * new


def causal_step_mask(position: Any, slots: int) -> Any:
    """``[B, 1, 1, L]``: 1 where the slot index is <= ``position`` [B] (tokens 0..position)."""
    allowed = ops.less_equal(ops.arange(slots, dtype="int32")[None, :], position[:, None])
    return ops.reshape(ops.cast(allowed, "float32"), (-1, 1, 1, slots))


def causal_sequence_mask(steps: int) -> Any:
    """``[1, 1, T, T]`` lower-triangular 0/1 mask."""
    idx = ops.arange(steps, dtype="int32")
    return ops.reshape(ops.cast(ops.less_equal(idx[None, :], idx[:, None]), "float32"), (1, 1, steps, steps))


class HeadProjections(layers.Layer):
    """The four ``dim``-wide projections of multi-head attention (query, key, value, output).

    The attention layers subclass it and write their own ``build``/``call``: one place checks that
    ``heads`` divides ``dim`` and names the projections, so their weights keep one layout.
    """

    def __init__(self, dim: int, heads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads {heads}")
        self.dim = dim
        self.heads = heads
        self.head_dim = dim // heads
        self.query = layers.Dense(dim, name="query")
        self.key = layers.Dense(dim, name="key")
        self.value = layers.Dense(dim, name="value")
        self.output_proj = layers.Dense(dim, name="output")

    def get_config(self) -> dict[str, Any]:
        """Serialisable constructor arguments."""
        return {**super().get_config(), "dim": self.dim, "heads": self.heads}


class StoryMemory(layers.Layer):
    """The cross-attention memory ``[B, M, W]``: each slot projected to the width, plus a learned
    slot embedding, then layer-normed. Slots: the k fused frames, the story context, the reason."""

    def __init__(self, width: int, slots: int, dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.width, self.slots = int(width), int(slots)
        self.frame_proj = layers.Dense(width, name=f"{self.name}_frame_proj")
        self.context_proj = layers.Dense(width, name=f"{self.name}_context_proj")
        self.reason_proj = layers.Dense(width, name=f"{self.name}_reason_proj")
        self.norm = layers.LayerNormalization(epsilon=1e-5, name=f"{self.name}_norm")
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape: Any = None) -> None:
        """Create the learned slot embedding ``[M, W]``."""
        self.slot_embedding = self.add_weight(
            shape=(self.slots, self.width), initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="slot_embedding",
        )
        self.built = True

    def call(self, frames: Any, context: Any, reason: Any = None, training: bool = False) -> Any:
        """``frames`` [B, k, D], ``context`` [B, C], ``reason`` [B, Dr] or None -> [B, M, W]."""
        parts = [self.frame_proj(frames), self.context_proj(context)[:, None, :]]
        if reason is not None:
            parts.append(self.reason_proj(reason)[:, None, :])
        memory = ops.concatenate(parts, axis=1) + self.slot_embedding[None, :, :]
        return self.norm(self.drop(memory, training=training))


class TransformerDecoderLayer(layers.Layer):
    """One pre-norm decoder layer (self-attention, cross-attention, ReLU feed-forward)."""

    def __init__(self, width: int, heads: int, ff_dim: int, dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.width, self.heads = int(width), int(heads)
        # Sublayer names carry the layer's own: Keras variable paths must be unique across layers
        # (training checkpoints by path) and do not include this layer's name.
        prefix = self.name
        dense = lambda units, name, **kw: layers.Dense(units, name=f"{prefix}_{name}", **kw)  # noqa: E731
        self.self_norm = layers.LayerNormalization(epsilon=1e-5, name=f"{prefix}_self_norm")
        self.self_q, self.self_k, self.self_v = dense(width, "self_q"), dense(width, "self_k"), dense(width, "self_v")
        self.self_o = dense(width, "self_o")
        self.cross_norm = layers.LayerNormalization(epsilon=1e-5, name=f"{prefix}_cross_norm")
        self.cross_q, self.cross_k, self.cross_v = dense(width, "cross_q"), dense(width, "cross_k"), dense(width, "cross_v")
        self.cross_o = dense(width, "cross_o")
        self.ff_norm = layers.LayerNormalization(epsilon=1e-5, name=f"{prefix}_ff_norm")
        self.ff_in, self.ff_out = dense(ff_dim, "ff_in", activation="relu"), dense(width, "ff_out")
        self.drop = layers.Dropout(dropout)

    def cross_kv(self, memory: Any) -> tuple[Any, Any]:
        """Cross-attention keys and values ``[B, h, M, d]`` of the memory (once per caption)."""
        return split_heads(self.cross_k(memory), self.heads), split_heads(self.cross_v(memory), self.heads)

    def _rest(self, x: Any, attended: Any, cross_k: Any, cross_v: Any, training: bool) -> Any:
        """Residual self-attention output, then cross-attention and feed-forward blocks."""
        x = x + self.drop(self.self_o(merge_heads(attended)), training=training)
        q = split_heads(self.cross_q(self.cross_norm(x)), self.heads)
        x = x + self.drop(self.cross_o(merge_heads(attend(q, cross_k, cross_v))), training=training)
        return x + self.drop(self.ff_out(self.ff_in(self.ff_norm(x))), training=training)

    def step(
        self, x: Any, position: Any, k_cache: Any, v_cache: Any, cross_k: Any, cross_v: Any,
        training: bool = False,
    ) -> tuple[Any, Any, Any]:
        """One position: ``x`` [B, 1, W] -> (x_out [B, 1, W], k_cache_out, v_cache_out)."""
        h = self.self_norm(x)
        q = split_heads(self.self_q(h), self.heads)
        k_cache = write_cache(k_cache, split_heads(self.self_k(h), self.heads), position)
        v_cache = write_cache(v_cache, split_heads(self.self_v(h), self.heads), position)
        attended = attend(q, k_cache, v_cache, causal_step_mask(position, k_cache.shape[2]))
        return self._rest(x, attended, cross_k, cross_v, training), k_cache, v_cache

    def sequence(self, x: Any, cross_k: Any, cross_v: Any, training: bool = False) -> Any:
        """All positions at once under the causal mask: ``x`` [B, T, W] -> [B, T, W]."""
        h = self.self_norm(x)
        q, k, v = (split_heads(dense(h), self.heads) for dense in (self.self_q, self.self_k, self.self_v))
        attended = attend(q, k, v, causal_sequence_mask(x.shape[1]))
        return self._rest(x, attended, cross_k, cross_v, training)


class TransformerDecoder(layers.Layer):
    """Token (+ projection) and learned position embeddings, the layers, the final norm.

    The token ``Embedding`` is the model's shared table (not owned here); logits are the model's.
    """

    def __init__(
        self, embedding: layers.Embedding, width: int, heads: int, ff_dim: int, num_layers: int,
        max_len: int, dropout: float, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embedding, self.width, self.max_len = embedding, int(width), int(max_len)
        self.in_proj = None if embedding.output_dim == width else layers.Dense(width, use_bias=False, name=f"{self.name}_in_proj")
        self.position_embedding = layers.Embedding(max_len, width, name=f"{self.name}_position_embedding")
        self.blocks = [
            TransformerDecoderLayer(width, heads, ff_dim, dropout, name=f"{self.name}_layer_{i}") for i in range(num_layers)
        ]
        self.final_norm = layers.LayerNormalization(epsilon=1e-5, name=f"{self.name}_final_norm")
        self.drop = layers.Dropout(dropout)

    def embed(self, tokens: Any, positions: Any, training: bool) -> Any:
        """Tokens and positions (same shape) -> ``[..., W]`` decoder inputs."""
        x = self.embedding(tokens)
        if self.in_proj is not None:
            x = self.in_proj(x)
        return self.drop(x + self.position_embedding(positions), training=training)

    def step(
        self, token: Any, position: Any, caches: list[tuple[Any, Any]], cross: list[tuple[Any, Any]],
        training: bool = False,
    ) -> tuple[Any, list[tuple[Any, Any]]]:
        """One token [B] at ``position`` [B] -> (normed hidden [B, W], updated (K, V) caches)."""
        # Clamp for the table lookup only (a caller stepping past L gets the last position's row).
        x = self.embed(token, ops.minimum(position, self.max_len - 1), training)[:, None, :]
        updated = []
        for block, (k_cache, v_cache), (ck, cv) in zip(self.blocks, caches, cross):
            x, k_cache, v_cache = block.step(x, position, k_cache, v_cache, ck, cv, training=training)
            updated.append((k_cache, v_cache))
        return self.final_norm(x[:, 0, :]), updated

    def sequence(self, tokens: Any, cross: list[tuple[Any, Any]], training: bool = False) -> Any:
        """Teacher-forced: tokens [B, T] -> normed hidden [B, T, W]."""
        steps = tokens.shape[1]
        x = self.embed(tokens, ops.arange(steps, dtype="int32")[None, :], training)
        for block, (ck, cv) in zip(self.blocks, cross):
            x = block.sequence(x, ck, cv, training=training)
        return self.final_norm(x)


__all__ = [
    "StoryMemory",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "attend",
    "causal_sequence_mask",
    "causal_step_mask",
    "merge_heads",
    "split_heads",
    "write_cache",
]

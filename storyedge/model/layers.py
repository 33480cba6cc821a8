"""Keras 3 building blocks of the story model, each with one job and each export-shaped.

Everything here converts to TFLite *builtin* ops with static shapes (no Flex, no TensorList):

* :class:`ImageEncoder` - a small ResNet-like CNN: global vector + flattened spatial patches.
* :class:`CaptionEncoder` - token embedding (shared, passed in) + a padding-correct Bi-LSTM.
  The fused TFLite LSTM ignores Keras masks, so padding is handled explicitly: the backward
  direction runs a forward ``keras.layers.LSTM`` over the *real* tokens reversed in place (a
  per-row permutation built from the lengths and applied as a 0/1 batched matmul, which is
  exact and exports as ``BATCH_MATMUL``), then reverses back. Padding never reaches a real
  position of either direction, so the result does not depend on how much padding follows.
* :class:`CrossModalAttention` - multi-head softmax(QKᵀ/√d)V with Q = caption tokens and
  K = V = image patches, own projections in ``keras.ops``, then a masked mean over real tokens
  (taken before the value and output projections, which are linear).
* :class:`FrameFusion` - the ``fusion`` switch (``attention`` / ``concat`` / ``text_only``),
  one fused vector of ``multimodal_dim`` per frame whatever the mode.

Token sequences are right-padded with ``pad_id``; a token is real iff it differs from ``pad_id``.
"""

from __future__ import annotations

import math
from typing import Any

from keras import layers, ops

from storyedge.constants import FUSION_MODES
from storyedge.model.transformer import HeadProjections, attention_weights, split_heads

#: BatchNorm moving-average momentum: Keras' 0.99 lags far behind the weights in a short run
#: (validation-loss spikes); 0.9 tracks them within a few dozen steps.
BN_MOMENTUM = 0.9


def token_lengths(tokens: Any, pad_id: int) -> Any:
    """Number of real (non-pad) tokens per row of right-padded ``tokens`` [..., L] -> int32 [...]."""
    return ops.sum(ops.cast(ops.not_equal(tokens, pad_id), "int32"), axis=-1)


def length_mask(lengths: Any, max_len: int) -> Any:
    """Float mask [N, L]: 1.0 at positions ``t < lengths[n]``, else 0.0."""
    positions = ops.arange(max_len, dtype="int32")[None, :]
    return ops.cast(ops.less(positions, lengths[:, None]), "float32")


def reverse_real_tokens(x: Any, lengths: Any) -> Any:
    """Reverse the first ``lengths[n]`` steps of each row of ``x`` [N, L, D]; padding stays put.

    Equivalent to ``tf.reverse_sequence`` but written as a 0/1 permutation matrix applied with a
    batched matmul: exact in float32 (each output is one input times 1 plus zeros), backend
    neutral, and a TFLite builtin (``BATCH_MATMUL``). The permutation is an involution, so the
    same call reverses back.
    """
    max_len = x.shape[1]
    t = ops.arange(max_len, dtype="int32")[None, :]
    lengths = lengths[:, None]
    source = ops.where(ops.less(t, lengths), lengths - 1 - t, t)  # [N, L]
    perm = ops.cast(ops.equal(source[:, :, None], t[:, None, :]), x.dtype)  # [N, L, L]
    return ops.matmul(perm, x)


def gather_step(x: Any, index: Any) -> Any:
    """``x[n, index[n]]`` for ``x`` [N, L, D] and int ``index`` [N]; zeros where index is -1.

    A one-hot weighted sum (exact, builtin ops only) rather than a gather with batch dims.
    """
    max_len = x.shape[1]
    t = ops.arange(max_len, dtype="int32")[None, :]
    onehot = ops.cast(ops.equal(t, index[:, None]), x.dtype)  # [N, L]
    return ops.sum(x * onehot[:, :, None], axis=1)


def lstm_cell_update(cell: layers.LSTMCell, z: Any, c: Any) -> tuple[Any, Any]:
    """Keras ``LSTMCell``'s gate math on the gate pre-activations ``z = x·W + h·U + b`` [N, 4H]
    and the cell state ``c`` [N, H] -> (h, c) of the step."""
    c, o = cell._compute_carry_and_output_fused(ops.split(z, 4, axis=1), c)
    return o * cell.activation(c), c


class ResidualBlock(layers.Layer):
    """Basic ResNet block: conv3x3(stride)-BN-ReLU-conv3x3-BN + shortcut, then ReLU.

    The shortcut is a strided 1x1 conv + BN when the shape changes, else identity. BatchNorm
    folds into the convolutions at TFLite conversion.
    """

    def __init__(self, filters: int, stride: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.stride = stride
        self.conv1 = layers.Conv2D(
            filters, 3, strides=stride, padding="same", use_bias=False, name="conv1"
        )
        self.bn1 = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn1")
        self.conv2 = layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv2")
        self.bn2 = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn2")
        self.proj: layers.Conv2D | None = None
        self.proj_bn: layers.BatchNormalization | None = None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create the projection shortcut when stride or channel count changes, build sublayers."""
        if self.stride != 1 or input_shape[-1] != self.filters:
            self.proj = layers.Conv2D(
                self.filters, 1, strides=self.stride, use_bias=False, name="proj"
            )
            self.proj_bn = layers.BatchNormalization(momentum=BN_MOMENTUM, name="proj_bn")
            self.proj.build(input_shape)
            self.proj_bn.build(self.proj.compute_output_shape(input_shape))
        self.conv1.build(input_shape)
        mid = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(mid)
        self.conv2.build(mid)
        self.bn2.build(mid)
        self.built = True

    def call(self, x: Any, training: bool = False) -> Any:
        """Apply the block to NHWC ``x``."""
        y = ops.relu(self.bn1(self.conv1(x), training=training))
        y = self.bn2(self.conv2(y), training=training)
        shortcut = x
        if self.proj is not None:
            shortcut = self.proj_bn(self.proj(x), training=training)
        return ops.relu(y + shortcut)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Shape after the (possibly strided) block."""
        return self.conv1.compute_output_shape(input_shape)[:-1] + (self.filters,)

    def get_config(self) -> dict[str, Any]:
        """Serialisable constructor arguments."""
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


def cnn_num_stages(image_size: int, stem_stride: int = 1) -> int:
    """Number of stride-2 stages after the stem so the final grid is 4x4 up to 64 px, 8x8 from 128.

    The stem first divides the size by ``stem_stride``; stages then downsample while the grid is
    larger than ``max(4, image_size // 16)``. Stem stride 1: 32 -> 3 stages (4x4 = 16 patches),
    64 -> 4 (4x4), 128 -> 4 (8x8 = 64 patches); stem stride 2: one stage fewer each.
    """
    target = max(4, image_size // 16)
    stages, size = 0, math.ceil(image_size / stem_stride)
    while size > target:
        size = math.ceil(size / 2)
        stages += 1
    return max(stages, 1)


class ImageEncoder(layers.Layer):
    """Small ResNet-like CNN: frames [N, S, S, 3] -> (global [N, feat_dim], patches [N, P, spatial_dim]).

    A 3x3 stem conv (``base_filters``, stride ``stem_stride``) then
    ``cnn_num_stages(image_size, stem_stride)`` stages, each one strided residual block (filters
    ``base_filters * 2**i``). A strided stem, as in ResNet, skips the full-resolution stage:
    at the quickstart size it cuts a training step's CNN time about 4x (69 -> 18 ms for
    96 frames of 32 px on 2 cores) for the same 4x4 patch grid. The global vector is a Dense of the
    global-average-pooled final map; the patches are a 1x1 conv of the final map, flattened to
    P = grid² cells. With ``with_patches=False`` (the ``concat`` fusion, which has no use for
    them) the 1x1 projection is not created and ``patches`` is ``None``, so that no weight is left
    without a gradient. Each patch gets a learned position embedding (one ``spatial_dim`` vector
    per grid cell, a constant add at inference) so attention can tell *where* a patch is.
    Expects frames in [-1, 1] (``x / 127.5 - 1``, see :mod:`storyedge.data.pipeline`).
    """

    def __init__(
        self,
        image_size: int,
        feat_dim: int,
        spatial_dim: int,
        base_filters: int,
        with_patches: bool = True,
        stem_stride: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.with_patches = with_patches
        self.stem_stride = stem_stride
        self.image_size = image_size
        self.feat_dim = feat_dim
        self.spatial_dim = spatial_dim
        self.base_filters = base_filters
        self.num_stages = cnn_num_stages(image_size, stem_stride)
        self.stem = layers.Conv2D(
            base_filters, 3, strides=stem_stride, padding="same", use_bias=False, name="stem"
        )
        self.stem_bn = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")
        self.blocks = [
            ResidualBlock(base_filters * 2**i, stride=2, name=f"stage{i + 1}")
            for i in range(self.num_stages)
        ]
        self.global_proj = layers.Dense(feat_dim, name="global_proj")
        self.spatial_proj = (
            layers.Conv2D(spatial_dim, 1, name="spatial_proj") if with_patches else None
        )
        size = math.ceil(image_size / stem_stride)
        for _ in range(self.num_stages):
            size = math.ceil(size / 2)
        self.grid = size
        self.patch_position: Any = None

    @property
    def num_patches(self) -> int:
        """P, the number of spatial patches (grid²)."""
        return self.grid * self.grid

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Build every sublayer for NHWC ``input_shape``."""
        self.stem.build(input_shape)
        shape = self.stem.compute_output_shape(input_shape)
        self.stem_bn.build(shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        if self.spatial_proj is not None:
            self.spatial_proj.build(shape)
            self.patch_position = self.add_weight(
                shape=(self.num_patches, self.spatial_dim),
                initializer="random_normal",
                trainable=True,
                name="patch_position",
            )
        self.global_proj.build((shape[0], shape[-1]))
        self.built = True

    def call(self, frames: Any, training: bool = False) -> tuple[Any, Any]:
        """Encode frames [N, S, S, 3] -> (global [N, feat_dim], patches [N, P, spatial_dim] | None)."""
        x = ops.relu(self.stem_bn(self.stem(frames), training=training))
        for block in self.blocks:
            x = block(x, training=training)
        pooled = ops.mean(x, axis=(1, 2))
        global_vec = self.global_proj(pooled)
        if self.spatial_proj is None:
            return global_vec, None
        spatial = self.spatial_proj(x)
        patches = ops.reshape(spatial, (-1, self.num_patches, self.spatial_dim))
        patches = patches + ops.cast(self.patch_position, patches.dtype)[None]
        return global_vec, patches

    def get_config(self) -> dict[str, Any]:
        """Serialisable constructor arguments."""
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "feat_dim": self.feat_dim,
            "spatial_dim": self.spatial_dim,
            "base_filters": self.base_filters,
            "with_patches": self.with_patches,
            "stem_stride": self.stem_stride,
        }


class CaptionEncoder(layers.Layer):
    """Padding-correct Bi-LSTM over right-padded token ids.

    ``call(tokens [N, L]) -> (per_token [N, L, 2*hidden], pooled [N, 2*hidden], mask [N, L])``.
    ``per_token`` is forward ++ backward state at each real token and zero at padding;
    ``pooled`` is the forward state at the last real token ++ the backward state at the first
    token (zeros for an all-pad row). Both are independent of how much padding follows the
    real tokens (see the module docstring for how). The embedding layer is passed in so that the
    caption encoder, the reason encoder and the decoder can share one table.
    """

    def __init__(
        self,
        embedding: layers.Embedding,
        hidden_dim: int,
        pad_id: int,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embedding = embedding
        self.hidden_dim = hidden_dim
        self.pad_id = pad_id
        self.dropout_rate = dropout
        self.dropout = layers.Dropout(dropout, name="dropout")
        self.forward_lstm = layers.LSTM(hidden_dim, return_sequences=True, name="forward_lstm")
        self.backward_lstm = layers.LSTM(hidden_dim, return_sequences=True, name="backward_lstm")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Build the two LSTMs for tokens of ``input_shape`` [N, L]."""
        if not self.embedding.built:
            self.embedding.build(input_shape)
        emb_shape = (input_shape[0], input_shape[1], self.embedding.output_dim)
        self.forward_lstm.build(emb_shape)
        self.backward_lstm.build(emb_shape)
        self.built = True

    def call(self, tokens: Any, training: bool = False, pooled_only: bool = False) -> Any:
        """Encode ``tokens`` [N, L] int -> (per_token, pooled, mask); see the class docstring.

        ``pooled_only``: only ``pooled`` (the same values), from each direction's state after its
        last real token: nothing per token is kept or reversed back.
        """
        max_len = tokens.shape[1]
        lengths = token_lengths(tokens, self.pad_id)
        x = self.dropout(self.embedding(tokens), training=training)
        if pooled_only:
            last_fwd = self.final_state(self.forward_lstm, x, lengths, training)
            last_bwd = self.final_state(self.backward_lstm, reverse_real_tokens(x, lengths), lengths, training)
            return ops.concatenate([last_fwd, last_bwd], axis=-1)
        mask = length_mask(lengths, max_len)
        fwd = self.run_direction(self.forward_lstm, x, lengths, training)
        reversed_x = reverse_real_tokens(x, lengths)
        bwd = reverse_real_tokens(self.run_direction(self.backward_lstm, reversed_x, lengths, training), lengths)
        per_token = ops.concatenate([fwd, bwd], axis=-1) * mask[:, :, None]
        last_fwd = gather_step(fwd, lengths - 1)  # zeros for an all-pad row
        first_bwd = bwd[:, 0, :] * mask[:, :1]
        pooled = ops.concatenate([last_fwd, first_bwd], axis=-1)
        return per_token, pooled, mask

    def run_direction(self, lstm: layers.LSTM, x: Any, lengths: Any, training: bool = False) -> Any:
        """One direction's LSTM over ``x`` [N, L, E] whose first ``lengths[n]`` steps are real
        tokens -> [N, L, hidden]. The outputs at padding are never read (the caller masks them),
        which lets the TFLite export stop the loop after the longest real token
        (:func:`storyedge.export.graphs.hoisted_lstm_inputs`)."""
        return lstm(x, training=training)

    def final_state(self, lstm: layers.LSTM, x: Any, lengths: Any, training: bool = False) -> Any:
        """One direction's hidden state after the real token ``lengths[n] - 1`` of ``x`` [N, L, E]
        -> [N, hidden]; zeros for an all-pad row. The TFLite export keeps only this state in its
        loop instead of every step's output (:func:`storyedge.export.graphs.hoisted_lstm_inputs`)."""
        return gather_step(self.run_direction(lstm, x, lengths, training), lengths - 1)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (the shared embedding is rebuilt by the owning model)."""
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "pad_id": self.pad_id,
            "dropout": self.dropout_rate,
        }


class CrossModalAttention(HeadProjections):
    """Multi-head attention with Q = caption tokens, K = V = image patches, pooled over real tokens.

    ``call(tokens [N, L, Dt], patches [N, P, Di], mask [N, L]) -> [N, dim]``: the mean over real
    caption tokens of ``output(concat_h softmax(Q_h K_hᵀ / √d_head) V_h)``. Written with ``keras.ops``
    only (reshape, transpose, matmul, softmax), which convert to TFLite builtins.

    The value and output projections are linear and a softmax row sums to 1, so the mean over
    tokens is taken first and they run once per frame instead of once per token / patch
    (:meth:`pooled_values`): the same function, 24M of the seed size's 61M attention MACs a frame
    fewer.
    """

    def build(
        self,
        tokens_shape: tuple[int | None, ...],
        patches_shape: tuple[int | None, ...],
        mask_shape: tuple[int | None, ...] | None = None,
    ) -> None:
        """Build the four projections (Keras passes one shape per ``call`` tensor argument)."""
        self.query.build(tokens_shape)
        self.key.build(patches_shape)
        self.value.build(patches_shape)
        self.output_proj.build(tuple(tokens_shape[:-1]) + (self.dim,))
        self.built = True

    def call(self, tokens: Any, patches: Any, mask: Any) -> Any:
        """Fuse caption tokens with image patches -> [N, dim] (mean over real tokens)."""
        q = split_heads(self.query(tokens), self.heads)
        k = split_heads(self.key(patches), self.heads)
        weights = attention_weights(q, k)  # [N, h, L, P]: softmax over patches; every patch is real
        count = ops.sum(mask, axis=1, keepdims=True)  # [N, 1] real tokens
        divisor = ops.maximum(count, 1.0)
        # the mean over real tokens of each head's weights [N, h, P] (zeros for an all-pad row)
        pooled = ops.squeeze(ops.matmul((mask / divisor)[:, None, None, :], weights), axis=2)
        share = count / divisor  # 1, or 0 for an all-pad row (its output stays zero)
        return self.pooled_values(pooled, patches, share)

    def pooled_values(self, pooled: Any, patches: Any, share: Any) -> Any:
        """``output(concat_h pooled_h V_h)`` for pooled weights [N, h, P]: each head's weighted
        patch [N, Di] through its own slice of the value projection, then the output projection;
        ``share`` [N, 1] scales the biases (the weights sum to it).

        Every head's patch goes through the whole value projection and a 0/1 mask keeps each
        head's own slice: a per-head product would need a rank-3 weight, which ONNX Runtime's
        dynamic int8 ``MatMul`` cannot take (h x more MACs, 2M a frame at the seed size)."""
        dtype = patches.dtype
        mixed = ops.matmul(pooled, patches)  # [N, h, Di]
        every = ops.matmul(mixed, ops.cast(self.value.kernel, dtype))  # [N, h, dim]
        own = ops.reshape(every, (-1, self.heads, self.heads, self.head_dim)) * self._own_slice(dtype)
        values = ops.reshape(ops.sum(own, axis=1), (-1, self.dim)) + share * ops.cast(self.value.bias, dtype)
        return ops.matmul(values, ops.cast(self.output_proj.kernel, dtype)) + share * ops.cast(
            self.output_proj.bias, dtype)

    def _own_slice(self, dtype: Any) -> Any:
        """[h, h, 1]: 1 where the row's head is the column's slice of the projection."""
        return ops.cast(ops.eye(self.heads), dtype)[:, :, None]


class FrameFusion(layers.Layer):
    """One fused vector [N, dim] per frame from its caption (and image), by ``mode``.

    * ``attention``: CrossModalAttention(caption tokens, patches) + a residual
      Dense(text pooled ++ image global [++ reason]).
    * ``concat``: Dense(text pooled ++ image global [++ reason]).
    * ``text_only``: Dense(text pooled [++ reason]); the image inputs are ignored.

    All modes end with LayerNorm and dropout, so what follows is identical across modes.
    """

    def __init__(self, mode: str, dim: int, heads: int, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in FUSION_MODES:
            raise ValueError(f"fusion mode must be one of {FUSION_MODES}, got {mode!r}")
        self.mode = mode
        self.dim = dim
        self.heads = heads
        self.dropout_rate = dropout
        self.attention = (
            CrossModalAttention(dim, heads, name="attention") if mode == "attention" else None
        )
        self.mix = layers.Dense(dim, name="mix")
        self.norm = layers.LayerNormalization(name="norm")
        self.dropout = layers.Dropout(dropout, name="dropout")

    def call(
        self,
        text_tokens: Any,
        text_pooled: Any,
        text_mask: Any,
        image_global: Any = None,
        patches: Any = None,
        reason: Any = None,
        training: bool = False,
    ) -> Any:
        """Fuse one frame: text [N, L, Dt], [N, Dt], mask [N, L]; image [N, Di], [N, P, Ds] -> [N, dim].

        ``reason`` [N, Dr] (optional) joins the mixed vector in every mode.
        """
        parts = [text_pooled]
        if self.mode != "text_only":
            parts.append(image_global)
        if reason is not None:
            parts.append(reason)
        fused = self.mix(ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0])
        if self.attention is not None:
            fused = fused + self.attention(text_tokens, patches, text_mask)
        return self.dropout(self.norm(fused), training=training)

    def get_config(self) -> dict[str, Any]:
        """Serialisable constructor arguments."""
        return {
            **super().get_config(),
            "mode": self.mode,
            "dim": self.dim,
            "heads": self.heads,
            "dropout": self.dropout_rate,
        }


__all__ = [
    "CaptionEncoder",
    "CrossModalAttention",
    "FrameFusion",
    "ImageEncoder",
    "ResidualBlock",
    "cnn_num_stages",
    "gather_step",
    "length_mask",
    "reverse_real_tokens",
    "token_lengths",
]

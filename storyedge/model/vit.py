"""A Vision Transformer image encoder (``model.image_encoder: vit``), a drop-in for the CNN.

:class:`VitImageEncoder` has the :class:`~storyedge.model.layers.ImageEncoder` contract:
``call(frames [N, S, S, 3]) -> (global [N, feat_dim], patches [N, P, spatial_dim] | None)``.

* Patch embedding: a ``Conv2D`` of kernel = stride = ``patch_size`` (valid padding) to
  ``spatial_dim``-wide tokens, P = (S / patch_size)² of them, plus a learned position embedding.
* ``num_layers`` pre-norm Transformer blocks: x += MHSA(LN(x)); x += MLP(LN(x)) (tanh-approximate GELU, width
  ``VIT_MLP_RATIO * spatial_dim``), then a final LayerNorm.
* ``patches`` = the final tokens (the cross-modal attention's K/V); ``global`` = a Dense to
  ``feat_dim`` of their mean (no class token).

Self-attention is written with Dense projections and ``keras.ops`` (reshape, transpose, matmul,
softmax) as :class:`~storyedge.model.layers.CrossModalAttention` is, every shape static, so the
encoder converts to TFLite builtins and to plain ONNX ops.
"""

from __future__ import annotations

from typing import Any

from keras import initializers, layers, ops

from storyedge.model.transformer import HeadProjections, attend, merge_heads, split_heads

#: Hidden width of each block's MLP as a multiple of the token width (ViT's 4).
VIT_MLP_RATIO = 4


class VitSelfAttention(HeadProjections):
    """Multi-head self-attention over a static token sequence [N, P, dim] -> [N, P, dim]."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Build the four projections for tokens of ``input_shape`` [N, P, dim]."""
        for dense in (self.query, self.key, self.value, self.output_proj):
            dense.build(input_shape)
        self.built = True

    def call(self, x: Any) -> Any:
        """softmax(QKᵀ/√d_head)V per head, heads concatenated, then the output projection."""
        heads = [split_heads(proj(x), self.heads) for proj in (self.query, self.key, self.value)]
        return self.output_proj(merge_heads(attend(*heads)))


class VitBlock(layers.Layer):
    """One pre-norm Transformer block: x + MHSA(LN(x)), then + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = dim
        self.heads = heads
        self.dropout_rate = dropout
        self.attention_norm = layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.attention = VitSelfAttention(dim, heads, name="attention")
        self.mlp_norm = layers.LayerNormalization(epsilon=1e-6, name="mlp_norm")
        self.mlp_in = layers.Dense(VIT_MLP_RATIO * dim, name="mlp_in")
        self.mlp_out = layers.Dense(dim, name="mlp_out")
        self.dropout = layers.Dropout(dropout, name="dropout")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Build the norms, the attention and the MLP for tokens of ``input_shape``."""
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_in.build(input_shape)
        self.mlp_out.build((*input_shape[:-1], VIT_MLP_RATIO * self.dim))
        self.built = True

    def call(self, x: Any, training: bool = False) -> Any:
        """Tokens [N, P, dim] -> [N, P, dim]."""
        x = x + self.dropout(self.attention(self.attention_norm(x)), training=training)
        # tanh GELU: the exact one is erfc, which tf2onnx cannot convert (no ONNX Erfc op)
        mlp = self.mlp_out(ops.gelu(self.mlp_in(self.mlp_norm(x)), approximate=True))
        return x + self.dropout(mlp, training=training)

    def get_config(self) -> dict[str, Any]:
        """Serialisable constructor arguments."""
        return {
            **super().get_config(),
            "dim": self.dim,
            "heads": self.heads,
            "dropout": self.dropout_rate,
        }


class VitImageEncoder(layers.Layer):
    """ViT: frames [N, S, S, 3] -> (global [N, feat_dim], patches [N, P, spatial_dim] | None).

    With ``with_patches=False`` (the ``concat`` fusion) ``patches`` is ``None``; the tokens are
    still computed, since the global vector is their mean. Expects frames in [-1, 1] as the CNN.
    """

    def __init__(
        self,
        image_size: int,
        feat_dim: int,
        spatial_dim: int,
        patch_size: int,
        num_layers: int,
        heads: int,
        dropout: float = 0.0,
        with_patches: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if image_size % patch_size:
            raise ValueError(f"ViT patch size {patch_size} does not divide image size {image_size}")
        self.image_size = image_size
        self.feat_dim = feat_dim
        self.spatial_dim = spatial_dim
        self.patch_size = patch_size
        self.num_layers = num_layers
        self.heads = heads
        self.dropout_rate = dropout
        self.with_patches = with_patches
        self.grid = image_size // patch_size
        self.patch_embed = layers.Conv2D(
            spatial_dim, patch_size, strides=patch_size, padding="valid", name="patch_embed"
        )
        self.blocks = [
            VitBlock(spatial_dim, heads, dropout, name=f"block{i + 1}") for i in range(num_layers)
        ]
        self.final_norm = layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.global_proj = layers.Dense(feat_dim, name="global_proj")
        self.patch_position: Any = None

    @property
    def num_patches(self) -> int:
        """P, the number of patches (tokens): (image_size / patch_size)²."""
        return self.grid * self.grid

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Build every sublayer for NHWC ``input_shape``."""
        self.patch_embed.build(input_shape)
        tokens = (input_shape[0], self.num_patches, self.spatial_dim)
        self.patch_position = self.add_weight(
            shape=(self.num_patches, self.spatial_dim),
            initializer=initializers.TruncatedNormal(stddev=0.02),  # ViT's init
            trainable=True,
            name="patch_position",
        )
        for block in self.blocks:
            block.build(tokens)
        self.final_norm.build(tokens)
        self.global_proj.build((input_shape[0], self.spatial_dim))
        self.built = True

    def call(self, frames: Any, training: bool = False) -> tuple[Any, Any]:
        """Encode frames [N, S, S, 3] -> (global [N, feat_dim], patches [N, P, spatial_dim] | None)."""
        x = ops.reshape(self.patch_embed(frames), (-1, self.num_patches, self.spatial_dim))
        x = x + ops.cast(self.patch_position, x.dtype)[None]
        for block in self.blocks:
            x = block(x, training=training)
        x = self.final_norm(x)
        global_vec = self.global_proj(ops.mean(x, axis=1))
        return global_vec, (x if self.with_patches else None)

    def get_config(self) -> dict[str, Any]:
        """Serialisable constructor arguments."""
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "feat_dim": self.feat_dim,
            "spatial_dim": self.spatial_dim,
            "patch_size": self.patch_size,
            "num_layers": self.num_layers,
            "heads": self.heads,
            "dropout": self.dropout_rate,
            "with_patches": self.with_patches,
        }


__all__ = ["VIT_MLP_RATIO", "VitBlock", "VitImageEncoder", "VitSelfAttention"]

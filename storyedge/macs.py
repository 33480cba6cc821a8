"""Multiply-accumulates (MACs) of the exported graphs, counted from the model's configuration.

The compute floor of ``storyedge bench`` is ``MACs / measured MAC rate``; this module counts the
MACs (one multiply + one add = 1 MAC = 2 FLOPs) of one ``encoder`` call and of one
``decoder_step`` at a batch, per component, for every variant the model has: the CNN or ViT
image encoder, the padding-exact caption / reason Bi-LSTMs, the fusion (attention, concat,
text-only), the temporal LSTM, and the LSTM or Transformer decoder. Pure Python (no TensorFlow),
so the runtime-only bench path can use it.

What is counted: every matrix product of the graph (Dense, Conv2D as ``out_pixels x k² x Cin x
Cout`` including the zero padding of ``same`` convolutions, LSTM gate products
``steps x 4h x (in + h)`` (for the padding-exact Bi-LSTMs, given the inputs' real tokens
(:class:`RealTokens`), over those only: the work they need), attention scores and weighted sums (the
frame fusion's after its mean over tokens), the 0/1 batched matmuls that
reverse the real tokens for the backward LSTM, and the decoder's attention over its whole static
cache). Not counted: element-wise work (activations, BatchNorm / LayerNorm, softmax, adds), which
is O(activations) and small next to the products; embedding gathers (no arithmetic).

``weights`` beside each count: the matrix parameters that product reads (0 for activation x
activation products), for the bytes side of the floor. ``sequential``: the part of each count that
cannot be batched over time, the LSTMs' recurrent products ``h U`` (each step's waits on the
previous step's ``h``, so they run as one ``[rows, h] x [h, 4h]`` product per step, never as one
large GEMM): the compute floor prices them at a rate measured for that shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: the ViT block's MLP width as a multiple of the token width (storyedge.model.vit.VIT_MLP_RATIO)
VIT_MLP_RATIO = 4


@dataclass
class MacCount:
    """MACs and the matrix weights they read, per component (insertion-ordered)."""

    macs: dict[str, int] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    #: of ``macs``, the recurrent products (parts without any are absent)
    sequential: dict[str, int] = field(default_factory=dict)
    #: the rows of each part's recurrent ``[rows, h] x [h, 4h]`` product (its keys are ``sequential``'s)
    sequential_rows: dict[str, int] = field(default_factory=dict)

    def add(self, part: str, macs: int, weights: int = 0, sequential: int = 0, rows: int = 0) -> None:
        """Add ``macs`` (and the ``weights`` they read; ``sequential`` of them recurrent, products of
        ``rows`` rows) to ``part``."""
        self.macs[part] = self.macs.get(part, 0) + int(macs)
        self.weights[part] = self.weights.get(part, 0) + int(weights)
        if sequential:
            self.sequential[part] = self.sequential.get(part, 0) + int(sequential)
            self.sequential_rows[part] = rows

    @property
    def total(self) -> int:
        """All MACs."""
        return sum(self.macs.values())

    @property
    def total_weights(self) -> int:
        """All matrix weights read."""
        return sum(self.weights.values())

    @property
    def total_sequential(self) -> int:
        """All recurrent MACs."""
        return sum(self.sequential.values())


def _get(cfg: Any, section: str) -> Any:
    return getattr(cfg, section)


def lstm_macs(steps: int, batch: int, inputs: int, hidden: int) -> tuple[int, int]:
    """(MACs, weights) of a unidirectional LSTM over ``steps``: ``x W`` + ``h U`` per step."""
    weights = 4 * hidden * (inputs + hidden)
    return steps * batch * weights, weights


def recurrent_macs(steps: int, batch: int, hidden: int) -> int:
    """The ``h U`` part of :func:`lstm_macs` (sequential: see the module doc)."""
    return steps * batch * 4 * hidden * hidden


def bilstm_macs(rows: int, length: int, embed: int, hidden: int, real: int | None = None,
                per_token: bool = True) -> tuple[int, int]:
    """(MACs, weights) of :class:`~storyedge.model.layers.CaptionEncoder` on ``rows`` x ``length``
    tokens: two LSTMs plus the 0/1 ``[L, L]`` permutation matmuls that reverse the real tokens (of
    the embedded input, width E, and, with ``per_token`` outputs, of the backward output, width h;
    a pooled-only encoder, the reason's, reverses no output). ``real``: the real tokens of all
    rows, when known: each direction's LSTM is counted over those only (an output at padding is
    never read), the reversal matmuls over the static shape."""
    macs, weights = lstm_macs(1, rows * length if real is None else real, embed, hidden)
    reverse = rows * length * length * (embed + (hidden if per_token else 0))
    return 2 * macs + reverse, 2 * weights


@dataclass(frozen=True)
class RealTokens:
    """Real (non-pad) tokens of the inputs an encoder runs on: all caption rows' together, the
    reason's (None: not known, count the padded length)."""

    captions: int | None = None
    reason: int | None = None


def cnn_macs(count: MacCount, frames: int, m: Any, image_size: int, with_patches: bool) -> int:
    """Add the ResNet-like CNN's MACs (``frames`` images) to ``count``; returns the final channels."""
    stride, base = m.cnn_stem_stride, m.cnn_base_filters
    size = math.ceil(image_size / stride)
    w = 9 * 3 * base
    count.add("image_encoder", frames * size * size * w, w)
    channels = base
    for i in range(_cnn_stages(image_size, stride)):
        filters = base * 2**i
        size = math.ceil(size / 2)
        pixels = frames * size * size
        w = 9 * channels * filters + 9 * filters * filters + channels * filters  # conv1, conv2, 1x1 shortcut
        count.add("image_encoder", pixels * w, w)
        channels = filters
    count.add("image_encoder", frames * channels * m.image_feat_dim, channels * m.image_feat_dim)
    if with_patches:
        w = channels * m.image_spatial_dim
        count.add("image_encoder", frames * size * size * w, w)
    return channels


def vit_macs(count: MacCount, frames: int, m: Any, image_size: int) -> None:
    """Add the ViT's MACs (patch embedding, blocks, global projection) to ``count``."""
    p, d = m.vit_patch_size, m.image_spatial_dim
    tokens = (image_size // p) ** 2
    w = p * p * 3 * d
    count.add("image_encoder", frames * tokens * w, w)
    for _ in range(m.vit_layers):
        w = 4 * d * d + 2 * VIT_MLP_RATIO * d * d
        count.add("image_encoder", frames * tokens * w, w)
        count.add("image_encoder", frames * 2 * tokens * tokens * d)  # scores + weighted sum
    count.add("image_encoder", frames * d * m.image_feat_dim, d * m.image_feat_dim)


def context_width(m: Any) -> int:
    """C (see :func:`storyedge.model.story_model.context_dim`)."""
    extra = 2 * m.text_hidden_dim if (m.use_reason and not m.use_reason_in_fusion) else 0
    return m.temporal_hidden_dim + extra


def encoder_macs(cfg: Any, batch: int = 1, real: RealTokens | None = None) -> MacCount:
    """MACs of one ``encoder`` call at ``batch`` (see the module doc), per component; with
    ``real``, the Bi-LSTMs' over the real tokens (:func:`bilstm_macs`)."""
    m, d = _get(cfg, "model"), _get(cfg, "dataset")
    k, length, size = d.seq_len, d.max_caption_len, d.image_size
    frames = batch * k
    real = real or RealTokens()
    count = MacCount()
    text_dim = 2 * m.text_hidden_dim
    captions = frames * length if real.captions is None else real.captions
    count.add("caption_encoder", *bilstm_macs(frames, length, m.text_embed_dim, m.text_hidden_dim, captions),
              sequential=2 * recurrent_macs(1, captions, m.text_hidden_dim), rows=frames)
    if m.use_reason:
        reason = batch * d.max_reason_len if real.reason is None else real.reason
        count.add("reason_encoder", *bilstm_macs(batch, d.max_reason_len, m.text_embed_dim, m.text_hidden_dim, reason,
                                                 per_token=False),
                  sequential=2 * recurrent_macs(1, reason, m.text_hidden_dim), rows=batch)
    with_patches = m.fusion == "attention"
    if m.fusion != "text_only":
        if m.image_encoder == "vit":
            vit_macs(count, frames, m, size)
            patches, patch_dim = (size // m.vit_patch_size) ** 2, m.image_spatial_dim
        else:
            cnn_macs(count, frames, m, size, with_patches)
            grid = _cnn_grid(size, m.cnn_stem_stride)
            patches, patch_dim = grid * grid, m.image_spatial_dim
    mix_in = text_dim + (m.image_feat_dim if m.fusion != "text_only" else 0)
    mix_in += text_dim if (m.use_reason and m.use_reason_in_fusion) else 0
    dim = m.multimodal_dim
    count.add("fusion", frames * mix_in * dim, mix_in * dim)
    if with_patches:  # storyedge.model.layers.CrossModalAttention: values after the mean over tokens
        heads = m.attention_heads
        w = text_dim * dim + 2 * patch_dim * dim + dim * dim
        projections = length * text_dim * dim + patches * patch_dim * dim + heads * patch_dim * dim + dim * dim
        weights = length * patches * dim + heads * length * patches + heads * patches * patch_dim
        count.add("fusion", frames * (projections + weights), w)
    count.add("temporal_lstm", *lstm_macs(k, batch, dim, m.temporal_hidden_dim),
              sequential=recurrent_macs(k, batch, m.temporal_hidden_dim), rows=batch)
    ctx = context_width(m)
    if m.decoder == "transformer":
        width, slots = m.decoder_hidden_dim, k + 1 + (1 if m.use_reason else 0)
        w = dim * width + ctx * width + (text_dim * width if m.use_reason else 0)
        count.add("decoder_init", batch * (k * dim * width + ctx * width + (text_dim * width if m.use_reason else 0)), w)
        w = m.decoder_layers * 2 * width * width
        count.add("decoder_init", batch * slots * w, w)
    else:  # init_h, init_c and the context's share of the decoder cell's gates (context_gates)
        w = 2 * ctx * m.decoder_hidden_dim + ctx * 4 * m.decoder_hidden_dim
        count.add("decoder_init", batch * w, w)
    return count


def _cnn_stages(image_size: int, stem_stride: int) -> int:
    """Stride-2 stages after the stem (as :func:`storyedge.model.layers.cnn_num_stages`)."""
    target = max(4, image_size // 16)
    grid, stages = math.ceil(image_size / stem_stride), 0
    while grid > target:
        grid, stages = math.ceil(grid / 2), stages + 1
    return max(stages, 1)


def _cnn_grid(image_size: int, stem_stride: int) -> int:
    """The CNN's final grid side."""
    grid = math.ceil(image_size / stem_stride)
    for _ in range(_cnn_stages(image_size, stem_stride)):
        grid = math.ceil(grid / 2)
    return grid


def step_macs(cfg: Any, vocab: int, batch: int = 1) -> MacCount:
    """MACs of one ``decoder_step`` at ``batch`` producing ``vocab`` logits (the full vocabulary,
    or a shortlist's size), per component."""
    m, d = _get(cfg, "model"), _get(cfg, "dataset")
    count = MacCount()
    embed, hidden = m.text_embed_dim, m.decoder_hidden_dim
    if m.decoder == "transformer":
        width, ff, cache = hidden, m.decoder_ff_dim, d.max_caption_len
        slots = d.seq_len + 1 + (1 if m.use_reason else 0)
        if embed != width:
            count.add("decoder", batch * embed * width, embed * width)
        for _ in range(m.decoder_layers):
            w = 6 * width * width + 2 * width * ff  # self q k v o, cross q o, feed-forward
            count.add("decoder", batch * w, w)
            count.add("decoder", batch * 2 * (cache + slots) * width)  # self (whole cache) + cross attention
    else:
        w = embed * 4 * hidden + hidden * 4 * hidden  # the context's share comes from the encoder
        count.add("decoder", batch * w, w)
    count.add("logits", batch * hidden * vocab, hidden * vocab)
    return count


__all__ = ["MacCount", "RealTokens", "bilstm_macs", "context_width", "encoder_macs", "lstm_macs", "recurrent_macs", "step_macs"]

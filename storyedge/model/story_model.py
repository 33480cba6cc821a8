"""The story model: k (frame, caption) pairs -> caption k+1, with three weight-sharing entry points.

* :meth:`StoryModel.encode` - frames [B, k, S, S, 3] + captions [B, k, L] (+ reason [B, R]) ->
  ``{h0, c0, context, context_gates}``: per frame an :class:`ImageEncoder` and a
  :class:`CaptionEncoder` fused by :class:`FrameFusion` (k folded into the batch dim with static
  reshapes), a temporal LSTM over the k fused vectors, and the decoder's initial state from the
  context.
* :meth:`StoryModel.decode_step` - one decoder step on the weights of a ``keras.layers.LSTMCell``
  (no RNN layer): the cell's input is x = embed(token) ++ context, and since the context is the
  same at every step of a caption, its share of the gates (``context_gates`` = context·W_c + b)
  comes precomputed from the encoder; the step adds embed(token)·W_e + h·U, runs the cell's gate
  math, and logits = Dense(V)(h_out).
* :meth:`StoryModel.call` - ``encode`` then teacher-forced decoding of ``target[:, :-1]``,
  predicting ``target[:, 1:]``, by a Python loop of the *same* cell over the static L-1
  positions; so the trained graph is exactly the exported step (tested to < 1e-5).

One ``Embedding`` table is shared by the caption encoder, the reason encoder and the decoder
(same vocabulary; at the seed size it is 9.2M parameters that would otherwise be tripled).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from storyedge.config import Config, config_from_dict
from storyedge.model.layers import CaptionEncoder, FrameFusion, ImageEncoder, lstm_cell_update
from storyedge.model.story_heads import story_heads
from storyedge.model.transformer import StoryMemory, TransformerDecoder
from storyedge.model.vit import VitImageEncoder


def reason_dim(cfg: Config) -> int:
    """Size of the reason encoder's pooled vector (Bi-LSTM: 2 * text_hidden_dim)."""
    return 2 * cfg.model.text_hidden_dim


def context_dim(cfg: Config) -> int:
    """C, the size of the per-story context vector fed to every decoder step.

    The temporal LSTM's final output, plus the reason vector when ``use_reason`` is on and the
    reason does not already enter the fusion.
    """
    m = cfg.model
    extra = reason_dim(cfg) if (m.use_reason and not m.use_reason_in_fusion) else 0
    return m.temporal_hidden_dim + extra


#: The encoder output (and decoder-step input) holding the context's share of the LSTM cell's gates.
CONTEXT_GATES = "context_gates"


def gates_dim(cfg: Config) -> int:
    """4H, the LSTM decoder cell's gate width (i, f, g, o): the width of ``context_gates``."""
    return 4 * cfg.model.decoder_hidden_dim


def memory_slots(cfg: Config) -> int:
    """M, the Transformer decoder's memory slots: k frames, the story context [, the reason]."""
    return cfg.dataset.seq_len + 1 + (1 if cfg.model.use_reason else 0)


def cross_names(layer: int) -> tuple[str, str]:
    """Encoder outputs holding layer ``layer``'s precomputed cross-attention keys and values."""
    return f"cross_k_{layer}", f"cross_v_{layer}"


def cache_names(layer: int) -> tuple[str, str]:
    """Decoder-step inputs holding layer ``layer``'s self-attention key and value caches."""
    return f"k_cache_{layer}", f"v_cache_{layer}"


#: The Transformer step's position input (its update is ``position_out``).
POSITION = "position"
#: Suffix of a step output that replaces the state input of the same stem.
OUT_SUFFIX = "_out"


def build_image_encoder(cfg: Config) -> ImageEncoder | VitImageEncoder:
    """The ``model.image_encoder`` of ``cfg``: the ResNet-like CNN or the ViT (same outputs)."""
    m, d = cfg.model, cfg.dataset
    if m.image_encoder == "vit":
        return VitImageEncoder(
            image_size=d.image_size,
            feat_dim=m.image_feat_dim,
            spatial_dim=m.image_spatial_dim,
            patch_size=m.vit_patch_size,
            num_layers=m.vit_layers,
            heads=m.vit_heads,
            dropout=m.dropout,
            with_patches=m.fusion == "attention",
            name="image_encoder",
        )
    return ImageEncoder(
        image_size=d.image_size,
        feat_dim=m.image_feat_dim,
        spatial_dim=m.image_spatial_dim,
        base_filters=m.cnn_base_filters,
        with_patches=m.fusion == "attention",
        stem_stride=m.cnn_stem_stride,
        name="image_encoder",
    )


class StoryModel(keras.Model):
    """Cross-modal attention fusion model for sequential visual story generation.

    Attributes: ``config`` (the :class:`~storyedge.config.Config`), ``vocab_size``, ``pad_id``.
    Sublayers: ``token_embedding``, ``image_encoder`` (absent for ``text_only``),
    ``caption_encoder``, ``reason_encoder`` (with ``use_reason``), ``fusion``, ``temporal_lstm``,
    ``init_h`` / ``init_c``, ``decoder_cell``, ``logits_proj``.
    """

    def __init__(self, config: Config, vocab_size: int, pad_id: int, **kwargs: Any) -> None:
        kwargs.setdefault("name", "story_model")
        super().__init__(**kwargs)
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id {pad_id} outside the vocabulary [0, {vocab_size})")
        self.config = config
        self.vocab_size = int(vocab_size)
        self.pad_id = int(pad_id)
        m, d = config.model, config.dataset
        self.token_embedding = layers.Embedding(vocab_size, m.text_embed_dim, name="token_embedding")
        self.image_encoder: ImageEncoder | VitImageEncoder | None = None
        if m.fusion != "text_only":
            self.image_encoder = build_image_encoder(config)
        self.caption_encoder = CaptionEncoder(
            self.token_embedding, m.text_hidden_dim, self.pad_id, m.dropout, name="caption_encoder"
        )
        self.reason_encoder: CaptionEncoder | None = None
        if m.use_reason:
            self.reason_encoder = CaptionEncoder(
                self.token_embedding, m.text_hidden_dim, self.pad_id, m.dropout, name="reason_encoder"
            )
        self.fusion = FrameFusion(
            m.fusion, m.multimodal_dim, m.attention_heads, m.dropout, name="fusion"
        )
        self.temporal_lstm = layers.LSTM(m.temporal_hidden_dim, name="temporal_lstm")
        if m.decoder == "transformer":
            self._build_transformer_decoder()
        else:
            self.init_h = layers.Dense(m.decoder_hidden_dim, activation="tanh", name="init_h")
            self.init_c = layers.Dense(m.decoder_hidden_dim, name="init_c")
            self.decoder_input_dropout = layers.Dropout(m.dropout, name="decoder_input_dropout")
            # Dropout lives outside the cell: LSTMCell's own dropout masks are cached per RNN run,
            # which is wrong for a cell called step by step.
            self.decoder_cell = layers.LSTMCell(m.decoder_hidden_dim, name="decoder_cell")
        self.decoder_output_dropout = layers.Dropout(m.dropout, name="decoder_output_dropout")
        self.logits_proj = layers.Dense(vocab_size, name="logits_proj")

    def _build_transformer_decoder(self) -> None:
        """``memory`` (:class:`StoryMemory`) and ``transformer_decoder`` sharing the token table."""
        m = self.config.model
        self.memory = StoryMemory(m.decoder_hidden_dim, memory_slots(self.config), m.dropout, name="memory")
        self.transformer_decoder = TransformerDecoder(
            self.token_embedding, m.decoder_hidden_dim, m.decoder_heads, m.decoder_ff_dim,
            m.decoder_layers, self.config.dataset.max_caption_len, m.dropout, name="transformer_decoder",
        )

    # -- static sizes ---------------------------------------------------------------------
    @property
    def seq_len(self) -> int:
        """k, the number of (frame, caption) pairs given."""
        return self.config.dataset.seq_len

    @property
    def context_dim(self) -> int:
        """C, the context vector size."""
        return context_dim(self.config)

    @property
    def hidden_dim(self) -> int:
        """H, the decoder state size."""
        return self.config.model.decoder_hidden_dim

    # -- entry points ---------------------------------------------------------------------
    def encode(
        self,
        frames: Any,
        captions: Any,
        reason: Any = None,
        training: bool = False,
        frame_vectors: bool = False,
        gates: bool = True,
    ) -> dict[str, Any]:
        """Encode k frames and captions (and the reason) -> the decoder's starting inputs.

        LSTM decoder: ``{h0 [B,H], c0 [B,H], context [B,C], context_gates [B,4H]}`` (the context
        feeds teacher-forced training, its gates share each exported step; see
        :meth:`context_gates`; ``gates=False`` leaves them out, for teacher forcing, which reads
        the context). Transformer decoder: per layer
        ``i`` the cross-attention ``cross_k_i`` / ``cross_v_i`` [B, heads, M, W/heads] of the
        story memory, computed once per caption.

        ``frames`` [B, k, S, S, 3] float32 (about [0, 1]); ``captions`` [B, k, L] int32
        right-padded with ``pad_id``; ``reason`` [B, R] int32, required iff ``use_reason``.
        With ``frame_vectors`` the dict also holds each frame's pooled vectors, frames folded
        into the batch (for the contrastive loss): ``frame_image`` [B*k, image_feat_dim] (the
        image encoder's global vector) and ``frame_text`` [B*k, 2*text_hidden_dim].
        """
        frames = ops.convert_to_tensor(frames, "float32")
        captions = ops.convert_to_tensor(captions, "int32")
        k, max_len = captions.shape[1], captions.shape[2]
        reason_vec = self.encode_reason(reason, training=training)
        frame_reason = None
        if reason_vec is not None and self.config.model.use_reason_in_fusion:
            frame_reason = ops.reshape(
                ops.tile(reason_vec[:, None, :], (1, k, 1)), (-1, reason_vec.shape[-1])
            )
        fused, vectors = self._fuse_frames(
            ops.reshape(frames, (-1, *frames.shape[2:])), ops.reshape(captions, (-1, max_len)),
            frame_reason, training,
        )  # [B*k, D]
        out = self.encode_fused(ops.reshape(fused, (-1, k, fused.shape[-1])), reason_vec, training=training,
                                gates=gates)
        if frame_vectors:
            out.update(vectors)
        return out

    # -- story mode: the encoder in three pieces whose composition is :meth:`encode` ---------
    def encode_frame(
        self, frames: Any, captions: Any, reason_vec: Any = None, training: bool = False
    ) -> Any:
        """One fused vector per (frame, caption): frames [N, S, S, 3], captions [N, L] -> [N, D].

        ``reason_vec`` [N, Dr] (:meth:`encode_reason`) is required iff the reason enters the
        fusion (``use_reason_in_fusion``). The same ops :meth:`encode` runs with k folded into
        the batch, so a story can cache each frame's vector instead of re-encoding it k times.
        """
        if self.config.model.use_reason and self.config.model.use_reason_in_fusion and reason_vec is None:
            raise ValueError("this model has the reason in the fusion: encode_frame() needs reason_vec")
        frames = None if frames is None else ops.convert_to_tensor(frames, "float32")
        captions = ops.convert_to_tensor(captions, "int32")
        return self._fuse_frames(frames, captions, reason_vec, training)[0]

    def encode_reason(self, reason: Any, training: bool = False) -> Any:
        """The reason encoder's pooled vector [B, Dr] of reason tokens [B, R] (None without a reason)."""
        if self.reason_encoder is None:
            return None
        if reason is None:
            raise ValueError("this model has use_reason=True: encode() needs reason tokens")
        return self.reason_encoder(ops.convert_to_tensor(reason, "int32"), training=training, pooled_only=True)

    def encode_fused(
        self, fused: Any, reason_vec: Any = None, training: bool = False, gates: bool = True,
        reason_heads: Any = None,
    ) -> dict[str, Any]:
        """The temporal part: k fused vectors [B, k, D] (+ the reason vector) -> :meth:`encode`'s outputs.

        ``reason_heads`` (instead of ``reason_vec``, LSTM decoder with the reason in the context):
        the reason's cached terms of the outputs (:func:`~storyedge.model.story_heads.reason_heads`);
        the outputs are then h0, c0 and the context gates (no context).
        """
        fused = ops.convert_to_tensor(fused, "float32")
        context = story = self.temporal_lstm(fused, training=training)
        if reason_heads is not None:
            h0, c0, context_gates = story_heads(self, story, reason_heads)
            return {"h0": h0, "c0": c0, CONTEXT_GATES: context_gates}
        if reason_vec is not None and not self.config.model.use_reason_in_fusion:
            context = ops.concatenate([story, reason_vec], axis=-1)
        if self.config.model.decoder == "transformer":
            memory = self.memory(fused, context, reason_vec, training=training)
            out = {}
            for i, block in enumerate(self.transformer_decoder.blocks):
                out.update(zip(cross_names(i), block.cross_kv(memory)))
            return out
        out = {"h0": self.init_h(context), "c0": self.init_c(context), "context": context}
        if gates:
            out[CONTEXT_GATES] = self.context_gates(context)
        return out

    def context_gates(self, context: Any) -> Any:
        """The context's share of the decoder cell's gate pre-activations, bias included:
        ``context · W_c + b`` [B, 4H], ``W_c`` being the cell kernel's context rows.

        The cell reads embed(token) ++ context, and the context is the same at every step of a
        caption: computed once here, it leaves each step the embedding's and the state's
        products (at the seed size 3.1M of a step's 20.4M MACs, and a third of its int8 time).
        """
        cell = self.decoder_cell
        gates = ops.matmul(context, ops.cast(self.context_kernel(), context.dtype))
        return gates + ops.cast(cell.bias, context.dtype) if cell.use_bias else gates

    def context_kernel(self) -> Any:
        """``W_c`` [C, 4H]: the decoder cell kernel's context rows (the cell is built if it is not)."""
        cell = self.decoder_cell
        embed = self.config.model.text_embed_dim
        if not cell.built:
            cell.build((None, embed + self.context_dim))
        return cell.kernel[embed:]

    def _fuse_frames(
        self, frames: Any, captions: Any, frame_reason: Any, training: bool
    ) -> tuple[Any, dict[str, Any]]:
        """(fused [N, D], the frames' pooled vectors ``{frame_image [N, F] or None, frame_text [N, T]}``)."""
        text_tokens, text_pooled, mask = self.caption_encoder(captions, training=training)
        image_global = patches = None
        if self.image_encoder is not None:
            image_global, patches = self.image_encoder(frames, training=training)
        fused = self.fusion(
            text_tokens,
            text_pooled,
            mask,
            image_global=image_global,
            patches=patches,
            reason=frame_reason,
            training=training,
        )
        return fused, {"frame_image": image_global, "frame_text": text_pooled}

    def _cell_step(self, x: Any, h: Any, c: Any, training: bool) -> tuple[Any, Any]:
        """One LSTMCell step on the (already embedded ++ context) input ``x`` [B, E+C]."""
        _, (h_out, c_out) = self.decoder_cell(x, [h, c], training=training)
        return h_out, c_out

    def _gates_step(self, token: Any, h: Any, c: Any, context_gates: Any) -> tuple[Any, Any]:
        """One cell step from the precomputed :meth:`context_gates`: the same sums as
        :meth:`_cell_step` on embed(token) ++ context, without the context's product."""
        cell = self.decoder_cell
        kernel = cell.kernel[: self.config.model.text_embed_dim]
        z = ops.matmul(self.token_embedding(token), kernel) + ops.matmul(h, cell.recurrent_kernel) + context_gates
        return lstm_cell_update(cell, z, c)

    def _project(self, h: Any, training: bool) -> Any:
        """Decoder hidden state(s) -> logits over the vocabulary."""
        return self.logits_proj(self.decoder_output_dropout(h, training=training))

    def decode_step(self, token: Any, *state: Any, training: bool = False) -> dict[str, Any]:
        """One decoder step on token [B] int32 and the decoder's state.

        LSTM: ``decode_step(token, h, c, context_gates)`` (h/c [B,H], context_gates [B,4H] from
        :meth:`encode`) -> ``{logits, h_out, c_out}``; inference only (the decoder's input
        dropout covers the context, which the step no longer sees: training runs
        :meth:`teacher_forced_logits`). Transformer: ``decode_step(token, position, caches, cross)``
        with ``position`` [B] int32, ``caches`` a list per layer of (K, V) [B, heads, L, d] and
        ``cross`` a list per layer of the encoder's (K, V) -> ``{logits, position_out,
        k_cache_i_out, v_cache_i_out}``.
        """
        if self.config.model.decoder == "transformer":
            return self._transformer_step(token, *state, training=training)
        if training:
            raise ValueError("the LSTM decode_step is inference-only: train through call()")
        h, c, context_gates = state
        h_out, c_out = self._gates_step(ops.convert_to_tensor(token, "int32"), h, c, context_gates)
        return {"logits": self._project(h_out, training), "h_out": h_out, "c_out": c_out}

    def teacher_forced_logits(
        self, state: dict[str, Any], target: Any, training: bool = False
    ) -> Any:
        """Logits [B, L-1, V] for ``target[:, 1:]`` given ``target[:, :-1]`` and an ``encode`` state.

        The same computation as :meth:`decode_step` repeated (embedding and projection batched
        over time, the cell looped over the static L-1 positions).
        """
        target = ops.convert_to_tensor(target, "int32")
        if self.config.model.decoder == "transformer":
            cross = [tuple(state[n] for n in cross_names(i)) for i in range(self.config.model.decoder_layers)]
            hidden = self.transformer_decoder.sequence(target[:, :-1], cross, training=training)
            return self._project(hidden, training)
        steps = target.shape[1] - 1
        context = state["context"]
        emb = self.token_embedding(target[:, :-1])  # [B, T, E]
        ctx = ops.tile(context[:, None, :], (1, steps, 1))
        x = self.decoder_input_dropout(ops.concatenate([emb, ctx], axis=-1), training=training)
        h, c = state["h0"], state["c0"]
        hidden = []
        for t in range(steps):
            h, c = self._cell_step(x[:, t, :], h, c, training)
            hidden.append(h)
        return self._project(ops.stack(hidden, axis=1), training)

    def _transformer_step(
        self, token: Any, position: Any, caches: list[tuple[Any, Any]], cross: list[tuple[Any, Any]],
        training: bool = False,
    ) -> dict[str, Any]:
        """The Transformer's :meth:`decode_step`."""
        token = ops.convert_to_tensor(token, "int32")
        position = ops.convert_to_tensor(position, "int32")
        hidden, updated = self.transformer_decoder.step(token, position, list(caches), list(cross), training)
        out = {"logits": self._project(hidden, training), POSITION + OUT_SUFFIX: position + 1}
        for i, pair in enumerate(updated):
            out.update({name + OUT_SUFFIX: value for name, value in zip(cache_names(i), pair)})
        return out

    def call(
        self, inputs: dict[str, Any], training: bool = False, frame_vectors: bool = False
    ) -> Any:
        """Teacher-forced logits [B, L-1, V] from ``{frames, captions, reason?, target [B, L]}``.

        With ``frame_vectors``: ``(logits, {"frame_image", "frame_text"})`` (see :meth:`encode`).
        """
        state = self.encode(
            inputs["frames"], inputs["captions"], inputs.get("reason"), training=training,
            frame_vectors=frame_vectors, gates=False,  # teacher forcing reads the context itself
        )
        logits = self.teacher_forced_logits(state, inputs["target"], training=training)
        if frame_vectors:
            return logits, {key: state[key] for key in ("frame_image", "frame_text")}
        return logits

    # -- serialisation --------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as plain data (the Config as a nested dict)."""
        return {
            "config": self.config.to_dict(),
            "vocab_size": self.vocab_size,
            "pad_id": self.pad_id,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "StoryModel":
        """Rebuild (and build the weights of) a model from :meth:`get_config` output."""
        cfg = config_from_dict(config["config"])
        return build_model(cfg, config["vocab_size"], config["pad_id"])


def dummy_inputs(cfg: Config, batch: int = 1, pad_id: int = 0) -> dict[str, np.ndarray]:
    """All-``pad_id`` tokens and zero frames with the config's static shapes (for building)."""
    d = cfg.dataset
    k, size, length = d.seq_len, d.image_size, d.max_caption_len
    inputs = {
        "frames": np.zeros((batch, k, size, size, 3), np.float32),
        "captions": np.full((batch, k, length), pad_id, np.int32),
        "target": np.full((batch, length), pad_id, np.int32),
    }
    if cfg.model.use_reason:
        inputs["reason"] = np.full((batch, d.max_reason_len), pad_id, np.int32)
    return inputs


def build_model(cfg: Config, vocab_size: int, pad_id: int) -> StoryModel:
    """Create a :class:`StoryModel` and build every weight by running it once on zeros.

    Both ``call`` and ``decode_step`` run, so the model is ready for ``load_weights`` or export.
    """
    model = StoryModel(cfg, vocab_size, pad_id)
    inputs = dummy_inputs(cfg, batch=1, pad_id=pad_id)
    model(inputs, training=False)
    return model


def _unique_size(variables: list[Any], seen: set[int]) -> int:
    total = 0
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            total += int(np.prod(v.shape))
    return total


def _lstm_only(model: StoryModel, *names: str) -> list[Any]:
    return [getattr(model, n) for n in names] if model.config.model.decoder == "lstm" else []


def _transformer_only(model: StoryModel) -> list[Any]:
    return [model.memory, model.transformer_decoder] if model.config.model.decoder == "transformer" else []


def count_params(model: StoryModel) -> dict[str, int]:
    """Parameter counts per component (all weights, BatchNorm statistics included).

    Keys: ``embedding`` (the shared token table), ``image_encoder``, ``caption_encoder``,
    ``reason_encoder``, ``fusion``, ``temporal`` (temporal LSTM + the h0/c0 bridge), ``decoder``
    (LSTMCell or Transformer memory + layers, + logits projection), ``total`` (each variable once) and ``trainable``.
    """
    seen: set[int] = set()
    components: dict[str, list[Any]] = {
        "embedding": [model.token_embedding],
        "image_encoder": [model.image_encoder] if model.image_encoder is not None else [],
        "caption_encoder": [model.caption_encoder],
        "reason_encoder": [model.reason_encoder] if model.reason_encoder is not None else [],
        "fusion": [model.fusion],
        "temporal": [model.temporal_lstm, *_lstm_only(model, "init_h", "init_c")],
        "decoder": [*_lstm_only(model, "decoder_cell"), *_transformer_only(model), model.logits_proj],
    }
    counts = {
        name: _unique_size([v for layer in group for v in layer.weights], seen)
        for name, group in components.items()
    }
    counts["total"] = _unique_size(list(model.weights), set())
    counts["trainable"] = _unique_size(list(model.trainable_weights), set())
    return counts


__all__ = [
    "CONTEXT_GATES",
    "OUT_SUFFIX",
    "POSITION",
    "StoryModel",
    "cache_names",
    "cross_names",
    "memory_slots",
    "build_model",
    "context_dim",
    "count_params",
    "dummy_inputs",
    "gates_dim",
    "reason_dim",
]

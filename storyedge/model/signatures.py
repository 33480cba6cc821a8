"""Static-shape, stably named export signatures of the story model's two deployable graphs.

``encoder``: inputs ``frames`` [B,k,S,S,3] float32, ``captions`` [B,k,L] int32 and, only with
``use_reason``, ``reason`` [B,R] int32; outputs ``h0``, ``c0`` [B,H], ``context`` [B,C] float32.

``decoder_step``: inputs ``token`` [B] int32, ``h``, ``c`` [B,H], ``context`` [B,C] float32;
outputs ``logits`` [B,V], ``h_out``, ``c_out`` [B,H] (never an input's name: tf2onnx crashes on
an output named like an input).

Every dimension is static (batch included): a dynamic batch on an LSTM forces TensorList ops,
which only the Flex delegate runs. :func:`make_export_archive` tracks the Keras *model* (a
``tf.Module`` holding Keras 3 layers does not carry their variables into TFLite).
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from storyedge.config import Config
from storyedge.manifest import CarriedInput, DecoderSpec, StateTensor
from storyedge.model.story_model import StoryModel, context_dim

ENCODER_ENDPOINT = "encoder"
DECODER_STEP_ENDPOINT = "decoder_step"
ENCODER_OUTPUTS = ("h0", "c0", "context")
DECODER_STEP_OUTPUTS = ("logits", "h_out", "c_out")


def _config(model_or_cfg: StoryModel | Config) -> Config:
    return model_or_cfg.config if isinstance(model_or_cfg, StoryModel) else model_or_cfg


def encoder_input_names(model_or_cfg: StoryModel | Config) -> list[str]:
    """Encoder input names in positional order: frames, captions[, reason]."""
    names = ["frames", "captions"]
    if _config(model_or_cfg).model.use_reason:
        names.append("reason")
    return names


def encoder_input_specs(model_or_cfg: StoryModel | Config, batch: int = 1) -> list[tf.TensorSpec]:
    """Static ``tf.TensorSpec``s of the encoder inputs (``reason`` only with ``use_reason``)."""
    d = _config(model_or_cfg).dataset
    specs = [
        tf.TensorSpec([batch, d.seq_len, d.image_size, d.image_size, 3], tf.float32, name="frames"),
        tf.TensorSpec([batch, d.seq_len, d.max_caption_len], tf.int32, name="captions"),
    ]
    if _config(model_or_cfg).model.use_reason:
        specs.append(tf.TensorSpec([batch, d.max_reason_len], tf.int32, name="reason"))
    return specs


def decoder_input_specs(model_or_cfg: StoryModel | Config, batch: int = 1) -> list[tf.TensorSpec]:
    """Static ``tf.TensorSpec``s of the decoder-step inputs: token, h, c, context."""
    cfg = _config(model_or_cfg)
    hidden = cfg.model.decoder_hidden_dim
    return [
        tf.TensorSpec([batch], tf.int32, name="token"),
        tf.TensorSpec([batch, hidden], tf.float32, name="h"),
        tf.TensorSpec([batch, hidden], tf.float32, name="c"),
        tf.TensorSpec([batch, context_dim(cfg)], tf.float32, name="context"),
    ]


def decoder_spec(model: StoryModel, batch: int = 1) -> DecoderSpec:
    """How a runtime drives this model's ``decoder_step``: state ``h`` / ``c`` start as the
    encoder's ``h0`` / ``c0`` and are replaced by ``h_out`` / ``c_out``; ``context`` is carried."""
    cfg = model.config
    hidden = [batch, cfg.model.decoder_hidden_dim]
    return DecoderSpec(
        state=[
            StateTensor("h", hidden, "float32", init="encoder", source="h0", update="h_out"),
            StateTensor("c", hidden, "float32", init="encoder", source="c0", update="c_out"),
        ],
        carried=[CarriedInput("context", "context")],
        step_weights=step_weight_counts(cfg.model.text_embed_dim, context_dim(cfg), cfg.model.decoder_hidden_dim,
                                        model.vocab_size),
    )


def step_weight_counts(embed_dim: int, context: int, hidden: int, vocab: int) -> dict[str, int]:
    """Weights one LSTM decoder step reads: the cell kernel ``(E+C)x4H``, the recurrent kernel
    ``Hx4H`` and the logits projection ``HxV`` (quantisable matrices), fp32 biases ``4H + V``,
    and one embedding row ``E`` (the step gathers one token's row of the table)."""
    matrices = (embed_dim + context) * 4 * hidden + hidden * 4 * hidden + hidden * vocab
    return {"matrix_params": matrices, "vector_params": 4 * hidden + vocab, "embedding_row": embed_dim}


def _encoder_callable(model: StoryModel) -> Callable[..., dict[str, tf.Tensor]]:
    if model.config.model.use_reason:

        def encoder(frames: tf.Tensor, captions: tf.Tensor, reason: tf.Tensor) -> dict[str, tf.Tensor]:
            out = model.encode(frames, captions, reason, training=False)
            return {name: tf.identity(out[name], name=name) for name in ENCODER_OUTPUTS}

    else:

        def encoder(frames: tf.Tensor, captions: tf.Tensor) -> dict[str, tf.Tensor]:  # type: ignore[misc]
            out = model.encode(frames, captions, None, training=False)
            return {name: tf.identity(out[name], name=name) for name in ENCODER_OUTPUTS}

    return encoder


def _decoder_step_callable(model: StoryModel) -> Callable[..., dict[str, tf.Tensor]]:
    def decoder_step(
        token: tf.Tensor, h: tf.Tensor, c: tf.Tensor, context: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        out = model.decode_step(token, h, c, context, training=False)
        return {name: tf.identity(out[name], name=name) for name in DECODER_STEP_OUTPUTS}

    return decoder_step


def encoder_fn(model: StoryModel, batch: int = 1) -> tf.types.experimental.GenericFunction:
    """``tf.function`` (static input signature) running ``model.encode`` -> {h0, c0, context}.

    Positional arguments: frames, captions[, reason] (see :func:`encoder_input_specs`).
    """
    return tf.function(_encoder_callable(model), input_signature=encoder_input_specs(model, batch))


def decoder_step_fn(model: StoryModel, batch: int = 1) -> tf.types.experimental.GenericFunction:
    """``tf.function`` (static input signature) running ``model.decode_step`` -> {logits, h_out, c_out}."""
    return tf.function(
        _decoder_step_callable(model), input_signature=decoder_input_specs(model, batch)
    )


def make_export_archive(model: StoryModel, batch: int = 1) -> keras.export.ExportArchive:
    """A ``keras.export.ExportArchive`` tracking ``model`` with endpoints ``encoder`` and ``decoder_step``.

    ``archive.write_out(dir)`` writes a SavedModel whose signatures of the same names convert
    with ``tf.lite.TFLiteConverter.from_saved_model(dir, signature_keys=[name])`` (builtin ops)
    and whose input / output names are the ones documented in this module.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        ENCODER_ENDPOINT, _encoder_callable(model), input_signature=encoder_input_specs(model, batch)
    )
    archive.add_endpoint(
        DECODER_STEP_ENDPOINT,
        _decoder_step_callable(model),
        input_signature=decoder_input_specs(model, batch),
    )
    return archive


__all__ = [
    "DECODER_STEP_ENDPOINT",
    "DECODER_STEP_OUTPUTS",
    "ENCODER_ENDPOINT",
    "ENCODER_OUTPUTS",
    "decoder_input_specs",
    "decoder_spec",
    "decoder_step_fn",
    "encoder_fn",
    "encoder_input_names",
    "encoder_input_specs",
    "make_export_archive",
    "step_weight_counts",
]

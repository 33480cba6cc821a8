"""Static-shape, stably named export signatures of the story model's two deployable graphs.

``encoder``: inputs ``frames`` [B,k,S,S,3] float32, ``captions`` [B,k,L] int32 and, only with
``use_reason``, ``reason`` [B,R] int32. Outputs, LSTM decoder: ``h0``, ``c0`` [B,H],
``context_gates`` [B,4H] float32 (the context's share of the decoder cell's gates, computed once
per caption); Transformer decoder: per layer i ``cross_k_i``, ``cross_v_i``
[B,heads,M,d] float32 (the cross-attention keys / values, computed once per caption).

``decoder_step``, LSTM: inputs ``token`` [B] int32, ``h``, ``c`` [B,H], ``context_gates`` [B,4H]
float32; outputs ``logits`` [B,V], ``h_out``, ``c_out`` [B,H]. Transformer: inputs ``token``,
``position`` [B] int32, per layer ``k_cache_i``, ``v_cache_i`` [B,heads,L,d] and ``cross_k_i``,
``cross_v_i``; outputs ``logits``, ``position_out`` (position + 1) and ``k_cache_i_out``,
``v_cache_i_out``. An output is never named like an input (tf2onnx crashes on that): a state
input ``x`` is replaced by the output ``x_out``.

Every dimension is static (batch included): a dynamic batch on an LSTM forces TensorList ops,
which only the Flex delegate runs. :func:`make_export_archive` tracks the Keras *model* (a
``tf.Module`` holding Keras 3 layers does not carry their variables into TFLite).
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf
from keras import ops

from storyedge.config import Config
from storyedge.constants import DECODER_STEP
from storyedge.manifest import CarriedInput, DecoderSpec, StateTensor, StorySpec
from storyedge.model.story_heads import REASON_HEADS, caches_reason_heads, reason_heads, reason_heads_dim
from storyedge.model.story_model import (
    CONTEXT_GATES,
    OUT_SUFFIX,
    POSITION,
    StoryModel,
    cache_names,
    cross_names,
    gates_dim,
    memory_slots,
    reason_dim,
)

ENCODER_ENDPOINT = "encoder"
DECODER_STEP_ENDPOINT = DECODER_STEP
ENCODER_OUTPUTS = ("h0", "c0", CONTEXT_GATES)
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


def _head_shape(cfg: Config, batch: int, slots: int) -> list[int]:
    m = cfg.model
    return [batch, m.decoder_heads, slots, m.decoder_hidden_dim // m.decoder_heads]


def _transformer_cross_specs(cfg: Config, batch: int) -> list[tf.TensorSpec]:
    shape = _head_shape(cfg, batch, memory_slots(cfg))
    return [tf.TensorSpec(shape, tf.float32, name=n) for i in range(cfg.model.decoder_layers) for n in cross_names(i)]


def _transformer_cache_specs(cfg: Config, batch: int, suffix: str = "") -> list[tf.TensorSpec]:
    shape = _head_shape(cfg, batch, cfg.dataset.max_caption_len)
    return [
        tf.TensorSpec(shape, tf.float32, name=n + suffix)
        for i in range(cfg.model.decoder_layers) for n in cache_names(i)
    ]


def decoder_input_specs(model_or_cfg: StoryModel | Config, batch: int = 1) -> list[tf.TensorSpec]:
    """Static ``tf.TensorSpec``s of the decoder-step inputs (LSTM: token, h, c, context_gates;
    Transformer: token, position, the self-attention caches, the cross K/V)."""
    cfg = _config(model_or_cfg)
    hidden = cfg.model.decoder_hidden_dim
    if cfg.model.decoder == "transformer":
        return [
            tf.TensorSpec([batch], tf.int32, name="token"),
            tf.TensorSpec([batch], tf.int32, name=POSITION),
            *_transformer_cache_specs(cfg, batch),
            *_transformer_cross_specs(cfg, batch),
        ]
    return [
        tf.TensorSpec([batch], tf.int32, name="token"),
        tf.TensorSpec([batch, hidden], tf.float32, name="h"),
        tf.TensorSpec([batch, hidden], tf.float32, name="c"),
        tf.TensorSpec([batch, gates_dim(cfg)], tf.float32, name=CONTEXT_GATES),
    ]


def encoder_output_specs(model: StoryModel, batch: int = 1) -> list[tf.TensorSpec]:
    """The encoder's outputs in documented order (LSTM: h0, c0, context_gates; Transformer: the cross K/V)."""
    cfg = model.config
    if cfg.model.decoder == "transformer":
        return _transformer_cross_specs(cfg, batch)
    hidden = [batch, cfg.model.decoder_hidden_dim]
    return [
        tf.TensorSpec(hidden, tf.float32, name="h0"),
        tf.TensorSpec(hidden, tf.float32, name="c0"),
        tf.TensorSpec([batch, gates_dim(cfg)], tf.float32, name=CONTEXT_GATES),
    ]


def decoder_output_specs(model: StoryModel, batch: int = 1) -> list[tf.TensorSpec]:
    """The step's outputs in documented order: logits, then each state input's ``<name>_out``."""
    cfg = model.config
    logits = tf.TensorSpec([batch, model.vocab_size], tf.float32, name="logits")
    if cfg.model.decoder == "transformer":
        return [logits, tf.TensorSpec([batch], tf.int32, name=POSITION + OUT_SUFFIX),
                *_transformer_cache_specs(cfg, batch, OUT_SUFFIX)]
    hidden = [batch, cfg.model.decoder_hidden_dim]
    return [logits, tf.TensorSpec(hidden, tf.float32, name="h_out"), tf.TensorSpec(hidden, tf.float32, name="c_out")]


def encoder_output_names(model: StoryModel) -> tuple[str, ...]:
    """Names of :func:`encoder_output_specs`."""
    return tuple(s.name for s in encoder_output_specs(model))


def decoder_output_names(model: StoryModel) -> tuple[str, ...]:
    """Names of :func:`decoder_output_specs`."""
    return tuple(s.name for s in decoder_output_specs(model))


def decoder_spec(model: StoryModel, batch: int = 1) -> DecoderSpec:
    """How a runtime drives this model's ``decoder_step``.

    LSTM: state ``h`` / ``c`` start as the encoder's ``h0`` / ``c0`` and are replaced by
    ``h_out`` / ``c_out``; ``context_gates`` is carried. Transformer: ``position`` and every
    ``k_cache_i`` / ``v_cache_i`` start as zeros and are replaced by their ``_out``; the
    encoder's ``cross_k_i`` / ``cross_v_i`` are carried.
    """
    cfg = model.config
    weights = step_weight_counts(cfg, model.vocab_size)
    if cfg.model.decoder == "transformer":
        state = [StateTensor(POSITION, [batch], "int32", init="zeros", update=POSITION + OUT_SUFFIX)]
        state += [
            StateTensor(s.name, [int(d) for d in s.shape], "float32", init="zeros", update=s.name + OUT_SUFFIX)
            for s in _transformer_cache_specs(cfg, batch)
        ]
        carried = [CarriedInput(s.name, s.name) for s in _transformer_cross_specs(cfg, batch)]
        return DecoderSpec(state=state, carried=carried, step_weights=weights)
    hidden = [batch, cfg.model.decoder_hidden_dim]
    return DecoderSpec(
        state=[
            StateTensor("h", hidden, "float32", init="encoder", source="h0", update="h_out"),
            StateTensor("c", hidden, "float32", init="encoder", source="c0", update="c_out"),
        ],
        carried=[CarriedInput(CONTEXT_GATES, CONTEXT_GATES)],
        step_weights=weights,
    )


def step_weight_counts(cfg: Config, vocab: int) -> dict[str, int]:
    """Weights one decoder step reads, for the roofline floor.

    LSTM: the cell kernel's embedding rows ``Ex4H`` (its context rows ``Cx4H`` are read once per
    caption, by the encoder: :meth:`~storyedge.model.story_model.StoryModel.context_gates`), the
    recurrent kernel ``Hx4H`` and the logits projection ``HxV`` (quantisable matrices), the fp32
    logits bias ``V`` (the cell's bias is in the context gates), one embedding row ``E``.
    Transformer (width W, F ff, n layers): per layer self-attention Q, K, V, O ``4·W²``,
    cross-attention Q, O ``2·W²`` (its K / V were precomputed by the encoder), feed-forward
    ``2·W·F``; the logits ``WxV`` and the ``ExW`` input projection when E != W. Vectors: biases,
    LayerNorm scales / offsets, the position row; one embedding row ``E``.
    """
    m = cfg.model
    embed, hidden = m.text_embed_dim, m.decoder_hidden_dim
    if m.decoder == "transformer":
        width, ff, n = hidden, m.decoder_ff_dim, m.decoder_layers
        proj = embed * width if embed != width else 0
        matrices = n * (6 * width * width + 2 * width * ff) + width * vocab + proj
        # per layer: 6 W-biases + F + W (ff) biases, 3 LayerNorms; final LayerNorm, position row, logits bias
        vectors = n * (6 * width + ff + width + 6 * width) + 2 * width + width + vocab
        return {"matrix_params": matrices, "vector_params": vectors, "embedding_row": embed}
    matrices = embed * 4 * hidden + hidden * 4 * hidden + hidden * vocab
    return {"matrix_params": matrices, "vector_params": vocab, "embedding_row": embed}


def _encoder_callable(model: StoryModel) -> Callable[..., dict[str, tf.Tensor]]:
    outputs = encoder_output_names(model)
    if model.config.model.use_reason:

        def encoder(frames: tf.Tensor, captions: tf.Tensor, reason: tf.Tensor) -> dict[str, tf.Tensor]:
            out = model.encode(frames, captions, reason, training=False)
            return {name: tf.identity(out[name], name=name) for name in outputs}

    else:

        def encoder(frames: tf.Tensor, captions: tf.Tensor) -> dict[str, tf.Tensor]:  # type: ignore[misc]
            out = model.encode(frames, captions, None, training=False)
            return {name: tf.identity(out[name], name=name) for name in outputs}

    return encoder


def _decoder_step_callable(model: StoryModel) -> Callable[..., dict[str, tf.Tensor]]:
    if model.config.model.decoder == "transformer":
        return _transformer_step_callable(model)

    def decoder_step(
        token: tf.Tensor, h: tf.Tensor, c: tf.Tensor, context_gates: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        out = model.decode_step(token, h, c, context_gates, training=False)
        return {name: tf.identity(out[name], name=name) for name in DECODER_STEP_OUTPUTS}

    return decoder_step


def _transformer_step_callable(model: StoryModel) -> Callable[..., dict[str, tf.Tensor]]:
    """The step over positional inputs in :func:`decoder_input_specs` order (names from the specs)."""
    names = [s.name for s in decoder_input_specs(model)]
    outputs = decoder_output_names(model)
    layers = range(model.config.model.decoder_layers)

    def decoder_step(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        feeds = dict(zip(names, args))
        caches = [tuple(feeds[n] for n in cache_names(i)) for i in layers]
        cross = [tuple(feeds[n] for n in cross_names(i)) for i in layers]
        out = model.decode_step(feeds["token"], feeds[POSITION], caches, cross, training=False)
        return {name: tf.identity(out[name], name=name) for name in outputs}

    return decoder_step


def encoder_fn(model: StoryModel, batch: int = 1) -> tf.types.experimental.GenericFunction:
    """``tf.function`` (static input signature) running ``model.encode`` -> its documented outputs.

    Positional arguments: frames, captions[, reason] (see :func:`encoder_input_specs`).
    """
    return static_function(_encoder_callable(model), encoder_input_specs(model, batch))


def static_function(python_function: Callable[..., dict[str, tf.Tensor]],
                    specs: list[tf.TensorSpec]) -> tf.types.experimental.GenericFunction:
    """``tf.function`` of ``python_function`` with the static input signature ``specs``.

    Each traces once. TensorFlow's warning about frequent retracing counts the traces of every
    function made from the same code (every model's, every batch's encoder or story graph alike),
    so an export, whose reference and calibration reference each trace their own, set it off
    though nothing traces twice: it is turned off for these functions.
    """
    fn = tf.function(python_function, input_signature=specs)
    fn._omit_frequent_tracing_warning = True  # noqa: SLF001 - the switch tf.function reads, no public one
    return fn


def decoder_step_fn(model: StoryModel, batch: int = 1) -> tf.types.experimental.GenericFunction:
    """``tf.function`` (static input signature) running ``model.decode_step`` -> its documented outputs."""
    return static_function(_decoder_step_callable(model), decoder_input_specs(model, batch))


# ------------------------------------------------------------------------- story mode graphs
FRAME_ENDPOINT = "frame_encoder"
REASON_ENDPOINT = "reason_encoder"
STORY_ENDPOINT = "story_encoder"
FRAME_STORY_ENDPOINT = "frame_story_encoder"
EARLIER_FUSED = "earlier_fused_frames"
FUSED_FRAME = "fused_frame"
FUSED_FRAMES = "fused_frames"
REASON_VECTOR = "reason_vector"


def story_spec(model_or_cfg: StoryModel | Config) -> StorySpec:
    """How this model's encoder splits into story-mode graphs (the manifest's ``story``).

    ``frame_encoder``: ``frame`` [B,S,S,3] (absent for ``text_only``) + ``caption`` [B,L]
    (+ ``reason_vector`` with the reason in the fusion) -> ``fused_frame`` [B,D].
    ``reason_encoder`` (with ``use_reason``): ``reason`` [B,R] -> ``reason_vector`` [B,Dr]
    (+ ``reason_heads`` [B,6H], the reason's terms of the LSTM decoder's start, when the reason
    joins its context: :mod:`storyedge.model.story_heads`).
    ``story_encoder``: ``fused_frames`` [B,k,D] (+ ``reason_heads``, or ``reason_vector`` when
    the reason joins a Transformer's memory) -> the encoder's outputs.
    ``frame_story_encoder`` (k >= 2): both in one call for a window's newest frame: the frame
    graph's inputs + ``earlier_fused_frames`` [B,k-1,D] + the story graph's reason input ->
    ``fused_frame`` and the encoder's outputs.
    """
    cfg = _config(model_or_cfg)
    m = cfg.model
    frame_inputs = {"caption": "captions"}
    if m.fusion != "text_only":
        frame_inputs = {"frame": "frames", **frame_inputs}
    reason = m.use_reason
    in_fusion = reason and m.use_reason_in_fusion
    # the Transformer's memory has a reason slot even when the reason is in the fusion
    story_reason = REASON_VECTOR if reason and (not in_fusion or m.decoder == "transformer") else None
    if caches_reason_heads(cfg):
        story_reason = REASON_HEADS
    window = cfg.dataset.seq_len
    return StorySpec(
        window=window,
        frame_graph=FRAME_ENDPOINT,
        story_graph=STORY_ENDPOINT,
        frame_inputs=frame_inputs,
        fused=FUSED_FRAME,
        story_fused=FUSED_FRAMES,
        reason_graph=REASON_ENDPOINT if reason else None,
        reason_inputs={"reason": "reason"} if reason else {},
        reason_output=REASON_VECTOR if reason else None,
        frame_reason=REASON_VECTOR if in_fusion else None,
        story_reason=story_reason,
        frame_story_graph=FRAME_STORY_ENDPOINT if window > 1 else None,
        earlier_fused=EARLIER_FUSED if window > 1 else None,
    )


def story_input_specs(model_or_cfg: StoryModel | Config, graph: str, batch: int = 1) -> list[tf.TensorSpec]:
    """Static ``tf.TensorSpec``s of a story-mode graph's inputs, in positional order."""
    cfg = _config(model_or_cfg)
    d, spec = cfg.dataset, story_spec(cfg)
    reason = [tf.TensorSpec([batch, reason_dim(cfg)], tf.float32, name=REASON_VECTOR)]
    if graph == FRAME_ENDPOINT:
        specs = [tf.TensorSpec([batch, d.max_caption_len], tf.int32, name="caption")]
        if "frame" in spec.frame_inputs:
            specs.insert(0, tf.TensorSpec([batch, d.image_size, d.image_size, 3], tf.float32, name="frame"))
        return specs + (reason if spec.frame_reason else [])
    if graph == REASON_ENDPOINT:
        return [tf.TensorSpec([batch, d.max_reason_len], tf.int32, name="reason")]
    if graph == STORY_ENDPOINT:
        fused = tf.TensorSpec([batch, d.seq_len, cfg.model.multimodal_dim], tf.float32, name=FUSED_FRAMES)
        if spec.story_reason == REASON_HEADS:
            return [fused, _reason_heads_spec(cfg, batch)]
        return [fused] + (reason if spec.story_reason else [])
    if graph == FRAME_STORY_ENDPOINT:
        frame = story_input_specs(cfg, FRAME_ENDPOINT, batch)
        earlier = tf.TensorSpec([batch, d.seq_len - 1, cfg.model.multimodal_dim], tf.float32, name=EARLIER_FUSED)
        story_reason = story_input_specs(cfg, STORY_ENDPOINT, batch)[1:]
        return frame + [earlier] + [s for s in story_reason if s.name not in {f.name for f in frame}]
    raise ValueError(f"unknown story graph {graph!r}")


def _reason_heads_spec(cfg: Config, batch: int) -> tf.TensorSpec:
    return tf.TensorSpec([batch, reason_heads_dim(cfg)], tf.float32, name=REASON_HEADS)


def story_output_specs(model: StoryModel, graph: str, batch: int = 1) -> list[tf.TensorSpec]:
    """A story-mode graph's outputs (the story graph's are the encoder's)."""
    if graph == FRAME_ENDPOINT:
        return [tf.TensorSpec([batch, model.config.model.multimodal_dim], tf.float32, name=FUSED_FRAME)]
    if graph == REASON_ENDPOINT:
        vector = tf.TensorSpec([batch, reason_dim(model.config)], tf.float32, name=REASON_VECTOR)
        return [vector] + ([_reason_heads_spec(model.config, batch)] if caches_reason_heads(model.config) else [])
    if graph == STORY_ENDPOINT:
        return encoder_output_specs(model, batch)
    if graph == FRAME_STORY_ENDPOINT:
        return story_output_specs(model, FRAME_ENDPOINT, batch) + encoder_output_specs(model, batch)
    raise ValueError(f"unknown story graph {graph!r}")


def _story_callable(model: StoryModel, graph: str) -> Callable[..., dict[str, tf.Tensor]]:
    """The graph over positional inputs in :func:`story_input_specs` order."""
    names = [s.name for s in story_input_specs(model, graph)]
    outputs = [s.name for s in story_output_specs(model, graph)]
    spec = story_spec(model)

    def run(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        feeds = dict(zip(names, args))
        if graph in (FRAME_ENDPOINT, FRAME_STORY_ENDPOINT):
            frame_reason = feeds[spec.frame_reason] if spec.frame_reason else None
            out = {FUSED_FRAME: model.encode_frame(feeds.get("frame"), feeds["caption"], frame_reason)}
            if graph == FRAME_STORY_ENDPOINT:
                window = ops.concatenate([feeds[EARLIER_FUSED], out[FUSED_FRAME][:, None]], axis=1)
                out.update(model.encode_fused(window, feeds.get(REASON_VECTOR), reason_heads=feeds.get(REASON_HEADS)))
        elif graph == REASON_ENDPOINT:
            out = {REASON_VECTOR: model.encode_reason(feeds["reason"])}
            if REASON_HEADS in outputs:
                out[REASON_HEADS] = reason_heads(model, out[REASON_VECTOR])
        else:
            out = model.encode_fused(feeds[FUSED_FRAMES], feeds.get(REASON_VECTOR), reason_heads=feeds.get(REASON_HEADS))
        return {name: tf.identity(out[name], name=name) for name in outputs}

    return run


def story_graph_layers(model: StoryModel, graph: str) -> list[keras.layers.Layer]:
    """The model's layers a story-mode graph runs (to count the LSTMs its ONNX file must fuse)."""
    if graph == FRAME_ENDPOINT:
        layers = [model.caption_encoder, model.image_encoder, model.fusion]
    elif graph == REASON_ENDPOINT:
        layers = [model.reason_encoder]
    elif graph == STORY_ENDPOINT:
        layers = [model.temporal_lstm, getattr(model, "memory", None)]
    elif graph == FRAME_STORY_ENDPOINT:
        return story_graph_layers(model, FRAME_ENDPOINT) + story_graph_layers(model, STORY_ENDPOINT)
    else:
        raise ValueError(f"unknown story graph {graph!r}")
    return [layer for layer in layers if layer is not None]


def story_fn(model: StoryModel, graph: str, batch: int = 1) -> tf.types.experimental.GenericFunction:
    """``tf.function`` (static input signature) of one story-mode graph."""
    return static_function(_story_callable(model, graph), story_input_specs(model, graph, batch))


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
    for graph in story_spec(model).all_graphs:
        archive.add_endpoint(graph, _story_callable(model, graph), input_signature=story_input_specs(model, graph, batch))
    return archive


__all__ = [
    "DECODER_STEP_ENDPOINT",
    "DECODER_STEP_OUTPUTS",
    "ENCODER_ENDPOINT",
    "ENCODER_OUTPUTS",
    "decoder_input_specs",
    "decoder_output_names",
    "decoder_output_specs",
    "decoder_spec",
    "decoder_step_fn",
    "encoder_fn",
    "encoder_input_names",
    "encoder_input_specs",
    "encoder_output_names",
    "encoder_output_specs",
    "make_export_archive",
    "step_weight_counts",
    "story_fn",
    "story_graph_layers",
    "story_input_specs",
    "story_output_specs",
    "story_spec",
]

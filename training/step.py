"""The optimiser and the train / eval steps (eager, ``tf.function`` or XLA ``jit_compile``).

One train step: teacher-forced logits under a ``tf.GradientTape``, padding-masked mean NLL,
gradients clipped to a global norm of ``clip_norm``, an Adam update, and the step counter
incremented *inside* the compiled function, so the weights, the optimizer state and the counter
always change together (an interrupt between steps never sees them out of sync).

With the ``mixed_float16`` policy the optimizer is a Keras ``LossScaleOptimizer``: the loss is
scaled before differentiation and the scaled gradients are clipped to ``clip_norm * scale``,
which is the same as clipping the unscaled gradients to ``clip_norm``; the optimizer unscales
them and skips the update (lowering the scale) when they are not finite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from storyedge.training.contrastive import ContrastiveLoss
from storyedge.training.loss import masked_nll_sum

STEP_MODES = ("eager", "function", "jit")


def make_optimizer(lr: float, precision: str = "float32") -> keras.optimizers.Optimizer:
    """Adam with ``lr``; wrapped in a ``LossScaleOptimizer`` for ``mixed_float16``."""
    optimizer = keras.optimizers.Adam(learning_rate=lr)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_optimizer(
    optimizer: keras.optimizers.Optimizer, model: keras.Model, contrastive: ContrastiveLoss | None = None
) -> None:
    """Create the optimizer's slot variables now (before tracing, and before a restore)."""
    if not optimizer.built:
        optimizer.build(trained_variables(model, contrastive))


def trained_variables(model: keras.Model, contrastive: ContrastiveLoss | None = None) -> list[Any]:
    """What the optimizer updates: the model's trainable variables (+ the contrastive heads')."""
    extra = contrastive.trainable_variables if contrastive is not None else []
    return list(model.trainable_variables) + extra


def _is_loss_scaled(optimizer: keras.optimizers.Optimizer) -> bool:
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def _compile(fn: Callable, mode: str) -> Callable:
    if mode not in STEP_MODES:
        raise ValueError(f"step mode must be one of {STEP_MODES}, got {mode!r}")
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=(mode == "jit"), reduce_retracing=True)


def make_train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    pad_id: int,
    clip_norm: float,
    step_counter: tf.Variable | None = None,
    mode: str = "function",
    contrastive: ContrastiveLoss | None = None,
) -> Callable[[dict[str, Any]], dict[str, tf.Tensor]]:
    """A train step ``batch -> {loss_sum, count, grad_norm}`` (grad_norm before clipping).

    ``batch``: ``{frames, captions, target[, reason]}``; labels are ``target[:, 1:]``. With
    ``contrastive``, the objective is the caption loss + ``contrastive.weight`` x the InfoNCE of
    the batch's frames, reported (unweighted) as ``contrastive_loss``.
    """
    build_optimizer(optimizer, model, contrastive)
    scaled = _is_loss_scaled(optimizer)
    clip_norm = float(clip_norm)

    def train_step(batch: dict[str, Any]) -> dict[str, tf.Tensor]:
        labels = batch["target"][:, 1:]
        variables = model.trainable_variables if contrastive is None else trained_variables(model, contrastive)
        extra: dict[str, tf.Tensor] = {}
        with tf.GradientTape() as tape:
            if contrastive is None:
                logits = model(batch, training=True)
            else:
                logits, vectors = model(batch, training=True, frame_vectors=True)
                extra["contrastive_loss"] = contrastive(vectors, training=True)
            total, count = masked_nll_sum(logits, labels, pad_id)
            loss = total / tf.maximum(count, 1.0)
            if contrastive is not None:
                loss = loss + contrastive.weight * extra["contrastive_loss"]
            objective = optimizer.scale_loss(loss) if scaled else loss
        # Dense gradients: the embedding's IndexedSlices may repeat a row, and the norm of
        # their values is then not the norm of the gradient that is applied.
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                 for g in tape.gradient(objective, variables)]
        scale = tf.cast(optimizer.dynamic_scale, tf.float32) if scaled else tf.constant(1.0)
        grads, norm = tf.clip_by_global_norm(grads, clip_norm * scale)
        optimizer.apply(grads, variables)
        if step_counter is not None:
            step_counter.assign_add(1)
        return {"loss_sum": total, "count": count, "grad_norm": norm / scale, **extra}

    return _compile(train_step, mode)


def make_eval_step(
    model: keras.Model, pad_id: int, mode: str = "function", contrastive: ContrastiveLoss | None = None
) -> Callable[[dict[str, Any]], dict[str, tf.Tensor]]:
    """An eval step ``batch -> {loss_sum, count}`` (inference mode: no dropout).

    With ``contrastive`` also ``image_emb`` / ``text_emb`` [B*k, dim]: the normalised
    projections of every frame of the batch (the caller drops padding rows, computes the
    validation InfoNCE and the retrieval recall over all of them).
    """

    def eval_step(batch: dict[str, Any]) -> dict[str, tf.Tensor]:
        if contrastive is None:
            logits = model(batch, training=False)
            extra = {}
        else:
            logits, vectors = model(batch, training=False, frame_vectors=True)
            image, text = contrastive.embed(vectors, training=False)
            extra = {"image_emb": image, "text_emb": text}
        total, count = masked_nll_sum(logits, batch["target"][:, 1:], pad_id)
        return {"loss_sum": total, "count": count, **extra}

    return _compile(eval_step, mode)

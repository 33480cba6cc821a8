"""The train / eval steps and the batches of a run under a ``tf.distribute`` strategy.

What a distributed step computes is what the single-device step computes on the whole global
batch (``dataset.batch_size``):

* each replica gets its consecutive slice of the same global batch, in the same epoch order
  (:mod:`storyedge.training.batches`), through ``distribute_datasets_from_function``: every
  worker's input pipeline produces only its own replicas' slices (per-worker sharding);
* the loss is each replica's NLL sum divided by the **global** count of non-pad target tokens
  (all-reduced), so the summed gradients are the gradient of the global masked mean, not a mean
  of per-replica means (which over-weights the tokens of a replica holding short captions);
* the gradients are all-reduced once, clipped to ``clip_norm`` by their global norm *after*
  aggregation, then applied (Keras' own all-reduce inside ``optimizer.apply`` is skipped for
  these already-summed gradients, so they are not summed twice nor sent twice);
* BatchNormalization computes its batch statistics over the global batch
  (``synchronized=True`` set on the layers for training; inference uses the moving statistics,
  so the exported graphs are the same);
* validation sums NLL and token counts over every replica.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from storyedge.training.loss import masked_nll_sum

SUM = tf.distribute.ReduceOp.SUM

Batch = dict[str, np.ndarray]


def synchronize_batch_norm(model: keras.Model) -> int:
    """Make every BatchNormalization layer of ``model`` use cross-replica batch statistics
    in training; returns how many layers were changed."""
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


def _already_reduced(grads_and_vars: list[Any]) -> list[Any]:
    return grads_and_vars


def skip_optimizer_all_reduce(optimizer: keras.optimizers.Optimizer) -> None:
    """The step all-reduces (and clips) the gradients itself: stop Keras' TensorFlow optimizer
    from summing them across replicas a second time.

    Keras 3's ``TFOptimizer`` sums gradients over the replicas inside ``apply`` (before its
    update), which leaves no place to clip the *aggregated* gradients. A Keras that no longer
    has that hook fails here instead of silently doubling the gradients.
    """
    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        if opt is None:
            continue
        if not hasattr(opt, "_all_reduce_sum_gradients"):
            raise RuntimeError(
                f"{type(opt).__name__} has no _all_reduce_sum_gradients: this Keras version "
                "aggregates gradients differently; distributed training cannot clip them once"
            )
        opt._all_reduce_sum_gradients = _already_reduced


def make_distributed_train_step(
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    pad_id: int,
    clip_norm: float,
    step_counter: tf.Variable,
) -> Callable[[Any], dict[str, tf.Tensor]]:
    """A step ``distributed batch -> {loss_sum, count, grad_norm}`` summed over all replicas."""
    skip_optimizer_all_reduce(optimizer)
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    clip_norm = float(clip_norm)

    def replica_step(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        ctx = tf.distribute.get_replica_context()
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            logits = model(batch, training=True)
            total, count = masked_nll_sum(logits, batch["target"][:, 1:], pad_id)
            loss = total / tf.maximum(ctx.all_reduce(SUM, count), 1.0)
            objective = optimizer.scale_loss(loss) if scaled else loss
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                 for g in tape.gradient(objective, variables)]
        grads = ctx.all_reduce(SUM, grads)
        scale = tf.cast(optimizer.dynamic_scale, tf.float32) if scaled else tf.constant(1.0)
        grads, norm = tf.clip_by_global_norm(grads, clip_norm * scale)
        optimizer.apply(grads, variables)
        step_counter.assign_add(1)
        return {"loss_sum": total, "count": count, "grad_norm": norm / scale}

    @tf.function(reduce_retracing=True)
    def train_step(batch: Any) -> dict[str, tf.Tensor]:
        out = strategy.run(replica_step, args=(batch,))
        return {
            "loss_sum": strategy.reduce(SUM, out["loss_sum"], axis=None),
            "count": strategy.reduce(SUM, out["count"], axis=None),
            # the same on every replica (computed from the all-reduced gradients)
            "grad_norm": strategy.reduce(tf.distribute.ReduceOp.MEAN, out["grad_norm"], axis=None),
        }

    return train_step


def make_distributed_eval_step(
    strategy: tf.distribute.Strategy, model: keras.Model, pad_id: int
) -> Callable[[Any], dict[str, tf.Tensor]]:
    """An eval step ``distributed batch -> {loss_sum, count}`` summed over all replicas."""

    def replica_step(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        logits = model(batch, training=False)
        total, count = masked_nll_sum(logits, batch["target"][:, 1:], pad_id)
        return {"loss_sum": total, "count": count}

    @tf.function(reduce_retracing=True)
    def eval_step(batch: Any) -> dict[str, tf.Tensor]:
        out = strategy.run(replica_step, args=(batch,))
        return {key: strategy.reduce(SUM, value, axis=None) for key, value in out.items()}

    return eval_step


def distribute_batches(
    strategy: tf.distribute.Strategy,
    batches: Callable[[], Iterator[Batch]],
    global_batch: int,
    example: Batch,
) -> Iterator[Any]:
    """The global batches of ``batches()`` split over the replicas, one worker's share per
    input pipeline.

    ``example``: one batch (any size) giving the keys, dtypes and per-row shapes.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(f"global batch {global_batch} is not divisible by {replicas} replicas")

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        first = ctx.input_pipeline_id * local * per_replica

        def generate() -> Iterator[Batch]:
            for batch in batches():
                for r in range(local):
                    lo = first + r * per_replica
                    yield {key: value[lo:lo + per_replica] for key, value in batch.items()}

        signature = {key: tf.TensorSpec((per_replica, *value.shape[1:]), tf.as_dtype(value.dtype))
                     for key, value in example.items()}
        return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)

    return iter(strategy.distribute_datasets_from_function(dataset_fn))

"""Training checkpoints: model + optimizer + loop position, via ``tf.train.CheckpointManager``.

Besides the model weights and the optimizer state (Adam iterations and moments), a checkpoint
records where the loop is, so ``--resume`` continues exactly there:

* ``step``: global optimizer steps taken (incremented inside the train step itself);
* ``epoch``: the 0-based epoch in progress and ``step_in_epoch``: batches of it already done
  (the epoch order is a deterministic function of the seed and epoch, so resuming skips exactly
  those batches);
* ``best_val_loss`` / ``best_epoch`` / ``bad_epochs``: early-stopping and best-model state;
* ``elapsed_seconds``: training wall time so far (the time budget spans resumed runs).

Checkpoints are numbered by the global step (``ckpt-<step>``).

Under a multi-worker strategy every worker saves (TensorFlow's multi-worker rule: all take part),
but only the chief into the run directory: the others write into a ``write_directory`` of
their own that is removed after each save, and they restore from the chief's checkpoints (the
run directory is shared storage, as for Keras' ``BackupAndRestore``).

The model's variables are checkpointed as a dict keyed by their Keras path (``model.weights``),
not through ``model=model``: TensorFlow's object graph does not see Keras 3 layers held in a
plain Python list (the image encoder's residual blocks), so ``tf.train.Checkpoint(model=...)``
silently dropped their BatchNorm statistics (the trainable ones only survived through the
optimizer's references). ``model.weights`` is what Keras itself saves.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf


@dataclass
class LoopState:
    """Plain-Python view of the loop position stored in a checkpoint."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    elapsed_seconds: float = 0.0


class TrainingCheckpoint:
    """A ``tf.train.Checkpoint`` of model, optimizer and :class:`LoopState` variables."""

    def __init__(
        self, directory: str | Path, model: keras.Model, optimizer: keras.optimizers.Optimizer,
        keep: int = 3,
        extra: keras.layers.Layer | None = None,
        write_directory: str | Path | None = None,
    ) -> None:
        self.directory = Path(directory)
        #: where saves go when not ``directory`` (a non-chief worker's temporary directory)
        self.write_directory = Path(write_directory) if write_directory is not None else None
        # incremented inside the (replicated) train step: the first replica's increment counts
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.best_val_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.elapsed_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        # training-only weights (the contrastive heads): checkpointed, never in best/ or exports
        extra_weights = {} if extra is None else {"extra_weights": model_weights(extra)}
        self.checkpoint = tf.train.Checkpoint(
            **extra_weights,
            model_weights=model_weights(model),
            optimizer=optimizer,
            step=self.step,
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            best_val_loss=self.best_val_loss,
            best_epoch=self.best_epoch,
            bad_epochs=self.bad_epochs,
            elapsed_seconds=self.elapsed_seconds,
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.write_directory or self.directory), max_to_keep=keep,
            checkpoint_name="ckpt",
        )

    @property
    def latest(self) -> str | None:
        """Path prefix of the newest checkpoint (of ``directory``), or None."""
        if self.write_directory is not None:
            return tf.train.latest_checkpoint(str(self.directory))
        return self.manager.latest_checkpoint

    def state(self) -> LoopState:
        """The loop position held in the checkpoint variables, as plain Python."""
        return LoopState(
            step=int(self.step.numpy()),
            epoch=int(self.epoch.numpy()),
            step_in_epoch=int(self.step_in_epoch.numpy()),
            best_val_loss=float(self.best_val_loss.numpy()),
            best_epoch=int(self.best_epoch.numpy()),
            bad_epochs=int(self.bad_epochs.numpy()),
            elapsed_seconds=float(self.elapsed_seconds.numpy()),
        )

    def save(self, epoch: int, step_in_epoch: int, elapsed_seconds: float) -> str:
        """Record the loop position and write ``ckpt-<step>``; returns its path prefix."""
        self.epoch.assign(epoch)
        self.step_in_epoch.assign(step_in_epoch)
        self.elapsed_seconds.assign(elapsed_seconds)
        path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        if self.write_directory is not None:
            shutil.rmtree(self.write_directory, ignore_errors=True)
            return self.latest or path
        return path

    def set_best(self, val_loss: float, epoch: int, bad_epochs: int) -> None:
        """Record a new best epoch (early-stopping state)."""
        self.best_val_loss.assign(val_loss)
        self.best_epoch.assign(epoch)
        self.bad_epochs.assign(bad_epochs)

    def restore(self, path: str | None = None) -> LoopState:
        """Restore ``path`` (default: the latest) into the model, optimizer and counters.

        The optimizer must be built first (its slots exist), so every saved value is matched.
        """
        path = path or self.latest
        if path is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        status = self.checkpoint.restore(path)
        status.assert_existing_objects_matched()
        return self.state()


def model_weights(model: keras.Model) -> dict[str, tf.Variable]:
    """Every variable of ``model`` (trainable or not) keyed by its unique Keras path."""
    weights = {w.path: w for w in model.weights}
    if len(weights) != len(model.weights):
        raise ValueError(f"{model.name}: variable paths are not unique; cannot checkpoint by path")
    return weights


def read_checkpoint_step(path: str) -> int:
    """The global ``step`` stored in checkpoint ``path`` (without building a model)."""
    reader = tf.train.load_checkpoint(path)
    return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))

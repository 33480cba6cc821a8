"""Single device vs MirroredStrategy over 2 logical CPU devices, in one fresh process.

Run as a script (``python strategy_probe.py DATA_DIR WORK_DIR [--speed SECONDS]``); prints one
JSON object. The logical devices must be configured before TensorFlow starts, which is why this
is a subprocess of the tests and not a test itself.

* ``steps``: the losses of 5 train steps from the same init on the same global batches, one
  trainer per strategy, and the largest |Δ| of every weight afterwards (BatchNorm statistics
  included);
* ``skewed``: one step on a batch whose second half (the second replica's slice) holds one
  real token per caption, the first half full captions: the distributed update vs the
  single-device one, and how far a per-replica-mean loss would be from the global masked mean;
* ``speed`` (``--speed``): train steps/s of each, timed for the given seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPLICAS = 2
STEPS = 5


def _trainers(data_dir: Path, work: Path):
    import keras

    from storyedge.devices import select_device
    from storyedge.model.story_model import build_model
    from storyedge.training.loop import Trainer
    from storyedge.training.prepare import prepare_data
    from storyedge.training.strategy import select_strategy
    from training_testutil import tiny_config

    cfg = tiny_config(data_dir, work / "single", training={"lr": 0.01})
    data = prepare_data(cfg, work / "single", None)
    decision = select_device("cpu")
    mirrored = select_strategy("mirrored", decision, 30.0)
    assert mirrored.num_replicas == REPLICAS, mirrored.describe()
    keras.utils.set_random_seed(0)
    single_model = build_model(cfg, data.tokenizer.vocab_size, data.tokenizer.pad_id)
    with mirrored.strategy.scope():
        mirrored_model = build_model(cfg, data.tokenizer.vocab_size, data.tokenizer.pad_id)
        mirrored_model.set_weights(single_model.get_weights())
    args = (data.tokenizer, data.train, data.validation)
    single = Trainer(cfg, single_model, *args, work / "single", progress=False, echo=lambda m: None)
    with mirrored.strategy.scope():
        dist = Trainer(cfg.replace(**{"training.save_dir": str(work / "mirrored")}), mirrored_model,
                       *args, work / "mirrored", progress=False, echo=lambda m: None, replicas=mirrored)
    return cfg, data, single, dist


def _weights_diff(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) if x.size else 0.0
               for x, y in zip(a.model.get_weights(), b.model.get_weights()))


def _run(trainer, batches: list[dict[str, np.ndarray]]) -> list[float]:
    feed = trainer._batches(lambda: iter(batches))
    losses = []
    for _, batch in zip(range(len(batches)), feed):
        out = trainer.train_step(batch)
        losses.append(float(out["loss_sum"]) / float(out["count"]))
    return losses


def _skewed_batch(cfg, data, pad: int) -> dict[str, np.ndarray]:
    """A global batch whose second half keeps one real target token per caption."""
    from storyedge.training.batches import gather_batch

    batch = gather_batch(data.train, np.arange(cfg.dataset.batch_size))
    target = batch["target"].copy()
    half = cfg.dataset.batch_size // 2
    target[half:, 2:] = pad  # [BOS] w → one label that is not padding
    batch["target"] = target
    return batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--speed", type=float, default=0.0)
    args = parser.parse_args()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)

    from storyedge.training.batches import iter_train_batches

    cfg, data, single, dist = _trainers(args.data_dir, args.work_dir)
    batches = list(iter_train_batches(data.train, cfg.dataset.batch_size, cfg.training.seed, 0))[:STEPS]
    out: dict[str, object] = {"replicas": dist.replicas.num_replicas}
    a, b = _run(single, batches), _run(dist, batches)
    out["steps"] = {"single": a, "mirrored": b,
                    "max_rel_diff": max(abs(x - y) / abs(x) for x, y in zip(a, b)),
                    "max_weight_diff": _weights_diff(single, dist),
                    "step_counters": [single._step(), dist._step()]}
    pad = data.tokenizer.pad_id
    skewed = _skewed_batch(cfg, data, pad)
    labels = skewed["target"][:, 1:]
    half = cfg.dataset.batch_size // 2
    logits = single.model(skewed, training=False)  # training=True would move the BN statistics
    from storyedge.training.loss import masked_loss

    per_replica = float((masked_loss(logits[:half], labels[:half], pad)
                         + masked_loss(logits[half:], labels[half:], pad)) / 2)
    global_mean = float(masked_loss(logits, labels, pad))
    before = _weights_diff(single, dist)
    a, b = _run(single, [skewed]), _run(dist, [skewed])
    out["skewed"] = {"single": a[0], "mirrored": b[0], "weights_diff_before": before,
                     "max_weight_diff": _weights_diff(single, dist),
                     "tokens_per_replica": [int((labels[:half] != pad).sum()), int((labels[half:] != pad).sum())],
                     "per_replica_mean_loss": per_replica, "global_mean_loss": global_mean}
    val_single, val_dist = single.evaluate()[0], dist.evaluate()[0]
    out["validation"] = {"single": val_single, "mirrored": val_dist}
    if args.speed:
        all_batches = list(iter_train_batches(data.train, cfg.dataset.batch_size, cfg.training.seed, 1))
        out["speed"] = {name: _steps_per_second(t, all_batches, args.speed)
                        for name, t in (("single", single), ("mirrored", dist))}
    print(json.dumps(out))


def _steps_per_second(trainer, batches, seconds: float) -> float:
    _run(trainer, batches[:2])  # warm
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        steps += len(_run(trainer, batches))
    return steps / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()

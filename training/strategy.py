"""``--strategy auto|default|mirrored|multi-worker``: the ``tf.distribute`` strategy of a run.

``--device`` selects the kind of device, the strategy how many of them train:

* ``default``: one device (TensorFlow's default strategy; the loop's single-device path);
* ``mirrored``: ``MirroredStrategy`` over every GPU of this machine (over every logical CPU
  device when the device is the CPU);
* ``multi-worker``: ``MultiWorkerMirroredStrategy`` over the processes named by ``TF_CONFIG``
  (:mod:`storyedge.distribute`), each on every local GPU (or its CPU), with a collective
  timeout (``training.collective_timeout_seconds``): a worker whose peer died leaves its
  all-reduce after that long and the run exits non-zero instead of hanging;
* ``auto``: ``mirrored`` when TensorFlow sees more than one GPU and the device is a GPU, else
  ``default``.

The strategy must be created before TensorFlow runs its first op (``MultiWorkerMirroredStrategy``
starts a server and configures collectives), so :func:`select_strategy` comes right after the
device is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from storyedge.constants import STRATEGIES
from storyedge.devices import DeviceDecision
from storyedge.distribute import ClusterTask, parse_tf_config
from storyedge.errors import UserError


@dataclass
class Replicas:
    """The chosen strategy, where this process stands in it, and why."""

    strategy: tf.distribute.Strategy
    #: ``default``, ``mirrored`` or ``multi-worker`` (``auto`` resolved)
    kind: str
    reason: str
    devices: tuple[str, ...]
    #: this process's task in a multi-worker cluster (None otherwise)
    task: ClusterTask | None = None

    @property
    def distributed(self) -> bool:
        """Whether the loop runs its steps through ``strategy.run`` (every kind but default)."""
        return self.kind != "default"

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run directory."""
        return self.task is None or self.task.is_chief

    def describe(self) -> str:
        """One line: ``strategy: mirrored, 2 replicas (/CPU:0, /CPU:1) - requested explicitly``."""
        where = f"; {self.task.describe()}" if self.task is not None else ""
        return (f"strategy: {self.kind}, {self.num_replicas} replica(s) ({', '.join(self.devices)}) "
                f"- {self.reason}{where}")

    def barrier(self, timeout_seconds: float) -> None:
        """Wait (up to ``timeout_seconds``) until every worker gets here: the workers' start-up
        (TensorFlow import, data, tokenizer) can differ by more than the collective timeout
        that bounds each training collective. A no-op but under multi-worker."""
        if self.kind != "multi-worker":
            return
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(timeout_seconds))

        def arrive() -> tf.Tensor:
            ctx = tf.distribute.get_replica_context()
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.constant(1.0), options=options)

        tf.function(lambda: self.strategy.run(arrive))()  # eager run() is slow and says so

    def max_over_workers(self, value: float) -> float:
        """The largest ``value`` any worker holds (a collective under multi-worker; else ``value``),
        so that decisions made from wall time (the time budget) agree on every worker."""
        if self.kind != "multi-worker":
            return value
        values = self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant([value], tf.float64)
        )
        return float(tf.reduce_max(self.strategy.gather(values, axis=0)))


def _local_devices(decision: DeviceDecision) -> tuple[str, ...]:
    """The logical devices a mirrored strategy spans: every GPU, or every CPU device."""
    kind = "CPU" if decision.device == "cpu" else "GPU"
    devices = tuple(d.name for d in tf.config.list_logical_devices(kind))
    return devices or tuple(d.name for d in tf.config.list_logical_devices("CPU"))


def select_strategy(
    requested: str, decision: DeviceDecision, collective_timeout: float, environ: Any = None
) -> Replicas:
    """Create the strategy for ``requested`` (:data:`~storyedge.constants.STRATEGIES`)."""
    if requested not in STRATEGIES:
        raise UserError(f"--strategy: must be one of {', '.join(STRATEGIES)}, got {requested!r}")
    if requested == "multi-worker":
        return _multi_worker(decision, collective_timeout, environ)
    devices = _local_devices(decision)
    if requested == "auto":
        gpus = [d for d in devices if "GPU" in d.upper()]
        if len(gpus) > 1:
            return Replicas(tf.distribute.MirroredStrategy(devices=list(gpus)), "mirrored",
                            f"auto: TensorFlow sees {len(gpus)} GPUs", tuple(gpus))
        reason = "auto: one device" if decision.device == "cpu" or not gpus else "auto: one GPU"
        return Replicas(tf.distribute.get_strategy(), "default", reason, (decision.tf_device,))
    if requested == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=list(devices))
        return Replicas(strategy, "mirrored", "requested explicitly", devices)
    return Replicas(tf.distribute.get_strategy(), "default", "requested explicitly", (decision.tf_device,))


def _multi_worker(decision: DeviceDecision, collective_timeout: float, environ: Any) -> Replicas:
    """``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``, with the collective timeout."""
    task = parse_tf_config(environ)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(collective_timeout))
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    devices = tuple(getattr(strategy.extended, "worker_devices", ())) or (decision.tf_device,)
    reason = f"TF_CONFIG: {task.num_workers} worker(s), collective timeout {collective_timeout:g}s"
    return Replicas(strategy, "multi-worker", reason, devices, task)

"""``--strategy`` before TensorFlow: the ``TF_CONFIG`` of a multi-worker run, checked.

``multi-worker`` training is configured by TensorFlow's standard ``TF_CONFIG`` environment
variable, one per process::

    {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}

(an optional ``"chief": ["host0:12345"]`` entry names a chief apart from the workers). The
chief (``chief`` 0, else ``worker`` 0) writes the run directory; the other workers write
nothing there. A missing or malformed value is a :class:`~storyedge.errors.UserError` (exit 2)
that says what is expected, raised before TensorFlow starts a server that would wait forever
for peers that are not coming.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from storyedge.errors import UserError

TF_CONFIG_ENV = "TF_CONFIG"
#: Task types a TF_CONFIG may name for ``multi-worker`` (evaluator / ps belong to other strategies).
TASK_TYPES = ("chief", "worker")
_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}')


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in a multi-worker cluster (from ``TF_CONFIG``)."""

    task_type: str
    task_index: int
    #: every task of the cluster, ``{type: [host:port, ...]}``
    cluster: dict[str, list[str]]

    @property
    def num_workers(self) -> int:
        """Processes that train (chief included)."""
        return sum(len(self.cluster.get(kind, [])) for kind in TASK_TYPES)

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run directory (chief 0, else worker 0)."""
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    def describe(self) -> str:
        """``worker 1 of 2 (127.0.0.1:23456)``."""
        address = self.cluster[self.task_type][self.task_index]
        role = ", chief" if self.is_chief else ""
        return f"{self.task_type} {self.task_index} of {self.num_workers} ({address}{role})"


def _bad(reason: str) -> UserError:
    return UserError(f"--strategy multi-worker: {reason}; expected {TF_CONFIG_ENV}={_EXAMPLE}")


def parse_tf_config(environ: Mapping[str, str] | None = None) -> ClusterTask:
    """The :class:`ClusterTask` of ``TF_CONFIG`` in ``environ`` (default ``os.environ``)."""
    raw = (os.environ if environ is None else environ).get(TF_CONFIG_ENV, "")
    if not raw.strip():
        raise _bad(f"{TF_CONFIG_ENV} is not set")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _bad(f"{TF_CONFIG_ENV} is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict):
        raise _bad(f"{TF_CONFIG_ENV} must be a JSON object")
    cluster = _cluster(data.get("cluster"))
    task = data.get("task")
    if not isinstance(task, dict):
        raise _bad(f'{TF_CONFIG_ENV} has no "task" object')
    task_type, index = task.get("type"), task.get("index")
    if task_type not in TASK_TYPES:
        raise _bad(f'task type {task_type!r} is not one of {", ".join(TASK_TYPES)}')
    if task_type not in cluster:
        raise _bad(f'task type {task_type!r} has no entry in "cluster"')
    if isinstance(index, bool) or not isinstance(index, int):
        raise _bad(f'task index {index!r} is not an integer')
    if not 0 <= index < len(cluster[task_type]):
        raise _bad(
            f'task index {index} is outside the cluster ({len(cluster[task_type])} {task_type} '
            f'address(es): 0..{len(cluster[task_type]) - 1})'
        )
    return ClusterTask(task_type, index, cluster)


def _cluster(value: object) -> dict[str, list[str]]:
    """The ``cluster`` object: chief / worker lists of ``host:port`` strings."""
    if not isinstance(value, dict) or not value.get("worker") and not value.get("chief"):
        raise _bad(f'{TF_CONFIG_ENV} has no "cluster" with a "worker" list')
    cluster: dict[str, list[str]] = {}
    for kind, addresses in value.items():
        if kind not in TASK_TYPES:
            raise _bad(f'cluster entry {kind!r} is not one of {", ".join(TASK_TYPES)}')
        if not isinstance(addresses, list) or not all(_is_address(a) for a in addresses):
            raise _bad(f'cluster "{kind}" must be a list of "host:port" strings')
        cluster[kind] = list(addresses)
    if len(cluster.get("chief", [])) > 1:
        raise _bad('cluster "chief" holds more than one address')
    return cluster


def _is_address(value: object) -> bool:
    if not isinstance(value, str) or ":" not in value:
        return False
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536

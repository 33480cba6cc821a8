"""--strategy multi-worker refuses a missing or malformed TF_CONFIG: exit 2, one line, nothing
written, before TensorFlow starts; and the TF_CONFIG reading itself (no TensorFlow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from storyedge.distribute import parse_tf_config
from storyedge.errors import UserError

CLUSTER = {"worker": ["127.0.0.1:20001", "127.0.0.1:20002"]}


def _tf_config(task_type: str = "worker", index: int = 0, cluster=None) -> str:
    return json.dumps({"cluster": cluster or CLUSTER, "task": {"type": task_type, "index": index}})


def test_worker_zero_is_the_chief_unless_a_chief_is_named():
    first = parse_tf_config({"TF_CONFIG": _tf_config("worker", 0)})
    second = parse_tf_config({"TF_CONFIG": _tf_config("worker", 1)})
    assert first.is_chief and not second.is_chief and first.num_workers == 2
    assert second.describe() == "worker 1 of 2 (127.0.0.1:20002)"
    with_chief = {"chief": ["127.0.0.1:20000"], **CLUSTER}
    assert parse_tf_config({"TF_CONFIG": _tf_config("chief", 0, with_chief)}).is_chief
    worker = parse_tf_config({"TF_CONFIG": _tf_config("worker", 0, with_chief)})
    assert not worker.is_chief and worker.num_workers == 3


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "TF_CONFIG is not set"),
        ("{not json", "TF_CONFIG is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), 'no "cluster"'),
        (json.dumps({"cluster": CLUSTER}), 'no "task"'),
        (_tf_config("worker", 2), "task index 2 is outside the cluster (2 worker address(es): 0..1)"),
        (_tf_config("worker", -1), "task index -1 is outside the cluster"),
        (_tf_config("ps", 0), "task type 'ps' is not one of chief, worker"),
        (_tf_config("chief", 0), "task type 'chief' has no entry"),
        (json.dumps({"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}),
         '"host:port" strings'),
        (json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": "0"}}), "is not an integer"),
    ],
)
def test_malformed_tf_config_says_what_is_expected(value, says):
    with pytest.raises(UserError) as err:
        parse_tf_config({"TF_CONFIG": value})
    message = str(err.value)
    assert says in message and "\n" not in message
    assert 'expected TF_CONFIG={"cluster": {"worker": [' in message


@pytest.mark.parametrize(
    ("tf_config", "says"),
    [
        (None, "TF_CONFIG is not set"),
        ("cluster=a,b", "TF_CONFIG is not JSON"),
        (_tf_config("worker", 5), "task index 5 is outside the cluster"),
    ],
)
def test_cli_bad_tf_config_exits_2_with_one_line(tmp_path, tf_config, says):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "storyedge.app.cli", "train", "--strategy", "multi-worker",
         "--save-dir", str(run_dir), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --strategy multi-worker: ") and says in lines[0]
    assert "Traceback" not in proc.stderr and not run_dir.exists()


def test_strategy_choice_on_one_cpu():
    from storyedge.devices import select_device
    from storyedge.training.strategy import select_strategy

    cpu = select_device("cpu")
    auto = select_strategy("auto", cpu, 5.0)
    assert (auto.kind, auto.distributed, auto.num_replicas, auto.is_chief) == ("default", False, 1, True)
    assert auto.describe().startswith("strategy: default, 1 replica(s) (/CPU:0) - auto: one device")
    mirrored = select_strategy("mirrored", cpu, 5.0)
    assert mirrored.kind == "mirrored" and mirrored.distributed and mirrored.num_replicas == 1
    assert mirrored.max_over_workers(3.5) == 3.5  # one process: no collective
    with pytest.raises(UserError, match="--strategy: must be one of auto, default, mirrored, multi-worker"):
        select_strategy("tpu", cpu, 5.0)

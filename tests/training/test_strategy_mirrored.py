"""MirroredStrategy over 2 logical CPU devices computes what one device computes.

One subprocess (the logical devices must exist before TensorFlow starts) runs
``strategy_probe.py``: 5 steps of a single-device trainer and of a mirrored one from the same
weights on the same global batches (dropout 0, BatchNorm synchronized), then one step on a
batch whose replicas hold very different numbers of real target tokens (27 vs 4 here), where a
per-replica mean loss would be a different objective.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("strategy_probe.py")


@pytest.fixture(scope="module")
def probe(tiny_data_dir, tmp_path_factory) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(tiny_data_dir), str(tmp_path_factory.mktemp("probe"))],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mirrored_steps_equal_single_device_steps(probe):
    steps = probe["steps"]
    assert probe["replicas"] == 2 and steps["step_counters"] == [5, 5]
    for single, mirrored in zip(steps["single"], steps["mirrored"], strict=True):
        assert mirrored == pytest.approx(single, rel=1e-5)
    assert steps["single"][-1] < steps["single"][0]  # it trained
    assert steps["max_weight_diff"] < 1e-4  # every weight, BatchNorm moving statistics too
    assert probe["validation"]["mirrored"] == pytest.approx(probe["validation"]["single"], rel=1e-5)


@pytest.mark.slow
def test_loss_is_divided_by_the_global_token_count(probe):
    skewed = probe["skewed"]
    few, many = sorted(skewed["tokens_per_replica"])
    assert many >= 4 * few  # the replicas really hold different numbers of real tokens
    # a mean of per-replica means is another objective on this batch ...
    assert abs(skewed["per_replica_mean_loss"] - skewed["global_mean_loss"]) > 1e-2
    # ... the distributed step optimises the global masked mean, as one device does
    assert skewed["mirrored"] == pytest.approx(skewed["single"], rel=1e-5)
    assert skewed["max_weight_diff"] < 1e-4

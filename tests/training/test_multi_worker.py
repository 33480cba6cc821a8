"""Two ``storyedge train --strategy multi-worker`` processes on 127.0.0.1 (TF_CONFIG, free ports).

One scenario, to pay TensorFlow's start-up only twice per worker:

1. a fresh 2-epoch run; once the chief has written a checkpoint past step 2, worker 1 is
   SIGKILLed mid-epoch: the chief leaves its collective within the collective timeout and exits
   non-zero (one line saying to relaunch with --resume);
2. both relaunched with ``--resume``: training continues from the last checkpoint and ends with
   exactly the steps of an uninterrupted run; the chief's run directory holds checkpoints,
   best/, history and the summary; the worker printed no epoch lines and left no files in its
   temporary directory, nor any in the run directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storyedge.training.report import COMPLETED, read_summary
from training_testutil import tiny_config_dict, write_config

EPOCHS = 2
BATCH = 16
EVERY = 2  # checkpoint_every_steps
COLLECTIVE_TIMEOUT = 20.0  # above the chief's longest pause between collectives (writing best/)
TIMEOUT = 400  # one launch, start-up included (loaded 2-core machine)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _launch(config: Path, tmp_dirs: list[Path], *extra: str) -> list[subprocess.Popen]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index, tmp in enumerate(tmp_dirs):
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "storyedge.app.cli", "train", "--config", str(config),
             "--strategy", "multi-worker", "--no-progress", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        ))
    return procs


def _latest_step(run_dir: Path) -> int | None:
    import tensorflow as tf

    from storyedge.training.checkpoint import read_checkpoint_step

    try:
        path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        return read_checkpoint_step(path) if path else None
    except Exception:  # noqa: BLE001 - index being rewritten right now
        return None


def _kill_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()


@pytest.mark.slow
def test_killed_worker_fails_the_job_and_resume_finishes_it(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "tiny.yaml", tiny_config_dict(
        tiny_data_dir, run_dir, dataset={"batch_size": BATCH},
        training={"epochs": EPOCHS, "checkpoint_every_steps": EVERY, "keep_checkpoints": 2,
                  "collective_timeout_seconds": COLLECTIVE_TIMEOUT, "max_train_seconds": 0},
    ))

    # 1. fresh run; SIGKILL worker 1 once a checkpoint past step EVERY exists
    procs = _launch(config, [tmp_path / "tmp0", tmp_path / "tmp1"])
    try:
        deadline = time.monotonic() + TIMEOUT
        while (_latest_step(run_dir) or 0) <= EVERY:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                outs = [p.communicate(timeout=60) for p in procs]
                pytest.fail(f"no checkpoint past step {EVERY} while both ran: {outs}")
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        out, err = procs[0].communicate(timeout=COLLECTIVE_TIMEOUT + 60)
        left_after = time.monotonic() - killed_at
    finally:
        _kill_all(procs)
    procs[1].wait(timeout=30)
    assert procs[1].returncode == -signal.SIGKILL
    assert procs[0].returncode == 1, err[-2000:]
    assert "relaunch every worker with --resume" in err and "Traceback" not in err
    assert left_after < COLLECTIVE_TIMEOUT + 60
    left = _latest_step(run_dir)
    print(f"chief exited {left_after:.1f}s after the kill; last checkpoint step {left}")
    assert left is not None and left > EVERY and left % EVERY == 0

    # 2. relaunch both with --resume: to the end, from exactly that checkpoint
    tmp0, tmp1 = tmp_path / "tmp0-resume", tmp_path / "tmp1-resume"
    procs = _launch(config, [tmp0, tmp1], "--resume")
    try:
        (out0, err0), (out1, err1) = (p.communicate(timeout=TIMEOUT) for p in procs)
    finally:
        _kill_all(procs)
    assert procs[0].returncode == procs[1].returncode == 0, (err0[-1500:], err1[-1500:])
    assert f"resumed from {run_dir / 'checkpoints'}/ckpt-{left}: step {left}" in out0
    summary = read_summary(run_dir)
    history = json.loads((run_dir / "history.json").read_text())["epochs"]
    steps_per_epoch = history[0]["step"]
    print("resumed run:", [(r["epoch"], r["step"], r["train_loss"], r["val_loss"]) for r in history])
    assert summary.status == COMPLETED and summary.resumed_from_step == left
    assert summary.steps == EPOCHS * steps_per_epoch  # the steps of an uninterrupted run
    assert [r["step"] for r in history] == [steps_per_epoch * e for e in range(1, EPOCHS + 1)]
    assert summary.replicas == 2 and "multi-worker" in (summary.strategy or "")

    # the chief wrote the run directory; the worker wrote nothing anywhere
    assert {p.name for p in run_dir.iterdir()} == {
        "best", "checkpoints", "config.yaml", "curves.png", "history.csv", "history.json",
        "summary.json", "tensorboard", "tokenizer"}
    assert (run_dir / "best" / "meta.json").is_file()
    assert _latest_step(run_dir) == EPOCHS * steps_per_epoch
    assert "epoch 2/2:" in out0 and "epoch 1/2:" not in out1 and "epoch 2/2:" not in out1
    assert list(tmp1.iterdir()) == []

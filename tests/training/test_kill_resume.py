"""Interrupted training resumes where it stopped: Ctrl-C, then SIGKILL, then --resume to the end.

Three real ``storyedge train`` processes on one run directory:

1. SIGINT once the first mid-epoch checkpoint exists -> exit 130, a checkpoint of the step it
   stopped at, and a message saying how to resume;
2. ``--resume``, SIGKILL (no chance to save) once a newer checkpoint exists;
3. ``--resume`` to the end: it restarts from the newest checkpoint left by (2), so at most one
   checkpoint interval is redone, and the total step count is exactly epochs x batches (nothing
   skipped twice, nothing lost); the best-model bundle loads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storyedge.training.report import COMPLETED, read_summary
from training_testutil import tiny_config_dict, write_config

EPOCHS = 2
EVERY = 2  # checkpoint_every_steps
TIMEOUT = 240


def _start(config: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "storyedge.app.cli", "train", "--config", str(config), "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _latest_step(run_dir: Path) -> int | None:
    import tensorflow as tf

    from storyedge.training.checkpoint import read_checkpoint_step

    try:
        path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        return read_checkpoint_step(path) if path else None
    except Exception:  # noqa: BLE001 - index being rewritten right now
        return None


def _wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, after: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        step = _latest_step(run_dir)
        if step is not None and step > after:
            return step
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training ended (rc {proc.returncode}) before a checkpoint > {after}:\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no checkpoint in time")


@pytest.mark.slow
def test_sigint_then_sigkill_then_resume_to_the_end(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = write_config(
        tmp_path / "tiny.yaml",
        tiny_config_dict(tiny_data_dir, run_dir,
                         training={"epochs": EPOCHS, "checkpoint_every_steps": EVERY, "keep_checkpoints": 2}),
    )

    # 1. Ctrl-C: a checkpoint at the step it stopped at, exit 130, how to resume
    proc = _start(config)
    _wait_for_checkpoint(proc, run_dir, after=0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert "--resume" in err and "checkpoint saved" in err
    interrupted_at = _latest_step(run_dir)
    assert interrupted_at is not None and f"interrupted at step {interrupted_at}" in err
    assert read_summary(run_dir).interrupted

    # 2. resume, then SIGKILL once it has written a newer checkpoint
    proc = _start(config, "--resume")
    killed_after = _wait_for_checkpoint(proc, run_dir, after=interrupted_at)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    assert f"resumed from {run_dir / 'checkpoints'}/ckpt-{interrupted_at}: step {interrupted_at}" in out
    left = _latest_step(run_dir)  # the newest checkpoint the killed run left behind
    assert left is not None and left >= killed_after

    # 3. resume to the end from exactly that checkpoint
    proc = _start(config, "--resume")
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert f"resumed from {run_dir / 'checkpoints'}/ckpt-{left}: step {left}" in out
    summary = read_summary(run_dir)
    history = json.loads((run_dir / "history.json").read_text())["epochs"]
    steps_per_epoch = history[0]["step"]
    assert summary.status == COMPLETED and summary.resumed_from_step == left
    assert summary.steps == EPOCHS * steps_per_epoch  # no batch lost or repeated
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    assert [r["step"] for r in history] == [steps_per_epoch * e for e in range(1, EPOCHS + 1)]

    from storyedge.run_dir import load_bundle

    bundle = load_bundle(run_dir)
    best = min(history, key=lambda r: r["val_loss"])
    assert bundle.meta["epoch"] == best["epoch"]
    assert bundle.meta["val_loss"] == pytest.approx(best["val_loss"])

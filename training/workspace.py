"""Run-directory checks done *before* any training: writable, fresh or resumable.

Nothing here writes into an existing run (a probe file aside), so a refused start leaves its
checkpoints untouched.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from storyedge.config import Config, load_config
from storyedge.errors import UserError
from storyedge.run_dir import BEST_DIR, CONFIG_FILE, TOKENIZER_DIR, check_compatible

#: Training's own entries of a run directory (``best/``, ``config.yaml`` and ``tokenizer/`` are
#: :mod:`storyedge.run_dir`'s).
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_INDEX = "checkpoint"  # tf.train.CheckpointManager's index file
TENSORBOARD_DIR = "tensorboard"


def ensure_writable(save_dir: str | Path) -> Path:
    """Create ``save_dir`` if needed and prove a file can be written there."""
    path = Path(save_dir).expanduser()
    probe = path / f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"training.save_dir: cannot write to {path} ({reason}); choose another --save-dir"
        ) from None
    return path


def has_checkpoint_index(run_dir: str | Path) -> bool:
    """Whether ``run_dir/checkpoints`` holds a checkpoint index (a run that can be resumed)."""
    return (Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_INDEX).is_file()


def check_fresh(run_dir: str | Path) -> None:
    """A new run must not overwrite another run's checkpoints or best model."""
    run_dir = Path(run_dir)
    found = [n for n in (f"{CHECKPOINT_DIR}/", f"{BEST_DIR}/") if (run_dir / n.rstrip("/")).exists()
             and any((run_dir / n.rstrip("/")).iterdir())]
    if found:
        raise UserError(
            f"{run_dir} already holds a training run ({', '.join(found)}); pass --resume to "
            "continue it, or choose another --save-dir"
        )


def check_resumable(run_dir: str | Path, cfg: Config) -> Config:
    """The saved config of a run that ``cfg`` may resume; :class:`UserError` otherwise.

    Keys that change the graph (layer sizes, fusion, image size, sequence lengths, tokenizer)
    must match; others (epochs, lr, time budget, ...) may change on resume.
    """
    run_dir = Path(run_dir)
    if not has_checkpoint_index(run_dir):
        raise UserError(
            f"--resume: no checkpoint in {run_dir / CHECKPOINT_DIR}; "
            "start a new run without --resume"
        )
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        raise UserError(f"--resume: {saved_path} is missing; cannot tell what the checkpoint is")
    if not (run_dir / TOKENIZER_DIR).is_dir():
        raise UserError(f"--resume: {run_dir / TOKENIZER_DIR} is missing; the checkpoint's token ids are unknown")
    saved = load_config(saved_path)
    check_compatible(saved, cfg, f"--resume {run_dir}")
    return saved

"""One training run, start to finish: device, run-dir checks, data, model, loop, summary.

Every check a user can fail (absent device, unwritable ``save_dir``, an existing run without
``--resume``, a resume that does not fit the config, bad data) happens before the first train
step and before anything in an existing run directory is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from storyedge.config import Config
from storyedge.devices import configure_device, import_tensorflow, select_device
from storyedge.errors import UserError
from storyedge.tokenizer import StoryTokenizer
from storyedge.training.history import write_json
from storyedge.training.report import ARTIFACTS, format_summary
from storyedge.training.workspace import (
    CONFIG_FILE,
    TOKENIZER_DIR,
    check_fresh,
    check_resumable,
    ensure_writable,
)

SUMMARY_FILE = "summary.json"


def run_training(
    cfg: Config,
    device: str = "auto",
    precision: str = "float32",
    resume: bool = False,
    echo: Callable[[str], None] = click.echo,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` in ``cfg.training.save_dir``; returns the summary (also in summary.json).

    Raises :class:`~storyedge.training.loop.TrainingInterrupted` on Ctrl-C (checkpoint saved).
    """
    wall0 = time.monotonic()
    if not progress:
        import datasets

        datasets.disable_progress_bars()
    tf = import_tensorflow()  # before storyedge.model: survives a broken Metal plugin
    decision = select_device(device, tf=tf)
    configure_device(decision, precision, tf=tf)
    echo(decision.describe())
    for warning in decision.warnings:
        echo(f"warning: {warning}")

    run_dir = ensure_writable(cfg.training.save_dir)
    saved_cfg = check_resumable(run_dir, cfg) if resume else None
    if not resume:
        check_fresh(run_dir)

    import keras

    from storyedge.model.story_model import build_model, count_params
    from storyedge.training.loop import Trainer
    from storyedge.training.signals import TrainingInterrupted
    from storyedge.training.prepare import prepare_data

    keras.utils.set_random_seed(cfg.training.seed)
    tokenizer = StoryTokenizer.load(run_dir / TOKENIZER_DIR) if resume else None
    data = prepare_data(cfg, run_dir, tokenizer)
    echo(
        f"data: {len(data.train)} train / {len(data.validation)} validation windows "
        f"(k={cfg.dataset.seq_len}), vocab {data.tokenizer.vocab_size} ({data.tokenizer.source})"
    )
    with tf.device(decision.tf_device):
        model = build_model(cfg, data.tokenizer.vocab_size, data.tokenizer.pad_id)
        trainer = Trainer(
            cfg, model, data.tokenizer, data.train, data.validation, run_dir, precision,
            progress=progress,
        )
        if resume:
            try:
                state = trainer.restore(saved_cfg.dataset.batch_size if saved_cfg else None)
            except (ValueError, AssertionError, OSError) as exc:
                raise UserError(
                    f"--resume: cannot restore {trainer.ckpt.latest} "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                ) from None
            echo(
                f"resumed from {trainer.ckpt.latest}: step {state.step}, epoch {state.epoch + 1}, "
                f"batch {state.step_in_epoch}"
            )
            if state.epoch >= cfg.training.epochs:
                echo(f"nothing to train: {state.epoch} of {cfg.training.epochs} epochs done "
                     "(raise --epochs to continue)")
        cfg.save(run_dir / CONFIG_FILE)
        echo(f"unigram baseline: val PPL {trainer.unigram_ppl:.3f}")
        params = count_params(model)
        try:
            result = trainer.fit()
        except TrainingInterrupted:
            summary = _summary(cfg, trainer, data, decision, precision, params, run_dir, wall0, None)
            write_json(run_dir / SUMMARY_FILE, summary)
            raise
    summary = _summary(cfg, trainer, data, decision, precision, params, run_dir, wall0, result)
    write_json(run_dir / SUMMARY_FILE, summary)
    echo(format_summary(summary))
    return summary


def _summary(cfg, trainer, data, decision, precision, params, run_dir: Path, wall0, result) -> dict[str, Any]:
    import math

    from storyedge.training.loss import perplexity

    state = trainer.ckpt.state()
    best = state.best_val_loss
    return {
        "status": result.stopped if result else "interrupted",
        "run_dir": str(run_dir.resolve()),
        "best_epoch": state.best_epoch,
        "best_val_loss": best,
        "best_val_ppl": perplexity(best) if math.isfinite(best) else None,
        "unigram_val_ppl": trainer.unigram_ppl,
        "epochs_done": state.epoch,
        "epochs": cfg.training.epochs,
        "steps": state.step,
        "resumed_from_step": trainer.resumed_from_step,
        "train_seconds": result.train_seconds if result else state.elapsed_seconds,
        "wall_seconds": time.monotonic() - wall0,
        "last_epoch": trainer.history.records[-1] if trainer.history.records else None,
        "fusion": cfg.model.fusion,
        "params": params,
        "vocab_size": data.tokenizer.vocab_size,
        "tokenizer": data.tokenizer.source,
        "train_windows": len(data.train),
        "val_windows": len(data.validation),
        "stories": data.stories,
        "device": decision.describe(),
        "tf_device": decision.tf_device,
        "precision": precision,
        "jit_compile": cfg.training.jit_compile,
        "tf_version": decision.tf_version,
        "artifacts": dict(ARTIFACTS),
    }

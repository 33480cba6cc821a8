"""One training run, start to finish: device, run-dir checks, data, model, loop, summary.

Every check a user can fail (absent device, unwritable ``save_dir``, an existing run without
``--resume``, a resume that does not fit the config, bad data) happens before the first train
step and before anything in an existing run directory is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from storyedge.config import Config
from storyedge.devices import DeviceDecision, configure_device, import_tensorflow, select_device
from storyedge.errors import UserError
from storyedge.tokenizer import StoryTokenizer
from storyedge.training.report import (
    INTERRUPTED,
    TrainingSummary,
    finite_or_none,
    format_summary,
)
from storyedge.training.signals import TrainingInterrupted
from storyedge.training.workspace import (
    CONFIG_FILE,
    TOKENIZER_DIR,
    check_fresh,
    check_resumable,
    ensure_writable,
)

if TYPE_CHECKING:  # the loop and the data preparation import TensorFlow / datasets
    from storyedge.training.loop import Trainer, TrainResult
    from storyedge.training.prepare import PreparedData


def run_training(
    cfg: Config,
    device: str = "auto",
    precision: str = "float32",
    resume: bool = False,
    echo: Callable[[str], None] = click.echo,
    progress: bool = True,
) -> TrainingSummary:
    """Train ``cfg`` in ``cfg.training.save_dir``; returns the summary (also in summary.json).

    Raises :class:`~storyedge.training.signals.TrainingInterrupted` on Ctrl-C (checkpoint saved,
    and a summary with status ``interrupted`` written).
    """
    wall0 = time.monotonic()
    if not progress:
        import datasets  # lazy: datasets is heavy and only needed to silence its bars here

        datasets.disable_progress_bars()
    tf = import_tensorflow()  # before storyedge.model: survives a broken Metal plugin
    decision = _choose_device(device, precision, tf, echo)
    run_dir = ensure_writable(cfg.training.save_dir)
    saved_cfg = check_resumable(run_dir, cfg) if resume else None
    if not resume:
        check_fresh(run_dir)

    # lazy: keras, the model, the loop and the data preparation import TensorFlow / datasets
    import keras

    from storyedge.model.story_model import build_model, count_params
    from storyedge.training.loop import Trainer
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
            _restore(trainer, saved_cfg, echo)
        cfg.save(run_dir / CONFIG_FILE)
        echo(f"unigram baseline: val PPL {trainer.unigram_ppl:.3f}")
        params = count_params(model)

        def summarize(result: TrainResult | None) -> TrainingSummary:
            return _summary(trainer, data, decision, precision, params, time.monotonic() - wall0, result)

        try:
            result = trainer.fit()
        except TrainingInterrupted:
            summarize(None).write(run_dir)
            raise
    summary = summarize(result)
    summary.write(run_dir)
    echo(format_summary(summary))
    return summary


def _choose_device(device: str, precision: str, tf: Any, echo: Callable[[str], None]) -> DeviceDecision:
    """Select and configure the device; say which and why (and any warning)."""
    decision = select_device(device, tf=tf)
    configure_device(decision, precision, tf=tf)
    echo(decision.describe())
    for warning in decision.warnings:
        echo(f"warning: {warning}")
    return decision


def _restore(trainer: Trainer, saved_cfg: Config | None, echo: Callable[[str], None]) -> None:
    """``--resume``: the latest checkpoint into ``trainer``; a checkpoint that does not fit is
    one :class:`UserError` line."""
    cfg = trainer.cfg
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


def _summary(
    trainer: Trainer,
    data: PreparedData,
    decision: DeviceDecision,
    precision: str,
    params: dict[str, int],
    wall_seconds: float,
    result: TrainResult | None,
) -> TrainingSummary:
    """The run's :class:`TrainingSummary` (``result`` None: interrupted)."""
    from storyedge.training.loss import perplexity  # lazy: storyedge.training.loss imports TensorFlow

    cfg, state = trainer.cfg, trainer.ckpt.state()
    best = finite_or_none(state.best_val_loss)
    return TrainingSummary(
        status=result.stopped if result else INTERRUPTED,
        run_dir=str(trainer.run_dir.resolve()),
        fusion=cfg.model.fusion,
        best_epoch=state.best_epoch,
        best_val_loss=best,
        best_val_ppl=finite_or_none(perplexity(best)) if best is not None else None,
        unigram_val_ppl=finite_or_none(trainer.unigram_ppl),
        epochs_done=state.epoch,
        epochs=cfg.training.epochs,
        steps=state.step,
        resumed_from_step=trainer.resumed_from_step,
        train_seconds=result.train_seconds if result else state.elapsed_seconds,
        wall_seconds=wall_seconds,
        params_total=params["total"],
        params=dict(params),
        vocab_size=data.tokenizer.vocab_size,
        tokenizer=data.tokenizer.source,
        train_windows=len(data.train),
        val_windows=len(data.validation),
        stories=dict(data.stories),
        device=decision.describe(),
        tf_device=decision.tf_device,
        precision=precision,
        jit_compile=cfg.training.jit_compile,
        tf_version=decision.tf_version,
        last_epoch=dict(trainer.history.records[-1]) if trainer.history.records else None,
    )

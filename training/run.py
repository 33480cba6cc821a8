"""One training run, start to finish: device, run-dir checks, data, model, loop, summary.

Every check a user can fail (absent device, unwritable ``save_dir``, an existing run without
``--resume``, a resume that does not fit the config, bad data) happens before the first train
step and before anything in an existing run directory is written.

Under ``--strategy multi-worker`` only the chief writes the run directory (config, tokenizer,
checkpoints, best/, history, TensorBoard, summary); every other worker reads it (its
checkpoints on ``--resume``) and writes into a temporary directory that is removed at the end.
A worker that loses a peer leaves its collective after ``training.collective_timeout_seconds``
and raises :class:`~storyedge.errors.WorkerLost` (exit 1, how to resume).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from storyedge.config import Config
from storyedge.constants import STARTUP_TIMEOUT_SECONDS
from storyedge.devices import DeviceDecision, configure_device, import_tensorflow, select_device
from storyedge.distribute import parse_tf_config
from storyedge.errors import UserError, WorkerLost
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
    from storyedge.training.strategy import Replicas


def run_training(
    cfg: Config,
    device: str = "auto",
    precision: str = "float32",
    resume: bool = False,
    echo: Callable[[str], None] = click.echo,
    progress: bool = True,
    strategy: str | None = None,
) -> TrainingSummary:
    """Train ``cfg`` in ``cfg.training.save_dir``; returns the summary (also in summary.json).

    Raises :class:`~storyedge.training.signals.TrainingInterrupted` on Ctrl-C (checkpoint saved,
    and a summary with status ``interrupted`` written). ``strategy`` (default
    ``training.strategy``): see :mod:`storyedge.training.strategy`.
    """
    wall0 = time.monotonic()
    if not progress:
        import datasets  # lazy: datasets is heavy and only needed to silence its bars here

        datasets.disable_progress_bars()
    requested = strategy or cfg.training.strategy
    if requested == "multi-worker":
        parse_tf_config()  # a bad TF_CONFIG is one line before TensorFlow starts
    tf = import_tensorflow()  # before storyedge.model: survives a broken Metal plugin
    decision = _choose_device(device, precision, tf, echo)
    replicas = _choose_strategy(cfg, requested, decision, echo)
    if not replicas.is_chief:
        # another worker: reads the (shared) run directory, writes only into a temporary one
        scratch = Path(tempfile.mkdtemp(prefix="storyedge-worker-"))
        try:
            return _run(cfg, tf, decision, replicas, Path(cfg.training.save_dir).expanduser(), scratch,
                        precision, resume, echo, progress, wall0)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    run_dir = ensure_writable(cfg.training.save_dir)
    return _run(cfg, tf, decision, replicas, run_dir, None, precision, resume, echo, progress, wall0)


def _run(
    cfg: Config,
    tf: Any,
    decision: DeviceDecision,
    replicas: Replicas,
    run_dir: Path,
    scratch: Path | None,
    precision: str,
    resume: bool,
    echo: Callable[[str], None],
    progress: bool,
    wall0: float,
) -> TrainingSummary:
    """The run once device and strategy are chosen (``scratch``: a non-chief worker's writes)."""
    saved_cfg = check_resumable(run_dir, cfg) if resume else None
    if not resume:
        check_fresh(run_dir)
    chief = scratch is None

    # lazy: keras, the model, the loop and the data preparation import TensorFlow / datasets
    import keras

    from storyedge.model.story_model import build_model, count_params
    from storyedge.training.loop import Trainer
    from storyedge.training.prepare import prepare_data

    keras.utils.set_random_seed(cfg.training.seed)
    tokenizer = StoryTokenizer.load(run_dir / TOKENIZER_DIR) if resume else None
    data = prepare_data(cfg, run_dir if chief else scratch, tokenizer)
    echo(
        f"data: {len(data.train)} train / {len(data.validation)} validation windows "
        f"(k={cfg.dataset.seq_len}), vocab {data.tokenizer.vocab_size} ({data.tokenizer.source})"
    )
    with _collective_failures(replicas, cfg):
        replicas.barrier(STARTUP_TIMEOUT_SECONDS)
    placement = replicas.strategy.scope() if replicas.distributed else tf.device(decision.tf_device)
    with placement:
        model = build_model(cfg, data.tokenizer.vocab_size, data.tokenizer.pad_id)
        trainer = Trainer(
            cfg, model, data.tokenizer, data.train, data.validation, run_dir, precision,
            progress=progress, replicas=replicas, scratch_dir=scratch, data_floor=data.floor,
        )
        if resume:
            _restore(trainer, saved_cfg, echo)
        if chief:
            cfg.save(run_dir / CONFIG_FILE)
        echo(f"unigram baseline: val PPL {trainer.unigram_ppl:.3f}")
        if data.floor is not None:
            f = data.floor
            echo(f"data floor: val PPL {f.floor_ppl:.3f} (paraphrase entropy {f.mean_entropy:.3f} nats over "
                 f"{f.mean_tokens:.2f} tokens per caption; oracle exact match {f.oracle_exact_match:.1%})")
        params = count_params(model)

        def summarize(result: TrainResult | None) -> TrainingSummary:
            summary = _summary(trainer, data, decision, precision, params, time.monotonic() - wall0, result)
            summary.strategy, summary.replicas = replicas.describe(), replicas.num_replicas
            return summary

        try:
            with _collective_failures(replicas, cfg):
                result = trainer.fit()
        except TrainingInterrupted:
            if chief:
                summarize(None).write(run_dir)
            raise
    summary = summarize(result)
    if chief:
        summary.write(run_dir)
        echo(format_summary(summary))
    return summary


def _choose_strategy(cfg: Config, requested: str, decision: DeviceDecision, echo: Callable[[str], None]) -> Replicas:
    """Create the tf.distribute strategy; say which and why; refuse what it cannot train."""
    from storyedge.training.strategy import select_strategy  # lazy: imports TensorFlow

    replicas = select_strategy(requested, decision, cfg.training.collective_timeout_seconds)
    echo(replicas.describe())
    if not replicas.distributed:
        return replicas
    n = replicas.num_replicas
    if cfg.dataset.batch_size % n:
        raise UserError(
            f"dataset.batch_size {cfg.dataset.batch_size} is the global batch: it must be a multiple "
            f"of the {n} replicas of --strategy {replicas.kind}"
        )
    if cfg.training.contrastive_weight > 0:
        raise UserError(
            f"training.contrastive_weight > 0 needs --strategy default: the contrastive loss takes its "
            f"negatives from the whole batch, which --strategy {replicas.kind} splits over replicas"
        )
    if cfg.training.jit_compile:
        echo(f"warning: training.jit_compile is not used under --strategy {replicas.kind} "
             "(the step runs as a tf.function)")
    return replicas


@contextlib.contextmanager
def _collective_failures(replicas: Replicas, cfg: Config) -> Any:
    """A peer lost mid-collective (killed worker, timeout) → :class:`WorkerLost`, one line."""
    if replicas.kind != "multi-worker":
        yield
        return
    tf = import_tensorflow()
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.InternalError, tf.errors.AbortedError) as exc:
        raise WorkerLost(
            f"multi-worker training stopped: a peer is gone or did not answer within "
            f"training.collective_timeout_seconds={cfg.training.collective_timeout_seconds:g} "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}); relaunch every "
            f"worker with --resume to continue from the last checkpoint"
        ) from None


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
        data_floor_ppl=data.floor.floor_ppl if data.floor is not None else None,
        oracle_exact_match=data.floor.oracle_exact_match if data.floor is not None else None,
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

"""The training loop: epochs of compiled train steps, validation, checkpoints, best model.

Per epoch: the deterministic shuffled batches (:mod:`storyedge.training.batches`) through the
``tf.function`` train step (optionally XLA-compiled), a tqdm bar whose postfix shows the loss
and perplexity of the last ``log_interval`` steps, then validation (masked mean NLL over *all*
validation tokens), the history files, TensorBoard scalars, the best model (by val loss, written
atomically with :func:`storyedge.run_dir.save_bundle`) and a checkpoint. Checkpoints are also
written every ``checkpoint_every_steps`` steps and on Ctrl-C.

Under a ``tf.distribute`` strategy (:mod:`storyedge.training.strategy`) the optimizer and the
checkpoint are created in ``strategy.scope()`` (the model is built there by the caller), the
steps and batches are :mod:`storyedge.training.distributed`'s, and only the chief writes:
progress bar, history, curves, TensorBoard, best/ and checkpoints; another worker saves its
checkpoints and best/ into its own temporary directory (``scratch_dir``), removed after each.

Ctrl-C (:mod:`storyedge.training.signals`): the first SIGINT only raises a flag; the loop finishes the step in progress, writes a
checkpoint and raises :class:`TrainingInterrupted` (the CLI exits 130 with the resume command).
A second Ctrl-C interrupts at once (``KeyboardInterrupt``), and a checkpoint of the last
completed step is still written: the step counter lives in the checkpoint and is incremented
inside the compiled step, so weights, optimizer state and counter never disagree.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
from tqdm.auto import tqdm

from storyedge.config import Config
from storyedge.constants import STARTUP_TIMEOUT_SECONDS
from storyedge.data.floor import DataFloor
from storyedge.data.pipeline import WindowArrays
from storyedge.run_dir import BEST_DIR, META_FILE, save_bundle
from storyedge.tokenizer import StoryTokenizer
from storyedge.training.batches import (
    iter_eval_batches,
    iter_train_batches,
    train_batches_per_epoch,
)
from storyedge.training.checkpoint import LoopState, TrainingCheckpoint
from storyedge.training.contrastive import AlignmentAccumulator, contrastive_loss_for
from storyedge.training.distributed import (
    distribute_batches,
    make_distributed_eval_step,
    make_distributed_train_step,
    synchronize_batch_norm,
)
from storyedge.training.history import History
from storyedge.training.loss import perplexity
from storyedge.training.quality import EpochQuality, ValidationCaptions
from storyedge.training.report import COMPLETED, EARLY_STOPPING, TIME_BUDGET
from storyedge.training.signals import SigintFlag, TrainingInterrupted
from storyedge.training.tensorboard import ScalarWriter
from storyedge.training.step import build_optimizer, make_eval_step, make_optimizer, make_train_step
from storyedge.training.strategy import Replicas
from storyedge.training.unigram import unigram_perplexity
from storyedge.training.workspace import CHECKPOINT_DIR, TENSORBOARD_DIR

#: curves.png is re-rendered at most this often during training (a render costs ~0.5 s, a third
#: of a quickstart text_only epoch) and always when training stops.
CURVES_EVERY_SECONDS = 30.0


@dataclass
class TrainResult:
    """How a ``fit`` ended."""

    best_epoch: int
    best_val_loss: float
    best_val_ppl: float
    epochs_done: int
    steps: int
    #: :data:`~storyedge.training.report.COMPLETED`, ``EARLY_STOPPING`` or ``TIME_BUDGET``
    stopped: str
    train_seconds: float
    resumed_from_step: int | None


class ContrastiveMeter:
    """Mean of the train steps' ``contrastive_loss`` over the log interval and the epoch
    (a no-op when the step reports none: the loss is off)."""

    def __init__(self) -> None:
        self.epoch_sum = self.epoch_n = self.sum = self.n = 0.0

    def add(self, out: dict[str, Any]) -> None:
        """One train step's output."""
        if "contrastive_loss" in out:
            value = float(out["contrastive_loss"])
            self.epoch_sum, self.epoch_n = self.epoch_sum + value, self.epoch_n + 1
            self.sum, self.n = self.sum + value, self.n + 1

    def reset_interval(self) -> None:
        """Start a new log interval."""
        self.sum = self.n = 0.0

    def postfix(self) -> dict[str, str]:
        """tqdm postfix entries (none when off)."""
        return {"closs": f"{self.sum / self.n:.3f}"} if self.n else {}

    def scalars(self) -> dict[str, float]:
        """TensorBoard scalars of the interval (none when off)."""
        return {"train/contrastive_loss": self.sum / self.n} if self.n else {}

    def epoch_mean(self) -> float:
        """The epoch's mean (nan when no step reported one)."""
        return self.epoch_sum / self.epoch_n if self.epoch_n else math.nan


class _NoScalars:
    """The TensorBoard writer of a non-chief worker: writes nothing."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Nothing."""

    def flush(self) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""


def _echo(message: str) -> None:
    """Print a line to stdout without breaking a live progress bar (bars are on stderr)."""
    tqdm.write(message, file=sys.stdout)


class Trainer:
    """Owns the model, optimizer, checkpoint and history of one run directory."""

    def __init__(
        self,
        cfg: Config,
        model: keras.Model,
        tokenizer: StoryTokenizer,
        train: WindowArrays,
        validation: WindowArrays,
        run_dir: str | Path,
        precision: str = "float32",
        echo: Callable[[str], None] = _echo,
        progress: bool = True,
        replicas: Replicas | None = None,
        scratch_dir: str | Path | None = None,
        data_floor: DataFloor | None = None,
    ) -> None:
        self.replicas = replicas if replicas is not None and replicas.distributed else None
        self.is_chief = replicas is None or replicas.is_chief
        #: where this process writes best/ and checkpoints: the run dir (chief) or a temp dir
        self.write_dir = self.run_dir_for_writes(run_dir, scratch_dir)
        self.cfg = cfg
        self.model = model
        self.tokenizer = tokenizer
        self.train_arrays = train
        self.val_arrays = validation
        self.run_dir = Path(run_dir)
        self.precision = precision
        self.echo = echo if self.is_chief else (lambda message: None)
        self.progress = progress and self.is_chief
        t = cfg.training
        with self._scope():
            self.optimizer = make_optimizer(t.lr, precision)
            #: the contrastive loss (its heads are training's, not the model's); None when off
            self.contrastive = contrastive_loss_for(cfg)
            build_optimizer(self.optimizer, model, self.contrastive)
            write_ckpt = None if self.write_dir == self.run_dir else self.write_dir / CHECKPOINT_DIR
            self.ckpt = TrainingCheckpoint(
                self.run_dir / CHECKPOINT_DIR, model, self.optimizer, keep=t.keep_checkpoints,
                extra=self.contrastive.heads if self.contrastive is not None else None,
                write_directory=write_ckpt,
            )
        mode = "jit" if t.jit_compile else "function"
        pad = tokenizer.pad_id
        if self.replicas is None:
            self.train_step = make_train_step(
                model, self.optimizer, pad, t.clip_norm, self.ckpt.step, mode, self.contrastive
            )
            self.eval_step = make_eval_step(model, pad, mode, self.contrastive)
        else:
            strategy = self.replicas.strategy
            synchronize_batch_norm(model)
            self.train_step = make_distributed_train_step(
                strategy, model, self.optimizer, pad, t.clip_norm, self.ckpt.step
            )
            self.eval_step = make_distributed_eval_step(strategy, model, pad)
        #: the last evaluate()'s alignment figures (val InfoNCE, recall@k); empty when off
        self.alignment: dict[str, float] = {}
        self.unigram_ppl = unigram_perplexity(
            train.target, validation.target, tokenizer.vocab_size, pad
        )
        #: the data's PPL floor on the validation windows (embedded synthetic data), or None
        self.data_floor = data_floor
        self.history = History(unigram_ppl=self.unigram_ppl, data_floor=self._floor_dict())
        self._curves_at: float | None = None  # when curves.png was last rendered (monotonic)
        self.resumed_from_step: int | None = None
        self._writer: Any = None
        self._train_contrastive = math.nan  # the last epoch's mean contrastive loss
        #: greedy captions of the first training.quality_windows validation windows (None: off)
        self.captions: ValidationCaptions | None = None
        if t.quality_windows and len(validation):
            self.captions = ValidationCaptions(
                model, tokenizer, validation, t.quality_windows, cfg.model.use_reason,
                cfg.dataset.max_caption_len, cfg.dataset.batch_size,
            )

    def _floor_dict(self) -> dict[str, Any] | None:
        return None if self.data_floor is None else self.data_floor.as_dict()

    def run_dir_for_writes(self, run_dir: str | Path, scratch_dir: str | Path | None) -> Path:
        """The chief's run dir; a non-chief worker's ``scratch_dir`` (never the run dir)."""
        self.run_dir = Path(run_dir)
        if self.is_chief:
            return self.run_dir
        if scratch_dir is None:
            raise ValueError("a non-chief worker needs a scratch_dir to write into")
        return Path(scratch_dir)

    def _scope(self) -> Any:
        """``strategy.scope()`` under a strategy, else nothing."""
        return self.replicas.strategy.scope() if self.replicas is not None else contextlib.nullcontext()

    def _trace_ahead(self) -> None:
        """Multi-worker: trace both steps before the first one runs, then meet. Tracing takes
        each worker a different time (tens of seconds apart on a loaded machine), more than
        the collective timeout that bounds a step."""
        if self.replicas is None or self.replicas.kind != "multi-worker":
            return
        example = next(iter_eval_batches(self.val_arrays, 1))
        spec = distribute_batches(self.replicas.strategy, lambda: iter(()), self.cfg.dataset.batch_size,
                                  example).element_spec
        self.train_step.get_concrete_function(spec)
        self.eval_step.get_concrete_function(spec)
        self.replicas.barrier(STARTUP_TIMEOUT_SECONDS)

    def _batches(self, batches: Callable[[], Any]) -> Any:
        """The batches ``batches()`` yields, distributed over the replicas under a strategy."""
        if self.replicas is None:
            return batches()
        bs = self.cfg.dataset.batch_size
        example = next(iter_eval_batches(self.val_arrays, 1))
        return distribute_batches(self.replicas.strategy, batches, bs, example)

    # -- state ----------------------------------------------------------------------------
    def restore(self, batch_size_then: int | None = None) -> LoopState:
        """Continue from the latest checkpoint: weights, optimizer, counters, history."""
        state = self.ckpt.restore()
        if batch_size_then and batch_size_then != self.cfg.dataset.batch_size and state.step_in_epoch:
            # same windows done, counted in batches of the new size
            skip = state.step_in_epoch * batch_size_then // self.cfg.dataset.batch_size
            self.ckpt.step_in_epoch.assign(skip)
        self.history = History.load(self.run_dir)
        self.history.unigram_ppl = self.unigram_ppl
        self.history.data_floor = self._floor_dict()
        self.history.truncate(state.epoch)
        self._adopt_saved_best()
        self.resumed_from_step = state.step
        return self.ckpt.state()

    def _adopt_saved_best(self) -> None:
        """A best/ bundle newer than the checkpoint (killed between the two) stays the best."""
        meta_path = self.run_dir / BEST_DIR / META_FILE
        if not meta_path.is_file():
            return
        meta = json.loads(meta_path.read_text())
        loss = meta.get("val_loss")
        if isinstance(loss, (int, float)) and loss < float(self.ckpt.best_val_loss.numpy()):
            self.ckpt.best_val_loss.assign(float(loss))
            self.ckpt.best_epoch.assign(int(meta.get("epoch", 0)))
            self.ckpt.bad_epochs.assign(0)

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, arrays: WindowArrays | None = None) -> tuple[float, float, int]:
        """(loss, ppl, tokens): masked mean NLL over every non-pad target token of ``arrays``.

        With the contrastive loss on, :attr:`alignment` then holds the validation InfoNCE and
        the image→caption / caption→image recall@k among the validation frames.
        """
        arrays = arrays if arrays is not None else self.val_arrays
        total = count = 0.0
        align = None
        if self.contrastive is not None:
            align = AlignmentAccumulator(self.contrastive.temperature, self.tokenizer.pad_id)
        n = -(-len(arrays) // self.cfg.dataset.batch_size)
        batches = self._batches(lambda: iter_eval_batches(arrays, self.cfg.dataset.batch_size, self.tokenizer.pad_id))
        for _, batch in zip(range(n), batches):
            out = self.eval_step(batch)
            total += float(out["loss_sum"])
            count += float(out["count"])
            if align is not None:
                align.add(batch, out)
        self.alignment = align.result() if align is not None else {}
        loss = total / max(count, 1.0)
        return loss, perplexity(loss), int(count)

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train from the current checkpoint state (zeros for a new run) to the end."""
        n_batches = train_batches_per_epoch(len(self.train_arrays), self.cfg.dataset.batch_size)
        state = self.ckpt.state()
        epoch, start = state.epoch, min(state.step_in_epoch, n_batches)
        elapsed_before, t0 = state.elapsed_seconds, time.monotonic()

        def elapsed() -> float:
            return elapsed_before + time.monotonic() - t0

        self._trace_ahead()
        self._writer = ScalarWriter(self.run_dir / TENSORBOARD_DIR) if self.is_chief else _NoScalars()
        stopped: str | None = None
        # (epoch in progress, global step at its start): replaced in one assignment, so a
        # KeyboardInterrupt anywhere sees a consistent pair
        position = (epoch, self._step() - start)
        try:
            with SigintFlag(self.echo) as sigint:
                while epoch < self.cfg.training.epochs and stopped is None:
                    train_loss, tokens, seconds = self._train_epoch(epoch, start, n_batches, sigint, elapsed)
                    val_loss, val_ppl, _ = self.evaluate()
                    quality = self.captions.score() if self.captions is not None else None
                    self._end_epoch(epoch, train_loss, val_loss, val_ppl, tokens, seconds, elapsed(), quality)
                    position = (epoch + 1, self._step())
                    epoch, start = position[0], 0
                    if sigint.raised:
                        raise TrainingInterrupted(self.ckpt.latest or "", self._step())
                    stopped = self._stop_reason(epoch, elapsed())
        except KeyboardInterrupt:
            # Second Ctrl-C (or no handler installed): save the last completed step.
            epoch, start_step = position
            path = self.ckpt.save(epoch, min(self._step() - start_step, n_batches), elapsed())
            raise TrainingInterrupted(path, self._step()) from None
        finally:
            self._writer.close()
            if self.history.records and self.is_chief:
                self.history.plot(self.run_dir)
        return self._result(epoch, stopped or COMPLETED, elapsed())

    def _step(self) -> int:
        """The global step (optimizer steps taken)."""
        return int(self.ckpt.step.numpy())

    def _stop_reason(self, epochs_done: int, elapsed: float) -> str | None:
        """:data:`EARLY_STOPPING` / :data:`TIME_BUDGET` (said why) when the loop stops here."""
        t = self.cfg.training
        bad = int(self.ckpt.bad_epochs.numpy())
        if t.early_stopping_patience and bad >= t.early_stopping_patience:
            self.echo(f"early stopping: no val-loss improvement for {bad} epochs")
            return EARLY_STOPPING
        if t.max_train_seconds and self._max_over_workers(elapsed) >= t.max_train_seconds:
            self.echo(
                f"time budget: {elapsed:.0f}s >= training.max_train_seconds "
                f"({t.max_train_seconds:g}s); stopping after epoch {epochs_done}"
            )
            return TIME_BUDGET
        return None

    def _max_over_workers(self, value: float) -> float:
        """Every worker decides from the same number (the largest one's)."""
        return self.replicas.max_over_workers(value) if self.replicas is not None else value

    def _result(self, epochs_done: int, stopped: str, train_seconds: float) -> TrainResult:
        best_loss = float(self.ckpt.best_val_loss.numpy())
        return TrainResult(
            best_epoch=int(self.ckpt.best_epoch.numpy()),
            best_val_loss=best_loss,
            best_val_ppl=perplexity(best_loss) if math.isfinite(best_loss) else math.inf,
            epochs_done=epochs_done,
            steps=self._step(),
            stopped=stopped,
            train_seconds=train_seconds,
            resumed_from_step=self.resumed_from_step,
        )

    def _progress_bar(self, epoch: int, start: int, n_batches: int) -> tqdm:
        """The epoch's bar on stderr (stdout keeps the epoch lines)."""
        return tqdm(
            total=n_batches,
            initial=start,
            desc=f"epoch {epoch + 1}/{self.cfg.training.epochs}",
            unit="step",
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
            disable=not self.progress,
        )

    def _train_epoch(
        self, epoch: int, start: int, n_batches: int, sigint: SigintFlag, elapsed: Callable[[], float]
    ) -> tuple[float, int, float]:
        """Batches ``start..`` of ``epoch``; returns (token-weighted train loss, tokens, seconds)."""
        t, d = self.cfg.training, self.cfg.dataset
        total = count = 0.0
        log_total = log_count = 0.0
        closs = ContrastiveMeter()
        t0 = time.monotonic()
        bar = self._progress_bar(epoch, start, n_batches)
        try:
            batches = self._batches(
                lambda: iter_train_batches(self.train_arrays, d.batch_size, t.seed, epoch, start)
            )
            for i, batch in zip(range(start, n_batches), batches):
                out = self.train_step(batch)
                loss_sum, tokens = float(out["loss_sum"]), float(out["count"])
                closs.add(out)
                total, count = total + loss_sum, count + tokens
                log_total, log_count = log_total + loss_sum, log_count + tokens
                step = self._step()
                bar.update(1)
                if (i + 1) % t.log_interval == 0 or i + 1 == n_batches:
                    loss = log_total / max(log_count, 1.0)
                    bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{perplexity(loss):.2f}", **closs.postfix(), step=step)
                    self._writer.scalars(step, {"train/loss": loss, "train/ppl": perplexity(loss), **closs.scalars()})
                    log_total = log_count = 0.0
                    closs.reset_interval()
                if sigint.raised:
                    path = self.ckpt.save(epoch, i + 1, elapsed())
                    raise TrainingInterrupted(path, step)
                every = t.checkpoint_every_steps
                if every and step % every == 0 and i + 1 < n_batches:
                    self.ckpt.save(epoch, i + 1, elapsed())
        finally:
            bar.close()
        # nan when the epoch was resumed after its last batch (only validation was left)
        train_loss = total / count if count else math.nan
        self._train_contrastive = closs.epoch_mean()
        return train_loss, int(count), time.monotonic() - t0

    def _end_epoch(
        self,
        epoch: int,
        train_loss: float,
        val_loss: float,
        val_ppl: float,
        tokens: int,
        seconds: float,
        elapsed: float,
        quality: EpochQuality | None = None,
    ) -> None:
        """History, TensorBoard, best model, epoch checkpoint and the epoch's summary line."""
        record = {
            "epoch": epoch + 1,
            "step": self._step(),
            "train_loss": train_loss,
            "train_ppl": perplexity(train_loss),
            "val_loss": val_loss,
            "val_ppl": val_ppl,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
            "epoch_seconds": seconds,
            "elapsed_seconds": elapsed,
        }
        if self.contrastive is not None:
            record.update(train_contrastive_loss=self._train_contrastive, **self.alignment)
        if quality is not None:
            record.update(quality.record())
        improved = self._keep_if_best(record)
        self.history.append(record)
        if self.is_chief:
            self._save_history()
        keys = ("train_loss", "train_ppl", "val_loss", "val_ppl", "tokens_per_s")
        keys += tuple(k for k in record if k == "train_contrastive_loss" or k in self.alignment)
        keys += tuple(quality.record()) if quality is not None else ()
        self._writer.scalars(epoch + 1, {f"epoch/{key}": record[key] for key in keys})
        self._writer.flush()
        self.ckpt.save(epoch + 1, 0, elapsed)
        mark = " *best*" if improved else ""
        self.echo(
            f"epoch {epoch + 1}/{self.cfg.training.epochs}: train loss {train_loss:.4f} "
            f"ppl {record['train_ppl']:.2f} | val loss {val_loss:.4f} ppl {val_ppl:.2f} "
            f"(unigram {self.unigram_ppl:.2f}{self._floor_text()}) | {record['tokens_per_s']:.0f} tok/s | "
            f"{seconds:.1f}s{mark}{self._alignment_line(record)}{self._quality_line(quality)}"
        )

    def _floor_text(self) -> str:
        """``, data floor 1.104`` (empty when the floor is unknown)."""
        return "" if self.data_floor is None else f", data floor {self.data_floor.floor_ppl:.3f}"

    def _quality_line(self, quality: EpochQuality | None) -> str:
        """`` | val captions (64, 0.4s): BLEU-4 41.2, exact 0.281`` (empty when off)."""
        if quality is None:
            return ""
        s = quality.scores
        return (f" | val captions ({s.captions}, {quality.seconds:.1f}s): BLEU-4 {s.bleu4:.1f}, "
                f"exact {s.exact_match:.3f}")

    def _alignment_line(self, record: dict[str, Any]) -> str:
        """`` | contrastive train 1.23 val 1.45 | R@1 i2t 0.50 t2i 0.48`` (empty when off)."""
        if self.contrastive is None:
            return ""
        return (
            f" | contrastive train {record['train_contrastive_loss']:.4f} "
            f"val {record['val_contrastive_loss']:.4f} | R@1 i2t {record['val_i2t_r1']:.3f} "
            f"t2i {record['val_t2i_r1']:.3f} R@5 i2t {record['val_i2t_r5']:.3f} t2i {record['val_t2i_r5']:.3f}"
        )

    def _keep_if_best(self, record: dict[str, Any]) -> bool:
        """Write best/ and record the epoch when its val loss is the lowest yet; else count a bad
        epoch (early stopping). Returns whether it improved."""
        val_loss = record["val_loss"]
        if not (math.isfinite(val_loss) and val_loss < float(self.ckpt.best_val_loss.numpy())):
            self.ckpt.bad_epochs.assign_add(1)
            return False
        meta = {key: record[key] for key in ("epoch", "step", "val_loss", "val_ppl")}
        save_bundle(self.write_dir, self.model, self.cfg, self.tokenizer,
                    {**meta, "unigram_val_ppl": self.unigram_ppl})
        if self.write_dir != self.run_dir:
            shutil.rmtree(self.write_dir / BEST_DIR, ignore_errors=True)
        self.ckpt.set_best(val_loss, record["epoch"], 0)
        return True

    def _save_history(self) -> None:
        """history.json / .csv every epoch; curves.png at most every :data:`CURVES_EVERY_SECONDS`
        (multi-worker: only when training stops, since the other workers wait in their next
        collective while the chief renders)."""
        now = time.monotonic()
        plot = self._curves_at is None or now - self._curves_at >= CURVES_EVERY_SECONDS
        plot = plot and (self.replicas is None or self.replicas.kind != "multi-worker")
        self.history.save(self.run_dir, curves=plot)
        if plot:
            self._curves_at = now

"""``summary.json`` (:class:`TrainingSummary`) and the one-screen summary printed when training ends.

``summary.json`` carries ``schema_version`` (``"MAJOR.MINOR"``, :mod:`storyedge.schema`): a reader
accepts any MINOR of its MAJOR (fields it does not know are ignored), and refuses a file of
another MAJOR, or one that is not a training summary, with one line naming the file.
TensorFlow-free, so the app floor can read a summary without importing it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from storyedge.errors import UserError
from storyedge.run_dir import BEST_DIR, CONFIG_FILE, TOKENIZER_DIR
from storyedge.schema import check_schema, known_fields
from storyedge.atomic import atomic_write
from storyedge.training.history import CURVES_PNG, HISTORY_CSV, HISTORY_JSON, jsonable
from storyedge.training.workspace import CHECKPOINT_DIR, TENSORBOARD_DIR

#: ``summary.json``'s schema: a new field bumps MINOR, a change an old reader would misread MAJOR.
SCHEMA_VERSION = "1.1"
SUMMARY_FILE = "summary.json"
SUMMARY_KIND = "training summary"

#: How a run ended (:attr:`TrainingSummary.status`).
COMPLETED = "completed"
EARLY_STOPPING = "early_stopping"
TIME_BUDGET = "time_budget"
INTERRUPTED = "interrupted"
STATUS_TEXT = {
    COMPLETED: "completed",
    EARLY_STOPPING: "early stopping",
    TIME_BUDGET: "time budget reached",
    INTERRUPTED: "interrupted (resume with --resume)",
}

#: What a run directory holds after training (relative paths).
ARTIFACTS = {
    "config": CONFIG_FILE,
    "tokenizer": f"{TOKENIZER_DIR}/",
    "checkpoints": f"{CHECKPOINT_DIR}/",
    "best_model": f"{BEST_DIR}/",
    "history_json": HISTORY_JSON,
    "history_csv": HISTORY_CSV,
    "curves": CURVES_PNG,
    "tensorboard": f"{TENSORBOARD_DIR}/",
    "summary": SUMMARY_FILE,
}


@dataclass
class TrainingSummary:
    """How one training run went; ``summary.json`` in the run directory.

    Losses and perplexities are ``None`` when not finite (no validation yet).
    """

    #: :data:`COMPLETED`, :data:`EARLY_STOPPING`, :data:`TIME_BUDGET` or :data:`INTERRUPTED`
    status: str
    run_dir: str
    fusion: str
    best_epoch: int
    best_val_loss: float | None
    best_val_ppl: float | None
    unigram_val_ppl: float | None
    epochs_done: int
    epochs: int
    steps: int
    resumed_from_step: int | None
    train_seconds: float
    wall_seconds: float
    params_total: int
    #: parameter count per model component (``storyedge.model.story_model.count_params``)
    params: dict[str, int]
    vocab_size: int
    tokenizer: str
    train_windows: int
    val_windows: int
    #: stories per split as loaded
    stories: dict[str, int]
    #: the device decision, one line (``device: cpu (/CPU:0) - ...``)
    device: str
    tf_device: str
    precision: str
    jit_compile: bool
    tf_version: str
    #: the last history record (``history.json``'s fields), None before the first epoch ends
    last_epoch: dict[str, float | int | None] | None = None
    #: the tf.distribute decision, one line (``strategy: mirrored, 2 replica(s) ...``)
    strategy: str | None = None
    #: replicas that trained in sync (devices over all workers)
    replicas: int = 1
    #: the data's PPL floor on the validation windows and the oracle's exact-match rate
    #: (embedded synthetic data; :mod:`storyedge.data.floor`), else None
    data_floor_ppl: float | None = None
    oracle_exact_match: float | None = None
    artifacts: dict[str, str] = field(default_factory=lambda: dict(ARTIFACTS))
    schema_version: str = SCHEMA_VERSION

    @property
    def interrupted(self) -> bool:
        """Whether the run stopped on Ctrl-C (and can be resumed)."""
        return self.status == INTERRUPTED

    def to_json(self) -> str:
        """The summary as strict JSON text (non-finite floats as null)."""
        return json.dumps(jsonable(asdict(self)), indent=2)

    @classmethod
    def from_json(cls, text: str, path: str | Path = SUMMARY_FILE) -> "TrainingSummary":
        """Parse a summary; :class:`UserError` naming ``path`` when it is not one this version
        reads (not JSON, not a training summary, another schema MAJOR, fields missing)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{path}: malformed {SUMMARY_KIND} ({exc})") from None
        check_schema(data, SCHEMA_VERSION, SUMMARY_KIND, path, marks=("status",))
        try:
            return cls(**known_fields(cls, data))
        except TypeError as exc:
            raise UserError(f"{path}: malformed {SUMMARY_KIND} ({exc})") from None

    def write(self, run_dir: str | Path) -> Path:
        """Write ``run_dir/summary.json`` atomically; returns its path."""
        path = Path(run_dir) / SUMMARY_FILE
        atomic_write(path, self.to_json().encode())
        return path


def read_summary(run_dir: str | Path) -> TrainingSummary | None:
    """The summary of ``run_dir`` (None when it has none; :class:`UserError` when unreadable)."""
    path = Path(run_dir) / SUMMARY_FILE
    return TrainingSummary.from_json(path.read_text(), path) if path.is_file() else None


def finite_or_none(value: float | None) -> float | None:
    """``value``, or None when it is None, inf or nan."""
    return value if value is not None and math.isfinite(value) else None


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if finite_or_none(value) is None else format(value, fmt)


def floor_line(val_ppl: float | None, floor_ppl: float, oracle_exact_match: float | None) -> str:
    """``data floor   val PPL 1.104 (best - floor = 0.051; oracle exact match 70.2%)``."""
    excess = f"best - floor = {val_ppl - floor_ppl:.3f}; " if finite_or_none(val_ppl) is not None else ""
    em = f"oracle exact match {oracle_exact_match:.1%}" if oracle_exact_match is not None else ""
    return f"data floor   val PPL {floor_ppl:.3f} ({excess}{em})"


def format_summary(summary: TrainingSummary) -> str:
    """A compact, human-readable block (about a dozen lines)."""
    s = summary
    resumed = f" (resumed at step {s.resumed_from_step})" if s.resumed_from_step is not None else ""
    best = ARTIFACTS["best_model"] + " (weights, config, tokenizer, meta)"
    others = [path for name, path in ARTIFACTS.items() if name != "best_model"]
    lines = [
        "─" * 24 + " training summary " + "─" * 24,
        f"status       {STATUS_TEXT.get(s.status, s.status)} after {s.epochs_done}/{s.epochs} epochs, "
        f"{s.steps} steps{resumed}",
        f"best         epoch {s.best_epoch}: val loss {_num(s.best_val_loss, '.4f')}, "
        f"val PPL {_num(s.best_val_ppl, '.3f')}",
        f"baseline     unigram val PPL {_num(s.unigram_val_ppl, '.3f')} (same tokenizer)",
        *([floor_line(s.best_val_ppl, s.data_floor_ppl, s.oracle_exact_match)] if s.data_floor_ppl else []),
        f"model        fusion={s.fusion}, {s.params_total:,} params, vocab {s.vocab_size}, "
        f"{s.train_windows} train / {s.val_windows} val windows",
        f"device       {s.device.removeprefix('device: ')}; precision {s.precision}",
        f"time         training {s.train_seconds:.1f}s, wall {s.wall_seconds:.1f}s",
        f"written to   {s.run_dir}",
        f"             {best}, {', '.join(others[:4])},",
        f"             {', '.join(others[4:])}",
    ]
    return "\n".join(lines)

"""Per-epoch metrics history: ``history.json``, ``history.csv`` and ``curves.png``.

One record per finished epoch (1-based ``epoch``). On ``--resume`` the history is reloaded and
cut back to the epochs the restored checkpoint has finished, so a redone epoch is not doubled.
Files are written through a temporary file and ``os.replace`` so a crash never leaves a
truncated history.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from storyedge.atomic import atomic_write

HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
CURVES_PNG = "curves.png"

FIELDS = (
    "epoch",
    "step",
    "train_loss",
    "train_ppl",
    "val_loss",
    "val_ppl",
    "tokens_per_s",
    "epoch_seconds",
    "elapsed_seconds",
)
#: Fields of the contrastive loss's epochs (``training.contrastive_weight > 0``), after FIELDS.
CONTRASTIVE_FIELDS = (
    "train_contrastive_loss",
    "val_contrastive_loss",
    "val_i2t_r1",
    "val_i2t_r5",
    "val_t2i_r1",
    "val_t2i_r5",
)
#: Fields of the validation caption quality (``training.quality_windows > 0``), after the others.
QUALITY_FIELDS = ("val_exact_match", "val_bleu4")


class History:
    """Epoch records plus run-level facts (the unigram baseline, the data's PPL floor) for the curves.

    ``data_floor``: :meth:`storyedge.data.floor.DataFloor.as_dict` of the validation windows
    (embedded synthetic data only), saved as ``data_floor`` with its ``floor_ppl`` and
    ``oracle_exact_match`` also at the top level of ``history.json``, beside ``unigram_val_ppl``.
    """

    def __init__(
        self,
        records: list[dict[str, Any]] | None = None,
        unigram_ppl: float | None = None,
        data_floor: dict[str, Any] | None = None,
    ):
        self.records: list[dict[str, Any]] = list(records or [])
        self.unigram_ppl = unigram_ppl
        self.data_floor = data_floor

    @property
    def floor_ppl(self) -> float | None:
        """The data's PPL floor on the validation windows (None when unknown)."""
        return None if self.data_floor is None else float(self.data_floor["floor_ppl"])

    def append(self, record: dict[str, Any]) -> None:
        """Add one epoch's record (every field of :data:`FIELDS`)."""
        missing = [f for f in FIELDS if f not in record]
        if missing:
            raise ValueError(f"history record lacks {', '.join(missing)}")
        self.records.append(dict(record))

    def truncate(self, epochs_done: int) -> None:
        """Keep only the records of epochs ``1..epochs_done``."""
        self.records = [r for r in self.records if int(r["epoch"]) <= epochs_done]

    def best(self) -> dict[str, Any] | None:
        """The record with the lowest val loss (first on ties), or None."""
        finite = [r for r in self.records if not _bad(r["val_loss"])]
        return min(finite, key=lambda r: r["val_loss"]) if finite else None

    # -- files ----------------------------------------------------------------------------
    def save(self, run_dir: str | Path, curves: bool = True) -> None:
        """Write ``history.json``, ``history.csv`` and (with ``curves``) ``curves.png`` into ``run_dir``.

        Rendering the plot costs ~0.5 s (matplotlib), so the loop asks for it only now and then.
        """
        run_dir = Path(run_dir)
        payload: dict[str, Any] = {"unigram_val_ppl": self.unigram_ppl}
        if self.data_floor is not None:
            payload["data_floor_ppl"] = self.floor_ppl
            payload["oracle_exact_match"] = self.data_floor["oracle_exact_match"]
            payload["data_floor"] = self.data_floor
        payload["epochs"] = self.records
        atomic_write(run_dir / HISTORY_JSON, json.dumps(jsonable(payload), indent=2).encode())
        buffer = io.StringIO()
        contrastive = any("train_contrastive_loss" in r for r in self.records)
        fields = FIELDS + CONTRASTIVE_FIELDS if contrastive else FIELDS
        if any("val_bleu4" in r for r in self.records):
            fields += QUALITY_FIELDS
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for record in self.records:
            writer.writerow(record)
        atomic_write(run_dir / HISTORY_CSV, buffer.getvalue().encode())
        if curves:
            self.plot(run_dir)

    def plot(self, run_dir: str | Path) -> None:
        """Write ``curves.png`` (loss and perplexity per epoch, train vs val) into ``run_dir``."""
        atomic_write(Path(run_dir) / CURVES_PNG, plot_curves(self.records, self.unigram_ppl, self.floor_ppl))

    @classmethod
    def load(cls, run_dir: str | Path) -> "History":
        """The history saved in ``run_dir`` (empty when there is none)."""
        path = Path(run_dir) / HISTORY_JSON
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        return cls(data.get("epochs", []), data.get("unigram_val_ppl"), data.get("data_floor"))


def plot_curves(
    records: list[dict[str, Any]], unigram_ppl: float | None = None, floor_ppl: float | None = None
) -> bytes:
    """PNG bytes: loss (left) and perplexity (right), train vs val per epoch."""
    import matplotlib  # lazy: slow to import, only plotting needs it

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # lazy: as above; no pyplot: no global state, no GUI backend

    contrastive = any("train_contrastive_loss" in r for r in records)
    quality = any("val_bleu4" in r for r in records)
    panels = 2 + contrastive + quality
    fig = Figure(figsize=(5 * panels, 4), dpi=100)
    axes = fig.subplots(1, panels)
    ax_loss, ax_ppl = axes[0], axes[1]
    epochs = [r["epoch"] for r in records]
    for key, label, style in (("train", "train", "o-"), ("val", "val", "s-")):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in records], style, label=label)
        ax_ppl.plot(epochs, [r[f"{key}_ppl"] for r in records], style, label=label)
    if unigram_ppl is not None and math.isfinite(unigram_ppl):
        ax_ppl.axhline(unigram_ppl, color="grey", linestyle="--", label=f"unigram ({unigram_ppl:.1f})")
        ax_loss.axhline(math.log(unigram_ppl), color="grey", linestyle="--", label="unigram")
    if floor_ppl is not None and math.isfinite(floor_ppl):
        ax_ppl.axhline(floor_ppl, color="green", linestyle=":", label=f"data floor ({floor_ppl:.3f})")
        ax_loss.axhline(math.log(floor_ppl), color="green", linestyle=":", label="data floor")
    ax_loss.set(title="loss (mean token NLL)", xlabel="epoch", ylabel="loss")
    ax_ppl.set(title="perplexity", xlabel="epoch", ylabel="PPL")
    if any(r["train_ppl"] > 0 for r in records):
        ax_ppl.set_yscale("log")
    if contrastive:
        _plot_contrastive(axes[2], records)
    if quality:
        _plot_quality(axes[-1], records)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _plot_contrastive(ax: Any, records: list[dict[str, Any]]) -> None:
    """The contrastive loss (train vs val) and the val recall@1 per epoch, on their own panel."""
    epochs = [r["epoch"] for r in records]
    for key, label, style in (("train_contrastive_loss", "train", "o-"), ("val_contrastive_loss", "val", "s-")):
        ax.plot(epochs, [r.get(key, math.nan) for r in records], style, label=label)
    ax.set(title="contrastive loss (InfoNCE)", xlabel="epoch", ylabel="loss")
    recall = ax.twinx()
    for key, label in (("val_i2t_r1", "R@1 image→caption"), ("val_t2i_r1", "R@1 caption→image")):
        recall.plot(epochs, [r.get(key, math.nan) for r in records], "--", label=label)
    recall.set(ylabel="recall@1", ylim=(0, 1))
    recall.legend(loc="upper right")


def _plot_quality(ax: Any, records: list[dict[str, Any]]) -> None:
    """Validation BLEU-4 and exact match (in %) per epoch, on one 0-100 axis."""
    epochs = [r["epoch"] for r in records]
    ax.plot(epochs, [r.get("val_bleu4", math.nan) for r in records], "s-", label="BLEU-4")
    ax.plot(epochs, [100 * r.get("val_exact_match", math.nan) for r in records], "^-", label="exact match %")
    ax.set(title="val captions (greedy)", xlabel="epoch", ylabel="score (0-100)", ylim=(0, 100))


def _bad(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def jsonable(value: Any) -> Any:
    """Replace non-finite floats by None (strict JSON has no inf/nan)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value




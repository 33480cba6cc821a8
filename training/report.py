"""``summary.json`` and the one-screen summary printed when training ends."""

from __future__ import annotations

import math
from typing import Any

#: What a run directory holds after training (relative paths).
ARTIFACTS = {
    "config": "config.yaml",
    "tokenizer": "tokenizer/",
    "checkpoints": "checkpoints/",
    "best_model": "best/",
    "history_json": "history.json",
    "history_csv": "history.csv",
    "curves": "curves.png",
    "tensorboard": "tensorboard/",
    "summary": "summary.json",
}


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)


def format_summary(summary: dict[str, Any]) -> str:
    """A compact, human-readable block (about a dozen lines)."""
    stopped = {
        "completed": "completed",
        "early_stopping": "early stopping",
        "time_budget": "time budget reached",
        "interrupted": "interrupted (resume with --resume)",
    }.get(summary["status"], summary["status"])
    resumed = summary.get("resumed_from_step")
    lines = [
        "─" * 24 + " training summary " + "─" * 24,
        f"status       {stopped} after {summary['epochs_done']}/{summary['epochs']} epochs, "
        f"{summary['steps']} steps" + (f" (resumed at step {resumed})" if resumed is not None else ""),
        f"best         epoch {summary['best_epoch']}: val loss {_num(summary['best_val_loss'], '.4f')}, "
        f"val PPL {_num(summary['best_val_ppl'], '.3f')}",
        f"baseline     unigram val PPL {_num(summary['unigram_val_ppl'], '.3f')} (same tokenizer)",
        f"model        fusion={summary['fusion']}, {summary['params']['total']:,} params, "
        f"vocab {summary['vocab_size']}, {summary['train_windows']} train / "
        f"{summary['val_windows']} val windows",
        f"device       {summary['device'].removeprefix('device: ')}; precision {summary['precision']}",
        f"time         training {summary['train_seconds']:.1f}s, wall {summary['wall_seconds']:.1f}s",
        f"written to   {summary['run_dir']}",
        "             best/ (weights, config, tokenizer, meta), checkpoints/, history.json, "
        "history.csv,",
        "             curves.png, tensorboard/, config.yaml, tokenizer/, summary.json",
    ]
    return "\n".join(lines)

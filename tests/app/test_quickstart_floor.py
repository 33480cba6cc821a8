"""The quickstart screen's data-floor lines (the embedded stories' PPL floor beside each trained PPL)."""

from __future__ import annotations

from dataclasses import replace

from storyedge.app.quickstart import _floor_lines
from storyedge.training.report import TIME_BUDGET, TrainingSummary


def _summary(**changes: object) -> TrainingSummary:
    summary = TrainingSummary(
        status=TIME_BUDGET, run_dir="/tmp/run", fusion="attention", best_epoch=3, best_val_loss=0.2,
        best_val_ppl=1.25, unigram_val_ppl=30.0, epochs_done=4, epochs=30, steps=120,
        resumed_from_step=None, train_seconds=12.5, wall_seconds=20.0, params_total=1, params={"total": 1},
        vocab_size=200, tokenizer="wordpiece", train_windows=100, val_windows=12, stories={"train": 32},
        device="device: cpu", tf_device="/CPU:0", precision="float32", jit_compile=False, tf_version="2.21.0",
        data_floor_ppl=1.1, oracle_exact_match=0.7,
    )
    return replace(summary, **changes)


def test_floor_and_excess_of_both_runs() -> None:
    lines = _floor_lines(_summary(), _summary(fusion="text_only", best_val_ppl=1.6))
    assert lines[0].split() == ["floor", "data", "floor", "1.100", "(paraphrase", "entropy;", "oracle", "exact",
                                "match", "70.0%)"]
    assert lines[1].strip() == "excess     PPL - floor: attention +0.150, text_only +0.500"


def test_no_floor_no_lines() -> None:
    assert _floor_lines(_summary(data_floor_ppl=None), None) == []
    assert _floor_lines(_summary(), None)[1].strip() == "excess     PPL - floor: attention +0.150"

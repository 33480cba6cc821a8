"""summary.json as a typed TrainingSummary: round trip, newer MINOR read, other MAJOR refused."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from storyedge.errors import UserError
from storyedge.training.report import (
    ARTIFACTS,
    INTERRUPTED,
    SCHEMA_VERSION,
    SUMMARY_FILE,
    TIME_BUDGET,
    TrainingSummary,
    format_summary,
    read_summary,
)


def _summary(**changes) -> TrainingSummary:
    summary = TrainingSummary(
        status=TIME_BUDGET,
        run_dir="/tmp/run",
        fusion="attention",
        best_epoch=3,
        best_val_loss=0.25,
        best_val_ppl=math.exp(0.25),
        unigram_val_ppl=17.2,
        epochs_done=4,
        epochs=30,
        steps=120,
        resumed_from_step=None,
        train_seconds=12.5,
        wall_seconds=20.0,
        params_total=12345,
        params={"embedding": 1000, "decoder": 2000, "total": 12345, "trainable": 12000},
        vocab_size=200,
        tokenizer="wordpiece (trained on 40 stories)",
        train_windows=100,
        val_windows=12,
        stories={"train": 32, "validation": 4, "test": 4},
        device="device: cpu (/CPU:0) - auto: no GPU",
        tf_device="/CPU:0",
        precision="float32",
        jit_compile=False,
        tf_version="2.21.0",
        last_epoch={"epoch": 4, "step": 120, "val_loss": 0.3},
    )
    return replace(summary, **changes)


def test_round_trip_through_the_run_dir(tmp_path: Path) -> None:
    summary = _summary()
    path = summary.write(tmp_path)
    assert path == tmp_path / SUMMARY_FILE
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION == "1.1"
    assert data["artifacts"] == ARTIFACTS
    assert read_summary(tmp_path) == summary
    assert TrainingSummary.from_json(summary.to_json()) == summary


def test_a_1_0_summary_without_the_data_floor_is_read() -> None:
    data = json.loads(_summary().to_json())
    del data["data_floor_ppl"], data["oracle_exact_match"]
    data["schema_version"] = "1.0"
    back = TrainingSummary.from_json(json.dumps(data))
    assert back.data_floor_ppl is None and back.oracle_exact_match is None


def test_format_summary_shows_the_data_floor() -> None:
    text = format_summary(_summary(data_floor_ppl=1.104, oracle_exact_match=0.7))
    assert "data floor   val PPL 1.104 (best - floor = 0.180; oracle exact match 70.0%)" in text
    assert "data floor" not in format_summary(_summary())


def test_no_summary_is_none(tmp_path: Path) -> None:
    assert read_summary(tmp_path) is None


def test_non_finite_values_are_written_as_null() -> None:
    summary = _summary(best_val_loss=math.inf, status=INTERRUPTED, last_epoch={"train_loss": math.nan})
    text = summary.to_json()
    assert "Infinity" not in text and "NaN" not in text
    back = TrainingSummary.from_json(text)
    assert back.best_val_loss is None and back.last_epoch == {"train_loss": None}
    assert back.interrupted


def test_a_newer_minor_with_an_extra_field_is_read() -> None:
    data = json.loads(_summary().to_json())
    data.update(schema_version="1.7", added_in_a_later_minor={"x": 1})
    back = TrainingSummary.from_json(json.dumps(data), "runs/x/summary.json")
    assert back == _summary(schema_version="1.7")  # the unknown field is ignored
    assert not hasattr(back, "added_in_a_later_minor")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"schema_version": "2.0", "status": "completed"}', "schema_version 2.0 is not readable"),
        ('{"status": "completed", "best_val_ppl": 1.03}', "no schema_version"),
        ("[1, 2, 3]", "not a storyedge training summary"),
        ("{not json", "malformed training summary"),
        ('{"schema_version": "1.0", "status": "completed"}', "malformed training summary"),
    ],
    ids=["other-major", "pre-schema", "not-an-object", "not-json", "fields-missing"],
)
def test_other_major_or_foreign_files_are_one_line_errors(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / SUMMARY_FILE).write_text(text)
    with pytest.raises(UserError) as info:
        read_summary(tmp_path)
    message = str(info.value)
    assert "\n" not in message and needle in message and str(tmp_path / SUMMARY_FILE) in message


def test_format_summary_shows_the_run() -> None:
    text = format_summary(_summary(resumed_from_step=40))
    assert "time budget reached after 4/30 epochs, 120 steps (resumed at step 40)" in text
    assert "val PPL 1.284" in text and "unigram val PPL 17.200" in text
    assert "12,345 params" in text and "cpu (/CPU:0)" in text
    for path in ARTIFACTS.values():
        assert path in text
    assert "val PPL n/a" in format_summary(_summary(best_val_loss=None, best_val_ppl=None))

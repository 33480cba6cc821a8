"""The typed bench report on hand-made numbers: JSON round trip and schema versions, the summary's
picks, budget verdicts, and the renderings (fast; no TensorFlow, no exported files)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from bench_testutil import hand_report, hand_result

from storyedge.bench.report import compare_reports, load_report, markdown_text, terminal_text
from storyedge.bench.results import BUDGET_LABELS, SCHEMA_VERSION, BenchReport, Budgets, DataFloorNote
from storyedge.bench.summary import BUDGET_MEASURES
from storyedge.errors import UserError

#: words of the project's own bookkeeping that must never reach a user's screen or report ("target
#: tokens" of parity are fine)
INTERNAL_WORDS = ("targets", "goal", "issue", "renovation", "not met", "todo")


def _fleet() -> list:
    """tf-reference plus four exports: the fastest caption fails its gate, the others pass."""
    return [
        hand_result("tf-reference", caption_ms=40.0, step_ms=2.0, encoder_ms=8.0),
        hand_result("tflite-fp32", caption_ms=4.0, step_ms=0.25, size_bytes=1_300_000, floor_multiple=1.2),
        hand_result("onnx-fp32", caption_ms=5.0, step_ms=0.2, size_bytes=1_320_000, fits_in_llc=True),
        hand_result("tflite-int8-dynamic", precision="int8-dynamic", caption_ms=3.0, step_ms=0.1, size_bytes=400_000,
                    passed=False),
        hand_result("onnx-int8-dynamic", precision="int8-dynamic", caption_ms=8.0, step_ms=0.3, size_bytes=410_000,
                    rss_delta_mb=-5.0),
    ]


# ------------------------------------------------------------------------------- summary


def test_summary_picks_the_best_backend_that_passes_the_gates() -> None:
    s = hand_report(_fleet()).summary
    assert s.parity_checked and s.reference == "tf-reference"
    assert s.eligible == ["tflite-fp32", "onnx-fp32", "onnx-int8-dynamic"]  # not the reference, not the failed one
    assert s.fastest_caption.backend == "tflite-fp32" and s.fastest_caption.value == 4.0
    assert s.fastest_caption.speedup == pytest.approx(10.0) and s.fastest_caption.speedup_of == "caption"
    assert s.fastest_caption.floor_multiple == pytest.approx(1.2)  # weights not in cache: the floor binds
    assert s.fastest_step.backend == "onnx-fp32" and s.fastest_step.speedup == pytest.approx(10.0)
    assert s.fastest_step.speedup_of == "step"
    assert s.fastest_step.floor_multiple is None  # its weights fit in the last-level cache
    assert s.smallest_file.backend == "onnx-int8-dynamic" and s.smallest_file.value == pytest.approx(0.41)
    assert s.smallest_file.unit == "MB" and s.smallest_file.speedup == pytest.approx(5.0)
    assert s.within_budgets is None and not s.budgets_set and not s.budgets_failed


def test_summary_puts_the_step_against_its_binding_floor_where_measured() -> None:
    from storyedge.bench.results import BackendFloors, GraphFloor

    fleet = _fleet()
    step = next(b for b in fleet if b.name == "onnx-fp32")  # its weights fit in the cache: no roofline multiple
    graph = GraphFloor(macs=1000, compute_floor_ms=0.05, peak="onnxruntime fp32", bytes_floor_ms=0.3, weight_bytes=4000,
                       binding="read", floor_ms=0.16, vs_floor=1.25, read_floor_ms=0.16, read_peak="onnxruntime fp32")
    step.floors = BackendFloors(encoder=graph, step=graph)
    report = hand_report(fleet)
    pick = report.summary.fastest_step
    assert (pick.backend, pick.floor_multiple, pick.floor_binding) == ("onnx-fp32", 1.25, "read")
    assert report.summary.fastest_caption.floor_binding == "bytes"  # the roofline's, where no floor was measured
    assert "1.25x read" in terminal_text(report) and "1.20x bytes" in terminal_text(report)
    back = BenchReport.from_json(report.to_json())
    assert back.summary.fastest_step.floor_binding == "read"


def test_summary_when_every_export_fails_its_gate() -> None:
    fleet = [hand_result("tf-reference"), hand_result("tflite-fp32", passed=False)]
    report = hand_report(fleet)
    assert report.summary.eligible == [] and report.summary.fastest_caption is None
    assert "no exported backend passes the parity gates" in terminal_text(report)


def test_latency_only_summary_ranks_by_latency_and_says_parity_was_not_checked() -> None:
    fleet = [r for r in _fleet() if not r.reference]
    for r in fleet:
        r.parity = None
    report = hand_report(fleet, latency_only=True)
    s = report.summary
    assert not s.parity_checked and s.reference is None
    assert s.fastest_caption.backend == "tflite-int8-dynamic"  # no gates ran: every export is eligible
    assert s.fastest_caption.speedup is None
    text = terminal_text(report)
    assert "parity NOT checked" in text and "no TF reference was timed" in text
    assert "parity NOT checked" in markdown_text(report)


# ------------------------------------------------------------------------------- budgets


def test_every_budget_has_a_measure_and_a_flag_label() -> None:
    fields = {f.name for f in dataclasses.fields(Budgets)}
    assert fields == set(BUDGET_MEASURES) == set(BUDGET_LABELS)


def test_budget_verdicts_within_and_over() -> None:
    budgets = Budgets(caption_ms=4.5, step_ms=0.25, encoder_ms=4.0, size_mb=1.31, peak_rss_mb=115.0)
    report = hand_report(_fleet(), budgets)
    verdicts = {b.name: {v.budget: v for v in b.budgets} for b in report.backends}
    fp32 = verdicts["tflite-fp32"]
    assert [v.budget for v in report.backend("tflite-fp32").budgets] == list(budgets.limits())
    assert fp32["caption_ms"].within and fp32["caption_ms"].value == 4.0 and fp32["caption_ms"].limit == 4.5
    assert fp32["step_ms"].within  # 0.25 <= 0.25: a limit is inclusive
    assert fp32["encoder_ms"].within  # 4.0 <= 4.0
    assert fp32["size_mb"].within and fp32["size_mb"].value == pytest.approx(1.3)
    assert not fp32["peak_rss_mb"].within and fp32["peak_rss_mb"].value == pytest.approx(120.0)  # 100 + 20
    onnx8 = verdicts["onnx-int8-dynamic"]
    assert onnx8["peak_rss_mb"].within and onnx8["peak_rss_mb"].value == pytest.approx(100.0)  # a negative RSS+ adds 0
    assert not onnx8["caption_ms"].within and not onnx8["step_ms"].within
    ref = verdicts["tf-reference"]
    assert ref["size_mb"].value is None and ref["size_mb"].within is None  # no file: not known to be within
    assert "size_mb" in report.backend("tf-reference").over_budget
    assert report.summary.budgets_set and report.summary.within_budgets is None and report.summary.budgets_failed


def test_summary_names_the_fastest_backend_within_every_budget() -> None:
    report = hand_report(_fleet(), Budgets(size_mb=0.5))
    s = report.summary
    # tflite-int8-dynamic is smaller and faster but fails its gate
    assert s.within_budgets.backend == "onnx-int8-dynamic" and s.within_budgets.speedup == pytest.approx(5.0)
    assert s.fastest_caption.backend == "tflite-fp32"  # the unbudgeted picks are unchanged
    assert not s.budgets_failed
    assert hand_report(_fleet(), Budgets(caption_ms=100.0)).summary.within_budgets.backend == "tflite-fp32"


def test_budgets_are_shown_in_the_terminal_and_markdown() -> None:
    report = hand_report(_fleet(), Budgets(caption_ms=4.5, size_mb=1.31))
    text, md = terminal_text(report), markdown_text(report)
    for out in (text, md):
        assert "caption_ms <= 4.5" in out and "size_mb <= 1.31" in out
        assert "4.000 ok" in out and "8.000 OVER" in out and "OVER caption_ms" in out
        assert "fastest caption within budgets" in out
    assert "## Budgets" in md and "| tflite-fp32" in md
    assert "Budgets" not in terminal_text(hand_report(_fleet()))  # none set: no budget table


def test_output_has_no_internal_words() -> None:
    report = hand_report(_fleet(), Budgets(caption_ms=1.0))
    for out in (terminal_text(report), markdown_text(report)):
        lowered = out.lower()
        assert not [w for w in INTERNAL_WORDS if w in lowered]


# ------------------------------------------------------------------------------ JSON


def test_report_json_round_trip() -> None:
    report = hand_report(_fleet(), Budgets(caption_ms=4.5))
    report.compare = compare_reports(report, report, "old/report.json")
    text = report.to_json()
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION == "1.8"
    back = BenchReport.from_json(text, "report.json")
    assert back == report
    assert back.backends[1].latency.step.p50_ms == 0.25 and back.backends[1].parity.gates["ppl_ratio"].passed
    assert back.summary.fastest_caption.backend == "tflite-fp32"
    assert back.settings.budgets.caption_ms == 4.5 and back.compare.rows[0].step.delta == 0.0


def test_the_data_floor_is_shown_beside_the_parity_ppl() -> None:
    report = hand_report(_fleet())
    assert "Data floor" not in terminal_text(report)  # unknown (not the embedded data): not shown
    report.data_floor = DataFloorNote("validation", 6, 1.1046, 0.8018, 8.02, 0.667)
    back = BenchReport.from_json(report.to_json())
    assert back.data_floor == report.data_floor
    ref_ppl = report.reference_result.parity.ppl
    for out in (terminal_text(report), markdown_text(report)):
        assert "Data floor on these 6 windows: PPL 1.1046" in out and "oracle exact match 66.7%" in out
        assert f"tf-reference PPL - floor = {ref_ppl - 1.1046:.4f}" in out
    old = json.loads(hand_report(_fleet()).to_json())
    del old["data_floor"]
    old["schema_version"] = "1.2"
    assert BenchReport.from_json(json.dumps(old)).data_floor is None


def test_a_newer_minor_with_unknown_fields_is_read() -> None:
    data = json.loads(hand_report(_fleet()).to_json())
    data["schema_version"] = "1.9"
    data["energy"] = {"joules": 3.0}
    data["backends"][1]["latency"]["step"]["p999_ms"] = 9.0
    data["summary"]["greenest"] = None
    back = BenchReport.from_json(json.dumps(data), "new.json")
    assert back.backends[1].latency.step.p50_ms == 0.25 and not hasattr(back, "energy")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not json at all", "not JSON"),
        ('{"backends": []}', "no schema_version"),
        ('[1, 2]', "expected a JSON object"),
        ('{"schema_version": "2.0", "backends": []}', "schema_version 2.0 is not readable"),
        ('{"schema_version": "1.0", "backends": "x"}', "malformed bench report"),
        ('{"schema_version": "2.0", "files": [], "config": {}}', "not a storyedge bench report (no 'backends')"),
    ],
)
def test_foreign_or_other_major_json_is_one_clear_error(text: str, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_report(tmp_path)  # the directory holding it
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message
    with pytest.raises(UserError, match="no bench report"):
        load_report(tmp_path / "absent.json")

"""Caption quality in the bench (storyedge.bench.quality, .quality_report, .pareto): scores per
backend, deltas against the reference, the drop gates, the report table and the plots. numpy
toy backends and hand-made reports: no TensorFlow."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from bench_testutil import ToyBackend, hand_report, hand_result, toy_decoder, toy_windows

from storyedge.bench.parity import run_parity
from storyedge.bench.pareto import pareto_front
from storyedge.bench.quality import check_gates_measurable, reference_texts, score_backends
from storyedge.bench.report import compare_reports, compare_text, markdown_text, terminal_text, write_reports
from storyedge.bench.results import BenchReport, CaptionQuality, Gates, QualitySummary
from storyedge.bench.runner import write_and_check
from storyedge.captions.scores import CaptionDelta, CaptionScores
from storyedge.errors import CheckFailed, DataError, UserError

WORDS = ["pad", "unk", "bos", "eos"] + [f"w{i}" for i in range(4, 40)]


class Tok:
    """Ids → words; stops at [EOS] (3), drops the special ids, like the run tokenizer."""

    pad_id, bos_id, eos_id = 0, 2, 3

    def decode(self, ids: list[int]) -> str:
        out = []
        for i in ids:
            if int(i) == self.eos_id:
                break
            if int(i) > 3:
                out.append(WORDS[int(i)])
        return " ".join(out)


def _targets(windows: dict[str, np.ndarray]) -> list[list[int]]:
    return [[int(t) for t in row[1:] if t > 3] for row in windows["target"]]


def test_deltas_against_the_reference_and_gates_fire_on_a_crafted_drop() -> None:
    windows = toy_windows(8, vocab=12, length=9, seed=3)
    refs = reference_texts(Tok(), windows, "validation")
    perfect = _targets(windows)
    dropped = [ids[:-1] if len(ids) > 1 else ids + ids for ids in perfect]  # every caption is changed
    backends = [ToyBackend("tflite-fp32"), ToyBackend("tflite-int8-dynamic", precision="int8-dynamic")]
    out = score_backends(ToyBackend("tf-reference"), backends, {"tf-reference": perfect, "tflite-fp32": perfect,
                                                                 "tflite-int8-dynamic": dropped},
                         refs, tokenizer=Tok(), gates=Gates(), split="validation")
    ref_q = out.by_backend["tf-reference"][0]
    assert ref_q.scores.bleu4 == pytest.approx(100.0, abs=1e-9) and ref_q.scores.exact_match == 1.0
    assert ref_q.delta is None and ref_q.gates == {}
    fp32 = out.by_backend["tflite-fp32"][0]
    assert fp32.delta.bleu4 == 0.0 and fp32.delta.exact_match == 0.0 and fp32.passed
    int8 = out.by_backend["tflite-int8-dynamic"][0]
    for metric in ("exact_match", "bleu4", "rouge_l"):
        assert int8.delta.value(metric) == pytest.approx(int8.scores.value(metric) - ref_q.scores.value(metric))
    assert int8.delta.exact_match == -1.0 and int8.delta.bleu4 < -4.0
    assert not int8.passed
    assert set(int8.gates) >= {"bleu4_delta", "exact_match_delta"}
    assert int8.gates["bleu4_delta"].limit == -4.0 and not int8.gates["bleu4_delta"].passed
    assert any("tflite-int8-dynamic greedy bleu4_delta" in line for line in int8.failures("tflite-int8-dynamic"))
    assert out.summary.windows == 8 and out.summary.decodings == ["greedy"]


def test_gates_off_and_within_the_allowed_drop() -> None:
    ref = CaptionScores(10, 0.5, 40.0, 0.6, 2.0)
    q = CaptionQuality("greedy", CaptionScores(10, 0.5, 38.5, 0.6, 1.9), None)
    q.delta = CaptionDelta.between(q.scores, ref)
    Gates(bleu_drop=2.0, cider_drop=None, exact_match_drop=None).apply_quality(q)
    assert set(q.gates) == {"bleu4_delta"} and q.passed
    q2 = CaptionQuality("greedy", q.scores, q.delta)
    Gates(bleu_drop=1.0, cider_drop=0.05, exact_match_drop=0.0).apply_quality(q2)
    assert not q2.gates["bleu4_delta"].passed and not q2.gates["cider_d_delta"].passed
    assert q2.gates["exact_match_delta"].passed  # no drop at all is within a 0 drop


def test_parity_greedy_captions_and_beam_captions_are_scored_per_backend() -> None:
    windows = toy_windows(5, vocab=11, length=7, seed=1)
    ref, other = ToyBackend("tf-reference"), ToyBackend("onnx-fp32")
    for b in (ref, other):
        b.decoder = toy_decoder(b.hidden, batch=2)  # every state tensor has the static batch
    run = run_parity(ref, [other], windows, batch=2, pad_id=0, bos_id=2, eos_id=3, max_new=6)
    assert len(run.targets) == 5 and all(len(run.captions[n]) == 5 for n in ("tf-reference", "onnx-fp32"))
    refs = reference_texts(Tok(), windows, "validation")
    out = score_backends(ref, [other], run.captions, refs, tokenizer=Tok(), gates=Gates(), split="validation",
                         windows=windows, beam=3, batch=2, max_new=6, echo=lambda _: None)
    assert out.summary.decodings == ["greedy", "beam3"]
    for name in ("tf-reference", "onnx-fp32"):
        assert [q.decoding for q in out.by_backend[name]] == ["greedy", "beam3"]
    # the same model twice: identical captions, zero deltas, gates pass
    for q in out.by_backend["onnx-fp32"]:
        assert q.delta.bleu4 == 0.0 and q.delta.exact_match == 0.0 and q.passed


def test_empty_reference_names_the_split() -> None:
    windows = toy_windows(3, seed=0)
    windows["target"][1, 1:] = 0
    windows["target"][1, 1] = 3  # [BOS] [EOS]: nothing to say
    with pytest.raises(DataError, match="split 'test': 1 of 3 reference captions are empty"):
        reference_texts(Tok(), windows, "test")


def test_a_cider_gate_without_pycocoevalcap_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)
    with pytest.raises(UserError, match="gate_cider_drop .* needs pycocoevalcap") as info:
        check_gates_measurable(Gates())
    assert info.value.exit_code == 2
    check_gates_measurable(Gates(cider_drop=None))  # no CIDEr gate: fine, CIDEr-D is reported "not installed"


# ---------------------------------------------------------------------------- report, plots


def _with_quality(report: BenchReport, int8_bleu: float = 30.0) -> BenchReport:
    ref = CaptionScores(10, 0.6, 40.0, 0.7, 2.5)
    for b in report.backends:
        bleu = int8_bleu if b.precision == "int8-dynamic" else 40.0
        scores = CaptionScores(10, 0.6, bleu, 0.7, None if b.name == "onnx-fp32" else 2.5)
        q = CaptionQuality("greedy", scores if not b.reference else ref,
                           None if b.reference else CaptionDelta.between(scores, ref))
        b.quality = [report.gates.apply_quality(q)]
    report.quality = QualitySummary("validation", 10, "words", ["greedy"], "pycocoevalcap 1.2")
    report.failed_gates += [line for b in report.backends for q in b.quality for line in q.failures(b.name)]
    return report


def _fleet() -> list:
    return [
        hand_result("tf-reference", caption_ms=40.0),
        hand_result("tflite-fp32", caption_ms=4.0, size_bytes=1_300_000),
        hand_result("onnx-fp32", caption_ms=5.0, size_bytes=1_320_000),
        hand_result("onnx-int8-dynamic", precision="int8-dynamic", caption_ms=3.0, size_bytes=400_000),
    ]


def test_quality_table_in_terminal_and_markdown() -> None:
    report = _with_quality(hand_report(_fleet()))
    text, md = terminal_text(report), markdown_text(report)
    assert "Caption quality vs the reference captions on 10 validation windows" in text
    assert "## Caption quality" in md and "| onnx-int8-dynamic" in md
    row = next(line for line in text.splitlines() if line.startswith("onnx-int8-dynamic") and "greedy" in line)
    assert "30.00" in row and "-10.00" in row and "FAIL bleu4" in row
    assert "not installed" in next(line for line in text.splitlines() if line.startswith("onnx-fp32") and "greedy" in line)


def test_failed_quality_gate_exits_1_after_writing(tmp_path: Path) -> None:
    report = _with_quality(hand_report(_fleet()))
    with pytest.raises(CheckFailed, match="onnx-int8-dynamic greedy bleu4_delta"):
        write_and_check(report, tmp_path, echo=lambda _: None)
    assert (tmp_path / "report.json").is_file() and (tmp_path / "pareto.png").is_file()
    back = BenchReport.from_json((tmp_path / "report.json").read_text())
    assert back.backend("onnx-int8-dynamic").quality[0].gates["bleu4_delta"].passed is False
    assert back.quality.windows == 10


def test_pareto_and_ppl_plots_written_with_and_without_quality(tmp_path: Path) -> None:
    paths = write_reports(_with_quality(hand_report(_fleet()), int8_bleu=39.5), tmp_path / "q")
    assert {"pareto.png", "ppl_ratio.png"} <= set(paths)
    plain = hand_report(_fleet())
    for b in plain.backends:
        if b.parity is not None and not b.reference:
            b.parity.gate_lines = Gates().lines(b.precision)
    paths = write_reports(plain, tmp_path / "p")
    assert (tmp_path / "p" / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_pareto_front() -> None:
    # (latency, BLEU): (1, 10) fastest; (2, 30) better BLEU; (3, 20) beaten by (2, 30); (4, 30) tie but slower
    points = [(3.0, 20.0), (1.0, 10.0), (2.0, 30.0), (4.0, 30.0)]
    assert pareto_front(points, higher_is_better=True) == [1, 2]
    # PPL ratio: lower is better
    assert pareto_front([(1.0, 1.02), (2.0, 1.0), (3.0, 1.01)], higher_is_better=False) == [0, 1]
    assert math.isfinite(sum(p[0] for p in points))


def test_compare_carries_greedy_bleu4() -> None:
    old = _with_quality(hand_report(_fleet()), int8_bleu=38.0)
    new = _with_quality(hand_report(_fleet()), int8_bleu=30.0)
    compare = compare_reports(old, new, "old/report.json")
    rows = {r.backend: r for r in compare.rows}
    assert rows["onnx-int8-dynamic"].bleu4.old == 38.0 and rows["onnx-int8-dynamic"].bleu4.delta == -8.0
    assert "38.00→30.00" in compare_text(compare)
    bare = compare_reports(hand_report(_fleet()), new, "old/report.json")  # an old report without quality
    assert {r.backend: r for r in bare.rows}["tflite-fp32"].bleu4.old is None

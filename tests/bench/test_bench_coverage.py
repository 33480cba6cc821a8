"""int4 gates, per-backend coverage in the bench report (tables, JSON, older reports), and the
coverage read from an export manifest."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from bench_testutil import hand_report, hand_result

from storyedge.bench.coverage import backend_coverage
from storyedge.bench.report import coverage_rows, markdown_text, terminal_text
from storyedge.bench.results import BenchReport, FileCoverage, Gates, ParityStats
from storyedge.config import BenchConfig
from storyedge.manifest import Coverage, ExportedFile


def test_int4_gates_default_and_override() -> None:
    gates = Gates.from_bench_config(BenchConfig())
    assert [(n, op, limit) for n, op, limit in gates.checks("int4")] == [("ppl_ratio", "<=", 1.05),
                                                                         ("top1_decisive", ">=", 0.9)]
    ok = gates.apply(ParityStats("tflite-int4", "int4", 10.3, 2.33, 100, 10, ppl_ratio=1.03, top1_decisive=0.93))
    assert ok.passed and ok.gate_lines == [1.05]
    low = gates.apply(ParityStats("onnx-int4", "int4", 10.3, 2.33, 100, 10, ppl_ratio=1.03, top1_decisive=0.85))
    assert not low.passed and low.failures() == ["onnx-int4 top1_decisive 0.85 (needs >= 0.9)"]
    relaxed = Gates.from_bench_config(BenchConfig(), int4_top1_min=0.8)
    assert relaxed.apply(ParityStats("onnx-int4", "int4", 10.3, 2.33, 100, 10, ppl_ratio=1.03,
                                     top1_decisive=0.85)).passed
    # ONNX fp16 is gated like TFLite fp16 (by precision)
    assert gates.checks("fp16") == [("ppl_ratio", "<=", 1.005)]


def _fleet():
    ref = hand_result("tf-reference")
    dyn = hand_result("onnx-int8-dynamic", precision="int8-dynamic")
    dyn.coverage = [
        FileCoverage("onnx/encoder.int8-dynamic.onnx", False, {"integer": 23, "float": 150, "convert": 46},
                     {"int8": 50_000, "float32": 20_000}, ["com.microsoft.DynamicQuantizeLSTM"], ["Add", "LSTM"]),
        FileCoverage("onnx/decoder_step.int8-dynamic.onnx", True, {"integer": 3, "hybrid": 1, "float": 25},
                     {"int8": 9_000}, [], ["Add"]),
    ]
    return [ref, dyn]


def test_coverage_table_in_terminal_markdown_and_json() -> None:
    report = hand_report(_fleet())
    headers, rows = coverage_rows(report)
    assert headers[:4] == ["backend", "file", "portable", "integer"]
    assert [r[:3] for r in rows] == [["onnx-int8-dynamic", "onnx/encoder.int8-dynamic.onnx", "NO"],
                                     ["onnx-int8-dynamic", "onnx/decoder_step.int8-dynamic.onnx", "yes"]]
    assert rows[0][3] == "23" and rows[0][-1] == "contrib: com.microsoft.DynamicQuantizeLSTM"
    assert rows[0][-2] == "int8 0.050, float32 0.020"
    assert "Coverage" in terminal_text(report) and "## Coverage" in markdown_text(report)
    assert report.backends[1].portable is False and report.backends[0].portable is None
    back = BenchReport.from_json(report.to_json())
    assert back.backends[1].coverage == report.backends[1].coverage
    # a 1.0 report (no coverage) still reads
    data = json.loads(report.to_json())
    data["schema_version"] = "1.0"
    for b in data["backends"]:
        del b["coverage"]
    old = BenchReport.from_json(json.dumps(data))
    assert old.backends[1].coverage == [] and "## Coverage" not in markdown_text(old)


def test_backend_coverage_from_the_manifest(tmp_path: Path) -> None:
    def entry(path: str, cov: Coverage | None) -> ExportedFile:
        return ExportedFile(path, "onnx", path.split("/")[1].split(".")[0], "int4", {}, 1, "0", coverage=cov)

    enc = Coverage(compute={"float": {"LSTM": 5, "Add": 3}, "hybrid": {"com.microsoft.MatMulNBits": 1}},
                   weight_bytes={"uint8": 256, "float32": 900}, portable=False,
                   nonportable_ops={"com.microsoft.MatMulNBits": 1})
    manifest = SimpleNamespace(files=[entry("onnx/encoder.int4.onnx", enc), entry("onnx/decoder_step.int4.onnx", None)])
    export = SimpleNamespace(path=tmp_path, manifest=manifest)
    spec = SimpleNamespace(encoder_path=tmp_path / "onnx/encoder.int4.onnx",
                           decoder_path=tmp_path / "onnx/decoder_step.int4.onnx")
    enc_cov, dec_cov = backend_coverage(export, spec)
    assert enc_cov == FileCoverage("onnx/encoder.int4.onnx", False, {"float": 8, "hybrid": 1},
                                   {"uint8": 256, "float32": 900}, ["com.microsoft.MatMulNBits"], ["Add", "LSTM"])
    assert dec_cov == FileCoverage("onnx/decoder_step.int4.onnx", None)  # a 2.0 manifest: unknown
    multi = SimpleNamespace(encoder_path=tmp_path / "onnx/encoder.int4.onnx", decoder_path=tmp_path / "onnx/encoder.int4.onnx")
    assert len(backend_coverage(export, multi)) == 1 and backend_coverage(export, None) == []
    story = Coverage(compute={"float": {"LSTM": 2}}, weight_bytes={"float32": 64})
    manifest.files.append(entry("onnx/frame_encoder.int4.onnx", story))
    spec.story_paths = {"frame_encoder": tmp_path / "onnx/frame_encoder.int4.onnx"}
    assert [c.path for c in backend_coverage(export, spec)] == [
        "onnx/encoder.int4.onnx", "onnx/decoder_step.int4.onnx", "onnx/frame_encoder.int4.onnx"]
    assert backend_coverage(export, spec)[2].compute == {"float": 2}

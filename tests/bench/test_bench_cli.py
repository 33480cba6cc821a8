"""``storyedge bench`` / ``storyedge generate`` end to end on the session's tiny export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench_testutil import FAST, RELAXED, BenchEnv

from storyedge.app.cli import main
from storyedge.bench.results import BenchReport
from storyedge.manifest import read_manifest, sha256_file, write_manifest
from storyedge.runtime import backend_specs
from storyedge.runtime.specs import decoder_only_specs

pytestmark = pytest.mark.slow


def run_cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    """``storyedge ARGS`` in-process → (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


def read_report(out: Path) -> BenchReport:
    """The typed report written into ``out``."""
    return BenchReport.from_json((out / "report.json").read_text(), out / "report.json")


def run_python(code: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


#: A subprocess preamble that makes the listed top-level modules absent, as if not installed:
#: ``sys.modules[name] = None`` makes ``import name`` (and its submodules) raise ImportError and
#: ``importlib.util.find_spec(name)`` return None, which is what optional-import probes check.
BLOCK_IMPORTS = textwrap.dedent(
    """
    import sys
    BLOCKED = {blocked!r}
    for name in BLOCKED:
        sys.modules[name] = None
    def imported_blocked():
        return sorted(m for m, mod in sys.modules.items() if m.split(".")[0] in BLOCKED and mod is not None)
    """
)


FullReport = tuple[Path, BenchReport, str]


@pytest.fixture(scope="module")
def full_report(bench_env: BenchEnv, tmp_path_factory: pytest.TempPathFactory) -> FullReport:
    """One full bench run (every backend + the TF reference, parity + latency)."""
    out = tmp_path_factory.mktemp("full_report")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--exports", str(bench_env.exports), "--out", str(out), *FAST, *RELAXED])
    assert exit_info.value.code in (0, None)
    return out, read_report(out), (out / "report.md").read_text()


# ---------------------------------------------------------------------------- bench report


def test_report_files_written(full_report: FullReport) -> None:
    out, report, md = full_report
    for name in ("report.json", "report.md", "step_latency.png", "ppl_ratio.png", "pareto.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "step_latency.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Parity vs `tf-reference`" in md and "## Latency" in md and "Roofline" in md and "## Summary" in md
    assert json.loads((out / "report.json").read_text())["schema_version"] == "1.8"
    assert report.failed_gates == [] and report.plots == ["step_latency.png", "ppl_ratio.png", "pareto.png"]
    assert report.parity is not None and report.parity.windows >= 1 and report.parity.tokens > 0
    assert report.samples and set(report.samples[0].greedy) == {b.name for b in report.backends}


def test_caption_quality_for_every_backend_with_deltas_against_the_reference(full_report: FullReport) -> None:
    _, report, md = full_report
    q = report.quality
    assert q is not None and q.windows == report.parity.windows and q.decodings == ["greedy"]
    ref = report.reference_result.caption_quality("greedy")
    assert ref is not None and ref.delta is None and ref.scores.captions == q.windows
    for b in report.backends:
        own = b.caption_quality("greedy")
        assert own is not None, b.name
        s = own.scores
        assert 0 <= s.exact_match <= 1 and 0 <= s.bleu4 <= 100 and 0 <= s.rouge_l <= 1 and 0 <= s.cider_d <= 10
        if b.reference:
            continue
        for metric in ("exact_match", "bleu4", "rouge_l", "cider_d"):
            assert own.delta.value(metric) == pytest.approx(s.value(metric) - ref.scores.value(metric), abs=1e-12)
        assert set(own.gates) == {"bleu4_delta", "cider_d_delta", "exact_match_delta"}
        if b.precision == "fp32":  # the same greedy captions as the reference: no delta at all
            assert b.parity.greedy_agreement == 1.0 and own.delta.bleu4 == 0.0 and own.delta.exact_match == 0.0
    assert "## Caption quality" in md


def test_summary_of_a_full_run(full_report: FullReport) -> None:
    _, report, md = full_report
    s = report.summary
    assert s.parity_checked and s.reference == "tf-reference" and not s.budgets_set
    passing = [b for b in report.backends if not b.reference and b.parity.passed]
    assert set(s.eligible) == {b.name for b in passing}
    fastest = min(passing, key=lambda b: b.latency.caption.p50_ms)
    assert s.fastest_caption.backend == fastest.name
    ref = report.reference_result
    assert s.fastest_caption.speedup == pytest.approx(ref.latency.caption.p50_ms / fastest.latency.caption.p50_ms)
    assert s.smallest_file.backend == min(passing, key=lambda b: b.size_bytes).name
    assert "Summary: among the exported backends that pass every parity gate" in md


def test_backends_cover_every_manifest_pair(bench_env: BenchEnv, full_report: FullReport) -> None:
    _, report, _ = full_report
    manifest = read_manifest(bench_env.exports)
    pairs = backend_specs(bench_env.exports, manifest)
    expected = {s.name for s in pairs}
    assert {"tflite-fp32", "tflite-fp32-multi", "onnx-fp32", "tflite-int8-dynamic"} <= expected
    # + a decoder-only backend for each decoder step whose encoder export validation rejected
    lone = {s.name for s in decoder_only_specs(bench_env.exports, manifest, pairs)}
    assert all(name.endswith("-decoder") for name in lone)
    names = {b.name for b in report.backends}
    assert names == expected | lone | {"tf-reference"}
    layouts = {b.name: b.layout for b in report.backends}
    assert layouts["tflite-fp32"] == "separate" and layouts["tflite-fp32-multi"] == "multi"


def test_fp32_backends_pass_fp32_gates(full_report: FullReport) -> None:
    _, report, _ = full_report
    fp32 = [b for b in report.backends if b.precision == "fp32" and not b.reference]
    assert len(fp32) >= 3
    for b in fp32:
        p = b.parity
        assert abs(p.ppl_ratio - 1) <= 1e-3, b.name
        assert p.greedy_agreement == 1.0 and p.top1_agreement == 1.0
        assert p.max_abs_logit_diff < 1e-3 and p.kl < 1e-6
        assert set(p.gates) == {"ppl_ratio", "greedy_agreement"} and p.passed
    ref = report.reference_result
    assert ref.parity.ppl_ratio == 1.0 and ref.parity.ppl > 1


def test_latency_fields_present_positive_ordered(full_report: FullReport) -> None:
    _, report, _ = full_report
    s = report.settings
    assert report.memory_bandwidth.read_gbps > 0 and report.peak_rss_mb > 0
    assert report.roofline.fp32_floor_ms > report.roofline.int8_floor_ms > 0
    assert 0 < report.baseline_rss_mb < report.peak_rss_mb
    for b in report.backends:
        lat = b.latency
        assert lat.step.count == s.runs * s.caption_tokens
        assert lat.encoder.count == lat.caption.count == s.runs
        for key, st in (("encoder", lat.encoder), ("step", lat.step), ("first_token", lat.first_token),
                        ("caption", lat.caption)):
            assert st.min_ms > 0, (b.name, key)
            assert st.min_ms <= st.p50_ms <= st.p90_ms <= st.p95_ms <= st.p99_ms <= st.max_ms, (b.name, key)
            assert st.min_ms <= st.mean_ms <= st.max_ms, (b.name, key)
            # a sample stdev never exceeds the range's half-width times sqrt(n / (n - 1)) (Popoviciu)
            assert st.stdev_ms <= (st.max_ms - st.min_ms) / 2 * (st.count / (st.count - 1)) ** 0.5 + 1e-12
        # each caption is its encoder call + its steps + loop overhead, so the means add up
        assert lat.caption.mean_ms >= lat.encoder.mean_ms + s.caption_tokens * lat.step.mean_ms, b.name
        assert lat.first_token.mean_ms >= lat.encoder.mean_ms, b.name
        assert lat.tokens_per_s == pytest.approx(s.caption_tokens / (lat.caption.p50_ms / 1e3))
        assert lat.decode_tokens_per_s == pytest.approx(1e3 / lat.step.p50_ms)
        assert b.load_seconds > 0 and b.first_encode_ms > 0 and b.first_step_ms > 0
        # RSS+ is the signed difference of two current-RSS readings, each below the process's peak
        assert b.rss_delta_mb == pytest.approx(b.rss_after_mb - b.rss_before_mb)
        assert report.baseline_rss_mb < b.rss_before_mb <= report.peak_rss_mb and 0 < b.rss_after_mb <= report.peak_rss_mb
        assert b.peak_rss_estimate_mb == pytest.approx(report.baseline_rss_mb + max(b.rss_delta_mb, 0))
        assert b.roofline.floor_ms > 0 and b.roofline.step_vs_floor == pytest.approx(lat.step.p50_ms / b.roofline.floor_ms)
        if not b.reference:
            assert b.size_bytes > 0


def test_forced_gate_failure_exits_1_after_writing(bench_env: BenchEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "failing"
    code, stdout, err = run_cli(
        capsys, "bench", "--exports", bench_env.exports, "--out", out, "--backends", "tflite-fp32", *FAST,
        "--gate-fp32-greedy", "1.01",  # impossible: agreement is at most 1
    )
    assert code == 1
    assert "failed:" in err and "greedy_agreement" in err
    report = read_report(out)
    assert report.failed_gates and report.backend("tflite-fp32").parity.passed is False
    assert report.summary.eligible == [] and report.summary.fastest_caption is None
    assert (out / "report.md").is_file() and (out / "ppl_ratio.png").is_file()
    assert "Parity vs tf-reference" in stdout and "no exported backend passes the parity gates" in stdout


def test_fail_over_budget_exits_1_after_writing(bench_env: BenchEnv, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "over"
    args = ("bench", "--exports", bench_env.exports, "--latency-only", "--backends", "tflite-fp32,onnx-fp32", *FAST)
    code, stdout, err = run_cli(capsys, *args, "--out", out, "--budget-caption-ms", "1e-6", "--budget-size-mb", "100",
                                "--fail-over-budget")
    assert code == 1, err
    assert err.startswith("failed: no backend that passes the gates is within every budget (caption_ms <= 1e-06")
    assert (out / "report.json").is_file() and (out / "report.md").is_file()
    report = read_report(out)
    assert report.summary.budgets_failed and report.settings.fail_over_budget
    for b in report.backends:
        verdicts = {v.budget: v.within for v in b.budgets}
        assert verdicts == {"caption_ms": False, "size_mb": True}, b.name
    assert "caption_ms <= 1e-06" in stdout and "OVER caption_ms" in stdout
    assert "## Budgets" in (out / "report.md").read_text()
    # generous budgets: the summary names the fastest backend within them, and the run passes
    code, stdout, err = run_cli(capsys, *args, "--out", tmp_path / "within", "--budget-caption-ms", "1e6",
                                "--budget-peak-rss-mb", "1e6", "--fail-over-budget")
    assert code == 0, err
    report = read_report(tmp_path / "within")
    assert report.summary.within_budgets.backend == report.summary.fastest_caption.backend


def test_budgets_from_the_config_and_a_flag_overriding_one(bench_env: BenchEnv, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = bench_env.config.replace(**{"bench.budget_caption_ms": 1e-6, "bench.budget_size_mb": 100.0,
                                         "bench.fail_over_budget": True})
    config.save(tmp_path / "budgets.yaml")
    args = ("bench", "--exports", bench_env.exports, "--config", tmp_path / "budgets.yaml", "--latency-only",
            "--backends", "tflite-fp32", *FAST)
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "over")
    assert code == 1 and "caption_ms <= 1e-06" in err, err
    assert read_report(tmp_path / "over").settings.budgets.size_mb == 100.0
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "flag", "--budget-caption-ms", "1e6")
    assert code == 0, err
    assert read_report(tmp_path / "flag").settings.budgets.limits() == {"caption_ms": 1e6, "size_mb": 100.0}


def test_compare_prints_deltas(bench_env: BenchEnv, full_report: FullReport, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    old_dir, _, _ = full_report
    code, stdout, _ = run_cli(
        capsys, "bench", "--exports", bench_env.exports, "--out", tmp_path / "new", "--latency-only",
        "--backends", "tflite-fp32,onnx-fp32", *FAST, "--compare", old_dir / "report.json",
    )
    assert code == 0
    assert "Compared with" in stdout and "Δ step" in stdout
    report = read_report(tmp_path / "new")
    assert report.compare is not None and report.compare.old == str(old_dir / "report.json")
    rows = {r.backend: r for r in report.compare.rows}
    assert set(rows) == {"tflite-fp32", "onnx-fp32"}
    assert rows["tflite-fp32"].step.delta is not None and rows["tflite-fp32"].ppl_ratio.new is None
    assert "tf-reference" in report.compare.only_old
    assert "parity NOT checked" in stdout


def test_compare_refuses_a_foreign_file_and_another_major(full_report: FullReport, bench_env: BenchEnv,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"name": "not ours", "backends": []}))
    err = _bench_fails(capsys, bench_env.exports, tmp_path, "--compare", foreign)
    assert f"{foreign}: not a storyedge bench report" in err
    data = json.loads((full_report[0] / "report.json").read_text())
    data["schema_version"] = "2.0"
    future = tmp_path / "future.json"
    future.write_text(json.dumps(data))
    err = _bench_fails(capsys, bench_env.exports, tmp_path, "--compare", future)
    assert f"{future}: bench report schema_version 2.0 is not readable" in err
    assert not (tmp_path / "r" / "report.json").exists()


def test_latency_only_runs_without_tensorflow(bench_env: BenchEnv, tmp_path: Path) -> None:
    out = tmp_path / "runtime_only"
    blocked = {"tensorflow", "keras", "tf2onnx", "datasets", "transformers", "matplotlib", "PIL"}
    code = BLOCK_IMPORTS.format(blocked=blocked) + textwrap.dedent(
        f"""
        from storyedge.app.cli import main
        try:
            main(["bench", "--exports", {str(bench_env.exports)!r}, "--out", {str(out)!r}, "--latency-only",
                  "--warmup", "1", "--runs", "2", "--bandwidth-mb", "16", "--threads", "1"])
        except SystemExit as exc:
            assert not imported_blocked(), imported_blocked()
            raise
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    report = read_report(out)
    assert report.parity is None and report.settings.latency_only is True
    names = {b.name for b in report.backends}
    assert "tf-reference" not in names and "tflite-fp32" in names and "onnx-fp32" in names
    assert all(b.latency.step.mean_ms > 0 and b.parity is None for b in report.backends)
    assert not report.summary.parity_checked and report.summary.fastest_caption is not None
    assert "parity NOT checked" in result.stdout
    assert (out / "report.md").is_file() and not (out / "step_latency.png").exists()
    assert "plots skipped: matplotlib is not installed" in report.notes
    # Parity needs the TF reference: without TensorFlow a clear one-line error, exit 2.
    result = run_python(
        BLOCK_IMPORTS.format(blocked={"tensorflow"})
        + f"from storyedge.app.cli import main\nmain(['bench', '--exports', {str(bench_env.exports)!r}, '--out', {str(out)!r}, '--bandwidth-mb', '16'])"
    )
    assert result.returncode == 2 and "--latency-only" in result.stderr


def test_module_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "storyedge.app", "bench", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--latency-only" in result.stdout


def test_missing_runtime_is_a_clear_error(bench_env: BenchEnv, tmp_path: Path) -> None:
    result = run_python(
        BLOCK_IMPORTS.format(blocked={"onnxruntime"})
        + f"from storyedge.app.cli import main\nmain(['bench', '--exports', {str(bench_env.exports)!r}, '--out', "
        f"{str(tmp_path)!r}, '--latency-only', '--backends', 'onnx-fp32', '--bandwidth-mb', '16'])"
    )
    assert result.returncode == 2
    assert "error: backend onnx: onnxruntime is not installed" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------ bad inputs


def _bench_fails(capsys: pytest.CaptureFixture[str], exports: Path, tmp_path: Path, *extra: Any) -> str:
    code, _, err = run_cli(capsys, "bench", "--exports", exports, "--out", tmp_path / "r", "--latency-only", *FAST, *extra)
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


def test_not_an_export_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert "no manifest.json" in _bench_fails(capsys, tmp_path / "empty", tmp_path)
    assert "not found" in _bench_fails(capsys, tmp_path / "absent", tmp_path)


def test_modified_file_sha256(export_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = export_copy / "tflite" / "decoder_step.fp32.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "sha256 differs" in _bench_fails(capsys, export_copy, tmp_path)


def test_truncated_tflite(export_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = export_copy / "tflite" / "encoder.fp32.tflite"
    path.write_bytes(path.read_bytes()[:1000])
    assert "truncated" in _bench_fails(capsys, export_copy, tmp_path)
    # Even when the manifest is made to agree, the runtime's refusal is one line, exit 2.
    manifest = read_manifest(export_copy)
    entry = next(f for f in manifest.files if f.path == "tflite/encoder.fp32.tflite")
    entry.size_bytes, entry.sha256 = path.stat().st_size, sha256_file(path)
    write_manifest(export_copy, manifest)
    assert "LiteRT cannot load" in _bench_fails(capsys, export_copy, tmp_path, "--backends", "tflite-fp32")


def test_tokenizer_from_another_export(export_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from storyedge.tokenizer import train_wordpiece

    other = train_wordpiece(["a completely different corpus of words", "nothing like the stories"], 60)
    other.save(export_copy / "tokenizer")
    assert "tokenizer differs" in _bench_fails(capsys, export_copy, tmp_path)


def test_incompatible_config(bench_env: BenchEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = bench_env.config.replace(**{"model.decoder_hidden_dim": 32})
    cfg.save(tmp_path / "other.yaml")
    err = _bench_fails(capsys, bench_env.exports, tmp_path, "--config", tmp_path / "other.yaml")
    assert "model.decoder_hidden_dim" in err


def test_beam_captions_scored_per_backend(bench_env: BenchEnv, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "beam"
    code, stdout, _ = run_cli(capsys, "bench", "--exports", bench_env.exports, "--out", out, "--backends",
                              "tflite-fp32", "--beam", "2", "--max-windows", "3", *FAST, *RELAXED)
    assert code == 0
    report = read_report(out)
    assert report.settings.beam == 2 and report.quality.decodings == ["greedy", "beam2"]
    for b in report.backends:
        assert [q.decoding for q in b.quality] == ["greedy", "beam2"]
    assert "beam2" in stdout


def test_cider_gate_without_pycocoevalcap_exits_2(bench_env: BenchEnv, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)
    code, _, err = run_cli(capsys, "bench", "--exports", bench_env.exports, "--out", tmp_path / "x", *FAST)
    assert code == 2 and "pycocoevalcap" in err and "gate_cider_drop" in err and "Traceback" not in err
    assert not (tmp_path / "x" / "report.json").exists()


def test_bad_flags(bench_env: BenchEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--runs" in _bench_fails(capsys, bench_env.exports, tmp_path, "--runs", "0")
    code, _, err = run_cli(capsys, "bench", "--out", tmp_path)
    assert code == 2 and "--exports" in err
    code, _, err = run_cli(capsys, "bench", "--exports", bench_env.exports, "--random-init", "--config", "quickstart")
    assert code == 2 and "--random-init" in err
    assert "no bench report" in _bench_fails(capsys, bench_env.exports, tmp_path, "--compare", tmp_path / "nothing.json")
    assert "--budget-caption-ms: must be > 0" in _bench_fails(capsys, bench_env.exports, tmp_path,
                                                              "--budget-caption-ms", "0")
    assert "--fail-over-budget needs at least one budget" in _bench_fails(capsys, bench_env.exports, tmp_path,
                                                                          "--fail-over-budget")
    assert "--beam" in _bench_fails(capsys, bench_env.exports, tmp_path, "--beam", "0")
    assert "--gate-bleu-drop: must be >= 0" in _bench_fails(capsys, bench_env.exports, tmp_path,
                                                            "--gate-bleu-drop", "-1")


# -------------------------------------------------------------------------------- generate


def _generate(capsys: pytest.CaptureFixture[str], env: BenchEnv, *args: Any) -> dict[str, Any]:
    code, out, err = run_cli(capsys, "generate", "--exports", env.exports, "--json", *args)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_generate_greedy_and_beam_across_backends(bench_env: BenchEnv, capsys: pytest.CaptureFixture[str]) -> None:
    results = {}
    for backend, precision, beams in (("tflite", "fp32", True), ("onnx", "fp32", True), ("tf", "fp32", False),
                                      ("tflite", "int8-dynamic", True)):
        args = ("--backend", backend, "--precision", precision, "--index", "0", "--threads", "1")
        greedy = _generate(capsys, bench_env, *args)
        assert greedy["truth"] and len(greedy["context"]) == 3 and greedy["beam"] == 1
        results[(backend, precision)] = greedy
        if beams:
            beam1 = _generate(capsys, bench_env, *args, "--beam", "1")
            beam3 = _generate(capsys, bench_env, *args, "--beam", "3")
            assert beam1["tokens"] == greedy["tokens"] and beam1["caption"] == greedy["caption"]
            assert beam3["score"] >= greedy["score"] - 1e-9
            assert len(beam3["alternatives"]) >= 1
    # fp32 exports decode exactly like the TF reference
    assert results[("tflite", "fp32")]["tokens"] == results[("tf", "fp32")]["tokens"] == results[("onnx", "fp32")]["tokens"]


def test_generate_from_checkpoint(bench_env: BenchEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--checkpoint RUN_DIR`` (tf backend): the same weights decode like the export's reference."""
    from storyedge.runtime.export_dir import open_export
    from storyedge.model.story_model import build_model
    from storyedge.run_dir import save_bundle

    export = open_export(bench_env.exports)
    model = build_model(export.config, export.vocab_size, export.tokenizer.pad_id)
    model.load_weights(str(bench_env.exports / "reference" / "model.weights.h5"))
    save_bundle(tmp_path / "run", model, export.config, export.tokenizer, {"epoch": 0})
    code, out, err = run_cli(capsys, "generate", "--checkpoint", tmp_path / "run", "--index", "1", "--json", "--beam", "2")
    assert code == 0, err
    from_checkpoint = json.loads(out.strip().splitlines()[-1])
    from_export = _generate(capsys, bench_env, "--backend", "tflite", "--index", "1", "--beam", "2")  # fp32 == tf
    assert from_checkpoint["tokens"] == from_export["tokens"]
    code, _, err = run_cli(capsys, "generate", "--checkpoint", tmp_path / "run", "--backend", "onnx", "--index", "0")
    assert code == 2 and "--exports" in err


def test_generate_beam_matches_python_api(bench_env: BenchEnv, capsys: pytest.CaptureFixture[str]) -> None:
    """``storyedge generate --beam N`` prints what the Python API's beam search gives on the same window."""
    from storyedge.bench.runner import load_eval_windows
    from storyedge.runtime.decoding import beam_search, greedy_decode
    from storyedge.runtime.export_dir import find_spec, load_backend, open_export

    export = open_export(bench_env.exports)
    backend = load_backend(find_spec(export, "onnx", "fp32"), 1, ["CPUExecutionProvider"])
    tok, cfg = export.tokenizer, export.config
    max_new = cfg.dataset.max_caption_len - 1
    windows = load_eval_windows(cfg, tok, cfg.bench.split, 2)
    for index in range(2):
        state = backend.encode({k: v[index: index + 1] for k, v in windows.items() if k != "target"})
        greedy = greedy_decode(backend, state, tok.bos_id, tok.eos_id, max_new)[0]
        for width in (1, 3):
            expected = beam_search(backend, state, tok.bos_id, tok.eos_id, max_new, beam=width)
            got = _generate(capsys, bench_env, "--backend", "onnx", "--precision", "fp32", "--threads", "1",
                            "--index", index, "--beam", width)
            assert got["backend"] == backend.name and got["beam"] == width
            assert got["tokens"] == expected[0].tokens
            assert got["caption"] == tok.decode(expected[0].caption_ids(tok.eos_id))
            assert got["logprob"] == pytest.approx(expected[0].logprob, abs=1e-5)
            assert got["score"] == pytest.approx(expected[0].score(), abs=1e-5)
            assert got["score"] >= greedy.score() - 1e-9
            if width == 1:
                assert got["tokens"] == greedy.tokens
            else:
                assert [a["caption"] for a in got["alternatives"]] == [
                    tok.decode(h.caption_ids(tok.eos_id)) for h in expected[1:width]]


def test_generate_from_images_and_captions(bench_env: BenchEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"f{i}.png")
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(paths[-1])
    captions = ["a red circle starts moving left", "the red circle moves left", "the red circle bounces off the left wall"]
    result = _generate(capsys, bench_env, "--images", *paths[:3], "--captions", *captions, "--reason", "it moves")
    assert result["context"] == captions and isinstance(result["caption"], str)
    code, out, _ = run_cli(capsys, "generate", "--exports", bench_env.exports, "--images", *paths[:3], "--captions", *captions)
    assert code == 0 and "→ 4. " in out and "3. the red circle bounces off the left wall" in out
    # more than k: the last k are used
    result = _generate(capsys, bench_env, "--images", *paths, "--captions", "x", *captions, "--backend", "onnx")
    assert result["context"] == captions
    code, _, err = run_cli(capsys, "generate", "--exports", bench_env.exports, "--images", *paths[:2], "--captions", *captions[:2])
    assert code == 2 and "k = 3" in err
    code, _, err = run_cli(capsys, "generate", "--exports", bench_env.exports, "--images", *paths[:3], "--captions", captions[0])
    assert code == 2
    code, _, err = run_cli(capsys, "generate", "--checkpoint", tmp_path / "no_run", "--index", "0")
    assert code == 2 and "not found" in err
    code, _, err = run_cli(capsys, "generate", "--exports", bench_env.exports, "--backend", "tflite", "--precision", "int8", "--index", "0")
    assert code == 2 and "no tflite int8 export" in err
    code, _, err = run_cli(capsys, "generate", "--exports", bench_env.exports, "--index", "999")
    assert code == 2 and "--index 999" in err


# ------------------------------------------------------------------------------ random init


def test_random_init_tiny(bench_env: BenchEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = bench_env.config.replace(**{"dataset.path": None, "model.use_reason": False})
    cfg.save(tmp_path / "tiny.yaml")
    out = tmp_path / "random"
    code, stdout, err = run_cli(
        capsys, "bench", "--config", tmp_path / "tiny.yaml", "--random-init", "--formats", "onnx", "--quantize", "none",
        "--vocab-size", "300", "--stories", "12", "--max-windows", "3", "--out", out, *FAST,
    )
    assert code == 0, err
    report = read_report(out)
    assert report.source["random_init"] is True
    assert report.settings.vocab_size == 300
    assert {b.name for b in report.backends} == {"tf-reference", "onnx-fp32"}
    onnx = report.backend("onnx-fp32")
    assert onnx.parity.passed and abs(onnx.parity.ppl_ratio - 1) <= 1e-3
    assert (out / "exports" / "manifest.json").is_file()
    assert "padded with [unused] to 300" in stdout
    # the reference config rebuilds the same tokenizer: the trained size, padded to 300
    from storyedge.config import load_config

    written = load_config(out / "exports" / "reference" / "config.yaml").tokenizer
    assert (written.name, written.pad_to_vocab_size) == ("wordpiece", 300)
    assert written.vocab_size < 300

"""``storyedge bench --profile`` and the compute floor on the real tiny export (latency-only: no parity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_testutil import BenchEnv

from storyedge.bench.compute import precision_class
from storyedge.bench.profile import parse_ort_profile, profile_litert
from storyedge.bench.results import BenchReport
from storyedge.bench.runner import BenchOptions, run_bench


@pytest.fixture(scope="module")
def profiled(bench_env: BenchEnv, tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchReport, Path]:
    out = tmp_path_factory.mktemp("profiled")
    report = run_bench(BenchOptions(exports=bench_env.exports, out=out, latency_only=True, profile=True, warmup=1,
                                    runs=2, threads=1, bandwidth_mb=16, backends="onnx-fp32,tflite-fp32,tflite-int8*"),
                       echo=lambda _: None)
    return report, out


def test_onnx_profile_top_ops_and_shares(profiled: tuple[BenchReport, Path]) -> None:
    report, out = profiled
    onnx = report.backend("onnx-fp32")
    assert onnx is not None and onnx.profile is not None and onnx.profile.files
    for graph in (onnx.profile.encoder, onnx.profile.step):
        assert graph is not None and graph.top, "no op rows parsed"
        assert graph.calls == 2 * (1 if graph is onnx.profile.encoder else report.settings.caption_tokens)
        assert 0 < sum(o.share for o in graph.top) <= graph.covered <= 1 + 1e-9
        assert all(o.ms_per_call >= 0 and o.nodes >= 1 for o in graph.top)
    assert "LSTM" in {o.op for o in onnx.profile.encoder.top}  # the Bi-LSTMs are ONNX LSTM nodes
    assert {"MatMul", "Gemm"} & {o.op for o in onnx.profile.step.top}  # the logits projection
    raw = out / onnx.profile.files[0]
    assert parse_ort_profile(raw, skip_runs=0).calls == onnx.profile.encoder.calls + 2  # warm-up + first call


def test_litert_profile_says_what_was_measured(profiled: tuple[BenchReport, Path]) -> None:
    report, _ = profiled
    lite = report.backend("tflite-fp32")
    assert lite is not None and lite.profile is not None
    encoder = lite.profile.encoder  # each op timed alone on what the whole encoder gave it
    assert encoder is not None and encoder.top and encoder.ms_per_call == lite.latency.encoder.p50_ms
    assert {"CONV_2D", "WHILE"} <= {o.op for o in encoder.top}  # the CNN and the LSTM loops
    assert 0 < sum(o.share for o in encoder.top) <= 1 + 1e-9 and encoder.covered > 0
    assert all(o.ms_per_call > 0 and o.nodes >= 1 for o in encoder.top)
    assert "each op timed alone" in lite.profile.note
    step = lite.profile.step
    assert step is not None and step.top[0].op.startswith("FULLY_CONNECTED logits")
    assert abs(sum(o.share for o in step.top) - 1) < 1e-9


def test_floors_and_report_sections(profiled: tuple[BenchReport, Path]) -> None:
    report, out = profiled
    assert report.compute is not None and report.compute.encoder_total_macs > report.compute.step_total_macs > 0
    assert {(p.runtime, p.precision) for p in report.compute.peaks} >= {("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    assert {p.role for p in report.compute.peaks} == {"encoder", "recurrent", "recurrent_row", "step", "weights"}
    weights = report.compute.peak("onnxruntime", "int8", "weights")
    assert weights.shape[1] * weights.shape[2] >= report.compute.step_weights > 0  # the step's weights in one product
    recurrent = sum(report.compute.encoder_sequential_macs.values())
    assert 0 < recurrent < report.compute.encoder_total_macs
    for b in report.backends:
        assert b.floors is not None, b.name
        assert b.floors.encoder.sequential_macs == recurrent and b.floors.step.sequential_macs == 0
        assert b.floors.encoder.sequential_peak.endswith((" recurrent", " recurrent, recurrent_row"))
        for g in (b.floors.encoder, b.floors.step):
            assert g.read_floor_ms is not None and g.read_peak == g.peak  # the runtime's own weights probe
            candidates = {"compute": g.compute_floor_ms, "bytes": g.bytes_floor_ms, "read": g.read_floor_ms}
            assert g.floor_ms == candidates[g.binding] and g.vs_floor > 0
            assert g.floor_ms >= max(g.compute_floor_ms, g.read_floor_ms)  # bytes only beyond the cache
        steps = b.latency.caption_tokens
        assert b.floors.caption_floor_ms == pytest.approx(b.floors.encoder.floor_ms + steps * b.floors.step.floor_ms)
        assert b.floors.caption_vs_floor == pytest.approx(b.latency.caption.p50_ms / b.floors.caption_floor_ms)
    md = (out / "report.md").read_text()
    assert "Per-op profile" in md and "Compute floor" in md
    assert 0 < report.compute.caption_tokens <= report.compute.caption_slots  # the Bi-LSTMs' real tokens
    assert f"({report.compute.caption_tokens} of {report.compute.caption_slots} caption" in md
    back = BenchReport.from_json((out / "report.json").read_text())
    assert back.backend("onnx-fp32").profile.encoder.top == report.backend("onnx-fp32").profile.encoder.top
    assert json.loads((out / "report.json").read_text())["compute"]["peaks"]


def test_litert_int4_step_is_not_timed_with_another_precision_s_probe() -> None:
    profile = profile_litert("int4", hidden=8, logits=16, batch=1, threads=1, step_p50_ms=0.4, cache={})
    assert profile.step is None and profile.encoder is None
    assert "int4" in profile.note


@pytest.mark.parametrize(("precision", "fmt", "cls"), [
    ("int8-dynamic", "onnx", "int8"), ("int8", "tflite", "int8"), ("int4", "tflite", "int8"),
    ("int4", "onnx", "fp32"), ("fp16", "tflite", "fp32"), ("fp32", "onnx", "fp32"),
])
def test_precision_class_per_runtime(precision: str, fmt: str, cls: str) -> None:
    assert precision_class(precision, fmt) == cls


def test_wall_time_adds_up_per_share(profiled: tuple[BenchReport, Path], bench_env: BenchEnv) -> None:
    from storyedge.bench.wall import _share_of_backend
    from storyedge.manifest import read_manifest

    report, out = profiled
    w = report.wall
    assert w is not None and w.bench_s > 0 and {"loading", "timing", "floors", "profile"} <= set(w.stages)
    assert sum(w.stages.values()) <= w.bench_s + 0.05
    shares = {s.share: s for s in w.shares}
    assert {"onnx fp32", "tflite fp32", "tflite int8-dynamic", "shared"} <= set(shares)
    # the export's own total (its manifest) is split over the shares, the bench's over the same shares
    manifest = read_manifest(bench_env.exports)
    assert w.export_s == manifest.source["export"]["seconds"]["total"]
    assert abs(sum(s.export_s for s in w.shares) - w.export_s) < 0.05 * len(w.shares)
    assert abs(sum(s.bench_s for s in w.shares) - w.bench_s) < 0.05 * len(w.shares)
    for b in report.backends:  # each backend's timing is in its precision's share
        assert b.timing_seconds > 0
        assert shares[f"{b.format} {b.precision}"].bench_s >= b.timing_seconds - 0.01
    assert _share_of_backend("tflite-int8-dynamic-multi", [("tflite", "int8"), ("tflite", "int8-dynamic")]) \
        == "tflite int8-dynamic"
    assert "Wall time" in (out / "report.md").read_text()


def test_litert_ops_alone_add_up_to_the_graph(tmp_path: Path) -> None:
    """On a hand-built graph: every non-constant op is timed, a weight's DEQUANTIZE (computed
    once by LiteRT) is not, and the ops' sum is of the order of the whole graph's time."""
    tf = pytest.importorskip("tensorflow")
    import time

    import numpy as np

    from storyedge.bench.litert_ops import op_times

    class Net(tf.Module):
        def __init__(self) -> None:
            self.w = tf.constant(np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([64, 256], tf.float32, name="x")])
        def encoder(self, x):
            return {"y": tf.nn.relu(tf.matmul(tf.nn.relu(tf.matmul(x, self.w)), self.w)) + 1.0}

    net = Net()
    tf.saved_model.save(net, str(tmp_path / "saved"), signatures={"encoder": net.encoder})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"), signature_keys=["encoder"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]  # fp16 weights, each behind a DEQUANTIZE
    path = tmp_path / "net.tflite"
    path.write_bytes(converter.convert())
    from ai_edge_litert.interpreter import Interpreter

    assert "DEQUANTIZE" in {op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details()}
    x = np.random.default_rng(1).standard_normal((64, 256)).astype(np.float32)
    times = op_times(path, "encoder", {"x": x}, threads=1)
    assert [t.op for t in times].count("FULLY_CONNECTED") == 2 and "DEQUANTIZE" not in {t.op for t in times}
    assert all(t.ms > 0 for t in times)

    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner("encoder")
    runner(x=x)
    start = time.perf_counter()
    for _ in range(50):
        runner(x=x)
    whole = (time.perf_counter() - start) / 50 * 1e3
    assert 0.2 * whole < sum(t.ms for t in times) < 5 * whole + 0.05


def test_litert_loops_are_timed_through_the_weight_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A WHILE loop whose body reads one weight in two steps is timed through the CompiledModel with
    the weight cache (as the backend runs an encoder), every other op through the Interpreter;
    without it, every op through the Interpreter; the loop's time is of the order of the graph's."""
    tf = pytest.importorskip("tensorflow")
    import time

    import numpy as np

    from storyedge.bench import litert_ops
    from storyedge.runtime.litert_compiled import CompiledSignature, compiled_model_available, load_compiled_model

    if not compiled_model_available():
        pytest.skip("this ai-edge-litert has no CompiledModel API")

    class Net(tf.Module):
        def __init__(self) -> None:
            self.w = tf.constant(np.random.default_rng(0).standard_normal((128, 128)).astype(np.float32) * 0.1)

        @tf.function(input_signature=[tf.TensorSpec([4, 128], tf.float32, name="x")])
        def encoder(self, x):
            def body(i, h):  # two time steps an iteration, both reading self.w
                h = tf.tanh(tf.matmul(h, self.w) + x)
                return i + 1, tf.tanh(tf.matmul(h, self.w) + x)

            _, h = tf.while_loop(lambda i, h: i < 6, body, (tf.constant(0), tf.nn.relu(x)))
            return {"y": h + 1.0}

    net = Net()
    tf.saved_model.save(net, str(tmp_path / "saved"), signatures={"encoder": net.encoder})
    path = tmp_path / "net.tflite"
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"), signature_keys=["encoder"])
    path.write_bytes(converter.convert())
    x = np.random.default_rng(1).standard_normal((4, 128)).astype(np.float32)

    compiled_runs: list[int] = []
    time_compiled = litert_ops._time_compiled

    def counted(content: bytes, feeds: dict, threads: int, rounds: int) -> float | None:
        compiled_runs.append(len(feeds))
        return time_compiled(content, feeds, threads, rounds)

    monkeypatch.setattr(litert_ops, "_time_compiled", counted)
    cached = litert_ops.op_times(path, "encoder", {"x": x}, threads=1, compiled=True)
    assert len(compiled_runs) == [t.op for t in cached].count("WHILE") == 1
    assert all(t.ms > 0 for t in cached) and {"RELU", "ADD"} <= {t.op for t in cached}
    plain = litert_ops.op_times(path, "encoder", {"x": x}, threads=1, compiled=False)
    assert len(compiled_runs) == 1 and [t.op for t in plain] == [t.op for t in cached]

    run = CompiledSignature(load_compiled_model(path, 1), "encoder")
    run({"x": x})
    start = time.perf_counter()
    for _ in range(50):
        run({"x": x})
    whole = (time.perf_counter() - start) / 50 * 1e3
    loop = next(t.ms for t in cached if t.op == "WHILE")
    assert 0.2 * whole < loop < 5 * whole + 0.05

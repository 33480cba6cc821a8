"""``storyedge bench --profile``: where the time of the encoder and of a decoder step goes, per op.

* ONNX Runtime: each ONNX backend is created once more with ``enable_profiling`` (its own
  sessions, so the timed runs of the latency stage carry no profiler overhead), runs ``warmup``
  + ``runs`` forced-length greedy captions, and ONNX Runtime's JSON trace is parsed
  (:func:`parse_ort_profile`): per op type the summed ``*_kernel_time`` of its nodes, per call of
  the graph, and its share of the graph's ``model_run`` time; the warm-up calls are left out.
  The JSON files are kept next to the report.
* LiteRT: ai-edge-litert 2.3's Python ``Interpreter`` has no op profiler, and no registry package
  ships TFLite's ``benchmark_model`` with op profiling (the LiteRT CLI downloads that binary at
  run time, which nothing here may do). What can be measured are the graph's pieces. The
  encoder's ops are each timed alone (:mod:`.litert_ops`: each op packed as a model of its own,
  fed what the whole graph gave it, XNNPACK, same threads), the sum of their medians next to the
  encoder's p50 (``covered``). The step's logits projection ``[B, H] x [H, V]`` is timed alone as
  a one-matmul LiteRT model of the same shape and precision class (random weights), and the rest
  of the step is the difference to the step's p50.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from storyedge.bench.compute import best_ms, litert_probe, precision_class
from storyedge.bench.latency import measure_latency
from storyedge.bench.litert_ops import OP_ROUNDS, op_times
from storyedge.bench.results import GraphProfile, OpProfile, OpShare
from storyedge.runtime.onnxrt import OnnxBackend
from storyedge.runtime.specs import BackendSpec

#: op types listed per graph (the rest still count in ``covered``)
TOP_OPS = 8
ORT_SOURCE = "onnxruntime enable_profiling (median kernel time per node, summed per op type)"
LITERT_SOURCE = "litert: graph pieces timed alone"
LITERT_NOTE = (
    "ai-edge-litert's Python Interpreter exposes no op profiler and no installed or registry package ships "
    "TFLite's benchmark_model with op profiling. Encoder: each op timed alone, as a model of its own fed the "
    "inputs the whole encoder gave it (XNNPACK, same threads; ops of constants, which LiteRT computes once, "
    "left out; WHILE loops through the CompiledModel with XNNPACK's weight cache where the installed "
    "ai-edge-litert has it, as the backend runs the encoder); covered = the ops' sum / the encoder's p50 "
    "(below 1: the time between ops; above: ops that overlap or lose their neighbours' packing when alone). Step: the logits projection timed alone as a "
    "one-matmul LiteRT model of the same shape and precision class (int8 kinds: dynamic-range int8; fp16: "
    "fp32, as XNNPACK runs it); 'rest of the step' = step p50 - that."
)
#: graph the per-op LiteRT profile times (the signature key in separate and multi files alike)
LITERT_PROFILED_SIGNATURE = "encoder"
KERNEL_SUFFIX = "_kernel_time"
#: precisions whose logits projection the one-matmul LiteRT probe reproduces
PROBED_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")


def parse_ort_profile(path: Path, skip_runs: int = 0, top: int = TOP_OPS) -> GraphProfile:
    """Per-op-type time of one session's ONNX Runtime JSON trace, its first ``skip_runs`` runs left out.

    Robust to a loaded machine: each node's time is its *median* kernel time over the kept runs
    and the graph's time the median ``model_run``; an op type's figure is the sum of its nodes'
    medians, its share that ÷ the graph's median (scaled so that shares never sum above 1;
    ``covered``: their sum, the rest being the runtime's own time between kernels)."""
    events = json.loads(Path(path).read_text())
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    kept = runs[skip_runs:]
    if not kept:
        return GraphProfile(calls=0, ms_per_call=0.0, top=[], covered=0.0)
    start = kept[0]["ts"]
    run_us = float(np.median([e["dur"] for e in kept]))
    per_node: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX) or e["ts"] < start:
            continue
        node = name[: -len(KERNEL_SUFFIX)]
        per_node[node].append(float(e["dur"]))
        op_of[node] = str(e.get("args", {}).get("op_name", "?"))
    shares = op_shares([(op_of[node], float(np.median(d)) / 1e3) for node, d in per_node.items()], run_us / 1e3)
    return GraphProfile(calls=len(kept), ms_per_call=run_us / 1e3, top=shares[:top],
                        covered=sum(o.share for o in shares))


def op_shares(node_ms: list[tuple[str, float]], graph_ms: float) -> list[OpShare]:
    """Per op type, its nodes' summed ms and share of the graph's ``graph_ms`` (scaled so that
    shares never sum above 1), largest first."""
    per_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, int] = defaultdict(int)
    for op, ms in node_ms:
        per_op[op] += ms
        nodes[op] += 1
    scale = max(graph_ms, sum(per_op.values()), 1e-9)
    return sorted((OpShare(op, ms, ms / scale, nodes[op]) for op, ms in per_op.items()), key=lambda o: -o.ms_per_call)


def profile_onnx(spec: BackendSpec, threads: int, providers: list[str] | None, inputs: dict[str, np.ndarray],
                 bos_id: int, tokens: int, warmup: int, runs: int, out_dir: Path, report_dir: Path) -> OpProfile:
    """A profiled copy of an ONNX backend over ``warmup`` + ``runs`` captions (see the module doc)."""
    where = out_dir / spec.name
    backend = OnnxBackend(spec, threads, providers, profile_dir=where)
    backend.vocab_ids = spec.vocab_ids
    backend.encode(inputs)  # the first calls (allocation, graph optimisation) are not profiled runs
    measure_latency(backend, inputs, bos_id, tokens, warmup, runs)
    files = backend.end_profiling()
    skip_encoder = 1 + warmup
    encoder = parse_ort_profile(files["encoder"], skip_encoder)
    step = parse_ort_profile(files["decoder_step"], warmup * tokens)
    rel = [str(p.relative_to(report_dir)) if p.is_relative_to(report_dir) else str(p) for p in files.values()]
    return OpProfile(source=ORT_SOURCE, encoder=encoder, step=step, files=rel,
                     note="ONNX Runtime's own profile of a second session over the same captions (warm-up left "
                          "out); per node the median kernel time, per graph the median run; the profiler adds a "
                          "little time per node.")


def litert_encoder_profile(path: Path, inputs: dict[str, np.ndarray], threads: int,
                           encoder_p50_ms: float) -> GraphProfile | None:
    """The encoder's ops timed alone (:func:`storyedge.bench.litert_ops.op_times`), per op type."""
    times = op_times(path, LITERT_PROFILED_SIGNATURE, inputs, threads)
    if not times:
        return None
    total = sum(t.ms for t in times)
    return GraphProfile(calls=OP_ROUNDS, ms_per_call=encoder_p50_ms,
                        top=op_shares([(t.op, t.ms) for t in times], encoder_p50_ms)[:TOP_OPS],
                        covered=total / encoder_p50_ms if encoder_p50_ms > 0 else 0.0)


def profile_litert(precision: str, hidden: int, logits: int, batch: int, threads: int, step_p50_ms: float,
                   cache: dict[tuple[int, int, int, str], float], encoder: GraphProfile | None = None) -> OpProfile:
    """The LiteRT pieces that can be measured (see the module doc): ``encoder``'s ops (from
    :func:`litert_encoder_profile`) and the step's logits projection."""
    if precision not in PROBED_PRECISIONS:
        return OpProfile(source=LITERT_SOURCE, encoder=encoder, step=None,
                         note=LITERT_NOTE + f" The probe has no {precision} form (blockwise weights): the "
                         "step's pieces were not measured for this precision.")
    if "tensorflow" not in sys.modules:
        return OpProfile(source=LITERT_SOURCE, encoder=encoder, step=None,
                         note=LITERT_NOTE + " This run did not import TensorFlow (--latency-only), which "
                         "converts the probe: the step was not measured.")
    cls = precision_class(precision, "tflite")
    key = (batch, hidden, logits, cls)
    if key not in cache:
        with tempfile.TemporaryDirectory() as tmp:
            cache[key] = best_ms(litert_probe((batch, hidden, logits), cls, threads, Path(tmp)))
    proj = cache[key]
    share = min(proj / step_p50_ms, 1.0) if step_p50_ms > 0 else 0.0
    rest = max(step_p50_ms - proj, 0.0)
    top = [OpShare(f"FULLY_CONNECTED logits [{batch},{hidden}]x[{hidden},{logits}]", proj, share, 1),
           OpShare("rest of the step", rest, 1.0 - share, 0)]
    step = GraphProfile(calls=1, ms_per_call=step_p50_ms, top=top, covered=1.0)
    return OpProfile(source=LITERT_SOURCE, encoder=encoder, step=step, note=LITERT_NOTE)


def run_profiles(
    loaded: list[Any], results: list[Any], threads: int, inputs: dict[str, np.ndarray], bos_id: int,
    tokens: int, warmup: int, runs: int, out: Path, hidden: int, batch: int, vocab_size: int,
    echo: Callable[[str], Any] = print,
) -> None:
    """Fill ``result.profile`` of every exported backend (``loaded[i]`` is ``results[i]``'s)."""
    cache: dict[tuple[int, int, int, str], float] = {}
    for item, result in zip(loaded, results):
        if item.reference:
            continue
        spec = getattr(item, "spec", None)
        echo(f"profiling {result.name} ...")
        if result.format == "onnx" and spec is not None:
            result.profile = profile_onnx(spec, threads, item.providers, inputs, bos_id, tokens, warmup, runs,
                                          out / "profiles", out)
        elif result.format == "tflite":
            ids = getattr(spec, "vocab_ids", None)
            logits = len(ids) if ids is not None else vocab_size
            encoder = litert_encoder_profile(spec.encoder_path, inputs, threads, result.latency.encoder.p50_ms) \
                if spec is not None else None
            result.profile = profile_litert(result.precision, hidden, logits, batch, threads,
                                            result.latency.step.p50_ms, cache, encoder)

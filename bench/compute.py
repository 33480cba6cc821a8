"""The compute floor: MACs of the encoder and of one step ÷ a MAC rate measured in the same run.

MACs are counted from the export's configuration (:mod:`storyedge.macs`). The rate (a *peak*)
is measured per runtime and precision with one matmul of the model's own shapes, run the way the
backends run (same runtime, same thread count, one call per product, so the per-call overhead
is in it too):

* ``encoder`` role: ``[B·k·L, E] x [E, 4h]``, the caption Bi-LSTM's input product (a GEMM with
  reuse: the best MAC rate this runtime reaches on this machine at the encoder's sizes);
* ``recurrent`` role: ``[B·k, h] x [h, 4h]``, the caption Bi-LSTM's recurrent product of one time
  step. The LSTMs' ``h U`` products cannot be batched over time (each waits on the previous
  ``h``), so the encoder's floor prices those MACs (:attr:`storyedge.macs.MacCount.sequential`) at
  the rate of their own row count and the rest at the ``encoder`` rate;
* ``recurrent_row`` role: ``[B, h] x [h, 4h]``, the recurrent product of the LSTMs that run B rows
  (the reason Bi-LSTM; the temporal LSTM's ``[B, T] x [T, 4T]`` is priced at it too). A product of
  fewer rows reuses each weight less: at the seed size (LiteRT int8) it ran at 173 GMAC/s against
  230 for the caption's 3 rows;
* ``step`` role: ``[B, H] x [H, 4H]``, the decoder cell's recurrent product at the step's batch
  (a GEMV whose weights stay in cache: the rate a batch-1 step can reach when bytes do not bind;
  the step's compute floor takes the faster of it and the ``weights`` probe, a GEMV too);
* ``weights`` role: ``[B, H] x [H, N]`` with ``H·N`` the matrix weights one step reads: the step's
  weights in one product, read from wherever a working set of that size lives, by the runtime's
  own kernel. Its rate in weights per second prices the *weight-read floor* of the encoder and the
  step (their weights ÷ that rate). A last-level cache that holds the weights is not free: on a
  2-core slice of an Intel Xeon whose 480 MiB L3 holds every step's weights, one product over the
  seed-size step's 17.3M int8 weights ran at 41 GB/s in LiteRT (0.42 ms), where the ``step`` role's
  cache-resident probe ran at 150 GB/s; the int8 step (0.50 ms) read as 4.6x its compute floor and
  1.16x this one.

Runtimes: ONNX Runtime (a one-``MatMul`` graph built with ``onnx.helper``; int8 through
``onnxruntime.quantization.quantize_dynamic``, the exporter's int8-dynamic path) and LiteRT (a
one-matmul ``tf.function`` converted once per precision by the TFLite converter, int8 with
dynamic-range quantisation, then given each probe's shape and weights) where TensorFlow is
importable (a ``--latency-only`` run never imports it: its TFLite backends then use numpy's rate,
said so in the report). Each graph is judged against its *binding* floor, the largest of: the
compute floor; the bytes floor (weight bytes ÷ DRAM read bandwidth) where its weights exceed the
last-level cache; the weight-read floor where its runtime measured one (a ``weights`` peak of the
graph's precision class: numpy's fp32 rate never prices int8 weights). A probe's MAC rate leaves
out the runtime's fixed cost per call (the time of a 1x1 product in the same runtime), so the peak
is the kernel's; the graph's own per-op overheads stay in its multiple.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from storyedge.bench.latency import BYTES_PER_WEIGHT, roofline_floor_ms
from storyedge.bench.results import BackendFloors, ComputeFloors, ComputePeak, GraphFloor, Roofline
from storyedge.macs import MacCount, RealTokens, encoder_macs, step_macs
from storyedge.quiet import quiet_root_logger
from storyedge.tflite_schema import pack_model, schema

#: timed repeats per probe and round, and the wall time each repeat aims for
PEAK_REPEATS = 2
PEAK_REPEAT_S = 0.05
#: rounds over every probe at the least (:meth:`PeakProbes.top_up`; a bench runs one per timing block);
#: a peak is its probe's best round. The machine's speed can move for seconds at a time (a probe
#: timed in a slow phase only made a floor above what the graphs then ran at: an fp32 encoder at
#: 0.83x its floor), and rounds spread each probe's samples across the whole measurement.
PEAK_ROUNDS = 3
#: the kernel's share of a probe call is never taken below this (the overhead estimate is noisy)
MIN_KERNEL_SHARE = 0.1
ROLES = ("encoder", "recurrent", "recurrent_row", "step", "weights")
#: the role whose probe reads as many weights as a step: its rate prices the weight-read floor
READ_ROLE = "weights"
#: the roles an encoder LSTM's recurrent products are priced at, by their row count (the probe's M)
RECURRENT_ROLES = ("recurrent", "recurrent_row")
#: the key of a runtime's 1x1 probe, its fixed cost per call
OVERHEAD_ROLE = "overhead"
NUMPY = "numpy"
ORT = "onnxruntime"
LITERT = "litert"
#: backend format → the runtime whose peak it is judged with
FORMAT_RUNTIME = {"onnx": ORT, "tflite": LITERT}

COMPUTE_NOTE = (
    "MACs counted from the configuration (matrix products only: Dense, Conv2D incl. 'same' padding, LSTM "
    "gates, attention products, the Bi-LSTM's token-reversal matmuls; element-wise work not counted; the "
    "Bi-LSTMs' gates over the timed inputs' real tokens only, the work a padding-exact encoder needs). Peak: "
    "one matmul of the model's shapes in the backend's runtime at its precision class (fp32/fp16 -> fp32, "
    "int8 -> int8 dynamic-range), same threads; encoder role [B*k*L, E]x[E, 4h], recurrent role "
    "[B*k, h]x[h, 4h] and recurrent_row role [B, h]x[h, 4h] (the encoder LSTMs' recurrent products, which "
    "run one time step at a time, are priced at the role of their rows: the caption Bi-LSTM's B*k, the "
    "reason and temporal LSTMs' B), step role [B, H]x[H, 4H] (the step's MACs at the faster of it and the "
    "weights role), weights role [B, H]x[H, N] with H*N the matrix weights one step reads (the step's "
    "weights in one product, wherever they live). Read floor: "
    "the graph's matrix weights at the weights role's rate (weights per second, same precision class). "
    "Binding floor: the largest of the compute floor, the bytes floor (where the graph's weights exceed the "
    "last-level cache) and the read floor. Caption floor: the encoder's binding floor + the caption's steps x "
    "the step's. Multiples use p50."
)


def peak_shapes(cfg: Any, batch: int, vocab: int) -> dict[str, tuple[int, int, int]]:
    """(M, K, N) of each role's probe matmul (see the module doc); ``vocab``: the export's
    vocabulary size (the step's logits projection)."""
    m, d = cfg.model, cfg.dataset
    hidden = m.decoder_hidden_dim
    return {
        "encoder": (batch * d.seq_len * d.max_caption_len, m.text_embed_dim, 4 * m.text_hidden_dim),
        "recurrent": (batch * d.seq_len, m.text_hidden_dim, 4 * m.text_hidden_dim),
        "recurrent_row": (batch, m.text_hidden_dim, 4 * m.text_hidden_dim),
        "step": (batch, hidden, 4 * hidden),
        READ_ROLE: (batch, hidden, -(-step_macs(cfg, vocab, batch).total_weights // hidden)),
    }


def best_ms(call: Callable[[], Any]) -> float:
    """Best of :data:`PEAK_REPEATS` repeats of the mean time per call (ms), after a warm-up."""
    for _ in range(3):
        call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-6)
    n = max(3, int(PEAK_REPEAT_S / once))
    best = float("inf")
    for _ in range(PEAK_REPEATS):
        start = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e3


def _weights(k: int, n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((k, n), dtype=np.float32) * 0.05


def numpy_probe(shape: tuple[int, int, int], precision: str, threads: int, workdir: Path) -> Callable[[], Any]:
    """numpy's fp32 matmul (BLAS, its own threads): the fallback where a backend's runtime has no probe."""
    m, k, n = shape
    x, w = np.ones((m, k), np.float32), _weights(k, n)
    return lambda: x @ w


def ort_probe(shape: tuple[int, int, int], precision: str, threads: int, workdir: Path) -> Callable[[], Any]:
    """One ``MatMul`` (fp32) or its ``quantize_dynamic`` int8 graph in ONNX Runtime."""
    # lazy: onnx / onnxruntime are optional runtimes
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "peak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(_weights(k, n), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    path = workdir / f"peak_{m}x{k}x{n}.onnx"
    onnx.save(model, str(path))
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic  # lazy: as above

        qpath = path.with_suffix(".int8.onnx")
        with quiet_root_logger():
            quantize_dynamic(str(path), str(qpath), weight_type=QuantType.QInt8)
        path = qpath
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    feeds = {"x": np.ones((m, k), np.float32)}
    return lambda: session.run(None, feeds)


#: (K, N) of the product the TFLite converter converts once per precision; every LiteRT probe is
#: that file with its shapes and weights replaced (:func:`widened_product`): converting a probe of the
#: step's weights (69 MB fp32) took the converter 5 s per precision. Dynamic-range quantization
#: leaves weights under 1024 elements float, so the template's are over.
TEMPLATE_KN = (64, 32)


@functools.lru_cache(maxsize=None)
def litert_template(precision: str) -> bytes:
    """A one-matmul ``[1, K] x [K, N]`` model (:data:`TEMPLATE_KN`) converted by the TFLite
    converter (int8: dynamic range, per-channel int8 weights)."""
    import tensorflow as tf  # lazy: TensorFlow converts the template; LiteRT runs the probes

    k, n = TEMPLATE_KN
    w = tf.constant(_weights(k, n))

    @tf.function(input_signature=[tf.TensorSpec([1, k], tf.float32, name="x")])
    def matmul(x: Any) -> Any:
        return tf.matmul(x, w)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([matmul.get_concrete_function()], matmul)
    if precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def widened_product(template: bytes, m: int, weights: np.ndarray) -> bytes:
    """``template``'s one ``FULLY_CONNECTED`` as ``[m, K] x weights`` (``weights``: ``[K, N]``
    float32), stored as the template stores its weight: float32, or int8 per output channel
    (symmetric, the dynamic-range converter's scheme)."""
    tfl = schema()
    model = tfl.ModelT.InitFromPackedBuf(template, 0)
    graph = model.subgraphs[0]
    (op,) = graph.operators
    x, w, y = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    if w.type not in (tfl.TensorType.FLOAT32, tfl.TensorType.INT8):
        raise ValueError(f"the converter's template holds {w.type} weights, not float32 or int8")
    k, n = weights.shape
    x.shape, w.shape, y.shape = np.array([m, k], np.int32), np.array([n, k], np.int32), np.array([m, n], np.int32)
    kernel = np.ascontiguousarray(weights.T)
    if w.type == tfl.TensorType.INT8:
        scale = np.maximum(np.abs(kernel).max(axis=1), 1e-12) / 127.0
        kernel = np.clip(np.rint(kernel / scale[:, None]), -127, 127).astype(np.int8)
        w.quantization.scale = scale.astype(np.float32)
        w.quantization.zeroPoint = np.zeros(n, np.int64)
        w.quantization.quantizedDimension = 0
    model.buffers[w.buffer].data = np.frombuffer(kernel.tobytes(), np.uint8)
    return pack_model(model, kernel.nbytes + 4096)


def litert_probe(shape: tuple[int, int, int], precision: str, threads: int, workdir: Path) -> Callable[[], Any]:
    """One matmul (int8: dynamic range, per-channel int8 weights) in LiteRT (XNNPACK): the TFLite
    converter's one-matmul file (:func:`litert_template`) at this shape (:func:`widened_product`)."""
    from ai_edge_litert.interpreter import Interpreter  # lazy: optional runtime

    m, k, n = shape
    content = widened_product(litert_template(precision), m, _weights(k, n))
    interpreter = Interpreter(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    interpreter.set_tensor(index, np.ones((m, k), np.float32))
    return interpreter.invoke


PROBES: dict[str, Callable[..., Callable[[], Any]]] = {NUMPY: numpy_probe, ORT: ort_probe, LITERT: litert_probe}


def available_runtimes(formats: set[str]) -> list[str]:
    """numpy, plus ONNX Runtime / LiteRT for the formats benched (LiteRT only where TensorFlow
    is already imported: the runtime-only path must not import it)."""
    out = [NUMPY]
    if "onnx" in formats:
        out.append(ORT)
    if "tflite" in formats and "tensorflow" in sys.modules:
        out.append(LITERT)
    return out


class PeakProbes:
    """The run's peak probes (each role in each runtime, fp32 and int8; a probe that cannot be
    built is left out, said so), measured round by round: the bench runs one :meth:`round`
    between its timing blocks, so the peaks see the same phases of the machine as the graphs
    they price. A peak is its probe's best round."""

    def __init__(self, cfg: Any, batch: int, vocab: int, threads: int, runtimes: list[str],
                 echo: Callable[[str], Any] = print) -> None:
        self.shapes = peak_shapes(cfg, batch, vocab)
        with tempfile.TemporaryDirectory(prefix="storyedge_peak_") as tmp:  # loaded: the files can go
            self.probes = _build_probes(self.shapes, threads, runtimes, Path(tmp), echo)
        self.best = {key: float("inf") for key in self.probes}
        #: rounds run, and their wall seconds
        self.rounds, self.seconds = 0, 0.0

    def round(self) -> None:
        """Time every probe once more (:func:`best_ms`), keeping each one's best."""
        start = time.perf_counter()
        for key, call in self.probes.items():
            self.best[key] = min(self.best[key], best_ms(call))
        self.rounds += 1
        self.seconds += time.perf_counter() - start

    def top_up(self, rounds: int = PEAK_ROUNDS) -> None:
        """Run rounds until at least ``rounds`` have run (a bench with fewer timing blocks)."""
        while self.rounds < rounds:
            self.round()

    def peaks(self) -> list[ComputePeak]:
        """Each measured probe's peak: MACs ÷ (its best time - its runtime's call overhead)."""
        peaks: list[ComputePeak] = []
        for (runtime, precision, role), ms in self.best.items():
            if role == OVERHEAD_ROLE or ms == float("inf"):
                continue
            overhead = self.best.get((runtime, precision, OVERHEAD_ROLE), 0.0)
            m, k, n = shape = self.shapes[role]
            # the call's fixed cost (a 1x1 product) is the runtime's, not the kernel's: left out
            kernel = max(ms - overhead, ms * MIN_KERNEL_SHARE)
            peaks.append(ComputePeak(runtime, precision, role, list(shape), ms, m * k * n / (kernel / 1e3),
                                     overhead_ms=overhead))
        return peaks


def _build_probes(shapes: dict[str, tuple[int, int, int]], threads: int, runtimes: list[str], tmp: Path,
                  echo: Callable[[str], Any]) -> dict[tuple[str, str, str], Callable[[], Any]]:
    """``{(runtime, precision, role): probe}``, with each runtime and precision's 1x1 call-overhead
    probe under :data:`OVERHEAD_ROLE`; a probe a runtime cannot build is left out, said so."""
    probes: dict[tuple[str, str, str], Callable[[], Any]] = {}
    for runtime in runtimes:
        for precision in ("fp32", "int8"):
            if runtime == NUMPY and precision == "int8":
                continue  # numpy has no int8 matmul
            try:
                probes[(runtime, precision, OVERHEAD_ROLE)] = PROBES[runtime]((1, 1, 1), "fp32", threads, tmp)
            except Exception:  # noqa: BLE001 - the probes below then fail and say why
                pass
            for role, shape in shapes.items():
                try:
                    probe = PROBES[runtime](shape, precision, threads, tmp)
                    probe()
                except Exception as exc:  # noqa: BLE001 - a probe a runtime cannot run is skipped
                    echo(f"note: {runtime} {precision} {role} peak not measured ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else ''})")
                    continue
                probes[(runtime, precision, role)] = probe
    return probes


def compute_floors(cfg: Any, vocab: int, batch: int, peaks: list[ComputePeak],
                   real: RealTokens | None = None) -> ComputeFloors:
    """The report's compute section: MACs per component and the measured peaks; ``real``: the
    timed inputs' real tokens, over which the Bi-LSTMs are counted (see :func:`encoder_macs`)."""
    enc, step = encoder_macs(cfg, batch, real), step_macs(cfg, vocab, batch)
    d, real = cfg.dataset, real or RealTokens()
    return ComputeFloors(
        encoder_macs=dict(enc.macs), encoder_total_macs=enc.total, encoder_weights=enc.total_weights,
        step_macs=dict(step.macs), step_total_macs=step.total, step_weights=step.total_weights, peaks=peaks,
        note=COMPUTE_NOTE,
        encoder_sequential_macs=dict(enc.sequential), encoder_sequential_rows=dict(enc.sequential_rows),
        caption_tokens=real.captions, caption_slots=batch * d.seq_len * d.max_caption_len,
        reason_tokens=real.reason if cfg.model.use_reason else None, reason_slots=batch * d.max_reason_len,
    )


def precision_class(precision: str, fmt: str = "") -> str:
    """The peak a precision is judged with: ``int8`` for int8 kinds and for TFLite int4 (XNNPACK
    runs blockwise int4 weights against dynamically quantized int8 activations), else ``fp32``
    (ONNX Runtime's MatMulNBits at its default accuracy level computes in float)."""
    if precision.startswith("int8") or (precision == "int4" and fmt == "tflite"):
        return "int8"
    return "fp32"


def _peak_for(floors: ComputeFloors, fmt: str, precision: str, role: str,
              any_class: bool = True) -> ComputePeak | None:
    """A backend's peak of ``role``: its runtime's of its precision class, else numpy's, else (with
    ``any_class``) numpy's fp32."""
    cls = precision_class(precision, fmt)
    runtime = FORMAT_RUNTIME.get(fmt)
    own = (floors.peak(runtime, cls, role) if runtime else None) or floors.peak(NUMPY, cls, role)
    return own or (floors.peak(NUMPY, "fp32", role) if any_class else None)


def read_floor_ms(weights: int, peak: ComputePeak) -> float:
    """The time ``weights`` matrix weights take at the rate ``peak`` read its own."""
    return weights / peak.weights_per_s * 1e3


def graph_floor(macs: int, peak: ComputePeak | None, weight_bytes: int, read_gbps: float,
                llc_bytes: int | None, p50_ms: float,
                sequential: Sequence[tuple[int, ComputePeak | None]] = (),
                read: tuple[int, ComputePeak | None] | None = None) -> GraphFloor | None:
    """One graph's binding floor and its p50 as a multiple of it (None without a peak).

    ``sequential``: (MACs, peak) pairs, parts of ``macs`` priced at their own peak (at ``peak``
    where it is None). ``read``: (the graph's matrix weights, the ``weights`` peak) for the
    weight-read floor (none where the peak is None)."""
    if peak is None:
        return None
    priced = [(n, p or peak) for n, p in sequential if n]
    sequential_macs = sum(n for n, _ in priced)
    compute = ((macs - sequential_macs) / peak.macs_per_s + sum(n / p.macs_per_s for n, p in priced)) * 1e3
    bytes_floor = roofline_floor_ms(weight_bytes, read_gbps)
    candidates = [("compute", compute)]
    if llc_bytes is not None and weight_bytes > llc_bytes:
        candidates.append(("bytes", bytes_floor))
    read_peak = read[1] if read else None
    read_ms = read_floor_ms(read[0], read_peak) if read and read_peak else None
    if read_ms is not None:
        candidates.append(("read", read_ms))
    # on a tie the later floor names it: a step priced at the weights probe's rate is bound by reading them
    binding, floor = max(reversed(candidates), key=lambda c: c[1])
    roles = list(dict.fromkeys(p.role for _, p in priced))
    return GraphFloor(macs=macs, compute_floor_ms=compute, peak=f"{peak.runtime} {peak.precision}",
                      bytes_floor_ms=bytes_floor, weight_bytes=weight_bytes, binding=binding, floor_ms=floor,
                      vs_floor=p50_ms / floor if floor > 0 else float("nan"), sequential_macs=sequential_macs,
                      sequential_peak=f"{priced[0][1].runtime} {priced[0][1].precision} {', '.join(roles)}"
                      if priced else "", read_floor_ms=read_ms,
                      read_peak=f"{read_peak.runtime} {read_peak.precision}" if read_peak else "")


def _step_peak_for(floors: ComputeFloors, fmt: str, precision: str) -> ComputePeak | None:
    """The step's MAC peak: the faster of the ``step`` and ``weights`` probes, both products of the
    step's rows (each weight used B times). The ``step`` probe's weights are meant to stay in cache,
    but a core's cache may not hold them (4 MB of fp32 weights at the seed size, against 2 MiB of
    L2 per core on a Xeon): there it reads them from further out, and its rate, below the
    ``weights`` probe's in a slow phase, made a compute floor the fp32 steps beat (0.94x)."""
    step = _peak_for(floors, fmt, precision, "step")
    weights = _read_peak_for(floors, fmt, precision)
    if step is None or weights is None or weights.runtime != step.runtime:
        return step
    return weights if weights.macs_per_s > step.macs_per_s else step


def _read_peak_for(floors: ComputeFloors, fmt: str, precision: str) -> ComputePeak | None:
    """The ``weights`` peak a backend's weight-read floor uses: its runtime's, else numpy's, of its own
    precision class only (numpy's fp32 rate would price int8 weights at 4 bytes each)."""
    return _peak_for(floors, fmt, precision, READ_ROLE, any_class=False)


def encoder_sequential(floors: ComputeFloors, fmt: str, precision: str) -> list[tuple[int, ComputePeak | None]]:
    """The encoder's recurrent MACs, each part's with the recurrent role of its row count."""
    peaks = {role: _peak_for(floors, fmt, precision, role) for role in RECURRENT_ROLES}
    pairs = []
    for part, macs in floors.encoder_sequential_macs.items():
        rows = floors.encoder_sequential_rows.get(part)
        role = next((r for r, p in peaks.items() if p is not None and p.shape[0] == rows), RECURRENT_ROLES[0])
        pairs.append((macs, peaks[role]))
    return pairs


def backend_floors(
    floors: ComputeFloors, fmt: str, precision: str, encoder_p50_ms: float, step_p50_ms: float,
    roofline: Roofline, read_gbps: float, llc_bytes: int | None, own_step: MacCount | None = None,
    caption: tuple[int, float] | None = None,
) -> BackendFloors | None:
    """A backend's encoder and step against their binding floors (None where no peak was measured).

    ``own_step``: the step's own MACs and weights where they differ from the report's (a shortlist);
    ``caption``: (its steps, its p50) for the caption's floor, the encoder's and its steps'."""
    if floors.peaks == [] or fmt not in FORMAT_RUNTIME:
        return None
    bpw = BYTES_PER_WEIGHT.get(precision, 4)
    read_peak = _read_peak_for(floors, fmt, precision)
    encoder = graph_floor(floors.encoder_total_macs, _peak_for(floors, fmt, precision, "encoder"),
                          floors.encoder_weights * bpw, read_gbps, llc_bytes, encoder_p50_ms,
                          encoder_sequential(floors, fmt, precision), read=(floors.encoder_weights, read_peak))
    step_total, step_weights = (own_step.total, own_step.total_weights) if own_step else \
        (floors.step_total_macs, floors.step_weights)
    step = graph_floor(step_total, _step_peak_for(floors, fmt, precision),
                       roofline.weight_bytes, read_gbps, llc_bytes, step_p50_ms,
                       read=(step_weights, read_peak) if step_weights else None)
    if encoder is None or step is None:
        return None
    out = BackendFloors(encoder=encoder, step=step)
    if caption is not None:
        tokens, p50_ms = caption
        out.caption_floor_ms = encoder.floor_ms + tokens * step.floor_ms
        out.caption_vs_floor = p50_ms / out.caption_floor_ms if out.caption_floor_ms > 0 else None
    return out

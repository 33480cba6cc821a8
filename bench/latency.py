"""Latency, memory and the roofline floor, against the :class:`Backend` interface (numpy only).

What is measured per backend (all wall-clock, ``time.perf_counter``, batch = the export's):

* ``load_seconds``: creating the runtime session(s) / interpreter(s) (TF: building the model,
  loading weights and tracing the ``tf.function`` s).
* ``first_encode_ms`` / ``first_step_ms``: the very first calls after loading (allocation,
  XNNPACK weight packing, graph optimisation happen here).
* after ``warmup`` untimed greedy captions, ``runs`` timed greedy captions of ``caption_tokens``
  decoder steps each, forced to full length (no stop at ``[EOS]``), argmax fed back (the bench
  takes turns with the backend's story-mode captions, round by round: :func:`repeat_interleaved`):

  - ``encoder``: the encoder call of each run (``runs`` samples);
  - ``step``: every decoder step of every run (``runs × caption_tokens`` samples);
  - ``first_token``: encoder + first step + its argmax;
  - ``caption``: encoder + all ``caption_tokens`` steps: the latency of one caption.

* ``tokens_per_s``: ``caption_tokens / median caption time`` (encoder included; the mean-based
  figure is ``tokens_per_s_mean``); ``decode_tokens_per_s``: ``1000 / median step ms``.
* ``rss_delta_mb``: change of the process's *current* resident set (psutil, so Linux, macOS and
  Windows alike) from just before the backend was created to just after its first encoder +
  step call, so it counts the weights, arenas and packed kernels that backend keeps resident.
  It is signed: allocators reuse memory freed by earlier backends (and may return some to the
  system), so it is a lower bound of the backend's footprint and can be negative. The report
  also gives the process's peak RSS at the end (:func:`peak_rss_bytes`), and a baseline: the RSS
  of a fresh process holding only what running a backend needs (:func:`baseline_rss_bytes`).

Roofline floor (``roofline``): a decoder step must read every weight it uses once; at batch 1
nothing is reused, so ``step >= weight bytes read / memory read bandwidth``. Bytes read per step
are the manifest's ``decoder.step_weights`` (the model declares them; for the LSTM decoder: cell
kernel ``(E+C)×4H``, recurrent kernel ``H×4H``, logits projection ``H×V``) at the precision's
bytes per weight (fp32 4, fp16 2, int8 1) plus fp32 biases and one embedding row (the step
gathers one token's row; the rest of the table is not read). An fp16 TFLite file is usually dequantised to fp32 at load time by
XNNPACK, so its own-precision floor is optimistic; every step is therefore also given as a
multiple of the fp32 floor. The decoder file's size is reported as an upper bound of the bytes
(it also holds the whole embedding table). Read bandwidth is measured in the same run with
numpy streaming reductions over a 256 MB array (:func:`memory_bandwidth`). Multiples use the
step's *median* (p50), which interference from other processes moves least. When a step's
weights fit in the last-level cache (``fits_in_llc``), they can stay there between steps and
be read faster than DRAM: the floor does not bind and multiples below 1 are possible.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import psutil

from storyedge.bench.metrics import latency_stats
from storyedge.bench.results import Latency, MemoryBandwidth, Roofline, StepFloors
from storyedge.runtime import Backend, state_batch

try:
    import resource  # POSIX only: ru_maxrss, the peak RSS where psutil has none
except ImportError:  # Windows: psutil's peak_wset instead
    resource = None  # type: ignore[assignment]

#: int4: 4 bits + one 16-bit scale per 32 weights (the default block; an ONNX file's float32
#: scales add 1/16 byte more).
BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8-dynamic": 1, "int8": 1, "int4": 0.5625}
#: where Linux describes cpu0's caches (index*/level, index*/size)
SYSFS_CPU_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
CACHE_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
#: what :func:`baseline_rss_bytes` runs: the imports every process running a backend has
BASELINE_PROBE = "import numpy, psutil, storyedge.runtime; print(psutil.Process().memory_info().rss)"
BASELINE_TIMEOUT_S = 120

T = TypeVar("T")


# ------------------------------------------------------------------------------------ memory


def current_rss_bytes() -> int:
    """Resident set size of this process now (psutil)."""
    return int(psutil.Process().memory_info().rss)


def baseline_rss_bytes() -> tuple[int, str]:
    """RSS of what any process running a backend holds before it loads one → (bytes, how measured).

    Measured in a fresh Python subprocess that imports numpy, psutil and storyedge.runtime, so what
    this process imported (TensorFlow, in a quickstart that trained first) does not count; where
    the subprocess fails, this process's current RSS instead (an over-estimate)."""
    try:
        done = subprocess.run([sys.executable, "-c", BASELINE_PROBE], capture_output=True, text=True,
                              timeout=BASELINE_TIMEOUT_S, check=True)
        return int(done.stdout.split()[-1]), "a fresh Python process with numpy and storyedge.runtime imported"
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return current_rss_bytes(), "the bench process itself (the fresh-process probe failed)"


def peak_rss_bytes() -> int:
    """Peak resident set size of this process: psutil's ``peak_wset`` where it has one (Windows),
    else ``ru_maxrss`` (kB on Linux, bytes on macOS), else the current RSS."""
    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)
    if peak is not None:
        return int(peak)
    if resource is None:
        return int(info.rss)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(int(maxrss if sys.platform == "darwin" else maxrss * 1024), int(info.rss))


# ------------------------------------------------------------------------------- bandwidth


def memory_bandwidth(size_mb: int = 256, repeats: int = 5, threads: int = 1) -> MemoryBandwidth:
    """Measured memory read bandwidth (GB/s, 1e9 bytes) of this machine, numpy only.

    Best of ``repeats`` passes of two streaming reductions (``np.sum`` over float64, ``np.max``
    over float32) over a ``size_mb`` array, on 1 thread and split over ``threads`` threads
    (numpy releases the GIL in reductions), and the read half of an ``np.copyto`` of it;
    ``read_gbps`` is the fastest of them, so the floor derived from it is never inflated by a
    slow (compute-bound) method.
    """
    n_bytes = size_mb * (1 << 20)
    data = np.ones(n_bytes // 8, np.float64)
    as_f32 = data.view(np.float32)
    data.sum()  # fault the pages in

    def best(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return data.nbytes / min(times) / 1e9

    methods = {"sum_f64_1thread": best(data.sum), "max_f32_1thread": best(as_f32.max)}
    if threads > 1:
        sums, maxes = np.array_split(data, threads), np.array_split(as_f32, threads)
        with ThreadPoolExecutor(threads) as pool:
            methods[f"sum_f64_{threads}threads"] = best(lambda: list(pool.map(np.sum, sums)))
            methods[f"max_f32_{threads}threads"] = best(lambda: list(pool.map(np.max, maxes)))
    dst = np.empty_like(data)
    copy = 2 * best(lambda: np.copyto(dst, data))
    del data, dst
    # A copy reads as many bytes as it writes, so its read rate (copy / 2) is a lower bound of
    # what a pure read can reach; numpy's reductions are sometimes compute-bound below it.
    methods["copy_read_1thread"] = copy / 2
    return MemoryBandwidth(
        size_mb=size_mb,
        repeats=repeats,
        threads=threads,
        methods_gbps=methods,
        read_gbps_1thread=max(v for k, v in methods.items() if k.endswith("_1thread")),
        read_gbps=max(methods.values()),
        copy_gbps=copy,
        method=f"fastest of: best of {repeats} np.sum (float64) / np.max (float32) passes over "
        f"{size_mb} MB on 1 and {threads} thread(s), and half the traffic of an np.copyto",
        last_level_cache_bytes=last_level_cache_bytes(),
    )


def fastest_bandwidth(rounds: Sequence[MemoryBandwidth]) -> MemoryBandwidth:
    """One :class:`MemoryBandwidth` of several rounds of :func:`memory_bandwidth`: each method's
    fastest round, ``read_gbps`` the fastest of all (so the floors stay lower bounds)."""
    first = rounds[0]
    if len(rounds) == 1:
        return first
    methods = {k: max(r.methods_gbps.get(k, 0.0) for r in rounds) for k in first.methods_gbps}
    return dataclasses.replace(
        first, methods_gbps=methods, read_gbps=max(r.read_gbps for r in rounds),
        read_gbps_1thread=max(r.read_gbps_1thread for r in rounds), copy_gbps=max(r.copy_gbps for r in rounds),
        rounds=sum(r.rounds for r in rounds),
        method=f"{first.method}; the fastest of {sum(r.rounds for r in rounds)} rounds: one before the backends "
        f"are loaded, one after each timing block",
    )


def last_level_cache_bytes(base: Path = SYSFS_CPU_CACHE) -> int | None:
    """Size of the highest-level CPU cache described under ``base`` (Linux sysfs layout:
    ``index*/level`` and ``index*/size`` such as ``32768K``); None where there is none or it
    cannot be parsed. Weights that fit in it can be read faster than the DRAM bandwidth, so the
    roofline floor does not bind them."""
    best: tuple[int, int] | None = None
    try:
        for index in sorted(base.glob("index*")):
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
            unit = CACHE_SIZE_UNITS.get(text[-1:], 1)
            size = int(text[:-1] if text[-1:] in CACHE_SIZE_UNITS else text) * unit
            if best is None or (level, size) > best:
                best = (level, size)
    except (OSError, ValueError):
        return None
    return best[1] if best else None


def step_weight_bytes(counts: dict[str, int], precision: str) -> int:
    """Bytes a decoder step reads at a precision (embedding row at the matrix precision)."""
    bpw = BYTES_PER_WEIGHT.get(precision, 4)
    return int((counts["matrix_params"] + counts["embedding_row"]) * bpw + counts["vector_params"] * 4)


def roofline_floor_ms(weight_bytes: int, read_gbps: float) -> float:
    """The time reading ``weight_bytes`` takes at ``read_gbps`` (ms)."""
    return weight_bytes / (read_gbps * 1e9) * 1e3


ROOFLINE_NOTE = (
    "Bytes per step = the step's matrices (as the manifest's decoder declares them) at the "
    "precision's bytes/weight + fp32 biases + one embedding row (see storyedge.bench.latency). "
    "The decoder file size (whole embedding table included) is an upper bound. Multiples use the step "
    "p50. Weights that fit in the last-level cache can be read faster than DRAM (the floor does not bind)."
)


def step_floors(counts: dict[str, int], read_gbps: float) -> StepFloors:
    """The fp32 and int8 floors of a decoder step reading the weights ``counts`` declares."""
    fp32_bytes, int8_bytes = step_weight_bytes(counts, "fp32"), step_weight_bytes(counts, "int8")
    return StepFloors(
        counts=dict(counts), read_gbps=read_gbps,
        fp32_weight_bytes=fp32_bytes, fp32_floor_ms=roofline_floor_ms(fp32_bytes, read_gbps),
        int8_weight_bytes=int8_bytes, int8_floor_ms=roofline_floor_ms(int8_bytes, read_gbps),
        note=ROOFLINE_NOTE,
    )


def backend_roofline(
    floors: StepFloors, precision: str, step_p50_ms: float, llc_bytes: int | None, decoder_file_bytes: int | None
) -> Roofline:
    """A backend's step p50 as multiples of the floor at its precision and of the fp32 floor."""
    weight_bytes = step_weight_bytes(floors.counts, precision)
    floor = roofline_floor_ms(weight_bytes, floors.read_gbps)
    return Roofline(
        weight_bytes=weight_bytes,
        bytes_per_weight=BYTES_PER_WEIGHT.get(precision, 4),
        floor_ms=floor,
        step_vs_floor=step_p50_ms / floor,
        step_vs_fp32_floor=step_p50_ms / floors.fp32_floor_ms,
        fits_in_llc=None if llc_bytes is None else weight_bytes <= llc_bytes,
        decoder_file_floor_ms=roofline_floor_ms(decoder_file_bytes, floors.read_gbps) if decoder_file_bytes else None,
    )


# ----------------------------------------------------------------------------------- timing


def first_inference(backend: Backend, inputs: dict[str, np.ndarray], bos_id: int) -> tuple[float, float]:
    """Time the first encoder and decoder-step calls of a freshly loaded backend → (encode ms, step ms)."""
    start = time.perf_counter()
    state = backend.encode(inputs)
    mid = time.perf_counter()
    batch = state_batch(state)
    backend.step(np.full((batch,), bos_id, np.int32), state)
    end = time.perf_counter()
    return (mid - start) * 1e3, (end - mid) * 1e3


def repeat_timed(call: Callable[[int], T], warmup: int, runs: int) -> list[T]:
    """``call(i)`` for ``warmup`` untimed then ``runs`` kept calls: the kept calls' results."""
    for i in range(warmup):
        call(i)
    return [call(i) for i in range(runs)]


#: each backend's timed runs are split into this many blocks and the backends timed in turn, block
#: by block, with a round of the floors' probes (MAC peaks, memory bandwidth) between blocks: the
#: machine's speed moves for seconds at a time (other tenants), and a backend timed in one go could
#: fall whole into a slow phase (seed size: one encoder's p50 read 2.30x its floor in a run where an
#: interleaved A/B of the same file against the one before read it 3% faster than that file's 2.01x)
TIMING_BLOCKS = 5
#: untimed captions at the start of every block after the first: the caches then hold the weights
#: of the backend timed before
REWARM_RUNS = 1


def block_sizes(runs: int, blocks: int = TIMING_BLOCKS) -> list[int]:
    """``runs`` split into at most ``blocks`` near-equal parts, none empty (the larger first)."""
    n = max(1, min(blocks, runs))
    return [runs // n + (1 if i < runs % n else 0) for i in range(n)]


def time_in_blocks(timers: Sequence[Any], runs: int, warmup: int, between_blocks: Callable[[], Any] | None = None,
                   echo: Callable[[int, int, int, int], Any] | None = None) -> None:
    """``runs`` in :func:`block_sizes` blocks: each block, every timer's ``block(warmup, n)`` in
    turn (``warmup`` untimed runs in the first block, :data:`REWARM_RUNS` in the later ones), then
    ``between_blocks()``; ``echo(block, blocks, warmup, n)`` before each block."""
    blocks = block_sizes(runs)
    for i, n in enumerate(blocks):
        first = warmup if i == 0 else REWARM_RUNS
        if echo is not None:
            echo(i + 1, len(blocks), first, n)
        for timer in timers:
            timer.block(first, n)
        if between_blocks is not None:
            between_blocks()


def repeat_interleaved(calls: Sequence[Callable[[int], Any]], warmup: int, runs: int) -> tuple[list[list[Any]], list[float]]:
    """Each of ``calls`` in turn, round after round (``warmup`` untimed rounds, then ``runs`` kept)
    → (per call its kept results, per call the wall seconds of all its rounds).

    Interleaving puts every call's samples in the same phases of a machine whose speed moves
    (other tenants), so ratios between them (story mode ÷ full window) compare like with like."""
    kept: list[list[Any]] = [[] for _ in calls]
    seconds = [0.0] * len(calls)
    for i in range(warmup + runs):
        for j, call in enumerate(calls):
            start = time.perf_counter()
            result = call(i if i < warmup else i - warmup)
            seconds[j] += time.perf_counter() - start
            if i >= warmup:
                kept[j].append(result)
    return kept, seconds


def timed_caption(
    backend: Backend, inputs: dict[str, np.ndarray], bos_id: int, tokens: int
) -> tuple[float, float, float, list[float]]:
    """One forced-length greedy caption → (encoder s, first-token s, caption s, step s list)."""
    clock = time.perf_counter
    start = clock()
    state = backend.encode(inputs)
    after_encoder = clock()
    batch = state_batch(state)
    token = np.full((batch,), bos_id, np.int32)
    steps: list[float] = []
    first_token = 0.0
    for i in range(tokens):
        t0 = clock()
        logits, state = backend.step(token, state)
        token = backend.token_ids(logits.argmax(axis=-1))
        t1 = clock()
        steps.append(t1 - t0)
        if i == 0:
            first_token = t1 - start
    end = clock()
    return after_encoder - start, first_token, end - start, steps


def measure_latency(
    backend: Backend,
    inputs: dict[str, np.ndarray],
    bos_id: int,
    caption_tokens: int,
    warmup: int,
    runs: int,
) -> Latency:
    """Warm-up, then ``runs`` timed forced-length greedy captions (see the module doc)."""
    timed = repeat_timed(lambda _: timed_caption(backend, inputs, bos_id, caption_tokens), warmup, runs)
    return caption_latency(timed, caption_tokens, warmup, runs)


def caption_latency(
    timed: Sequence[tuple[float, float, float, list[float]]], caption_tokens: int, warmup: int, runs: int
) -> Latency:
    """The :class:`Latency` of ``runs`` :func:`timed_caption` results."""
    encoder, first, caption, step_lists = zip(*timed)
    steps = [s for run in step_lists for s in run]
    step_stats = latency_stats(steps)
    caption_stats = latency_stats(caption)
    return Latency(
        caption_tokens=caption_tokens,
        warmup=warmup,
        runs=runs,
        encoder=latency_stats(encoder),
        step=step_stats,
        first_token=latency_stats(first),
        caption=caption_stats,
        tokens_per_s=caption_tokens / (caption_stats.p50_ms / 1e3),
        decode_tokens_per_s=1e3 / step_stats.p50_ms,
        tokens_per_s_mean=caption_tokens / (caption_stats.mean_ms / 1e3),
    )

"""``storyedge bench`` end to end: open the export, create every backend, parity, latency, reports.

Order of work: measure memory bandwidth (before anything large is resident), create the TF
reference (full mode) and each exported backend in turn, recording load time, RSS growth and
first-inference times; run parity with all backends side by side over the eval windows; time
each backend alone; apply the gates; write the reports; and only then raise
:class:`~storyedge.errors.CheckFailed` when a gate failed (exit 1 with the report on disk).

``latency_only`` skips the TF reference, the dataset and parity: only numpy, click, the
manifest/tokenizer modules and the runtimes are imported (no TensorFlow, no ``datasets``).
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from storyedge import __version__
from storyedge.devices import import_tensorflow, set_tf_threads
from storyedge.runtime import Backend, backend_plans, build_reference, load_backend, open_export, select_specs
from storyedge.runtime.export_dir import REFERENCE_NEEDS_TF
from storyedge.bench.inputs import synthetic_inputs, window_dict
from storyedge.bench.latency import (
    BYTES_PER_WEIGHT,
    first_inference,
    measure_latency,
    memory_bandwidth,
    peak_rss_bytes,
    roofline_floor_ms,
    rss_probe,
    step_weight_bytes,
)
from storyedge.bench.metrics import Gates
from storyedge.bench.report import compare_reports, compare_text, terminal_text, write_reports
from storyedge.config import Config
from storyedge.errors import CheckFailed, UserError

log = logging.getLogger(__name__)


@dataclass
class BenchOptions:
    """Everything ``storyedge bench`` can be told (None: the config's bench section)."""

    exports: Path
    out: Path
    config: Config | None = None
    split: str | None = None
    max_windows: int | None = None
    threads: int | None = None
    warmup: int | None = None
    runs: int | None = None
    caption_tokens: int | None = None
    latency_only: bool = False
    backends: str | None = None
    compare: Path | None = None
    gate_overrides: dict[str, float | None] = field(default_factory=dict)
    bandwidth_mb: int = 256
    #: random-init runs: parity windows come from this data config instead of the export's
    source: dict[str, Any] | None = None


def _host() -> dict[str, Any]:
    versions: dict[str, str] = {"python": platform.python_version()}
    for module in ("numpy", "ai_edge_litert", "onnxruntime", "tensorflow", "keras"):
        mod = sys.modules.get(module)
        if mod is not None:
            versions[module] = getattr(mod, "__version__", "?")
    if "ai_edge_litert" in versions and versions["ai_edge_litert"] == "?":
        try:
            from importlib.metadata import version

            versions["ai_edge_litert"] = version("ai-edge-litert")
        except Exception:  # noqa: BLE001
            pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


def load_eval_windows(config: Config, tokenizer: Any, split: str, max_windows: int) -> dict[str, Any]:
    """Eval windows of ``split`` through the data layer (``datasets``; no TensorFlow)."""
    from storyedge.data.loading import load_story_splits
    from storyedge.data.pipeline import encode_windows

    splits = load_story_splits(config.dataset)
    if split not in splits:
        raise UserError(f"--split {split}: the dataset has splits {', '.join(splits)}")
    arrays = encode_windows(splits[split], tokenizer, config.dataset, max_windows, split)
    windows = window_dict(arrays.as_dict())
    if not config.model.use_reason:
        windows.pop("reason", None)
    return windows


def _new_backend(
    make: Callable[[], Backend], inputs: dict[str, Any], bos_id: int, kind: dict[str, Any]
) -> tuple[Backend, dict[str, Any]]:
    gc.collect()
    before = rss_probe()
    start = time.perf_counter()
    backend = make()
    backend.load_seconds = time.perf_counter() - start  # everything creating it took (TF: build + weights)
    first = first_inference(backend, inputs, bos_id)
    after = rss_probe()
    info = {**backend.describe(), **kind, **first, "rss_delta_mb": max(after - before, 0) / 1e6}
    return backend, info


def run_bench(opts: BenchOptions, echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the benchmark; returns the report (also written under ``opts.out``).

    Raises :class:`CheckFailed` after writing when a parity gate failed.
    """
    export = open_export(opts.exports, opts.config)
    cfg = opts.config or export.config
    bench = cfg.bench
    threads = opts.threads or bench.threads
    warmup = bench.warmup if opts.warmup is None else opts.warmup
    runs = opts.runs or bench.runs
    split = opts.split or bench.split
    max_windows = opts.max_windows or bench.max_windows
    caption_tokens = opts.caption_tokens or export.config.dataset.max_caption_len
    gates = Gates.from_bench_config(bench, **opts.gate_overrides)
    batch = export.manifest.batch
    tok = export.tokenizer
    compare_old = None
    if opts.compare is not None:
        from storyedge.bench.report import load_report

        compare_old = load_report(opts.compare)  # fail early on a bad path

    specs = select_specs(export.specs, opts.backends)
    if not specs:
        have = ", ".join(s.name for s in export.specs) or "none"
        raise UserError(f"{export.path}: no exported backend matches --backends {opts.backends!r} (backends: {have})")

    echo(f"measuring memory read bandwidth ({opts.bandwidth_mb} MB, {threads} threads) ...")
    bandwidth = memory_bandwidth(opts.bandwidth_mb, threads=threads)
    timing_inputs = synthetic_inputs(export.manifest, seed=0, batch=batch)

    windows: dict[str, Any] | None = None
    if not opts.latency_only:  # before loading backends: a dataset problem fails fast
        echo(f"loading eval windows: split {split}, at most {max_windows} ...")
        windows = load_eval_windows(cfg, tok, split, max_windows)

    loaded: list[tuple[Backend, dict[str, Any]]] = []
    reference: Backend | None = None
    if not opts.latency_only:
        set_tf_threads(import_tensorflow(needed_for=REFERENCE_NEEDS_TF), threads)
        echo("building the TF reference from reference/ ...")
        reference, info = _new_backend(
            lambda: build_reference(export, batch), timing_inputs, tok.bos_id,
            {"layout": "reference", "providers": None, "reference": True, "threads": threads},
        )
        loaded.append((reference, info))
    for spec, providers in backend_plans(specs):
        echo(f"loading {spec.name}{'' if not providers or len(providers) == 1 else ' on ' + providers[0]} ...")
        backend, info = _new_backend(
            lambda: load_backend(spec, threads, providers), timing_inputs, tok.bos_id,
            {"layout": spec.layout, "providers": providers, "reference": False,
             "decoder_file_bytes": spec.decoder_path.stat().st_size if spec.layout != "multi" else None},
        )
        loaded.append((backend, info))

    # ---- parity
    parity_summary = None
    parity_by_name: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    if reference is not None and windows is not None:
        from storyedge.bench.parity import run_parity

        others = [b for b, _ in loaded if b is not reference]
        echo(f"parity on {len(windows['target'])} windows x {len(others) + 1} backends ...")
        run = run_parity(
            reference, others, windows, batch=batch, pad_id=tok.pad_id, bos_id=tok.bos_id,
            eos_id=tok.eos_id, max_new=export.config.dataset.max_caption_len - 1,
        )
        for result in run.results:
            if result.backend != reference.name:
                gates.apply(result)
            parity_by_name[result.backend] = result
        parity_summary = {
            "reference": reference.name,
            "split": split,
            "windows": run.windows,
            "tokens": run.results[0].tokens,
            "seconds": run.seconds,
        }
        samples = [
            {
                "window": s["window"],
                "target": tok.decode(s["target"][1:]),
                "greedy": {name: tok.decode(ids) for name, ids in s["greedy"].items()},
            }
            for s in run.samples
        ]

    # ---- latency
    counts = export.manifest.decoder.step_weights
    read_gbps = bandwidth["read_gbps"]
    fp32_bytes = step_weight_bytes(counts, "fp32")
    int8_bytes = step_weight_bytes(counts, "int8")
    roofline = {
        "counts": counts,
        "read_gbps": read_gbps,
        "fp32_weight_bytes": fp32_bytes,
        "fp32_floor_ms": roofline_floor_ms(fp32_bytes, read_gbps),
        "int8_weight_bytes": int8_bytes,
        "int8_floor_ms": roofline_floor_ms(int8_bytes, read_gbps),
        "note": (
            "Bytes per step = the step's matrices (as the manifest's decoder declares them) at the "
            "precision's bytes/weight + fp32 biases + one embedding row (see storyedge.bench.latency). "
            "The decoder file size (whole embedding table included) is an upper bound. Multiples use the step "
            "p50. Weights that fit in the last-level cache can be read faster than DRAM (the floor does not bind)."
        ),
    }
    entries: list[dict[str, Any]] = []
    for backend, info in loaded:
        echo(f"timing {backend.name}: {warmup} warm-up + {runs} runs of encoder + {caption_tokens} steps ...")
        latency = measure_latency(backend, timing_inputs, tok.bos_id, caption_tokens, warmup, runs)
        weight_bytes = step_weight_bytes(counts, backend.precision)
        floor = roofline_floor_ms(weight_bytes, read_gbps)
        step_p50 = latency["step"]["p50_ms"]
        llc = bandwidth.get("last_level_cache_bytes")
        roof = {
            "weight_bytes": weight_bytes,
            "bytes_per_weight": BYTES_PER_WEIGHT.get(backend.precision, 4),
            "floor_ms": floor,
            "step_vs_floor": step_p50 / floor,
            "step_vs_fp32_floor": step_p50 / roofline["fp32_floor_ms"],
            "fits_in_llc": bool(llc and weight_bytes <= llc),
        }
        if info.get("decoder_file_bytes"):
            roof["decoder_file_floor_ms"] = roofline_floor_ms(info["decoder_file_bytes"], read_gbps)
        entry = {**info, "latency": latency, "roofline": roof, "parity": None}
        result = parity_by_name.get(backend.name)
        if result is not None:
            entry["parity"] = {
                "ppl": result.ppl, "mean_nll": result.mean_nll, "tokens": result.tokens, "windows": result.windows,
                "ppl_ratio": result.ppl_ratio, "kl": result.kl, "top1_agreement": result.top1_agreement,
                "greedy_agreement": result.greedy_agreement, "max_abs_logit_diff": result.max_abs_logit_diff,
                "gates": result.gates, "passed": result.passed,
                "gate_lines": gates.lines(backend.precision) if not info.get("reference") else [],
            }
        entries.append(entry)

    failed = [
        f"{e['name']} {name} {g['value']:.6g} (needs {g['op'].replace('x', 'ratio')} {g['limit']:g})"
        for e in entries if e["parity"] for name, g in e["parity"]["gates"].items() if not g["passed"]
    ]
    report: dict[str, Any] = {
        "storyedge_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "export_dir": str(export.path),
        "source": export.manifest.source,
        "host": _host(),
        "settings": {
            "batch": batch, "threads": threads, "warmup": warmup, "runs": runs, "split": split,
            "max_windows": max_windows, "caption_tokens": caption_tokens, "latency_only": opts.latency_only,
            "backends_filter": opts.backends, "vocab_size": export.vocab_size,
            "model": {k: v for k, v in export.config.model.__dict__.items()},
            "dataset": {k: getattr(export.config.dataset, k) for k in ("seq_len", "image_size", "max_caption_len", "max_reason_len")},
        },
        "gates": gates.__dict__,
        "memory_bandwidth": bandwidth,
        "roofline": roofline,
        "parity": parity_summary,
        "samples": samples,
        "backends": entries,
        "failed_gates": failed,
        "targets": targets(entries),
        "peak_rss_mb": peak_rss_bytes() / 1e6,
        "notes": [
            "Latency inputs are random with the export's static shapes (timing does not depend on the values).",
            "rss_delta_mb: growth of the current RSS across creating the backend and its first encoder + step "
            "call (a lower bound: freed memory may be reused); peak_rss_mb: ru_maxrss of the whole process.",
        ],
    }
    if compare_old is not None:
        report["compare"] = compare_reports(compare_old, report)
    paths = write_reports(report, opts.out)
    echo(terminal_text(report))
    if compare_old is not None:
        echo("")
        echo(compare_text(report["compare"]))
    echo(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    if failed:
        raise CheckFailed(f"{len(failed)} parity gate(s) failed: " + "; ".join(failed))
    return report


def targets(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's performance targets, measured on medians (p50; never gates)."""
    ref = next((e for e in entries if e.get("reference")), None)
    exports = [e for e in entries if not e.get("reference") and e.get("latency")]
    out: dict[str, Any] = {}

    def p50(e: dict[str, Any], key: str) -> float:
        return e["latency"][key]["p50_ms"]

    def best(items: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
        return min(items, key=lambda e: p50(e, key)) if items else None

    int8 = best([e for e in exports if e["precision"] in ("int8", "int8-dynamic")], "step")
    if int8 and ref:
        value = p50(int8, "step") / p50(ref, "step")
        out["int8_step_vs_tf_step"] = {"value": value, "goal": "<= 1/30 (0.0333)", "met": value <= 1 / 30,
                                       "detail": f"{int8['name']} {p50(int8, 'step'):.3f} ms vs {ref['name']} "
                                                 f"(tf.function) {p50(ref, 'step'):.3f} ms"}
    fp32 = [e for e in exports if e["precision"] == "fp32"]
    if fp32:
        e = min(fp32, key=lambda e: e["roofline"]["step_vs_fp32_floor"])
        value = e["roofline"]["step_vs_fp32_floor"]
        # Weights that fit in the last-level cache are not re-read from DRAM each step: the DRAM
        # floor does not bind, so the target says nothing (met: None) rather than failing.
        in_cache = bool(e["roofline"].get("fits_in_llc"))
        out["fp32_step_vs_roofline"] = {
            "value": value,
            "goal": "<= 1.3" + (" (n/a: weights fit in the LLC)" if in_cache else ""),
            "met": None if in_cache else value <= 1.3,
            "detail": f"{e['name']} {p50(e, 'step'):.3f} ms vs floor {e['roofline']['floor_ms']:.3f} ms",
        }
    cap = best(exports, "caption")
    if cap:
        value = p50(cap, "caption")
        out["greedy_caption_ms"] = {"value": value, "goal": "<= 10 ms", "met": value <= 10.0,
                                    "detail": f"{cap['name']}, encoder + {cap['latency']['caption_tokens']} steps"}
    enc = best(exports, "encoder")
    if enc and ref:
        value = p50(enc, "encoder") / p50(ref, "encoder")
        out["encoder_vs_tf"] = {"value": value, "goal": "<= 1/3 (0.333)", "met": value <= 1 / 3,
                                "detail": f"{enc['name']} {p50(enc, 'encoder'):.2f} ms vs {ref['name']} {p50(ref, 'encoder'):.2f} ms"}
    return out

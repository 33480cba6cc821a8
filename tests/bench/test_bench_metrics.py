"""Unit tests of the bench metrics, decoding, parity and latency code on hand-made numbers and
numpy toy backends (fast; no TensorFlow, no exported files)."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench_testutil import MarkovBackend, ToyBackend, toy_decoder, toy_windows

from storyedge.runtime.decoding import Hypothesis, beam_search, greedy_decode
from storyedge.bench.inputs import iter_batches
from storyedge.bench.latency import (
    SYSFS_CPU_CACHE,
    backend_roofline,
    first_inference,
    last_level_cache_bytes,
    measure_latency,
    memory_bandwidth,
    REWARM_RUNS,
    TIMING_BLOCKS,
    block_sizes,
    repeat_interleaved,
    repeat_timed,
    roofline_floor_ms,
    step_floors,
    step_weight_bytes,
    time_in_blocks,
)
from storyedge.bench.metrics import (
    TokenStats,
    kl_divergence,
    latency_stats,
    log_softmax,
    parity_result,
    perplexity,
    token_nll,
)
from storyedge.bench.parity import run_parity
from storyedge.bench.results import Gates, ParityStats
from storyedge.config import BenchConfig

# ------------------------------------------------------------------------------- metrics


def test_log_softmax_and_nll_by_hand() -> None:
    logits = np.array([[0.0, math.log(3.0)], [5.0, 5.0]])
    assert np.allclose(np.exp(log_softmax(logits)), [[0.25, 0.75], [0.5, 0.5]])
    assert np.allclose(token_nll(logits, np.array([1, 0])), [-math.log(0.75), math.log(2)])
    # huge logits stay finite
    assert np.isfinite(log_softmax(np.array([[1e4, 0.0]]))).all()


def test_perplexity_of_uniform_is_vocab_size() -> None:
    vocab = 13
    logits = np.zeros((5, vocab))
    nll = token_nll(logits, np.arange(5))
    assert perplexity(float(nll.sum()), 5) == pytest.approx(vocab)
    assert math.isnan(perplexity(0.0, 0))


def test_kl_by_hand() -> None:
    p = np.log(np.array([[0.5, 0.5]]))
    q = np.log(np.array([[0.25, 0.75]]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence(p, q)[0] == pytest.approx(expected)
    assert kl_divergence(p, p)[0] == pytest.approx(0.0, abs=1e-15)
    # KL is invariant to adding a constant to the logits
    assert kl_divergence(p + 3.0, q - 1.0)[0] == pytest.approx(expected)


def test_token_stats_masks_and_agreement() -> None:
    ref = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0], [9.0, 0.0, 0.0]])
    other = np.array([[2.0, 1.5, 0.0], [3.5, 3.0, 0.0], [0.0, 0.0, 99.0]])
    targets = np.array([0, 1, 2])
    mask = np.array([True, True, False])  # the third row is padding: ignored everywhere
    ref_stats, stats = TokenStats(), TokenStats()
    ref_stats.add(ref, targets, mask, None)
    stats.add(other, targets, mask, ref)
    assert stats.count == ref_stats.count == 2
    assert stats.top1_agree == 1  # row 0 agrees (argmax 0), row 1 does not (0 vs 1)
    assert stats.max_abs_logit_diff == pytest.approx(3.5)
    expected_nll = token_nll(other[:2], targets[:2]).sum()
    assert stats.nll_sum == pytest.approx(expected_nll)
    result = parity_result("b", "fp32", stats, ref_stats, greedy_same=3, windows=4)
    assert result.ppl_ratio == pytest.approx(math.exp(expected_nll / 2) / ref_stats.ppl)
    assert result.top1_agreement == 0.5
    assert result.greedy_agreement == 0.75
    assert result.kl == pytest.approx(kl_divergence(ref[:2], other[:2]).mean())
    empty = TokenStats()
    empty.add(ref, targets, np.zeros(3, bool), ref)
    assert empty.count == 0 and math.isnan(empty.ppl)


def test_top1_decisive_leaves_out_the_references_near_ties() -> None:
    """Margins by hand: row 0 leads by 1.0 (decisive, agrees), row 1 by 0.01 (a near-tie the other
    backend swaps), row 2 by 0.05 exactly (decisive, disagrees), row 3 by 2.0 (decisive, agrees)."""
    ref = np.array([[2.0, 1.0, 0.0], [1.01, 1.0, 0.0], [0.0, 0.05, 0.0], [0.0, 0.0, 2.0]])
    other = np.array([[2.0, 1.0, 0.0], [1.0, 1.01, 0.0], [0.06, 0.05, 0.0], [0.0, 0.0, 2.0]])
    targets, mask = np.array([0, 0, 1, 2]), np.ones(4, bool)
    ref_stats, stats = TokenStats(), TokenStats()
    ref_stats.add(ref, targets, mask, None)
    stats.add(other, targets, mask, ref)
    assert (stats.decisive, stats.decisive_agree, stats.top1_agree) == (3, 2, 2)
    result = parity_result("b", "int8-dynamic", stats, ref_stats, greedy_same=1, windows=1)
    assert result.top1_agreement == 0.5
    assert result.top1_decisive == pytest.approx(2 / 3) and result.near_ties == pytest.approx(0.25)
    # the gate reads the decisive figure: 2/3 fails 0.95 though the near-tie is not counted against it
    gated = Gates.from_bench_config(BenchConfig()).apply(result)
    assert gated.gates["top1_decisive"].value == pytest.approx(2 / 3) and not gated.passed
    # every position a near-tie: no argmax to judge, the top-1 gate is not applied
    ties = ParityStats("t", "int8-dynamic", 10.0, 2.3, 100, 10, ppl_ratio=1.0, top1_decisive=float("nan"),
                       near_ties=1.0)
    assert set(Gates.from_bench_config(BenchConfig()).apply(ties).gates) == {"ppl_ratio"}


def _result(precision: str, **metrics: float) -> ParityStats:
    r = ParityStats("x", precision, ppl=10.0, mean_nll=2.3, tokens=100, windows=10)
    for k, v in metrics.items():
        setattr(r, k, v)
    return r


@pytest.mark.parametrize(
    "precision, metrics, passed",
    [
        ("fp32", {"ppl_ratio": 1.0005, "greedy_agreement": 1.0}, True),
        ("fp32", {"ppl_ratio": 0.9995, "greedy_agreement": 1.0}, True),
        ("fp32", {"ppl_ratio": 1.002, "greedy_agreement": 1.0}, False),
        ("fp32", {"ppl_ratio": 0.998, "greedy_agreement": 1.0}, False),
        ("fp32", {"ppl_ratio": 1.0, "greedy_agreement": 0.99}, False),
        ("fp16", {"ppl_ratio": 1.004}, True),
        ("fp16", {"ppl_ratio": 1.006}, False),
        ("int8-dynamic", {"ppl_ratio": 1.019, "top1_decisive": 0.96}, True),
        ("int8-dynamic", {"ppl_ratio": 1.019, "top1_decisive": 0.94}, False),
        ("int8-dynamic", {"ppl_ratio": 1.03, "top1_decisive": 0.99}, False),
        ("int8", {"ppl_ratio": 1.05}, True),
        ("int8", {"ppl_ratio": 1.06}, False),
        ("int8", {"ppl_ratio": float("nan")}, False),
    ],
)
def test_default_gates(precision: str, metrics: dict[str, float], passed: bool) -> None:
    gates = Gates.from_bench_config(BenchConfig())
    assert gates.apply(_result(precision, **metrics)).passed is passed


def test_gate_overrides_and_lines() -> None:
    gates = Gates.from_bench_config(BenchConfig(), fp32_ppl_ratio_tol=0.0, int8_ppl_ratio_max=None)
    assert gates.int8_ppl_ratio_max == 1.05  # None keeps the config value
    assert gates.apply(_result("fp32", ppl_ratio=1.0, greedy_agreement=1.0)).passed
    failing = gates.apply(_result("fp32", ppl_ratio=1.0 + 1e-9, greedy_agreement=1.0))
    assert not failing.passed and failing.gate_lines == [1.0, 1.0]
    assert failing.failures() == ["x ppl_ratio 1 (needs |ratio-1|<= 0)"]
    assert gates.lines("fp32") == [1.0, 1.0]
    assert gates.lines("int8") == [1.05]
    assert Gates().checks("unknown") == []


def test_latency_stats_by_hand() -> None:
    seconds = [0.004, 0.001, 0.003, 0.002]  # ms: 1, 2, 3, 4
    stats = latency_stats(seconds)
    assert stats.count == 4 and stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(4.0)
    assert stats.mean_ms == pytest.approx(2.5) and stats.p50_ms == pytest.approx(2.5)
    assert stats.p90_ms == pytest.approx(3.7)  # linear interpolation: 3 + 0.7 * (4 - 3)
    assert stats.stdev_ms == pytest.approx(statistics.stdev([1.0, 2.0, 3.0, 4.0]))  # sample stdev, ddof 1
    samples = np.random.default_rng(0).exponential(1e-3, size=500)
    stats = latency_stats(samples)
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p95_ms <= stats.p99_ms <= stats.max_ms
    assert stats.mean_ms == pytest.approx(samples.mean() * 1e3)
    assert stats.stdev_ms == pytest.approx(statistics.stdev((samples * 1e3).tolist()))
    assert latency_stats([0.002]).stdev_ms == 0.0
    assert latency_stats([]).count == 0 and math.isnan(latency_stats([]).p50_ms)


# ------------------------------------------------------------------------------ decoding


def _markov() -> MarkovBackend:
    # ids: 0 pad, 1 unused, 2 BOS, 3 EOS, 4 A, 5 B
    p = np.full((6, 6), 1e-9)
    p[2, [4, 5]] = [0.55, 0.45]  # BOS → A (greedy) or B
    p[4, [4, 5, 3]] = [0.36, 0.34, 0.30]  # A → A … (greedy never ends well)
    p[5, [3, 4]] = [0.99, 0.01]  # B → EOS almost surely
    return MarkovBackend(p / p.sum(axis=1, keepdims=True))


def _state(b: int = 1) -> dict[str, np.ndarray]:
    return {"steps": np.zeros((b,), np.int32)}


def test_greedy_decode_follows_argmax_and_stops_at_eos() -> None:
    backend = _markov()
    hyp = greedy_decode(backend, _state(), bos_id=2, eos_id=3, max_new=5)[0]
    assert hyp.tokens == [4, 4, 4, 4, 4] and not hyp.finished
    assert hyp.logprob == pytest.approx(math.log(0.55) + 4 * math.log(0.36), rel=1e-5)
    backend.logp[4] = np.log(np.array([1e-9, 1e-9, 1e-9, 0.9, 0.05, 0.05]))
    backend.calls = 0
    hyp = greedy_decode(backend, _state(), 2, 3, max_new=5)[0]
    assert hyp.tokens == [4, 3] and hyp.finished and hyp.caption_ids(3) == [4]
    assert backend.calls == 2
    backend.calls = 0
    greedy_decode(backend, _state(), 2, 3, max_new=5, force_full=True)
    assert backend.calls == 5  # timing mode runs the full length


def test_beam_search_beats_greedy_and_beam1_is_greedy() -> None:
    backend = _markov()
    greedy = greedy_decode(backend, _state(), 2, 3, max_new=6)[0]
    one = beam_search(backend, _state(), 2, 3, max_new=6, beam=1)[0]
    assert one.tokens == greedy.tokens and one.logprob == pytest.approx(greedy.logprob)
    best = beam_search(backend, _state(), 2, 3, max_new=6, beam=2)[0]
    assert best.tokens == [5, 3] and best.finished
    assert best.score() > greedy.score()
    # raw log-prob ranking (length_penalty 0) also prefers B EOS here
    assert beam_search(backend, _state(), 2, 3, max_new=6, beam=3, length_penalty=0.0)[0].tokens == [5, 3]


@pytest.mark.parametrize("seed", range(6))
def test_beam_never_below_greedy_on_random_models(seed: int) -> None:
    backend = ToyBackend(vocab=9, seed=seed)
    state = backend.encode(toy_windows(1, vocab=9, seed=seed))
    greedy = greedy_decode(backend, state, 2, 3, max_new=6)[0]
    for width in (1, 2, 3, 5):
        hyps = beam_search(backend, state, 2, 3, max_new=6, beam=width)
        assert hyps[0].score() >= greedy.score() - 1e-9
        assert [h.score() for h in hyps] == sorted((h.score() for h in hyps), reverse=True)
    assert beam_search(backend, state, 2, 3, 6, beam=1)[0].tokens == greedy.tokens


def test_hypothesis_score() -> None:
    h = Hypothesis([4, 5, 3], -3.0, True)
    assert h.score() == -1.0 and h.score(0.0) == -3.0 and h.caption_ids(3) == [4, 5]
    with pytest.raises(ValueError):
        beam_search(_markov(), _state(), 2, 3, 4, beam=0)


# -------------------------------------------------------------------------------- parity


def test_parity_identical_backend_is_perfect() -> None:
    windows = toy_windows(5)
    ref, same = ToyBackend("ref"), ToyBackend("copy")
    run = run_parity(ref, [same], windows, batch=1, pad_id=0, bos_id=2, eos_id=3, max_new=6)
    r = run.results[1]
    assert r.ppl_ratio == 1.0 and r.kl == pytest.approx(0.0, abs=1e-12)
    assert r.top1_agreement == 1.0 and r.greedy_agreement == 1.0 and r.max_abs_logit_diff == 0.0
    assert run.results[0].tokens == int((windows["target"][:, 1:] != 0).sum())
    assert run.windows == 5 and len(run.samples) == 3


def test_parity_perturbed_backend_and_batching_agree() -> None:
    windows = toy_windows(5)
    ref = ToyBackend("ref")
    noisy = ToyBackend("noisy", precision="int8-dynamic", noise=0.5)
    one = run_parity(ref, [noisy], windows, batch=1, pad_id=0, bos_id=2, eos_id=3, max_new=6).results
    two = run_parity(ref, [noisy], windows, batch=2, pad_id=0, bos_id=2, eos_id=3, max_new=6).results
    assert one[1].ppl_ratio != 1.0 and one[1].kl > 0 and one[1].max_abs_logit_diff > 0
    for a, b in zip(one, two):  # the padded last batch (5 = 2+2+1) is masked out
        assert a.ppl == pytest.approx(b.ppl)
        assert a.tokens == b.tokens
        assert a.top1_agreement == pytest.approx(b.top1_agreement)
        assert a.greedy_agreement == pytest.approx(b.greedy_agreement)
        assert a.kl == pytest.approx(b.kl)


def test_iter_batches_pads_last_batch() -> None:
    windows = toy_windows(5)
    batches = list(iter_batches(windows, 2))
    assert len(batches) == 3
    last, valid = batches[-1]
    assert valid.tolist() == [True, False]
    assert np.array_equal(last["target"][1], windows["target"][4])


# ------------------------------------------------------------------------------- latency


def test_measure_latency_fields() -> None:
    backend = ToyBackend()
    inputs = {k: v[:1] for k, v in toy_windows(1).items() if k != "target"}
    first_encode_ms, first_step_ms = first_inference(backend, inputs, bos_id=2)
    assert first_encode_ms > 0 and first_step_ms > 0
    lat = measure_latency(backend, inputs, bos_id=2, caption_tokens=5, warmup=1, runs=4)
    assert lat.step.count == 20 and lat.encoder.count == 4 and lat.caption.count == 4
    for s in (lat.encoder, lat.step, lat.first_token, lat.caption):
        assert s.mean_ms > 0 and s.p50_ms <= s.p90_ms <= s.p95_ms <= s.p99_ms
    assert lat.caption.mean_ms >= lat.first_token.mean_ms >= lat.encoder.min_ms
    # a caption is its encoder call plus its steps (and loop overhead): the means add up
    assert lat.caption.mean_ms >= lat.encoder.mean_ms + 5 * lat.step.mean_ms
    assert lat.tokens_per_s == pytest.approx(5 / (lat.caption.p50_ms / 1e3))
    assert lat.decode_tokens_per_s == pytest.approx(1e3 / lat.step.p50_ms)


def test_repeat_timed_keeps_only_the_runs_after_the_warmup() -> None:
    calls: list[int] = []

    def call(i: int) -> tuple[int, int]:
        calls.append(i)
        return i, 10 * i

    assert repeat_timed(call, warmup=2, runs=3) == [(0, 0), (1, 10), (2, 20)]
    assert calls == [0, 1, 0, 1, 2]  # warm-up calls see their own index too, and are dropped
    assert repeat_timed(call, warmup=0, runs=1) == [(0, 0)]


def test_repeat_interleaved_takes_turns_and_keeps_the_runs_after_the_warmup() -> None:
    calls: list[tuple[str, int]] = []

    def call(name: str) -> Any:
        return lambda i: (calls.append((name, i)), f"{name}{i}")[1]

    kept, seconds = repeat_interleaved([call("full"), call("story")], warmup=1, runs=2)
    assert kept == [["full0", "full1"], ["story0", "story1"]]
    assert calls == [("full", 0), ("story", 0), ("full", 0), ("story", 0), ("full", 1), ("story", 1)]
    assert len(seconds) == 2 and all(x >= 0 for x in seconds)


@pytest.mark.parametrize("runs, sizes", [(30, [6] * 5), (7, [2, 2, 1, 1, 1]), (3, [1, 1, 1]), (1, [1])])
def test_block_sizes_split_the_runs_evenly(runs: int, sizes: list[int]) -> None:
    assert TIMING_BLOCKS == 5 and block_sizes(runs) == sizes and sum(sizes) == runs


def test_backends_take_turns_block_by_block_with_the_probes_between() -> None:
    events: list[tuple[str, int, int]] = []

    class Timer:
        def __init__(self, name: str) -> None:
            self.name = name

        def block(self, warmup: int, runs: int) -> None:
            events.append((self.name, warmup, runs))

    shown: list[tuple[int, int, int, int]] = []
    time_in_blocks([Timer("a"), Timer("b")], runs=7, warmup=3, between_blocks=lambda: events.append(("peaks", 0, 0)),
                   echo=lambda *args: shown.append(args))
    again = REWARM_RUNS
    assert events == [("a", 3, 2), ("b", 3, 2), ("peaks", 0, 0), ("a", again, 2), ("b", again, 2), ("peaks", 0, 0),
                      *[e for _ in range(3) for e in (("a", again, 1), ("b", again, 1), ("peaks", 0, 0))]]
    assert shown == [(1, 5, 3, 2), (2, 5, again, 2), (3, 5, again, 1), (4, 5, again, 1), (5, 5, again, 1)]


def test_bandwidth_rounds_keep_each_method_s_fastest() -> None:
    from storyedge.bench.latency import fastest_bandwidth
    from storyedge.bench.results import MemoryBandwidth

    def measured(one: float, two: float, copy: float) -> MemoryBandwidth:
        methods = {"sum_f64_1thread": one, "sum_f64_2threads": two, "copy_read_1thread": copy / 2}
        return MemoryBandwidth(256, 5, 2, methods, max(one, copy / 2), max(methods.values()), copy, "m", 1 << 25)

    slow, fast, other = measured(30.0, 38.0, 40.0), measured(31.0, 62.0, 36.0), measured(33.0, 40.0, 38.0)
    assert fastest_bandwidth([slow]) is slow
    both = fastest_bandwidth([slow, fast, other])
    assert (both.read_gbps, both.read_gbps_1thread, both.copy_gbps, both.rounds) == (62.0, 33.0, 40.0, 3)
    assert both.methods_gbps == {"sum_f64_1thread": 33.0, "sum_f64_2threads": 62.0, "copy_read_1thread": 20.0}
    assert "fastest of 3 rounds" in both.method and both.last_level_cache_bytes == 1 << 25


def test_roofline_bytes_and_bandwidth() -> None:
    from storyedge.config import load_config
    from storyedge.model.signatures import step_weight_counts
    from storyedge.model.story_model import context_dim

    seed = load_config("storyreasoning.yaml")  # E 300, H 512
    assert context_dim(seed) == 1536  # whose 1536 x 2048 cell rows the encoder reads, once per caption
    counts = step_weight_counts(seed, vocab=30522)
    assert counts["matrix_params"] == 300 * 2048 + 512 * 2048 + 512 * 30522
    assert counts["vector_params"] == 30522  # the logits bias (the cell's is in the context gates)
    fp32, int8 = step_weight_bytes(counts, "fp32"), step_weight_bytes(counts, "int8-dynamic")
    assert fp32 == (counts["matrix_params"] + 300) * 4 + counts["vector_params"] * 4
    assert int8 < fp32 / 3
    assert roofline_floor_ms(10**9, 10.0) == pytest.approx(100.0)
    floors = step_floors(counts, read_gbps=20.0)
    assert floors.fp32_weight_bytes == fp32 and floors.fp32_floor_ms == pytest.approx(fp32 / 20e9 * 1e3)
    roof = backend_roofline(floors, "int8-dynamic", step_p50_ms=floors.int8_floor_ms * 3, llc_bytes=16 << 20,
                            decoder_file_bytes=None)
    assert roof.step_vs_floor == pytest.approx(3.0) and roof.fits_in_llc is False and roof.floor_binds
    assert roof.step_vs_fp32_floor == pytest.approx(3 * floors.int8_floor_ms / floors.fp32_floor_ms)
    assert backend_roofline(floors, "fp32", 1.0, llc_bytes=None, decoder_file_bytes=None).fits_in_llc is None
    assert not backend_roofline(floors, "fp32", 1.0, llc_bytes=fp32, decoder_file_bytes=None).floor_binds
    bw = memory_bandwidth(size_mb=16, repeats=2, threads=2)
    assert bw.read_gbps > 0.1 and bw.copy_gbps > 0.1
    assert set(bw.methods_gbps) == {"sum_f64_1thread", "max_f32_1thread", "sum_f64_2threads", "max_f32_2threads",
                                    "copy_read_1thread"}
    assert bw.read_gbps == max(bw.methods_gbps.values()) >= bw.read_gbps_1thread
    assert bw.methods_gbps["copy_read_1thread"] == pytest.approx(bw.copy_gbps / 2)
    assert bw.last_level_cache_bytes == last_level_cache_bytes()


def _fake_cache(base: Path, entries: list[tuple[str, str]]) -> Path:
    for i, (level, size) in enumerate(entries):
        (base / f"index{i}").mkdir(parents=True)
        (base / f"index{i}" / "level").write_text(level + "\n")
        (base / f"index{i}" / "size").write_text(size + "\n")
    return base


def test_last_level_cache_from_a_fake_sysfs(tmp_path: Path) -> None:
    levels = [("1", "32K"), ("1", "32K"), ("2", "1024K"), ("3", "32768K")]
    assert last_level_cache_bytes(_fake_cache(tmp_path / "a", levels)) == 32 << 20
    # the highest level wins even when a lower level is larger; M and plain-byte sizes parse
    assert last_level_cache_bytes(_fake_cache(tmp_path / "b", [("2", "2M"), ("3", "1048576")])) == 1 << 20
    assert last_level_cache_bytes(_fake_cache(tmp_path / "c", [("1", "48K"), ("2", "2M")])) == 2 << 20
    assert last_level_cache_bytes(tmp_path / "absent") is None
    assert last_level_cache_bytes(_fake_cache(tmp_path / "d", [("3", "lots")])) is None
    broken = _fake_cache(tmp_path / "e", [("2", "1M")])
    (broken / "index0" / "size").unlink()
    assert last_level_cache_bytes(broken) is None


@pytest.mark.skipif(not (sys.platform.startswith("linux") and SYSFS_CPU_CACHE.is_dir()),
                    reason="needs Linux sysfs cache information")
def test_last_level_cache_found_on_this_machine() -> None:
    llc = last_level_cache_bytes()
    assert llc is not None and llc >= 1 << 16


# ------------------------------------------------------------------------- backend plans


def _spec(name: str, fmt: str) -> Any:
    from storyedge.runtime import BackendSpec

    return BackendSpec(name, fmt, "fp32", "separate", Path("e"), Path("d"), 1, toy_decoder(4))


def test_backend_plans_one_instance_per_accelerator_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from storyedge.runtime import specs as loading

    specs = [_spec("tflite-fp32", "tflite"), _spec("onnx-fp32", "onnx"), _spec("onnx-int8-dynamic", "onnx")]
    monkeypatch.setattr(loading, "extra_providers", lambda: [])
    assert [(s.name, p) for s, p in loading.backend_plans(specs)] == [
        ("tflite-fp32", None), ("onnx-fp32", ["CPUExecutionProvider"]), ("onnx-int8-dynamic", ["CPUExecutionProvider"])]
    monkeypatch.setattr(loading, "extra_providers", lambda: ["CUDAExecutionProvider"])
    plans = [(s.name, p[0] if p else None) for s, p in loading.backend_plans(specs)]
    assert plans == [("tflite-fp32", None), ("onnx-fp32", "CPUExecutionProvider"), ("onnx-fp32", "CUDAExecutionProvider"),
                     ("onnx-int8-dynamic", "CPUExecutionProvider"), ("onnx-int8-dynamic", "CUDAExecutionProvider")]
    # onnxruntime's CPU build lists AzureExecutionProvider: not an accelerator, no extra instance
    monkeypatch.undo()
    assert "AzureExecutionProvider" not in loading.extra_providers()


def test_select_specs_patterns() -> None:
    from storyedge.runtime import select_specs

    specs = [_spec("tflite-fp32", "tflite"), _spec("tflite-fp32-multi", "tflite"), _spec("onnx-fp32", "onnx")]
    assert [s.name for s in select_specs(specs, None)] == ["tflite-fp32", "tflite-fp32-multi", "onnx-fp32"]
    assert [s.name for s in select_specs(specs, "tflite-*")] == ["tflite-fp32", "tflite-fp32-multi"]
    assert [s.name for s in select_specs(specs, "onnx-fp32, tflite-fp32")] == ["tflite-fp32", "onnx-fp32"]
    assert select_specs(specs, "nothing") == []


# -------------------------------------------------------------------------------- memory


def test_rss_follows_an_allocation() -> None:
    from storyedge.bench.latency import current_rss_bytes, peak_rss_bytes

    before = current_rss_bytes()
    block = np.ones(64 << 20, np.uint8)  # 64 MiB, every page touched
    grown = current_rss_bytes() - before
    assert grown >= 48 << 20, grown
    assert peak_rss_bytes() >= before + grown * 0.9  # the peak is a high-water mark, in bytes
    del block


def test_baseline_rss_is_a_fresh_process() -> None:
    from storyedge.bench.latency import baseline_rss_bytes, current_rss_bytes

    rss, how = baseline_rss_bytes()
    assert how.startswith("a fresh Python process")
    # this test process holds everything the fresh one imported, and pytest besides
    assert 5 << 20 < rss < current_rss_bytes()

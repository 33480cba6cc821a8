"""The typed bench report: what ``storyedge bench`` measured, as dataclasses, and ``report.json``.

:class:`BenchReport` is the whole report; :meth:`BenchReport.to_json` writes it and
:meth:`BenchReport.from_json` reads one back (``schema_version`` ``"MAJOR.MINOR"``, see
:mod:`storyedge.schema`: any MINOR of this MAJOR is read, fields a newer MINOR added are ignored,
another MAJOR or a file that is not a bench report is one :class:`~storyedge.errors.UserError`).
Per backend, :class:`BackendResult` holds what it is, its :class:`Latency` (:class:`LatencyStats`
per measured span), its :class:`Roofline`, its :class:`ParityStats` (None under
``--latency-only``) and a :class:`BudgetVerdict` per budget the user set.

Stdlib only, so anything can read a report (no numpy, no runtime). The gate limits
(:class:`Gates`) live here too: they are part of the report, and they judge a
:class:`ParityStats`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from storyedge import constants
from storyedge.captions.scores import CaptionDelta, CaptionScores
from storyedge.errors import UserError
from storyedge.schema import check_schema, known_fields

#: 1.1: caption quality; 1.2: per-backend ``coverage``, ``floors``, ``profile``, ``shortlist``; 1.3: the
#: data floor; 1.4: parity ``top1_decisive`` / ``near_ties``; 1.5: the encoder's recurrent MACs priced
#: at their own peak (``compute.encoder_sequential_macs``, ``GraphFloor.sequential_*``, peak role
#: ``recurrent``), where the wall time went (``wall``); 1.6: story mode's ``one_call``; 1.7: the
#: reason and temporal LSTMs' recurrent MACs priced at B rows (peak role ``recurrent_row``,
#: ``compute.encoder_sequential_rows``), the memory bandwidth the fastest of several rounds
#: (``memory_bandwidth.rounds``); 1.8: the weight-read floor (peak role ``weights``,
#: ``GraphFloor.read_floor_ms`` / ``read_peak``, binding ``read``, ``compute.step_weights``,
#: ``BackendFloors.caption_*``), the CPU model in ``host.processor`` on Linux too,
#: ``compare.other_machine``, ``Pick.floor_binding``. Older
#: reports are read as they are.
SCHEMA_VERSION = "1.8"
REPORT_KIND = "bench report"


# ------------------------------------------------------------------------------- latency


@dataclass
class LatencyStats:
    """Summary of timed samples, in ms: percentiles by linear interpolation, sample stdev."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float


@dataclass
class Latency:
    """One backend's timing: ``runs`` forced-length greedy captions after ``warmup`` untimed ones."""

    caption_tokens: int
    warmup: int
    runs: int
    encoder: LatencyStats
    step: LatencyStats
    first_token: LatencyStats
    caption: LatencyStats
    #: caption_tokens / caption p50 (encoder included)
    tokens_per_s: float
    #: 1000 / step p50
    decode_tokens_per_s: float
    #: caption_tokens / caption mean
    tokens_per_s_mean: float


@dataclass
class StoryLatency:
    """Story mode's next caption (:mod:`storyedge.bench.story_latency`): one new frame through the
    frame graph, the story graph over the last ``window`` cached frames (``one_call``: both in one
    call of the frame + story graph), ``caption_tokens`` steps."""

    caption_tokens: int
    warmup: int
    runs: int
    window: int
    #: the call encoding the new frame: the frame graph, or with ``one_call`` the frame + story graph
    frame: LatencyStats
    #: frame graph + story graph (and the decoder's start): story mode's encoder per caption
    encoder: LatencyStats
    #: encoder + caption_tokens greedy steps
    caption: LatencyStats
    #: the reason graph, once per story (None: no reason)
    reason_ms: float | None = None
    #: p50 ratios to the same backend's full-window encoder / caption in the same run
    encoder_vs_full: float | None = None
    caption_vs_full: float | None = None
    #: the frame and story graphs ran as one call (the frame + story graph)
    one_call: bool = False


@dataclass
class MemoryBandwidth:
    """Memory read bandwidth measured in the run (GB/s, 1e9 bytes) and the last-level cache size."""

    size_mb: int
    repeats: int
    threads: int
    methods_gbps: dict[str, float]
    read_gbps_1thread: float
    read_gbps: float
    copy_gbps: float
    method: str
    #: None where the size is unknown (no Linux sysfs)
    last_level_cache_bytes: int | None
    #: measurements it is the fastest of (a bench run: one before loading, one after each timing block)
    rounds: int = 1


@dataclass
class StepFloors:
    """The run's roofline floors of one decoder step (bytes it reads ÷ read bandwidth)."""

    counts: dict[str, int]
    read_gbps: float
    fp32_weight_bytes: int
    fp32_floor_ms: float
    int8_weight_bytes: int
    int8_floor_ms: float
    note: str


@dataclass
class Roofline:
    """One backend's decoder step against the roofline floor (multiples use the step p50)."""

    weight_bytes: int
    bytes_per_weight: float
    floor_ms: float
    step_vs_floor: float
    step_vs_fp32_floor: float
    #: True: the weights fit in the last-level cache (the DRAM floor does not bind); None: cache size unknown
    fits_in_llc: bool | None
    #: floor of the whole decoder file's bytes (an upper bound); None for multi-signature files
    decoder_file_floor_ms: float | None = None

    @property
    def floor_binds(self) -> bool:
        """Whether the floor is a real lower bound (weights not known to stay in the cache)."""
        return self.fits_in_llc is not True


# ------------------------------------------------------------------- compute floor, profile


@dataclass
class ComputePeak:
    """A MAC rate measured in the run: one matmul ``[M, K] x [K, N]`` in one runtime at one precision."""

    runtime: str
    #: ``fp32`` or ``int8`` (int8: the runtime's dynamic-range int8 kernel for that product)
    precision: str
    #: ``encoder`` (a GEMM of the encoder's caption-LSTM input product), ``recurrent`` (the caption
    #: LSTM's per-step ``[B·k, h] x [h, 4h]`` product), ``recurrent_row`` (the same at B rows: the
    #: reason and temporal LSTMs') or ``step`` (the step's batch-row GEMV)
    role: str
    shape: list[int]
    #: best of the timed repeats (mean per call within a repeat), ms per matmul call
    ms: float
    #: MACs / (ms - overhead_ms): the kernel's rate
    macs_per_s: float
    #: the runtime's fixed cost per call (a 1x1 product), left out of the rate
    overhead_ms: float = 0.0

    @property
    def weights_per_s(self) -> float:
        """The weights the product read per second: a product of M rows reads each once per M MACs."""
        return self.macs_per_s / self.shape[0]


@dataclass
class ComputeFloors:
    """MACs of the graphs (counted from the configuration) and the MAC rates measured in the run."""

    encoder_macs: dict[str, int]
    encoder_total_macs: int
    #: matrix weights the encoder reads (bytes side of its floor)
    encoder_weights: int
    step_macs: dict[str, int]
    step_total_macs: int
    peaks: list[ComputePeak]
    note: str
    #: matrix weights one step reads (the weight-read floor's count; report 1.8)
    step_weights: int = 0
    #: of ``encoder_macs``, the LSTMs' recurrent products per component, priced at the recurrent role
    #: of their rows (``encoder_sequential_rows``; the ``recurrent`` peak where a report has no rows)
    encoder_sequential_macs: dict[str, int] = field(default_factory=dict)
    encoder_sequential_rows: dict[str, int] = field(default_factory=dict)
    #: real tokens of the timed inputs' captions / reason, over which the Bi-LSTMs were counted
    #: (None: the padded length), and the padded slots they sit in
    caption_tokens: int | None = None
    caption_slots: int = 0
    reason_tokens: int | None = None
    reason_slots: int = 0

    @property
    def encoder_sequential_total(self) -> int:
        """All of the encoder's recurrent MACs."""
        return sum(self.encoder_sequential_macs.values())

    def peak(self, runtime: str, precision: str, role: str) -> ComputePeak | None:
        """The peak of a (runtime, precision, role), if measured."""
        return next((p for p in self.peaks if (p.runtime, p.precision, p.role) == (runtime, precision, role)), None)


@dataclass
class GraphFloor:
    """One graph (encoder or step) of one backend against its binding floor."""

    macs: int
    #: MACs / the measured peak of its runtime, precision and shape role
    compute_floor_ms: float
    #: the runtime / precision of the peak used
    peak: str
    #: weight bytes read ÷ DRAM read bandwidth (the bytes floor; binds only when they exceed the LLC)
    bytes_floor_ms: float
    weight_bytes: int
    #: ``compute``, ``bytes`` or ``read``: the largest of the compute floor, the bytes floor (where the
    #: weights exceed the LLC) and the weight-read floor (where measured)
    binding: str
    floor_ms: float
    #: p50 / floor_ms
    vs_floor: float
    #: of ``macs``, the recurrent products, priced at ``sequential_peak`` (runtime / precision / roles) in the compute floor
    sequential_macs: int = 0
    sequential_peak: str = ""
    #: the graph's weights ÷ the rate its runtime's one product over as many weights as a step reads
    #: them at (the ``weights`` peak role: whatever memory level holds them, read by the runtime's own
    #: kernel); None where no such peak was measured (report 1.8)
    read_floor_ms: float | None = None
    #: the runtime / precision of that peak
    read_peak: str = ""


@dataclass
class BackendFloors:
    """A backend's encoder and step as multiples of their binding floors."""

    encoder: GraphFloor
    step: GraphFloor
    #: a greedy caption's floor: the encoder's binding floor + the caption's steps × the step's (report 1.8)
    caption_floor_ms: float | None = None
    #: caption p50 / ``caption_floor_ms``
    caption_vs_floor: float | None = None


@dataclass
class OpShare:
    """One op type's time in a graph: per call of the graph, and its share of the graph's time."""

    op: str
    ms_per_call: float
    share: float
    nodes: int


@dataclass
class GraphProfile:
    """Per-op profile of one graph over ``calls`` calls (``ms_per_call``: the graph's mean time)."""

    calls: int
    ms_per_call: float
    top: list[OpShare]
    #: share of the graph's time the op rows cover (the rest: runtime overhead between ops)
    covered: float


@dataclass
class OpProfile:
    """What the runtime let the bench measure per op (``source``) and what it could not (``note``)."""

    source: str
    encoder: GraphProfile | None
    step: GraphProfile | None
    note: str
    #: where the raw profile was written (ONNX Runtime's JSON), relative to the report
    files: list[str] = field(default_factory=list)


@dataclass
class ShortlistParity:
    """Parity of a vocabulary-shortlist backend, on the shortlist (full-vocabulary PPL is not comparable)."""

    size: int
    vocab_size: int
    #: targets (non-pad, after BOS) outside the shortlist: excluded from the shortlist PPLs
    targets_outside: int
    targets: int
    #: PPL over in-shortlist targets, softmax over the shortlist: reference (its logits at the
    #: shortlist ids) and this backend
    reference_ppl: float
    ppl: float
    ppl_ratio: float


# -------------------------------------------------------------------------------- parity


@dataclass
class GateCheck:
    """One parity gate applied to one backend: ``value op limit``."""

    value: float
    op: str  # "<=", ">=" or "|x-1|<="
    limit: float
    passed: bool

    def describe(self, name: str) -> str:
        """``ppl_ratio 1.03 (needs ratio <= 1.02)``."""
        return f"{name} {self.value:.6g} (needs {self.op.replace('x', 'ratio')} {self.limit:g})"


@dataclass
class ParityStats:
    """Parity of one backend against the reference (the reference's own row has ratio 1)."""

    backend: str
    precision: str
    ppl: float
    mean_nll: float
    tokens: int
    windows: int
    ppl_ratio: float = 1.0
    kl: float = 0.0
    top1_agreement: float = 1.0
    #: top-1 agreement over the reference's decisive positions (the top-1 gates), and the share of
    #: near-ties left out (see :data:`storyedge.constants.TOP1_TIE_MARGIN`)
    top1_decisive: float = 1.0
    near_ties: float = 0.0
    greedy_agreement: float = 1.0
    max_abs_logit_diff: float = 0.0
    #: gate name → check; empty for the reference (and for a precision without gates)
    gates: dict[str, GateCheck] = field(default_factory=dict)
    #: PPL-ratio gate line(s), for the plot
    gate_lines: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every gate passed (vacuously true without gates)."""
        return all(g.passed for g in self.gates.values())

    def failures(self) -> list[str]:
        """One line per failed gate, naming the backend."""
        return [f"{self.backend} {check.describe(name)}" for name, check in self.gates.items() if not check.passed]


@dataclass
class Gates:
    """Parity gates per precision and caption-quality drop gates for every exported backend
    (defaults: :class:`storyedge.config.BenchConfig`)."""

    fp32_ppl_ratio_tol: float = constants.GATE_FP32_PPL_RATIO_TOL
    fp32_greedy_agreement: float = constants.GATE_FP32_GREEDY_AGREEMENT
    fp16_ppl_ratio_max: float = constants.GATE_FP16_PPL_RATIO_MAX
    int8_dynamic_ppl_ratio_max: float = constants.GATE_INT8_DYNAMIC_PPL_RATIO_MAX
    int8_dynamic_top1_min: float = constants.GATE_INT8_DYNAMIC_TOP1_MIN
    int8_ppl_ratio_max: float = constants.GATE_INT8_PPL_RATIO_MAX
    int4_ppl_ratio_max: float = constants.GATE_INT4_PPL_RATIO_MAX
    int4_top1_min: float = constants.GATE_INT4_TOP1_MIN
    #: caption-quality gates (None: off): delta = metric(backend) - metric(reference) >= -drop
    bleu_drop: float | None = constants.GATE_BLEU_DROP
    cider_drop: float | None = constants.GATE_CIDER_DROP
    exact_match_drop: float | None = constants.GATE_EXACT_MATCH_DROP

    @classmethod
    def from_bench_config(cls, bench: Any, **overrides: float | None) -> "Gates":
        """The config's ``bench.gate_*`` values, with the non-None ``overrides`` on top."""
        gates = cls(
            fp32_ppl_ratio_tol=bench.gate_fp32_ppl_ratio_tol,
            fp32_greedy_agreement=bench.gate_fp32_greedy_agreement,
            fp16_ppl_ratio_max=bench.gate_fp16_ppl_ratio_max,
            int8_dynamic_ppl_ratio_max=bench.gate_int8_dynamic_ppl_ratio_max,
            int8_dynamic_top1_min=bench.gate_int8_dynamic_top1_min,
            int8_ppl_ratio_max=bench.gate_int8_ppl_ratio_max,
            int4_ppl_ratio_max=getattr(bench, "gate_int4_ppl_ratio_max", constants.GATE_INT4_PPL_RATIO_MAX),
            int4_top1_min=getattr(bench, "gate_int4_top1_min", constants.GATE_INT4_TOP1_MIN),
            bleu_drop=bench.gate_bleu_drop,
            cider_drop=bench.gate_cider_drop,
            exact_match_drop=bench.gate_exact_match_drop,
        )
        for key, value in overrides.items():
            if value is not None:
                setattr(gates, key, float(value))
        return gates

    def checks(self, precision: str) -> list[tuple[str, str, float]]:
        """(metric = gate name, op, limit) for a precision; op is ``<=``, ``>=`` or ``|x-1|<=``."""
        if precision == "fp32":
            return [("ppl_ratio", "|x-1|<=", self.fp32_ppl_ratio_tol),
                    ("greedy_agreement", ">=", self.fp32_greedy_agreement)]
        if precision == "fp16":
            return [("ppl_ratio", "<=", self.fp16_ppl_ratio_max)]
        if precision == "int8-dynamic":
            return [("ppl_ratio", "<=", self.int8_dynamic_ppl_ratio_max),
                    ("top1_decisive", ">=", self.int8_dynamic_top1_min)]
        if precision == "int8":
            return [("ppl_ratio", "<=", self.int8_ppl_ratio_max)]
        if precision == "int4":
            return [("ppl_ratio", "<=", self.int4_ppl_ratio_max),
                    ("top1_decisive", ">=", self.int4_top1_min)]
        return []

    def apply(self, result: ParityStats) -> ParityStats:
        """Fill ``result.gates`` and ``result.gate_lines``; NaN metrics fail their gate."""
        for name, op, limit in self.checks(result.precision):
            if name == "top1_decisive" and result.near_ties == 1.0:
                continue  # every position a near-tie: nothing to judge argmaxes on (near_ties says so)
            value = float(getattr(result, name))
            if op == "<=":
                passed = value <= limit
            elif op == ">=":
                passed = value >= limit
            else:
                passed = abs(value - 1.0) <= limit
            result.gates[name] = GateCheck(value, op, limit, bool(passed))
        result.gate_lines = self.lines(result.precision)
        return result

    def lines(self, precision: str) -> list[float]:
        """PPL-ratio gate line(s) for plots."""
        for name, op, limit in self.checks(precision):
            if name == "ppl_ratio":
                return [1 - limit, 1 + limit] if op == "|x-1|<=" else [limit]
        return []

    def quality_drops(self) -> dict[str, float]:
        """Caption metric (a key of ``METRIC_LABELS``) → the drop its gate allows, for the set gates."""
        drops = {"bleu4": self.bleu_drop, "cider_d": self.cider_drop, "exact_match": self.exact_match_drop}
        return {metric: drop for metric, drop in drops.items() if drop is not None}

    def apply_quality(self, quality: "CaptionQuality") -> "CaptionQuality":
        """Fill ``quality.gates``: ``delta >= -drop`` per set gate (every exported backend, whatever
        its precision); a NaN delta fails, a metric that was not measured (None) is not gated."""
        if quality.delta is None:
            return quality
        for metric, drop in self.quality_drops().items():
            value = quality.delta.value(metric)
            if value is None:
                continue
            quality.gates[f"{metric}_delta"] = GateCheck(float(value), ">=", -drop, bool(value >= -drop))
        return quality


@dataclass
class CaptionQuality:
    """One backend's captions of one decoding (``greedy`` or ``beam<N>``) against the references,
    and its delta against the TF reference's captions of the same decoding."""

    decoding: str
    scores: CaptionScores
    #: metric(backend) - metric(reference); None for the reference itself
    delta: CaptionDelta | None = None
    #: ``<metric>_delta`` → check; empty for the reference
    gates: dict[str, GateCheck] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every quality gate passed (vacuously true without gates)."""
        return all(g.passed for g in self.gates.values())

    def failures(self, backend: str) -> list[str]:
        """One line per failed gate, naming the backend and the decoding."""
        return [f"{backend} {self.decoding} {check.describe(name)}" for name, check in self.gates.items()
                if not check.passed]


@dataclass
class QualitySummary:
    """Where caption quality was scored: windows, tokenisation, decodings, CIDEr-D's package."""

    split: str
    windows: int
    tokenisation: str
    decodings: list[str]
    #: "pycocoevalcap <version>" or "not installed"
    cider: str
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class ParitySummary:
    """Where parity ran: the reference, the eval windows, and seconds spent per backend."""

    reference: str
    split: str
    windows: int
    tokens: int
    seconds: dict[str, float]


@dataclass
class DataFloorNote:
    """The data's own PPL floor on the parity windows (embedded synthetic data only): the
    paraphrase entropy of each target given its window, in the PPL units parity uses
    (:mod:`storyedge.data.floor`)."""

    split: str
    windows: int
    floor_ppl: float
    #: nats per caption, and expected predicted tokens per caption ([EOS] counted)
    mean_entropy: float
    mean_tokens: float
    #: how often the most likely paraphrase is the caption written
    oracle_exact_match: float


@dataclass
class Sample:
    """One eval window's true caption and each backend's greedy caption."""

    window: int
    target: str
    greedy: dict[str, str]


# ------------------------------------------------------------------------------- budgets


#: budget field → what it limits (label for help text and tables); the measures are in summary.py
BUDGET_LABELS = {
    "caption_ms": "greedy caption p50 (ms)",
    "step_ms": "decoder step p50 (ms)",
    "encoder_ms": "encoder p50 (ms)",
    "size_mb": "file size (MB, 1e6 bytes)",
    "peak_rss_mb": "estimated peak RSS of a process running only this backend (MB)",
}


@dataclass
class Budgets:
    """The user's limits (None: not set); every field is a key of :data:`BUDGET_LABELS`."""

    caption_ms: float | None = None
    step_ms: float | None = None
    encoder_ms: float | None = None
    size_mb: float | None = None
    peak_rss_mb: float | None = None

    def limits(self) -> dict[str, float]:
        """The budgets that are set: name → limit."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


@dataclass
class BudgetVerdict:
    """One backend against one budget: ``value <= limit``; ``within`` None when there is no value."""

    budget: str
    limit: float
    value: float | None
    within: bool | None


# ------------------------------------------------------------------------------ coverage


@dataclass
class FileCoverage:
    """What one file a backend runs really is (from the export manifest's coverage)."""

    path: str
    #: TFLite builtins only / ONNX standard domain only; None: the manifest predates coverage
    portable: bool | None
    #: compute class (integer, hybrid, fp16, float, convert) → op count
    compute: dict[str, int] = field(default_factory=dict)
    #: storage dtype → bytes of the weights kept in it
    weight_bytes: dict[str, int] = field(default_factory=dict)
    nonportable_ops: list[str] = field(default_factory=list)
    #: ops (by type) that compute in float32
    float_ops: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ backends


@dataclass
class BackendResult:
    """Everything measured about one backend."""

    name: str
    format: str
    precision: str
    layout: str
    reference: bool
    threads: int | None
    providers: list[str] | None
    #: creating the backend (TF: model build + weights + tracing)
    load_seconds: float
    #: bytes on disk of the file(s) it runs (0: the in-memory TF reference)
    size_bytes: int
    decoder_file_bytes: int | None
    first_encode_ms: float
    first_step_ms: float
    #: current RSS just before creating the backend and just after its first encoder + step call
    rss_before_mb: float
    rss_after_mb: float
    #: rss_after_mb - rss_before_mb, signed (negative: the allocator reused freed memory)
    rss_delta_mb: float
    #: baseline_rss_mb + max(rss_delta_mb, 0): a process running only this backend (a lower bound)
    peak_rss_estimate_mb: float
    latency: Latency
    roofline: Roofline
    parity: ParityStats | None = None
    budgets: list[BudgetVerdict] = field(default_factory=list)
    #: story mode's next caption (None: the backend has no story-mode graphs)
    story: StoryLatency | None = None
    #: encoder and step against their binding floors (compute or bytes)
    floors: BackendFloors | None = None
    #: ``--profile``: the per-op profile
    profile: OpProfile | None = None
    #: vocabulary-shortlist backends: ids the step's logits cover, and parity on the shortlist
    shortlist: ShortlistParity | None = None
    #: per file it runs: compute classes, weight bytes per dtype, portability (report 1.2)
    coverage: list[FileCoverage] = field(default_factory=list)
    #: caption quality per decoding (greedy first); empty under --latency-only
    quality: list[CaptionQuality] = field(default_factory=list)
    #: wall seconds its full-window timing and its story-mode timing took in this run
    timing_seconds: float = 0.0
    story_timing_seconds: float = 0.0

    @property
    def portable(self) -> bool | None:
        """Every file it runs is portable (None: unknown, or the in-memory reference)."""
        flags = [c.portable for c in self.coverage]
        return None if not flags or None in flags else all(flags)

    @property
    def size_mb(self) -> float | None:
        """File size in MB (None for the in-memory reference)."""
        return self.size_bytes / 1e6 if self.size_bytes else None

    @property
    def quality_passed(self) -> bool:
        """Every caption-quality gate of every decoding passed."""
        return all(q.passed for q in self.quality)

    def caption_quality(self, decoding: str = "greedy") -> CaptionQuality | None:
        """The caption quality of ``decoding``, if it was scored."""
        return next((q for q in self.quality if q.decoding == decoding), None)

    @property
    def over_budget(self) -> list[str]:
        """Names of the set budgets this backend is not known to be within."""
        return [v.budget for v in self.budgets if v.within is not True]


# -------------------------------------------------------------------------------- summary


@dataclass
class Pick:
    """The backend answering one summary question."""

    backend: str
    #: the figure the question ranks by, in ``unit``
    value: float
    unit: str
    #: reference p50 / this backend's p50 of ``speedup_of`` (None without a timed reference)
    speedup: float | None
    speedup_of: str
    #: step p50 / its binding floor (``BackendResult.floors.step``); without one, / the DRAM roofline
    #: floor at its precision where that binds (None where the weights fit in cache)
    floor_multiple: float | None
    #: which floor ``floor_multiple`` is against: ``compute``, ``bytes`` or ``read`` (report 1.8; "" before)
    floor_binding: str = ""


@dataclass
class Summary:
    """What a user acts on: per question the best backend that passes the parity gates."""

    #: False under --latency-only: the picks are ranked by latency alone
    parity_checked: bool
    reference: str | None
    #: exported backends eligible for the picks (passing the gates, or all under --latency-only)
    eligible: list[str]
    fastest_caption: Pick | None = None
    fastest_step: Pick | None = None
    smallest_file: Pick | None = None
    #: the fastest-caption eligible backend within every set budget (None: none is, or none set)
    within_budgets: Pick | None = None
    budgets_set: bool = False

    @property
    def budgets_failed(self) -> bool:
        """Budgets were set and no eligible backend is within all of them."""
        return self.budgets_set and self.within_budgets is None


# -------------------------------------------------------------------------------- compare


@dataclass
class Delta:
    """One figure in two reports."""

    old: float | None
    new: float | None
    delta: float | None
    pct: float | None

    @classmethod
    def of(cls, old: float | None, new: float | None) -> "Delta":
        """new - old and its percentage of old (None where either is missing)."""
        if old is None or new is None:
            return cls(old, new, None, None)
        return cls(old, new, new - old, (new - old) / old * 100 if old else None)


@dataclass
class CompareRow:
    """A backend present in both reports: mean latencies and PPL ratio, old → new."""

    backend: str
    step: Delta
    encoder: Delta
    caption: Delta
    ppl_ratio: Delta
    #: greedy BLEU-4 old → new (None in reports read from before caption quality)
    bleu4: Delta | None = None


@dataclass
class Comparison:
    """``--compare``: the old report's path and a row per backend present in both."""

    old: str
    rows: list[CompareRow]
    only_old: list[str]
    only_new: list[str]
    #: the old report's machine where it is not the new one's (``Host.describe``), else "" (report 1.8)
    other_machine: str = ""


# --------------------------------------------------------------------------------- report


@dataclass
class Host:
    """The machine and the runtime versions of the run."""

    platform: str
    machine: str
    #: the CPU's model name (report 1.8; '' in older reports on Linux, where ``platform.processor()`` is empty)
    processor: str
    cpu_count: int | None
    versions: dict[str, str]

    def describe(self) -> str:
        """``Intel(R) Xeon(R) Processor, 2 CPUs`` (the architecture where no model is known)."""
        return f"{self.processor or self.machine}, {self.cpu_count} CPUs"

    def same_machine(self, other: "Host") -> bool:
        """Whether two reports' hosts look like one machine: same CPU model (where both name one),
        architecture and CPU count."""
        models_differ = bool(self.processor and other.processor and self.processor != other.processor)
        return not models_differ and self.machine == other.machine and self.cpu_count == other.cpu_count


@dataclass
class Settings:
    """What the run was asked to do."""

    batch: int
    threads: int
    warmup: int
    runs: int
    split: str
    max_windows: int
    caption_tokens: int
    latency_only: bool
    backends_filter: str | None
    vocab_size: int
    model: dict[str, Any]
    dataset: dict[str, Any]
    budgets: Budgets = field(default_factory=Budgets)
    fail_over_budget: bool = False
    #: beams of the extra beam-search captions (1: greedy captions only)
    beam: int = 1


@dataclass
class WallShare:
    """Wall seconds one part of the run's work took: in the export (its manifest's timings) and in
    this bench run (loading, parity, caption quality, timing)."""

    #: ``<format> <precision>`` (its files and backends), ``story mode`` (its graphs' files,
    #: validation and story-mode timing at every precision), or ``shared`` (the rest)
    share: str
    export_s: float
    bench_s: float

    @property
    def total_s(self) -> float:
        """Export + bench seconds."""
        return self.export_s + self.bench_s


@dataclass
class WallTime:
    """Where the wall time of the run (and of the export it benched) went."""

    #: this bench run, start to report
    bench_s: float
    #: the export's total from its manifest (None: the manifest has no timings)
    export_s: float | None
    #: seconds per stage of this run (bandwidth, eval windows, loading, parity, quality, timing, ...)
    stages: dict[str, float]
    shares: list[WallShare]


@dataclass
class BenchReport:
    """The whole report of one ``storyedge bench`` run."""

    storyedge_version: str
    created: str
    export_dir: str
    source: dict[str, Any]
    host: Host
    settings: Settings
    gates: Gates
    memory_bandwidth: MemoryBandwidth
    roofline: StepFloors
    parity: ParitySummary | None
    backends: list[BackendResult]
    summary: Summary
    #: RSS of a process holding Python, numpy and storyedge.runtime but no backend (MB)
    baseline_rss_mb: float
    #: peak RSS of the whole bench process at the end (MB)
    peak_rss_mb: float
    samples: list[Sample] = field(default_factory=list)
    failed_gates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compare: Comparison | None = None
    plots: list[str] = field(default_factory=list)
    quality: QualitySummary | None = None
    schema_version: str = SCHEMA_VERSION
    #: the compute floor: MACs counted from the configuration, peaks measured in the run
    compute: ComputeFloors | None = None
    #: the data's PPL floor on the parity windows (embedded synthetic data), else None
    data_floor: DataFloorNote | None = None
    #: where the run's wall time went (report 1.5)
    wall: WallTime | None = None

    def backend(self, name: str) -> BackendResult | None:
        """The result of the backend called ``name``, if it ran."""
        return next((b for b in self.backends if b.name == name), None)

    @property
    def reference_result(self) -> BackendResult | None:
        """The TF reference's result (None under --latency-only)."""
        return next((b for b in self.backends if b.reference), None)

    def to_json(self) -> str:
        """The report as JSON text (``report.json``)."""
        return json.dumps(asdict(self), indent=2, default=_plain)

    @classmethod
    def from_json(cls, text: str, path: str | Path = "report.json") -> "BenchReport":
        """Parse a ``report.json``; one-line :class:`UserError` naming ``path`` when it is not a bench
        report this version reads (not JSON, not a report, another schema MAJOR, malformed)."""
        try:
            data = json.loads(text)
        except ValueError:
            raise UserError(f"{path}: not a storyedge {REPORT_KIND} (not JSON)") from None
        check_schema(data, SCHEMA_VERSION, REPORT_KIND, path, marks=("backends",))
        try:
            return _build(cls, data)
        except (TypeError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: malformed {REPORT_KIND} ({type(exc).__name__}: {exc})") from None


def _build(cls: type, data: Any) -> Any:
    """A dataclass from its JSON object, recursively; unknown keys (a newer MINOR) are ignored."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _value(hints[name], value) for name, value in known_fields(cls, data).items()})


def _value(hint: Any, value: Any) -> Any:
    """``value`` decoded as ``hint`` (a dataclass, ``X | None``, ``list[X]``, ``dict[str, X]`` or plain)."""
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _value(options[0], value) if len(options) == 1 else value
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return [_value(args[0], v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return {k: _value(args[1], v) for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _plain(value: Any) -> Any:
    """JSON for what :func:`json.dumps` does not know: numpy scalars (``.item()``) and paths."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

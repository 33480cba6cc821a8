"""``storyedge bench`` end to end: open the export, create every backend, parity, latency, reports.

Order of work (:func:`run_bench`): resolve the options against the export and its config
(:func:`plan_run`); measure the RSS baseline (a fresh process) and the memory bandwidth (before
anything large is resident); create the TF reference (full mode) and each exported backend in
turn, recording load time, RSS change and first-inference times (:func:`load_backends`); run
parity with all backends side by side over the eval windows (:func:`parity_stage`); time the
backends in turn, block by block, with a round of the MAC peak probes and of the memory
bandwidth after each block (:func:`time_backends`, :class:`BetweenBlocks`); place each step
against the roofline floor of the fastest bandwidth round (:func:`backend_results`) and each
encoder and step against its compute floor (:func:`~storyedge.bench.floors.floor_stage`); apply
the budgets and build the summary (:func:`assemble`); write the reports; and only then raise
:class:`~storyedge.errors.CheckFailed` when a gate failed, or when ``fail_over_budget`` is set
and no backend passing the gates is within every budget (:func:`write_and_check`: exit 1 with
the report on disk).

``latency_only`` skips the TF reference, the dataset and parity: only numpy, click, the
manifest/tokenizer modules and the runtimes are imported (no TensorFlow, no ``datasets``).
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from storyedge import __version__
from storyedge.bench.compute import PeakProbes
from storyedge.bench.floors import floor_stage, peak_probes, profile_stage
from storyedge.bench.host import host_info
from storyedge.bench.inputs import real_tokens, synthetic_inputs, window_dict
from storyedge.bench.latency import (
    REWARM_RUNS,
    TIMING_BLOCKS,
    backend_roofline,
    baseline_rss_bytes,
    current_rss_bytes,
    caption_latency,
    fastest_bandwidth,
    first_inference,
    memory_bandwidth,
    peak_rss_bytes,
    repeat_interleaved,
    step_floors,
    time_in_blocks,
    timed_caption,
)
from storyedge.bench.parity import ParityRun, run_parity
from storyedge.bench.quality import QualityOutcome, check_gates_measurable, reference_texts, score_backends
from storyedge.bench.shortlist import shortlist_parity
from storyedge.bench.report import compare_reports, compare_text, load_report, report_path, terminal_text, write_reports
from storyedge.bench.results import (
    BackendResult,
    BenchReport,
    Budgets,
    DataFloorNote,
    Gates,
    Host,
    Latency,
    MemoryBandwidth,
    ParityStats,
    ParitySummary,
    Sample,
    Settings,
    ShortlistParity,
    StepFloors,
    StoryLatency,
)
from storyedge.bench.story_latency import story_captions
from storyedge.bench.wall import StageClock, wall_time
from storyedge.bench.summary import budget_verdicts, peak_rss_estimate_mb, summarize
from storyedge.config import SYNTHETIC_DATASET, BenchConfig, Config
from storyedge.devices import import_tensorflow, set_tf_threads
from storyedge.errors import CheckFailed, DataError, UserError
from storyedge.runtime import Backend, BackendSpec, ExportDir, backend_plans, build_reference, load_backend, open_export
from storyedge.bench.coverage import backend_coverage
from storyedge.runtime import select_specs
from storyedge.runtime.export_dir import REFERENCE_NEEDS_TF

log = logging.getLogger(__name__)

NOTES = (
    "Latency inputs are random with the export's static shapes (timing does not depend on the values).",
    f"Timing: the backends in turn, each one's runs in {TIMING_BLOCKS} blocks (after its warm-up, {REWARM_RUNS} "
    "untimed caption at the start of each later block), a round of the MAC peak probes and of the memory "
    "bandwidth after each block: every backend's samples and the floors' rates span the same phases of the "
    "machine, and each rate is its fastest round.",
    "rss_delta_mb (RSS+): change of the current RSS (psutil) across creating the backend and its first "
    "encoder + step call, signed (a lower bound: freed memory may be reused); peak_rss_mb: the whole bench "
    "process's peak RSS (psutil where it has one, else ru_maxrss).",
    "peak_rss_estimate_mb (the peak-RSS budget's measure): baseline_rss_mb, the RSS of a process holding "
    "Python, numpy and storyedge's runtime but no backend, + max(RSS+, 0): a process that runs only that "
    "backend (a lower bound; a runtime's shared library counts in the RSS+ of the first backend that loaded it).",
    "Budgets compare p50 latencies, the file size on disk (MB = 1e6 bytes) and the peak-RSS estimate.",
)


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
    #: user budgets (unset: no budget verdicts); see storyedge.bench.summary
    budgets: Budgets = field(default_factory=Budgets)
    #: exit 1 (after writing) when no backend passing the gates is within every set budget
    fail_over_budget: bool = False
    #: per-op profile of every exported backend (ONNX Runtime's profiler; LiteRT's measurable pieces)
    profile: bool = False
    #: also score beam-search captions with this many beams (None: bench.beam; 1: greedy only)
    beam: int | None = None


@dataclass
class Plan:
    """A run's options resolved against the export and its config."""

    export: ExportDir
    config: Config
    settings: Settings
    gates: Gates
    specs: list[BackendSpec]
    #: the ``--compare`` report and the file it came from
    compare_old: BenchReport | None = None
    compare_path: Path | None = None


@dataclass
class LoadedBackend:
    """A created backend and what creating it cost."""

    backend: Backend
    layout: str
    providers: list[str] | None
    reference: bool
    decoder_file_bytes: int | None
    first_encode_ms: float
    first_step_ms: float
    rss_before_mb: float
    rss_after_mb: float
    #: the exported backend's spec (None: the reference)
    spec: BackendSpec | None = None


@dataclass
class ParityOutcome:
    """What :func:`parity_stage` gives the report."""

    summary: ParitySummary
    by_backend: dict[str, ParityStats]
    samples: list[Sample]
    #: the raw run (every window's greedy captions, for caption quality)
    run: ParityRun | None = None
    #: vocabulary-shortlist backends: parity on the shortlist (they have no full-vocabulary parity)
    shortlist: dict[str, ShortlistParity] = field(default_factory=dict)


def resolve_budgets(flags: Budgets, bench: BenchConfig) -> Budgets:
    """Each budget from its ``--budget-*`` flag when given, else from ``bench.budget_*``."""
    values = {f.name: getattr(flags, f.name) for f in dataclasses.fields(Budgets)}
    return Budgets(**{name: getattr(bench, f"budget_{name}") if value is None else value
                      for name, value in values.items()})


def plan_run(opts: BenchOptions) -> Plan:
    """Open the export, resolve every option over the config's ``bench`` section, load the
    ``--compare`` report (failing early on a bad one) and select the backends."""
    export = open_export(opts.exports, opts.config)
    cfg = opts.config or export.config
    bench = cfg.bench
    dataset = export.config.dataset
    settings = Settings(
        batch=export.manifest.batch,
        threads=opts.threads or bench.threads,
        warmup=bench.warmup if opts.warmup is None else opts.warmup,
        runs=opts.runs or bench.runs,
        split=opts.split or bench.split,
        max_windows=opts.max_windows or bench.max_windows,
        caption_tokens=opts.caption_tokens or dataset.max_caption_len,
        latency_only=opts.latency_only,
        backends_filter=opts.backends,
        vocab_size=export.vocab_size,
        model=export.config.to_dict()["model"],
        dataset={k: getattr(dataset, k) for k in ("seq_len", "image_size", "max_caption_len", "max_reason_len")},
        budgets=resolve_budgets(opts.budgets, bench),
        fail_over_budget=opts.fail_over_budget or bench.fail_over_budget,
        beam=opts.beam or bench.beam,
    )
    if settings.fail_over_budget and not settings.budgets.limits():
        raise UserError("--fail-over-budget needs at least one budget (--budget-* or bench.budget_*)")
    compare_path = report_path(opts.compare) if opts.compare is not None else None
    compare_old = load_report(compare_path) if compare_path is not None else None
    specs = select_specs(export.specs, opts.backends)
    if not specs:
        have = ", ".join(s.name for s in export.specs) or "none"
        raise UserError(f"{export.path}: no exported backend matches --backends {opts.backends!r} (backends: {have})")
    gates = Gates.from_bench_config(bench, **opts.gate_overrides)
    if not opts.latency_only:
        check_gates_measurable(gates)
    return Plan(export, cfg, settings, gates, specs, compare_old, compare_path)


def _eval_stories(config: Config, split: str) -> Any:
    """The stories of ``split`` (a ``datasets.Dataset``); its :class:`DataError` names ``--split``."""
    from storyedge.data.loading import load_split  # lazy: imports datasets

    try:
        return load_split(config.dataset, split)
    except DataError as exc:
        raise DataError(f"--split {split}: {exc}") from None


def _windows_of(config: Config, tokenizer: Any, stories: Any, split: str, max_windows: int) -> dict[str, Any]:
    """The eval windows of ``stories`` as the backends read them (no reason without ``use_reason``)."""
    from storyedge.data.pipeline import encode_windows  # lazy: imports datasets

    try:
        arrays = encode_windows(stories, tokenizer, config.dataset, max_windows, split)
    except DataError as exc:
        raise DataError(f"--split {split}: {exc}") from None
    windows = window_dict(arrays.as_dict())
    if not config.model.use_reason:
        windows.pop("reason", None)
    return windows


def load_eval_windows(config: Config, tokenizer: Any, split: str, max_windows: int) -> dict[str, Any]:
    """Eval windows of ``split`` through the data layer (``datasets``; no TensorFlow)."""
    return _windows_of(config, tokenizer, _eval_stories(config, split), split, max_windows)


def load_eval_data(config: Config, tokenizer: Any, split: str,
                   max_windows: int) -> tuple[dict[str, Any], DataFloorNote | None]:
    """:func:`load_eval_windows`, and the data's PPL floor on the same windows (embedded synthetic
    data only; None otherwise), from one read of the dataset."""
    stories = _eval_stories(config, split)
    windows = _windows_of(config, tokenizer, stories, split, max_windows)
    if config.dataset.name != SYNTHETIC_DATASET:
        return windows, None
    from storyedge.data.floor import data_floor  # lazy: imports datasets

    d = config.dataset
    f = data_floor(stories, tokenizer, d.seq_len, d.max_caption_len, split, max_windows)
    return windows, DataFloorNote(split, f.windows, f.floor_ppl, f.mean_entropy, f.mean_tokens, f.oracle_exact_match)


def _new_backend(make: Callable[[], Backend], inputs: dict[str, Any], bos_id: int, **kind: Any) -> LoadedBackend:
    """Create a backend, timing its creation and first inference, and the RSS change across both."""
    gc.collect()
    before = current_rss_bytes()
    start = time.perf_counter()
    backend = make()
    backend.load_seconds = time.perf_counter() - start  # everything creating it took (TF: build + weights)
    first_encode_ms, first_step_ms = first_inference(backend, inputs, bos_id)
    after = current_rss_bytes()
    return LoadedBackend(backend, first_encode_ms=first_encode_ms, first_step_ms=first_step_ms,
                         rss_before_mb=before / 1e6, rss_after_mb=after / 1e6, **kind)


def load_backends(plan: Plan, inputs: dict[str, Any], echo: Callable[[str], Any]) -> list[LoadedBackend]:
    """The TF reference (unless latency-only) and every selected exported backend, in turn."""
    export, threads, batch = plan.export, plan.settings.threads, plan.settings.batch
    bos_id = export.tokenizer.bos_id
    loaded: list[LoadedBackend] = []
    if not plan.settings.latency_only:
        set_tf_threads(import_tensorflow(needed_for=REFERENCE_NEEDS_TF), threads)
        echo("building the TF reference from reference/ ...")
        loaded.append(_new_backend(lambda: build_reference(export, batch), inputs, bos_id, layout="reference",
                                   providers=None, reference=True, decoder_file_bytes=None))
    for spec, providers in backend_plans(plan.specs):
        echo(f"loading {spec.name}{'' if not providers or len(providers) == 1 else ' on ' + providers[0]} ...")
        loaded.append(_new_backend(
            lambda: load_backend(spec, threads, providers), inputs, bos_id, layout=spec.layout, providers=providers,
            reference=False, decoder_file_bytes=spec.decoder_path.stat().st_size if spec.layout != "multi" else None,
            spec=spec,
        ))
    return loaded


def backend_notes(loaded: list[LoadedBackend]) -> list[str]:
    """What each backend noted about how it ran its files (:attr:`Backend.notes`), its name first."""
    return [f"{item.backend.name}: {note}" for item in loaded for note in item.backend.notes]


def parity_stage(plan: Plan, loaded: list[LoadedBackend], windows: dict[str, Any],
                 echo: Callable[[str], Any]) -> ParityOutcome:
    """Teacher-forced parity of every exported backend against the reference, gates applied."""
    tok = plan.export.tokenizer
    reference = next(item.backend for item in loaded if item.reference)
    others = [item.backend for item in loaded if not item.reference and item.backend.vocab_ids is None]
    shortlisted = [item.backend for item in loaded if not item.reference and item.backend.vocab_ids is not None]
    echo(f"parity on {len(windows['target'])} windows x {len(others) + 1} backends ...")
    run = run_parity(
        reference, others, windows, batch=plan.settings.batch, pad_id=tok.pad_id, bos_id=tok.bos_id,
        eos_id=tok.eos_id, max_new=plan.export.config.dataset.max_caption_len - 1,
    )
    for result in run.results:
        if result.backend != reference.name:
            plan.gates.apply(result)
    summary = ParitySummary(reference.name, plan.settings.split, run.windows, run.results[0].tokens, run.seconds)
    samples = [
        Sample(s.window, tok.decode(s.target[1:]), {name: tok.decode(ids) for name, ids in s.greedy.items()})
        for s in run.samples
    ]
    shortlist = {}
    if shortlisted:
        echo(f"shortlist parity on {len(windows['target'])} windows x {len(shortlisted)} backends ...")
        shortlist = shortlist_parity(reference, shortlisted, windows, batch=plan.settings.batch, pad_id=tok.pad_id,
                                     vocab_size=plan.export.vocab_size)
    return ParityOutcome(summary, {r.backend: r for r in run.results}, samples, run, shortlist)


def quality_stage(plan: Plan, loaded: list[LoadedBackend], windows: dict[str, Any], parity: ParityOutcome,
                  references: list[str], echo: Callable[[str], Any]) -> QualityOutcome:
    """Caption quality of every backend (parity's greedy captions, beam ones when asked), gates applied."""
    assert parity.run is not None
    reference = next(item.backend for item in loaded if item.reference)
    # vocabulary-shortlist backends have no parity run (their parity is on the shortlist)
    others = [item.backend for item in loaded if not item.reference and item.backend.vocab_ids is None]
    echo(f"caption quality on {len(references)} windows x {len(others) + 1} backends ...")
    return score_backends(
        reference, others, parity.run.captions, references, tokenizer=plan.export.tokenizer, gates=plan.gates,
        split=plan.settings.split, windows=windows, beam=plan.settings.beam, batch=plan.settings.batch,
        max_new=plan.export.config.dataset.max_caption_len - 1, echo=echo,
    )


def time_backends(
    plan: Plan, loaded: list[LoadedBackend], inputs: dict[str, Any], echo: Callable[[str], Any],
    between_blocks: Callable[[], Any] | None = None,
) -> list[CaptionTimer]:
    """Time the backends in turn, block by block (:data:`~storyedge.bench.latency.TIMING_BLOCKS`;
    ``between_blocks`` runs after each block: in a bench run a round of the MAC peak probes and
    of the memory bandwidth) → each backend's timer, in ``loaded``'s order."""
    s = plan.settings
    bos_id = plan.export.tokenizer.bos_id
    timers = [CaptionTimer(item.backend, inputs, bos_id, s) for item in loaded]
    story = " (and as many story-mode captions, in turn)" if any(t.story for t in timers) else ""
    time_in_blocks(timers, s.runs, s.warmup, between_blocks, lambda i, blocks, warmup, runs: echo(
        f"timing block {i}/{blocks}: {len(timers)} backends in turn, {warmup} warm-up + {runs} runs of encoder + "
        f"{s.caption_tokens} steps{story} ..."))
    return timers


def backend_results(
    plan: Plan, loaded: list[LoadedBackend], timers: list[CaptionTimer], floors: StepFloors,
    bandwidth: MemoryBandwidth, baseline_rss_mb: float, parity: dict[str, ParityStats],
) -> list[BackendResult]:
    """Each timed backend's result: its latencies, its step against the roofline floor, its
    budget verdicts."""
    s = plan.settings
    results = []
    for item, timer in zip(loaded, timers):
        b = item.backend
        latency, timing_seconds, story_latency, story_seconds = timer.latencies()
        delta = item.rss_after_mb - item.rss_before_mb
        result = BackendResult(
            name=b.name, format=b.format, precision=b.precision, layout=item.layout, reference=item.reference,
            threads=b.threads, providers=item.providers, load_seconds=b.load_seconds, size_bytes=b.size_bytes,
            decoder_file_bytes=item.decoder_file_bytes, first_encode_ms=item.first_encode_ms,
            first_step_ms=item.first_step_ms, rss_before_mb=item.rss_before_mb, rss_after_mb=item.rss_after_mb,
            rss_delta_mb=delta, peak_rss_estimate_mb=peak_rss_estimate_mb(baseline_rss_mb, delta), latency=latency,
            roofline=backend_roofline(floors, b.precision, latency.step.p50_ms, bandwidth.last_level_cache_bytes,
                                      item.decoder_file_bytes),
            parity=parity.get(b.name), timing_seconds=timing_seconds,
        )
        result.budgets = budget_verdicts(result, s.budgets)
        result.coverage = backend_coverage(plan.export, next((x for x in plan.specs if x.name == b.name), None))
        result.story, result.story_timing_seconds = story_latency, story_seconds
        results.append(result)
    return results


class BetweenBlocks:
    """What a bench run measures after each timing block: a round of the MAC peak probes and one
    of the memory bandwidth (appended to ``bandwidths``), so the floors see the same phases of the
    machine as the timed graphs."""

    def __init__(self, probes: PeakProbes, bandwidths: list[MemoryBandwidth], size_mb: int, threads: int) -> None:
        self.probes, self.bandwidths, self.size_mb, self.threads = probes, bandwidths, size_mb, threads
        self.bandwidth_seconds = 0.0

    def __call__(self) -> None:
        self.probes.round()
        start = time.perf_counter()
        self.bandwidths.append(memory_bandwidth(self.size_mb, threads=self.threads))
        self.bandwidth_seconds += time.perf_counter() - start


class CaptionTimer:
    """One backend's full-window captions and, where it has story mode, story-mode captions, timed
    in turn round by round (so their ratios compare the same phases of the machine), block by
    block (:meth:`block`)."""

    def __init__(self, b: Backend, inputs: dict[str, Any], bos_id: int, s: Settings) -> None:
        start = time.perf_counter()
        self.story = story_captions(b, inputs, bos_id, s.caption_tokens)
        self.story_setup_s = time.perf_counter() - start
        self.calls = [lambda _: timed_caption(b, inputs, bos_id, s.caption_tokens)] + ([self.story] if self.story else [])
        self.kept: list[list[Any]] = [[] for _ in self.calls]
        self.seconds = [0.0] * len(self.calls)
        self.settings = s

    def block(self, warmup: int, runs: int) -> None:
        """``warmup`` untimed rounds, then ``runs`` kept ones (:func:`repeat_interleaved`)."""
        kept, seconds = repeat_interleaved(self.calls, warmup, runs)
        for into, more in zip(self.kept, kept):
            into.extend(more)
        self.seconds = [a + b for a, b in zip(self.seconds, seconds)]

    def latencies(self) -> tuple[Latency, float, StoryLatency | None, float]:
        """(latency, its seconds, story-mode latency or None, its seconds) of the kept rounds."""
        s = self.settings
        latency = caption_latency(self.kept[0], s.caption_tokens, s.warmup, s.runs)
        if self.story is None:
            return latency, self.seconds[0], None, 0.0
        return (latency, self.seconds[0], self.story.latency(self.kept[1], s.warmup, s.runs, latency),
                self.story_setup_s + self.seconds[1])


def assemble(
    plan: Plan, results: list[BackendResult], parity: ParityOutcome | None, bandwidth: MemoryBandwidth,
    floors: StepFloors, baseline_rss_mb: float, quality: QualityOutcome | None = None,
) -> BenchReport:
    """The report: settings, measurements, the summary, and the deltas against ``--compare``."""
    if quality is not None:
        for r in results:
            r.quality = quality.by_backend.get(r.name, [])
    failed = [line for r in results if r.parity is not None for line in r.parity.failures()]
    failed += [line for r in results for q in r.quality for line in q.failures(r.name)]
    report = BenchReport(
        storyedge_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        export_dir=str(plan.export.path),
        source=plan.export.manifest.source,
        host=host_info(),
        settings=plan.settings,
        gates=plan.gates,
        memory_bandwidth=bandwidth,
        roofline=floors,
        parity=parity.summary if parity else None,
        samples=parity.samples if parity else [],
        backends=results,
        failed_gates=failed,
        summary=summarize(results, parity is not None, plan.settings.budgets),
        baseline_rss_mb=baseline_rss_mb,
        peak_rss_mb=peak_rss_bytes() / 1e6,
        notes=list(NOTES),
        quality=quality.summary if quality else None,
    )
    if plan.compare_old is not None and plan.compare_path is not None:
        report.compare = compare_reports(plan.compare_old, report, plan.compare_path)
    return report


def write_and_check(report: BenchReport, out: Path, echo: Callable[[str], Any]) -> None:
    """Write the reports, print them, then raise :class:`CheckFailed` for a failed gate, or for
    budgets no eligible backend is within when ``fail_over_budget`` is set."""
    paths = write_reports(report, out)
    echo(terminal_text(report))
    if report.compare is not None:
        echo("")
        echo(compare_text(report.compare))
    echo(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    problems = []
    if report.failed_gates:
        problems.append(f"{len(report.failed_gates)} gate(s) failed: " + "; ".join(report.failed_gates))
    if report.settings.fail_over_budget and report.summary.budgets_failed:
        limits = ", ".join(f"{k} <= {v:g}" for k, v in report.settings.budgets.limits().items())
        problems.append(f"no backend that passes the gates is within every budget ({limits})")
    if problems:
        raise CheckFailed("; ".join(problems))


def run_bench(opts: BenchOptions, echo: Callable[[str], Any] = print) -> BenchReport:
    """Run the benchmark; returns the report (also written under ``opts.out``).

    Raises :class:`CheckFailed` after writing when a parity gate failed, or when
    ``opts.fail_over_budget`` is set and no backend passing the gates is within every budget.
    """
    clock = StageClock()
    plan = plan_run(opts)
    baseline_bytes, baseline_how = baseline_rss_bytes()
    baseline_rss_mb = baseline_bytes / 1e6
    s = plan.settings
    echo(f"measuring memory read bandwidth ({opts.bandwidth_mb} MB, {s.threads} threads) ...")
    with clock.stage("bandwidth"):
        bandwidths = [memory_bandwidth(opts.bandwidth_mb, threads=s.threads)]
    timing_inputs = synthetic_inputs(plan.export.manifest, seed=0, batch=s.batch)
    windows, data_floor = None, None
    if not s.latency_only:  # before loading backends: a dataset problem fails fast
        echo(f"loading eval windows: split {s.split}, at most {s.max_windows} ...")
        with clock.stage("eval windows"):
            windows, data_floor = load_eval_data(plan.config, plan.export.tokenizer, s.split, s.max_windows)
            references = reference_texts(plan.export.tokenizer, windows, s.split)
    with clock.stage("loading"):
        loaded = load_backends(plan, timing_inputs, echo)
    with clock.stage("parity"):
        parity = parity_stage(plan, loaded, windows, echo) if windows is not None else None
    with clock.stage("caption quality"):
        quality = quality_stage(plan, loaded, windows, parity, references, echo) if parity is not None else None
    with clock.stage("floors"):
        probes = peak_probes(plan, echo)
    between = BetweenBlocks(probes, bandwidths, opts.bandwidth_mb, s.threads)
    with clock.stage("timing"):
        timers = time_backends(plan, loaded, timing_inputs, echo, between_blocks=between)
    clock.move(probes.seconds, "timing", "floors")  # the rounds between the timing blocks
    clock.move(between.bandwidth_seconds, "timing", "bandwidth")
    bandwidth = fastest_bandwidth(bandwidths)
    floors = step_floors(plan.export.manifest.decoder.step_weights, bandwidth.read_gbps)
    results = backend_results(plan, loaded, timers, floors, bandwidth, baseline_rss_mb,
                              parity.by_backend if parity else {})
    for r in results:
        r.shortlist = parity.shortlist.get(r.name) if parity else None
    with clock.stage("floors"):
        probes.top_up()  # fewer timing blocks than PEAK_ROUNDS (few runs)
        compute = floor_stage(plan, results, bandwidth, floors, probes.peaks(),
                              real_tokens(timing_inputs, plan.export.tokenizer.pad_id))
    if opts.profile:
        with clock.stage("profile"):
            profile_stage(plan, loaded, results, timing_inputs, opts.out, echo)
    report = assemble(plan, results, parity, bandwidth, floors, baseline_rss_mb, quality)
    report.compute = compute
    report.data_floor = data_floor
    report.wall = wall_time(plan.export.manifest, results, report.parity, clock.stages, clock.elapsed)
    report.notes.append(f"baseline_rss_mb measured in {baseline_how}.")
    for note in backend_notes(loaded):
        echo(f"note: {note}")
        report.notes.append(note)
    write_and_check(report, opts.out, echo)
    return report

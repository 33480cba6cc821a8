"""``storyedge bench``: perplexity parity and decoding latency of every exported backend.

TensorFlow-free at import; ``--latency-only`` never imports it (nor ``datasets``).
"""

from __future__ import annotations

from pathlib import Path

import click

from storyedge import constants
from storyedge.app.random_init import random_init_export_isolated
from storyedge.bench.results import BUDGET_LABELS, Budgets
from storyedge.bench.runner import BenchOptions, run_bench
from storyedge.config import load_config
from storyedge.errors import UserError

GATE_OPTIONS = {
    "gate_fp32_ppl_tol": "fp32_ppl_ratio_tol",
    "gate_fp32_greedy": "fp32_greedy_agreement",
    "gate_fp16_ppl_max": "fp16_ppl_ratio_max",
    "gate_int8_dynamic_ppl_max": "int8_dynamic_ppl_ratio_max",
    "gate_int8_dynamic_top1_min": "int8_dynamic_top1_min",
    "gate_int8_ppl_max": "int8_ppl_ratio_max",
    "gate_int4_ppl_max": "int4_ppl_ratio_max",
    "gate_int4_top1_min": "int4_top1_min",
    "gate_bleu_drop": "bleu_drop",
    "gate_cider_drop": "cider_drop",
    "gate_exact_match_drop": "exact_match_drop",
}
#: click parameter of each budget flag (``--budget-caption-ms`` → ``budget_caption_ms``) → Budgets field
BUDGET_OPTIONS = {f"budget_{name}": name for name in BUDGET_LABELS}


def budget_options(command: click.Command) -> click.Command:
    """Add ``--budget-<name>`` (one per :class:`Budgets` field) and ``--fail-over-budget``."""
    command = click.option(
        "--fail-over-budget", is_flag=True,
        help="Exit 1 (after writing the reports) when no backend that passes the gates is within every set budget "
        "[bench.fail_over_budget].",
    )(command)
    for param, name in reversed(BUDGET_OPTIONS.items()):
        command = click.option(f"--{param.replace('_', '-')}", param, type=float, default=None,
                               help=f"Budget: {BUDGET_LABELS[name]} <= this [bench.{param}; unset: none].")(command)
    return command


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--exports", "exports", type=click.Path(path_type=Path), default=None,
              help="Export directory (manifest.json, tflite/, onnx/, reference/, tokenizer/).")
@click.option("--config", "config_path", default=None,
              help="Config YAML (path or shipped name). With --exports: must be compatible with the export; "
                   "its dataset and bench sections are used. With --random-init: the model to build.")
@click.option("--random-init", is_flag=True,
              help="Build the --config model with random weights, export it into OUT/exports and bench it "
                   "(latency of the real configuration without a trained model; parity on synthetic stories).")
@click.option("--vocab-size", type=int, default=None,
              help="--random-init: vocabulary size of the model. Default: the config tokenizer's when it can be "
                   "loaded (cached bert-base-uncased: 30522), else 30522 for bert-base-uncased configs (a WordPiece "
                   "trained on the synthetic captions, padded with [unused] tokens), else the trained WordPiece's.")
@click.option("--stories", type=int, default=40, show_default=True,
              help="--random-init: synthetic stories generated for the parity windows.")
@click.option("--quantize", default=None,
              help="--random-init: comma list of none,fp16,int8-dynamic,int8 (default: the config's export.quantize).")
@click.option("--formats", default=None,
              help="--random-init: comma list of tflite,onnx (default: the config's export.formats).")
@click.option("--vocab-shortlist", metavar="FILE|auto", default=None,
              help="--random-init: also export shortlisted decoder steps (see storyedge export --vocab-shortlist; "
                   "auto: the synthetic training captions' ids), benched beside the full-vocabulary ones.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("bench_report"), show_default=True,
              help="Directory for report.json, report.md and the plots.")
@click.option("--split", default=None, help="Eval split for parity [default: bench.split].")
@click.option("--max-windows", type=int, default=None, help="Eval windows for parity [default: bench.max_windows].")
@click.option("--threads", type=int, default=None, help="Runtime threads [default: bench.threads].")
@click.option("--warmup", type=int, default=None, help="Untimed warm-up captions [default: bench.warmup].")
@click.option("--runs", type=int, default=None, help="Timed captions per backend [default: bench.runs].")
@click.option("--caption-tokens", type=int, default=None,
              help="Decoder steps per timed caption [default: dataset.max_caption_len].")
@click.option("--backends", default=None,
              help="Only these exported backends: comma list of name patterns, e.g. 'tflite-*,onnx-fp32'.")
@click.option("--latency-only", is_flag=True,
              help="Time the exported files only: no TF reference, no dataset, no parity (no TensorFlow import).")
@click.option("--compare", "compare", type=click.Path(path_type=Path), default=None,
              help="A previous report.json (or its directory): print latency, PPL-ratio and greedy BLEU-4 deltas per backend.")
@click.option("--bandwidth-mb", type=int, default=256, show_default=True,
              help="Array size for the memory-bandwidth measurement (roofline floor).")
@click.option("--profile", is_flag=True,
              help="Also write a per-op profile per backend: ONNX Runtime's profiler (JSON under OUT/profiles), "
                   "for LiteRT the pieces its Python API lets be timed; top ops in report.md / report.json.")
@click.option("--gate-fp32-ppl-tol", type=float, default=None, help=f"fp32: |PPL ratio - 1| <= this [{constants.GATE_FP32_PPL_RATIO_TOL:g}].")
@click.option("--gate-fp32-greedy", type=float, default=None, help=f"fp32: greedy-caption agreement >= this [{constants.GATE_FP32_GREEDY_AGREEMENT:g}].")
@click.option("--gate-fp16-ppl-max", type=float, default=None, help=f"fp16: PPL ratio <= this [{constants.GATE_FP16_PPL_RATIO_MAX:g}].")
@click.option("--gate-int8-dynamic-ppl-max", type=float, default=None, help=f"int8-dynamic: PPL ratio <= this [{constants.GATE_INT8_DYNAMIC_PPL_RATIO_MAX:g}].")
@click.option("--gate-int8-dynamic-top1-min", type=float, default=None, help=f"int8-dynamic: top-1 agreement on decisive positions (reference top-2 logit margin >= {constants.TOP1_TIE_MARGIN:g}) >= this [{constants.GATE_INT8_DYNAMIC_TOP1_MIN:g}].")
@click.option("--gate-int8-ppl-max", type=float, default=None, help=f"static int8: PPL ratio <= this [{constants.GATE_INT8_PPL_RATIO_MAX:g}].")
@click.option("--gate-int4-ppl-max", type=float, default=None, help=f"int4: PPL ratio <= this [{constants.GATE_INT4_PPL_RATIO_MAX:g}].")
@click.option("--gate-int4-top1-min", type=float, default=None, help=f"int4: top-1 agreement on decisive positions (reference top-2 logit margin >= {constants.TOP1_TIE_MARGIN:g}) >= this [{constants.GATE_INT4_TOP1_MIN:g}].")
@click.option("--gate-bleu-drop", type=float, default=None, help=f"Every exported backend: BLEU-4 (0-100) at most this below the TF reference's [{constants.GATE_BLEU_DROP:g}].")
@click.option("--gate-cider-drop", type=float, default=None, help=f"Every exported backend: CIDEr-D (0-10) at most this below the TF reference's [{constants.GATE_CIDER_DROP:g}].")
@click.option("--gate-exact-match-drop", type=float, default=None, help=f"Every exported backend: caption exact-match rate at most this below the TF reference's [{constants.GATE_EXACT_MATCH_DROP:g}].")
@click.option("--beam", type=int, default=None,
              help="Also score beam-search captions with this many beams (per backend, per window) [bench.beam; 1: greedy only].")
@budget_options
def bench(
    exports: Path | None,
    config_path: str | None,
    random_init: bool,
    vocab_size: int | None,
    stories: int,
    quantize: str | None,
    formats: str | None,
    vocab_shortlist: str | None,
    out: Path,
    split: str | None,
    max_windows: int | None,
    threads: int | None,
    warmup: int | None,
    runs: int | None,
    caption_tokens: int | None,
    backends: str | None,
    latency_only: bool,
    compare: Path | None,
    bandwidth_mb: int,
    profile: bool,
    beam: int | None,
    fail_over_budget: bool,
    **limits: float | None,
) -> None:
    """Perplexity parity and decoding latency per backend of an export.

    Every exported (encoder, decoder_step) pair (separate and multi-signature files, each
    precision) is a backend, ONNX once per available provider; the TF reference is rebuilt from
    the export's reference/ weights. Parity: teacher-forced PPL, PPL ratio, KL, top-1 and
    greedy-caption agreement, max |dlogit| on the eval windows, with gates (exit 1 after the
    report when one fails); the top-1 gates count the decisive positions, where the reference's
    top logit leads its runner-up by at least the tie margin (see --gate-int8-dynamic-top1-min;
    the rest, near-ties, are reported as "ties"). Caption quality: each backend's greedy (and with --beam N, beam)
    captions against the reference captions (exact match, BLEU-4, ROUGE-L, CIDEr-D) and its
    delta against the TF reference, with drop gates. Latency: load, first inference, encoder, decoder step (percentiles),
    first token, greedy caption, tokens/s, size, RSS, and the roofline floor of a step. The
    summary names the fastest-caption, fastest-step and smallest backend that passes the gates;
    with --budget-* it also names the fastest one within every budget.

    \b
    storyedge bench --exports exports/quickstart --out bench_report
    storyedge bench --exports exports/quickstart --latency-only --runs 200
    storyedge bench --config storyreasoning.yaml --random-init --out bench_seed
    storyedge bench --exports exports/quickstart --budget-caption-ms 10 --budget-size-mb 5 --fail-over-budget
    """
    for name, value in (("--max-windows", max_windows), ("--threads", threads), ("--runs", runs),
                        ("--caption-tokens", caption_tokens), ("--stories", stories), ("--bandwidth-mb", bandwidth_mb),
                        ("--beam", beam)):
        if value is not None and value < 1:
            raise UserError(f"{name}: must be >= 1, got {value}")
    if warmup is not None and warmup < 0:
        raise UserError(f"--warmup: must be >= 0, got {warmup}")
    for name in ("gate_bleu_drop", "gate_cider_drop", "gate_exact_match_drop"):
        if limits.get(name) is not None and limits[name] < 0:
            raise UserError(f"--{name.replace('_', '-')}: must be >= 0, got {limits[name]:g}")
    budgets = _budgets(limits, fail_over_budget)
    config = load_config(config_path) if config_path else None
    if random_init:
        if exports is not None:
            raise UserError("--random-init builds its own export: give --config, not --exports")
        if config is None:
            raise UserError("--random-init needs --config (e.g. quickstart.yaml or storyreasoning.yaml)")
        exports = random_init_export_isolated(
            config, out / "exports", threads=threads or config.bench.threads, vocab_size=vocab_size,
            stories=stories, quantize=quantize,
            formats=[f.strip() for f in formats.split(",") if f.strip()] if formats else None, echo=click.echo,
            vocab_shortlist=vocab_shortlist,
        )
        config = None  # the export's own (synthetic-data) config drives the bench
    elif exports is None:
        raise UserError("give --exports DIR (an export directory) or --config CFG --random-init")
    elif vocab_size is not None or quantize is not None or formats is not None or vocab_shortlist is not None:
        raise UserError("--vocab-size, --quantize, --formats and --vocab-shortlist only apply with --random-init")
    opts = BenchOptions(
        exports=exports, out=out, config=config, split=split, max_windows=max_windows, threads=threads,
        warmup=warmup, runs=runs, caption_tokens=caption_tokens, latency_only=latency_only,
        backends=backends, compare=compare, bandwidth_mb=bandwidth_mb,
        gate_overrides={GATE_OPTIONS[k]: v for k, v in limits.items()},
        budgets=budgets, fail_over_budget=fail_over_budget, profile=profile, beam=beam,
    )
    run_bench(opts, echo=click.echo)


def _budgets(limits: dict[str, float | None], fail_over_budget: bool) -> Budgets:
    """Pop the ``--budget-*`` values out of ``limits`` into :class:`Budgets`, checked."""
    budgets = Budgets(**{name: limits.pop(param) for param, name in BUDGET_OPTIONS.items()})
    for name, limit in budgets.limits().items():
        if not limit > 0:
            raise UserError(f"--budget-{name.replace('_', '-')}: must be > 0, got {limit:g}")
    return budgets

"""``storyedge quickstart``: the main job on the embedded data, start to finish.

data (generated if absent) → train (``quickstart.yaml``, ``--device auto``) → text-only ablation
→ export (the config's ``export.formats`` × ``export.quantize``; ``quickstart.yaml``: TFLite +
ONNX, fp32 + int8-dynamic) → bench (parity + caption quality + latency, the config's ``bench``
section) → one final screen. Every stage reuses what an earlier run finished (``--force`` redoes
everything). ``--config seed-synthetic.yaml`` runs the same stages at the seed size.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from storyedge import constants
from storyedge.bench.report import REPORT_JSON, REPORT_MD, load_report, terminal_text
from storyedge.bench.results import BenchReport
from storyedge.bench.runner import BenchOptions, run_bench
from storyedge.config import Config, load_config
from storyedge.errors import CheckFailed, UserError
from storyedge.export.context import REJECTED_DIR
from storyedge.export.exporter import export_from_checkpoint
from storyedge.manifest import MANIFEST_FILE, read_manifest, verify_files
from storyedge.run_dir import BEST_DIR, CONFIG_FILE, resolve_bundle
from storyedge.training.history import CURVES_PNG
from storyedge.training.report import TrainingSummary, read_summary
from storyedge.training.run import run_training
from storyedge.training.workspace import CHECKPOINT_DIR

#: ``--smoke``: the same pipeline on a tiny budget, so CI exercises the main job end to end.
SMOKE_OVERRIDES: dict[str, Any] = {
    "dataset.synthetic_stories": 120,
    "dataset.path": "data_cache/synthetic-smoke",
    "training.epochs": 1,
    "training.save_dir": "runs/quickstart-smoke",
    "bench.max_windows": 8,
    "bench.warmup": 2,
    "bench.runs": 10,
}
STAGES = ("data", "train", "ablation", "export", "bench")
EXPORTS_DIR = "exports"
BENCH_DIR = "bench"


@dataclass(frozen=True)
class QuickstartDirs:
    """Where each stage writes (all under the config's ``training.save_dir``, the ablation beside it)."""

    run: Path
    ablation: Path
    exports: Path
    bench: Path

    @classmethod
    def of(cls, cfg: Config) -> "QuickstartDirs":
        """The directories of ``cfg``'s quickstart run."""
        run = Path(cfg.training.save_dir)
        return cls(run, run.with_name(run.name + "-text_only"), run / EXPORTS_DIR, run / BENCH_DIR)


def _stage(number: int, name: str, detail: str) -> None:
    click.secho(f"\n[{number}/{len(STAGES)}] {name}: {detail}", bold=True)


def _train_or_reuse(cfg: Config, device: str, label: str) -> TrainingSummary:
    """A finished run's summary when ``save_dir`` has one; else train (resuming a checkpoint)."""
    run_dir = Path(cfg.training.save_dir)
    try:
        summary = read_summary(run_dir)
    except UserError as exc:
        raise UserError(f"{exc}; pass --force to retrain from scratch") from None
    if summary is not None and not summary.interrupted:
        resolve_bundle(run_dir)
        click.echo(f"reusing the trained {label} model in {run_dir} (--force retrains)")
        return summary
    return run_training(cfg, device=device, resume=(run_dir / CHECKPOINT_DIR).is_dir())


def _clear_run(run_dir: Path) -> None:
    """Remove a previous quickstart run (only a directory that looks like one)."""
    if not run_dir.exists():
        return
    if not (run_dir / CONFIG_FILE).is_file() and any(run_dir.iterdir()):
        raise UserError(f"--force: {run_dir} does not look like a storyedge run; not deleting it")
    shutil.rmtree(run_dir)


@click.command()
@click.option("--config", "config_path", default=None, metavar="PATH",
              help="Config file or shipped name (default: quickstart.yaml).")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(constants.DEVICES), help="Training device.")
@click.option("--ablation/--no-ablation", default=True, show_default=True,
              help="Also train the text_only ablation, for the val-PPL context line.")
@click.option("--smoke", is_flag=True,
              help="Tiny budget (120 stories, 1 epoch, short bench) to check the pipeline works.")
@click.option("--force", is_flag=True, help="Redo every stage instead of reusing earlier results.")
def quickstart(config_path: str | None, device: str, ablation: bool, smoke: bool, force: bool) -> None:
    """Generate the embedded data, train, export to TFLite + ONNX and benchmark, in one go.

    Everything lands in the config's training.save_dir (runs/quickstart): the trained model,
    exports/ (with manifest.json) and bench/ (report.md, report.json, PNG plots).
    """
    wall0 = time.monotonic()
    cfg = load_config(config_path)
    if smoke:
        cfg = cfg.replace(**SMOKE_OVERRIDES)
    dirs = QuickstartDirs.of(cfg)
    if force:
        _clear_run(dirs.run)
        _clear_run(dirs.ablation)

    data_stage(cfg)
    summary = train_stage(cfg, device)
    ablation_summary = ablation_stage(cfg, device, dirs.ablation, enabled=ablation)
    rejected = export_stage(cfg, dirs.run, dirs.exports, force)
    report, gate_failure = bench_stage(cfg, dirs.exports, dirs.bench, force)
    click.echo(final_screen(summary, ablation_summary, report, dirs.run, dirs.bench, time.monotonic() - wall0))
    if rejected is not None:
        raise rejected
    if gate_failure is not None:
        raise gate_failure


def data_stage(cfg: Config) -> None:
    """Stage 1: load the configured dataset (the embedded one is generated if absent)."""
    _stage(1, "data", f"{cfg.dataset.name} → {cfg.dataset.path}")
    from storyedge.data import load_story_splits  # lazy: storyedge.data imports datasets

    splits = load_story_splits(cfg.dataset)
    click.echo(", ".join(f"{name}: {len(split)} stories" for name, split in splits.items()))


def train_stage(cfg: Config, device: str) -> TrainingSummary:
    """Stage 2: train ``cfg`` (or reuse its finished run)."""
    budget = f" (time budget {cfg.training.max_train_seconds:g} s)" if cfg.training.max_train_seconds else ""
    _stage(2, "train", f"fusion={cfg.model.fusion}, {cfg.training.epochs} epochs{budget} → {cfg.training.save_dir}")
    return _train_or_reuse(cfg, device, cfg.model.fusion)


def ablation_stage(cfg: Config, device: str, ablation_dir: Path, enabled: bool = True) -> TrainingSummary | None:
    """Stage 3: the text_only ablation of ``cfg`` in ``ablation_dir`` (or reuse it); None when
    not ``enabled`` (``--no-ablation``)."""
    if not enabled:
        _stage(3, "ablation", "skipped (--no-ablation)")
        return None
    _stage(3, "ablation", f"fusion=text_only → {ablation_dir}")
    ablation_cfg = cfg.replace(**{"model.fusion": "text_only", "training.save_dir": str(ablation_dir)})
    return _train_or_reuse(ablation_cfg, device, "text_only")


def export_stage(cfg: Config, run_dir: Path, exports: Path, force: bool) -> CheckFailed | None:
    """Stage 4: ``run_dir``'s best model in the config's ``export.formats`` × ``export.quantize``
    (``quickstart.yaml``: TFLite + ONNX, fp32 + int8-dynamic), or reuse them. Files that fail
    validation are moved to ``rejected/`` and the failure is returned: the bench still measures
    the accepted files, and the run fails after the final screen."""
    formats, quantize = list(cfg.export.formats), list(cfg.export.quantize)
    _stage(4, "export", f"{'+'.join(formats)} × {','.join(quantize)} → {exports}")
    if (exports / MANIFEST_FILE).is_file() and not force:
        manifest = read_manifest(exports)
        verify_files(exports, manifest)
        click.echo(f"reusing the exports in {exports} (--force re-exports)")
        if manifest.rejected:
            return CheckFailed(f"{len(manifest.rejected)} exported file(s) failed validation and are in "
                               f"{exports / REJECTED_DIR}")
        return None
    try:
        export_from_checkpoint(run_dir, exports, formats=formats, quantize=quantize,
                               tolerances=dict(cfg.export.tolerances), overwrite=True)
    except CheckFailed as exc:  # the accepted files and the manifest are written
        click.echo(f"export: {exc}")
        return exc
    return None


def bench_stage(cfg: Config, exports: Path, bench_dir: Path, force: bool) -> tuple[Any, CheckFailed | None]:
    """Stage 5: parity + latency of every exported backend (or reuse a report newer than the
    exports); returns (report, the gate failure to raise after the final screen, if any)."""
    _stage(5, "bench", f"parity + latency per backend → {bench_dir}")
    gate_failure: CheckFailed | None = None
    report_path = bench_dir / REPORT_JSON
    report = _reusable_report(report_path, exports) if not force else None
    if report is not None:
        click.echo(f"reusing the bench report in {bench_dir} (--force re-runs it)")
    else:
        try:
            report = run_bench(BenchOptions(exports=exports, out=bench_dir, config=cfg), echo=lambda _: None)
        except CheckFailed as exc:  # the report is written; show it, then fail
            report, gate_failure = load_report(report_path), exc
    return report, gate_failure


def _reusable_report(report_path: Path, exports: Path) -> BenchReport | None:
    """The report in ``report_path`` when it is newer than the exports and readable by this version."""
    if not report_path.is_file() or report_path.stat().st_mtime < (exports / MANIFEST_FILE).stat().st_mtime:
        return None
    try:
        return load_report(report_path)
    except UserError:  # written by another storyedge version: measure again
        return None


def _floor_lines(summary: TrainingSummary, ablation: TrainingSummary | None) -> list[str]:
    """The data's PPL floor and each trained PPL's excess over it (embedded synthetic data only)."""
    floor = summary.data_floor_ppl
    if floor is None:
        return []
    excess = [f"{summary.fusion} {summary.best_val_ppl - floor:+.3f}"] if summary.best_val_ppl is not None else []
    if ablation is not None and ablation.best_val_ppl is not None:
        excess.append(f"text_only {ablation.best_val_ppl - floor:+.3f}")
    em = summary.oracle_exact_match
    return [
        f"  floor      data floor {floor:.3f} (paraphrase entropy; oracle exact match "
        + ("n/a" if em is None else f"{em:.1%}") + ")",
        *([f"  excess     PPL - floor: {', '.join(excess)}"] if excess else []),
    ]


def final_screen(
    summary: TrainingSummary,
    ablation: TrainingSummary | None,
    report: BenchReport,
    run_dir: Path,
    bench_dir: Path,
    wall_seconds: float,
) -> str:
    """The one screen the quickstart ends with."""
    def ppl(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "",
        "═" * 30 + " storyedge quickstart " + "═" * 30,
        f"run          {run_dir.resolve()}",
        f"val PPL      {ppl(summary.best_val_ppl)} ({summary.fusion} fusion, "
        f"best epoch {summary.best_epoch})",
        f"  context    unigram {ppl(summary.unigram_val_ppl)}"
        + (f", text_only {ppl(ablation.best_val_ppl)}" if ablation else ""),
        *_floor_lines(summary, ablation),
        "",
        terminal_text(report).rstrip(),
        "",
        f"model        {run_dir / BEST_DIR}",
        f"curves       {run_dir / CURVES_PNG}",
        f"exports      {run_dir / EXPORTS_DIR} (manifest.json)",
        f"reports      {bench_dir / REPORT_MD}, {bench_dir / REPORT_JSON}",
        f"plots        " + ", ".join(str(bench_dir / p) for p in report.plots),
        f"wall time    {wall_seconds / 60:.1f} min",
    ]
    return "\n".join(lines)

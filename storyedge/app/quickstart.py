"""``storyedge quickstart``: the main job on the embedded data, start to finish.

data (generated if absent) → train (``quickstart.yaml``, ``--device auto``) → text-only ablation
→ export (TFLite + ONNX, fp32 + int8-dynamic) → bench (parity + latency) → one final screen.
Every stage reuses what an earlier run finished (``--force`` redoes everything).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import click

from storyedge.bench.results import BenchReport
from storyedge.config import Config, load_config
from storyedge.errors import CheckFailed, UserError

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
EXPORT_FORMATS = ["tflite", "onnx"]
EXPORT_QUANTIZE = ["none", "int8-dynamic"]
STAGES = ("data", "train", "ablation", "export", "bench")


def _stage(number: int, name: str, detail: str) -> None:
    click.secho(f"\n[{number}/{len(STAGES)}] {name}: {detail}", bold=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _train_or_reuse(cfg: Config, device: str, label: str) -> dict[str, Any]:
    from storyedge.run_dir import resolve_bundle
    from storyedge.training.run import SUMMARY_FILE, run_training

    run_dir = Path(cfg.training.save_dir)
    summary = _read_json(run_dir / SUMMARY_FILE)
    if summary is not None and summary.get("status") != "interrupted":
        resolve_bundle(run_dir)
        click.echo(f"reusing the trained {label} model in {run_dir} (--force retrains)")
        return summary
    return run_training(cfg, device=device, resume=(run_dir / "checkpoints").is_dir())


def _clear_run(run_dir: Path) -> None:
    """Remove a previous quickstart run (only a directory that looks like one)."""
    if not run_dir.exists():
        return
    if not (run_dir / "config.yaml").is_file() and any(run_dir.iterdir()):
        raise UserError(f"--force: {run_dir} does not look like a storyedge run; not deleting it")
    shutil.rmtree(run_dir)


@click.command()
@click.option("--config", "config_path", default=None, metavar="PATH",
              help="Config file or shipped name (default: quickstart.yaml).")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda", "metal"]), help="Training device.")
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
    run_dir = Path(cfg.training.save_dir)
    ablation_dir = run_dir.with_name(run_dir.name + "-text_only")
    if force:
        _clear_run(run_dir)
        _clear_run(ablation_dir)

    _stage(1, "data", f"{cfg.dataset.name} → {cfg.dataset.path}")
    from storyedge.data import load_story_splits

    splits = load_story_splits(cfg.dataset)
    click.echo(", ".join(f"{name}: {len(split)} stories" for name, split in splits.items()))

    _stage(2, "train", f"fusion={cfg.model.fusion}, {cfg.training.epochs} epochs → {run_dir}")
    summary = _train_or_reuse(cfg, device, cfg.model.fusion)

    ablation_summary = None
    if ablation:
        _stage(3, "ablation", f"fusion=text_only → {ablation_dir}")
        ablation_cfg = cfg.replace(**{"model.fusion": "text_only", "training.save_dir": str(ablation_dir)})
        ablation_summary = _train_or_reuse(ablation_cfg, device, "text_only")
    else:
        _stage(3, "ablation", "skipped (--no-ablation)")

    exports = run_dir / "exports"
    _stage(4, "export", f"{'+'.join(EXPORT_FORMATS)} × {','.join(EXPORT_QUANTIZE)} → {exports}")
    from storyedge.manifest import MANIFEST_FILE, read_manifest, verify_files

    if (exports / MANIFEST_FILE).is_file() and not force:
        verify_files(exports, read_manifest(exports))
        click.echo(f"reusing the exports in {exports} (--force re-exports)")
    else:
        from storyedge.export.exporter import export_from_checkpoint

        export_from_checkpoint(
            run_dir, exports, formats=EXPORT_FORMATS, quantize=EXPORT_QUANTIZE, overwrite=True
        )

    bench_dir = run_dir / "bench"
    _stage(5, "bench", f"parity + latency per backend → {bench_dir}")
    from storyedge.bench.report import load_report

    gate_failure: CheckFailed | None = None
    report_path = bench_dir / "report.json"
    if report_path.is_file() and not force and report_path.stat().st_mtime >= (exports / MANIFEST_FILE).stat().st_mtime:
        report = load_report(report_path)
        click.echo(f"reusing the bench report in {bench_dir} (--force re-runs it)")
    else:
        from storyedge.bench.runner import BenchOptions, run_bench

        try:
            report = run_bench(BenchOptions(exports=exports, out=bench_dir, config=cfg), echo=lambda _: None)
        except CheckFailed as exc:  # the report is written; show it, then fail
            report, gate_failure = load_report(report_path), exc

    click.echo(final_screen(summary, ablation_summary, report, run_dir, bench_dir, time.monotonic() - wall0))
    if gate_failure is not None:
        raise gate_failure


def final_screen(
    summary: dict[str, Any],
    ablation: dict[str, Any] | None,
    report: BenchReport,
    run_dir: Path,
    bench_dir: Path,
    wall_seconds: float,
) -> str:
    """The one screen the quickstart ends with."""
    from storyedge.bench.report import terminal_text

    def ppl(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "",
        "═" * 30 + " storyedge quickstart " + "═" * 30,
        f"run          {run_dir.resolve()}",
        f"val PPL      {ppl(summary.get('best_val_ppl'))} ({summary.get('fusion')} fusion, "
        f"best epoch {summary.get('best_epoch')})",
        f"  context    unigram {ppl(summary.get('unigram_val_ppl'))}"
        + (f", text_only {ppl(ablation.get('best_val_ppl'))}" if ablation else ""),
        "",
        terminal_text(report).rstrip(),
        "",
        f"model        {run_dir / 'best'}",
        f"curves       {run_dir / 'curves.png'}",
        f"exports      {run_dir / 'exports'} (manifest.json)",
        f"reports      {bench_dir / 'report.md'}, {bench_dir / 'report.json'}",
        f"plots        " + ", ".join(str(bench_dir / p) for p in report.plots),
        f"wall time    {wall_seconds / 60:.1f} min",
    ]
    return "\n".join(lines)

"""The trained seed-size model: ``storyedge quickstart --config seed-synthetic.yaml --no-ablation``
in a temporary directory, start to finish, and what its results must show.

The shipped ``seed-synthetic.yaml`` is ``storyreasoning.yaml``'s graph (E 300, H 512, 128 px,
k 3, L 32, R 64, reason on, V 30522 from a WordPiece padded with ``[unusedN]``) trained on the
embedded synthetic stories for a fixed budget within 15 minutes, exported to every format x
precision and benched (parity + caption quality + latency).

Not in the unit suite (training alone is up to 15 minutes on 2 CPU cores; export and bench add
more, and GBs): ``pytest tests/benchmarks/test_seed_trained.py -m seed_trained -s``.
``STORYEDGE_SEED_TRAINED_CONFIG=FILE`` runs another config through the same checks (e.g. a
shorter budget, to try the path); ``STORYEDGE_SEED_TRAINED_SUMMARY=FILE`` keeps the figures as
JSON. The command's output is printed (``-s``) with each stage's wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from storyedge.config import Config

pytestmark = pytest.mark.seed_trained

SHIPPED = "seed-synthetic.yaml"
#: The issue's training budget: 15 minutes of training wall on 2 cores.
TRAINING_LIMIT_SECONDS = 900.0
#: The whole command (training, every export, the bench) must end within this.
COMMAND_TIMEOUT_SECONDS = 3 * 3600
#: quickstart's exit code when a parity / quality gate failed (the report is written first).
GATE_FAILED = 1


def test_seed_synthetic_trains_exports_every_variant_and_benches(tmp_path: Path) -> None:
    from storyedge.bench.report import load_report
    from storyedge.config import load_config
    from storyedge.constants import QUANTIZE_PRECISIONS
    from storyedge.manifest import read_manifest
    from storyedge.training.report import read_summary

    config = os.environ.get("STORYEDGE_SEED_TRAINED_CONFIG", SHIPPED)
    if Path(config).is_file():
        config = str(Path(config).resolve())  # the command runs in tmp_path
    cfg = load_config(config)
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "storyedge.app", "quickstart", "--config", config, "--no-ablation"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
    )
    wall = time.monotonic() - start
    print(proc.stdout[-20000:])
    assert proc.returncode in (0, GATE_FAILED), proc.stderr[-4000:]

    run = tmp_path / cfg.training.save_dir
    summary = read_summary(run)
    assert summary is not None and not summary.interrupted
    manifest = read_manifest(run / "exports")
    report = load_report(run / "bench")
    if proc.returncode == GATE_FAILED:
        assert report.failed_gates, proc.stderr[-4000:]  # exit 1 only for a gate the report names

    # training: the seed's V, within the budget, far from the unigram baseline
    assert summary.vocab_size == cfg.tokenizer.pad_to_vocab_size == report.settings.vocab_size
    assert summary.train_seconds <= TRAINING_LIMIT_SECONDS
    assert summary.best_val_ppl is not None and summary.unigram_val_ppl is not None
    assert summary.best_val_ppl < summary.unigram_val_ppl
    # the summary's baseline smooths over all 30522 ids, ~29k of them never-produced [unusedN]:
    # beat the stricter one smoothed over the trained vocabulary only
    trained_unigram = trained_vocab_unigram(cfg, run, tmp_path)
    assert summary.best_val_ppl < trained_unigram < summary.unigram_val_ppl

    # every configured format x precision exported and benched, fp32 gates passed everywhere
    assert not manifest.rejected
    benched = {b.name: b for b in report.backends}
    for fmt in cfg.export.formats:
        for quantize in cfg.export.quantize:
            assert f"{fmt}-{QUANTIZE_PRECISIONS[quantize]}" in benched, (fmt, quantize, sorted(benched))
    exported = {f"{f.format}-{f.precision}" for f in manifest.files}
    assert exported <= {name.removesuffix("-multi") for name in benched}
    for backend in report.backends:
        assert backend.parity is not None, backend.name
        if backend.precision == "fp32" and not backend.reference:
            assert backend.parity.passed, (backend.name, backend.parity.failures())
        greedy = backend.caption_quality("greedy")
        assert greedy is not None, backend.name
        assert greedy.scores.captions == report.quality.windows > 0
        assert 0 <= greedy.scores.exact_match <= 1 and 0 <= greedy.scores.bleu4 <= 100
        assert (greedy.delta is None) == backend.reference

    figures = {
        "config": config,
        "command_wall_seconds": round(wall, 1),
        "returncode": proc.returncode,
        "train_seconds": round(summary.train_seconds, 1),
        "epochs_done": summary.epochs_done,
        "steps": summary.steps,
        "best_val_ppl": summary.best_val_ppl,
        "best_epoch": summary.best_epoch,
        "unigram_val_ppl": summary.unigram_val_ppl,
        "unigram_val_ppl_trained_vocab": trained_unigram,
        "export_seconds": manifest.source.get("export", {}).get("seconds"),
        "failed_gates": report.failed_gates,
        "backends": {
            b.name: {
                "ppl": b.parity.ppl if b.parity else None,
                "ppl_ratio": b.parity.ppl_ratio if b.parity else None,
                "top1": b.parity.top1_agreement if b.parity else None,
                "greedy_bleu4": b.caption_quality("greedy").scores.bleu4 if b.caption_quality("greedy") else None,
                "greedy_exact_match": (b.caption_quality("greedy").scores.exact_match
                                       if b.caption_quality("greedy") else None),
            }
            for b in report.backends
        },
    }
    print(json.dumps(figures, indent=1))
    if os.environ.get("STORYEDGE_SEED_TRAINED_SUMMARY"):
        Path(os.environ["STORYEDGE_SEED_TRAINED_SUMMARY"]).write_text(json.dumps(figures, indent=2) + "\n")


def trained_vocab_unigram(cfg: "Config", run: Path, root: Path) -> float:
    """Validation PPL of the unigram baseline smoothed over the trained WordPiece entries only
    (the ids below the first ``[unusedN]``), with the run's own tokenizer and windows."""
    from storyedge.constants import UNUSED_TOKEN
    from storyedge.data.loading import load_split_windows
    from storyedge.run_dir import TOKENIZER_DIR
    from storyedge.tokenizer import StoryTokenizer
    from storyedge.training.unigram import unigram_perplexity

    tokenizer = StoryTokenizer.load(run / TOKENIZER_DIR)
    trained = tokenizer._tok.token_to_id(UNUSED_TOKEN.format(0)) or tokenizer.vocab_size
    data = cfg.dataset.model_copy(update={"path": str(root / cfg.dataset.path)})
    train = load_split_windows(data, tokenizer, "train")
    validation = load_split_windows(data, tokenizer, "validation")
    return unigram_perplexity(train.target, validation.target, trained, tokenizer.pad_id)

"""Caption quality per backend: every backend's captions of the eval windows scored against the
reference captions (exact match, BLEU-4, ROUGE-L, CIDEr-D: :mod:`storyedge.captions.scoring`),
and each exported backend's delta against the TF reference's scores, judged by the
caption-quality gates.

Greedy captions are the ones parity already decoded (every backend, every window); with
``beam > 1`` every backend also writes a beam-search caption per window. The references are the
eval windows' target captions as the run tokenizer decodes them (what a backend could write at
best: the same vocabulary and the same ``max_caption_len``).
"""

from __future__ import annotations

import importlib.metadata
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from storyedge.bench.results import CaptionQuality, Gates, QualitySummary
from storyedge.captions.generate import texts, window_captions
from storyedge.captions.scores import CaptionDelta
from storyedge.captions.scoring import CIDER_INSTALL, CIDER_PACKAGE, check_references, cider_available, score_captions
from storyedge.captions.tokenize import TOKENISATION
from storyedge.errors import UserError
from storyedge.runtime import Backend

GREEDY = "greedy"


@dataclass
class QualityOutcome:
    """What :func:`score_backends` gives the report."""

    summary: QualitySummary
    #: backend name → its CaptionQuality per decoding (greedy first)
    by_backend: dict[str, list[CaptionQuality]]


def decoding_name(beam: int) -> str:
    """``greedy`` for one beam, else ``beam<N>``."""
    return GREEDY if beam == 1 else f"beam{beam}"


def cider_package() -> str:
    """``pycocoevalcap <version>``, or ``not installed``."""
    if not cider_available():
        return "not installed"
    try:
        return f"{CIDER_PACKAGE} {importlib.metadata.version(CIDER_PACKAGE)}"
    except importlib.metadata.PackageNotFoundError:
        return CIDER_PACKAGE


def check_gates_measurable(gates: Gates) -> None:
    """:class:`UserError` (exit 2) when a gate is set on a metric whose package is not installed."""
    if gates.cider_drop is not None and not cider_available():
        raise UserError(
            f"bench.gate_cider_drop ({gates.cider_drop:g}) gates CIDEr-D, which needs {CIDER_PACKAGE} (not installed): "
            f"{CIDER_INSTALL}, or set bench.gate_cider_drop: null"
        )


def reference_texts(tokenizer: Any, windows: dict[str, np.ndarray], split: str) -> list[str]:
    """The windows' target captions as text; :class:`DataError` naming ``split`` when there are
    none or one is empty after tokenisation (checked before any backend is loaded)."""
    refs = texts(tokenizer, [row[1:] for row in np.asarray(windows["target"])])
    check_references(refs, split)
    return refs


def score_backends(
    reference: Backend,
    backends: list[Backend],
    greedy: dict[str, list[list[int]]],
    references: list[str],
    *,
    tokenizer: Any,
    gates: Gates,
    split: str,
    windows: dict[str, np.ndarray] | None = None,
    beam: int = 1,
    batch: int = 1,
    max_new: int = 1,
    echo: Callable[[str], Any] = print,
) -> QualityOutcome:
    """Score every backend's greedy captions (and, with ``beam > 1``, its beam captions of
    ``windows``) against ``references``; deltas against ``reference``; gates applied."""
    everyone = [reference, *backends]
    seconds = {b.name: 0.0 for b in everyone}
    decodings = {GREEDY: greedy}
    if beam > 1:
        if windows is None:
            raise ValueError("beam captions need the eval windows")
        beamed: dict[str, list[list[int]]] = {}
        for b in everyone:
            echo(f"beam-{beam} captions: {b.name} on {len(references)} windows ...")
            start = time.perf_counter()
            beamed[b.name] = window_captions(b, windows, batch=batch, bos_id=tokenizer.bos_id,
                                             eos_id=tokenizer.eos_id, max_new=max_new, beam=beam)
            seconds[b.name] += time.perf_counter() - start
        decodings[decoding_name(beam)] = beamed
    by_backend: dict[str, list[CaptionQuality]] = {b.name: [] for b in everyone}
    for decoding, captions in decodings.items():
        ref_scores = None
        for b in everyone:
            start = time.perf_counter()
            scores = score_captions(texts(tokenizer, captions[b.name]), references, split)
            seconds[b.name] += time.perf_counter() - start
            if b is reference:
                ref_scores = scores
                by_backend[b.name].append(CaptionQuality(decoding, scores))
            else:
                assert ref_scores is not None
                quality = CaptionQuality(decoding, scores, CaptionDelta.between(scores, ref_scores))
                by_backend[b.name].append(gates.apply_quality(quality))
    summary = QualitySummary(split, len(references), TOKENISATION, list(decodings), cider_package(), seconds)
    return QualityOutcome(summary, by_backend)

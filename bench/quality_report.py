"""The caption-quality table of the bench report (terminal and ``report.md``).

One row per backend and decoding: exact match, BLEU-4, ROUGE-L, CIDEr-D against the reference
captions, each exported backend's delta against the TF reference, and the gate verdict.
"""

from __future__ import annotations

from storyedge.bench.results import BenchReport, CaptionQuality

#: (header, metric, digits) of the score columns
COLUMNS = (("EM", "exact_match", 3), ("BLEU-4", "bleu4", 2), ("ROUGE-L", "rouge_l", 3), ("CIDEr-D", "cider_d", 3))
NOT_INSTALLED = "not installed"


def _cell(value: float | None, digits: int, signed: bool = False, missing: str = "-") -> str:
    if value is None:
        return missing
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _verdict(q: CaptionQuality, reference: bool) -> str:
    if reference:
        return "ref"
    failed = [name.removesuffix("_delta") for name, g in q.gates.items() if not g.passed]
    if not q.gates:
        return "-"
    return "FAIL " + ",".join(failed) if failed else "pass"


def quality_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Headers and preformatted rows of the caption-quality table."""
    headers = ["backend", "decoding", "prec", *(h for h, _, _ in COLUMNS), *(f"d{h}" for h, _, _ in COLUMNS), "gates"]
    rows = []
    for b in report.backends:
        for q in b.quality:
            scores = [_cell(q.scores.value(m), d, missing=NOT_INSTALLED) for _, m, d in COLUMNS]
            deltas = ["-" if q.delta is None else _cell(q.delta.value(m), d, signed=True) for _, m, d in COLUMNS]
            rows.append([b.name, q.decoding, b.precision, *scores, *deltas, _verdict(q, b.reference)])
    return headers, rows


def quality_heading(report: BenchReport) -> str:
    """What the table scores, on which windows, with which tokenisation and gates."""
    q, g = report.quality, report.gates
    assert q is not None
    drops = g.quality_drops()
    labels = {"bleu4": "BLEU-4", "cider_d": "CIDEr-D", "exact_match": "EM"}
    gates = ", ".join(f"{labels[m]} >= -{v:g}" for m, v in drops.items()) or "none"
    return (
        f"Caption quality vs the reference captions on {q.windows} {q.split} windows ({', '.join(q.decodings)}); "
        f"words: {q.tokenisation}. EM = exact-match rate, BLEU-4 = sacrebleu corpus BLEU (0-100), "
        f"ROUGE-L = rouge-score F (0-1), CIDEr-D = pycocoevalcap Cider (0-10; {q.cider}); "
        f"dX = X(backend) - X({report.parity.reference if report.parity else 'reference'}). Gates (every exported "
        f"backend): {gates}"
    )

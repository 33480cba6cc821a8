"""Exact match, BLEU-4, ROUGE-L and CIDEr-D of generated captions against reference captions.

Every metric comes from its package, on the words of :mod:`storyedge.captions.tokenize`:

* BLEU-4: ``sacrebleu.metrics.BLEU(tokenize="none")`` corpus score (modified 1..4-gram
  precisions, geometric mean, brevity penalty over the corpus; sacrebleu's default ``exp``
  smoothing, which only acts when some n-gram order has no match).
* ROUGE-L: ``rouge_score.rouge_scorer.RougeScorer(["rougeL"])`` F-measure per caption, averaged.
* CIDEr-D: ``pycocoevalcap.cider.cider.Cider`` (n = 1..4, sigma 6, clipped tf-idf, Gaussian
  length penalty, x10; document frequencies from the references of the scored corpus), so it
  needs at least two distinct references to be informative. Its Java PTB tokenizer is not used.
* exact match: the caption's words equal the reference's.

None of these packages downloads anything (sacrebleu fetches only test sets, never used here;
rouge-score needs no NLTK data without ``rougeLsum``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from storyedge.captions.scores import CaptionScores
from storyedge.captions.tokenize import TOKENISATION, WordTokenizer, normalise
from storyedge.errors import DataError

#: the package CIDEr-D needs, and how to get it
CIDER_PACKAGE = "pycocoevalcap"
CIDER_INSTALL = "pip install pycocoevalcap"


def cider_available() -> bool:
    """Whether pycocoevalcap (CIDEr-D) can be imported."""
    try:
        return importlib.util.find_spec(CIDER_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


def check_references(references: Sequence[str], split: str) -> list[str]:
    """The references as words joined by spaces; :class:`DataError` naming ``split`` when there
    is none, or when one is empty after tokenisation."""
    refs = [normalise(r) for r in references]
    if not refs:
        raise DataError(f"split {split!r}: no eval windows to score captions on")
    empty = sum(1 for r in refs if not r)
    if empty:
        raise DataError(
            f"split {split!r}: {empty} of {len(refs)} reference captions are empty after tokenisation "
            f"({TOKENISATION})"
        )
    return refs


def score_captions(hypotheses: Sequence[str], references: Sequence[str], split: str = "eval") -> CaptionScores:
    """The metrics of the module doc for ``hypotheses[i]`` against ``references[i]``.

    :class:`DataError` (exit 2) naming ``split`` when there are no references or one is empty
    after tokenisation.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} captions for {len(references)} references")
    refs = check_references(references, split)
    hyps = [normalise(h) for h in hypotheses]
    bleu = _bleu(hyps, refs)
    return CaptionScores(
        captions=len(refs),
        exact_match=sum(h == r for h, r in zip(hyps, refs)) / len(refs),
        bleu4=float(bleu.score),
        rouge_l=_rouge_l(hyps, refs),
        cider_d=_cider_d(hyps, refs) if cider_available() else None,
        bleu_precisions=[float(p) for p in bleu.precisions],
        bleu_brevity_penalty=float(bleu.bp),
        hyp_words=int(bleu.sys_len),
        ref_words=int(bleu.ref_len),
    )


def _bleu(hyps: list[str], refs: list[str]):  # -> sacrebleu.metrics.bleu.BLEUScore
    from sacrebleu.metrics import BLEU  # lazy: sacrebleu pulls in lxml, regex, portalocker

    return BLEU(tokenize="none", max_ngram_order=4).corpus_score(hyps, [refs])


def _rouge_l(hyps: list[str], refs: list[str]) -> float:
    from rouge_score.rouge_scorer import RougeScorer  # lazy: imports nltk (~0.7 s)

    scorer = RougeScorer(["rougeL"], tokenizer=WordTokenizer())
    return sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / len(refs)


def _cider_d(hyps: list[str], refs: list[str]) -> float:
    from pycocoevalcap.cider.cider import Cider  # lazy: optional at run time (CIDEr-D is None without it)

    score, _ = Cider().compute_score({i: [r] for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)})
    return float(score)

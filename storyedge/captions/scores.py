"""Typed caption-quality scores and their deltas (stdlib only: reports hold them as they are).

Scales are the packages' own: exact match and ROUGE-L F-measure in [0, 1], BLEU-4 in [0, 100]
(sacrebleu), CIDEr-D in [0, 10] (pycocoevalcap, one reference per caption). ``cider_d`` is None
where pycocoevalcap is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: metric name (a :class:`CaptionScores` field) → how reports label it
METRIC_LABELS = {
    "exact_match": "exact match",
    "bleu4": "BLEU-4",
    "rouge_l": "ROUGE-L",
    "cider_d": "CIDEr-D",
}


@dataclass
class CaptionScores:
    """Caption metrics of one set of generated captions against the references."""

    #: captions scored (one per eval window)
    captions: int
    #: fraction of captions whose words equal the reference's exactly
    exact_match: float
    #: sacrebleu corpus BLEU-4 (0-100)
    bleu4: float
    #: ROUGE-L F-measure (rouge-score), mean over captions
    rouge_l: float
    #: pycocoevalcap CIDEr-D (mean over captions); None: pycocoevalcap not installed
    cider_d: float | None
    #: sacrebleu's modified 1..4-gram precisions (%) and brevity penalty, for reading the BLEU
    bleu_precisions: list[float] = field(default_factory=list)
    bleu_brevity_penalty: float = 1.0
    #: words in all generated / all reference captions
    hyp_words: int = 0
    ref_words: int = 0

    def value(self, metric: str) -> float | None:
        """The figure of ``metric`` (a key of :data:`METRIC_LABELS`)."""
        return getattr(self, metric)


@dataclass
class CaptionDelta:
    """metric(backend) - metric(reference), both against the references (None: not measured)."""

    exact_match: float
    bleu4: float
    rouge_l: float
    cider_d: float | None

    @classmethod
    def between(cls, scores: CaptionScores, reference: CaptionScores) -> "CaptionDelta":
        """``scores - reference`` per metric."""
        cider = None
        if scores.cider_d is not None and reference.cider_d is not None:
            cider = scores.cider_d - reference.cider_d
        return cls(
            exact_match=scores.exact_match - reference.exact_match,
            bleu4=scores.bleu4 - reference.bleu4,
            rouge_l=scores.rouge_l - reference.rouge_l,
            cider_d=cider,
        )

    def value(self, metric: str) -> float | None:
        """The delta of ``metric`` (a key of :data:`METRIC_LABELS`)."""
        return getattr(self, metric)

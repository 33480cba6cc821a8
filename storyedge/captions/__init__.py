"""Caption quality: how close generated captions are to the reference captions.

Core, shared by training (validation captions every epoch) and the bench (every backend's
captions against the references, and against the TF reference's scores):

* :mod:`storyedge.captions.tokenize`: the one tokenisation every metric sees.
* :mod:`storyedge.captions.scores`: the typed scores and their deltas (stdlib only, so a report
  can hold them without the metric packages).
* :mod:`storyedge.captions.scoring`: exact match, BLEU-4 (sacrebleu), ROUGE-L (rouge-score) and
  CIDEr-D (pycocoevalcap's ``Cider``) of a corpus of captions.
* :mod:`storyedge.captions.generate`: greedy / beam captions of eval windows through any
  :class:`~storyedge.runtime.Backend`.

This ``__init__`` imports nothing, so reading a report does not load the metric packages.
"""

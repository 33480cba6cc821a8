"""The one tokenisation of captions that every caption metric sees.

A caption's text (the run tokenizer's decoding of its ids, ``[EOS]`` and special tokens dropped)
is lowercased and split into maximal runs of letters and digits: punctuation and whitespace
separate words and are dropped (the coco-caption convention of removing punctuation, without its
Java PTB tokenizer). The words, joined by single spaces, are what sacrebleu (``tokenize='none'``),
rouge-score (this tokenizer) and pycocoevalcap's CIDEr-D (whitespace split) score, so the three
packages count the same words.
"""

from __future__ import annotations

import re

#: What :func:`caption_words` does, in words (for reports and the README).
TOKENISATION = "lowercased; words = runs of letters and digits; punctuation dropped"

_WORD = re.compile(r"[^\W_]+")


def caption_words(text: str) -> list[str]:
    """The words of a caption (see the module doc)."""
    return _WORD.findall(text.lower())


def normalise(text: str) -> str:
    """The caption as its words joined by single spaces."""
    return " ".join(caption_words(text))


class WordTokenizer:
    """:func:`caption_words` as a rouge-score tokenizer (an object with ``tokenize``)."""

    def tokenize(self, text: str) -> list[str]:
        """The words of ``text``."""
        return caption_words(text)

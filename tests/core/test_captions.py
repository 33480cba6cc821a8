"""Caption metrics (storyedge.captions) against values worked out by hand on small caption sets."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from storyedge.captions.generate import texts, window_captions
from storyedge.captions.scores import CaptionDelta, CaptionScores
from storyedge.captions.scoring import cider_available, score_captions
from storyedge.captions.tokenize import caption_words, normalise
from storyedge.errors import DataError


def test_tokenisation_lowercases_and_drops_punctuation() -> None:
    assert caption_words("The red Ball, rolls LEFT.") == ["the", "red", "ball", "rolls", "left"]
    assert normalise("  a  dog's\tbone!") == "a dog s bone"
    assert caption_words("...") == []


def test_bleu4_from_counted_ngrams_and_brevity_penalty() -> None:
    # pair 1: hyp "the cat sat on the mat" vs ref "the cat sat on a mat" (6 words each)
    #   clipped matches / hyp n-grams: 1-gram 5/6 ("the" twice, once in ref), 2-gram 3/5,
    #   3-gram 2/4, 4-gram 1/3
    one = score_captions(["the cat sat on the mat"], ["The cat sat on a mat."])
    assert one.bleu4 == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-9)
    assert one.bleu_brevity_penalty == pytest.approx(1.0)
    assert one.bleu_precisions == pytest.approx([500 / 6, 60, 50, 100 / 3])
    # pair 2 adds hyp "a dog" vs ref "a dog runs fast": 1-gram 2/2, 2-gram 1/1, nothing longer.
    # Corpus: 7/8, 4/6, 2/4, 1/3; hyp length c = 8 < ref length r = 10: BP = exp(1 - r/c).
    two = score_captions(["the cat sat on the mat", "a dog"], ["the cat sat on a mat", "a dog runs fast"])
    expected = 100 * math.exp(1 - 10 / 8) * (7 / 8 * 4 / 6 * 2 / 4 * 1 / 3) ** 0.25
    assert two.bleu4 == pytest.approx(expected, abs=1e-9)
    assert two.bleu_brevity_penalty == pytest.approx(math.exp(-0.25))
    assert (two.hyp_words, two.ref_words) == (8, 10)
    assert two.exact_match == 0.0


def test_rouge_l_from_the_lcs_length() -> None:
    # ref "the cat sat on the mat" (6), hyp "the cat on mat" (4): LCS 4 → P 1, R 4/6, F = 0.8.
    # ref "a c d" (3), hyp "a b c d" (4): LCS 3 → P 3/4, R 1, F = 6/7. Mean over the two.
    scores = score_captions(["the cat on mat", "a b c d"], ["the cat sat on the mat", "a c d"])
    assert scores.rouge_l == pytest.approx((0.8 + 6 / 7) / 2, abs=1e-12)


def test_exact_match_counts_word_equality() -> None:
    scores = score_captions(["The cat.", "a dog", "a dog runs"], ["the cat", "a dog runs", "a dog runs"])
    assert scores.exact_match == pytest.approx(2 / 3)


@pytest.mark.skipif(not cider_available(), reason="pycocoevalcap is a dependency; checked where installed")
def test_cider_d_by_hand_and_perfect_copy() -> None:
    refs = ["a b c d", "e f g h"]
    perfect = score_captions(refs, refs)
    assert perfect.cider_d == pytest.approx(10.0, abs=1e-9)
    assert perfect.bleu4 == pytest.approx(100.0, abs=1e-9)
    assert perfect.rouge_l == pytest.approx(1.0, abs=1e-12)
    assert perfect.exact_match == 1.0
    # Second hyp "e f g" vs "e f g h": every n-gram has document frequency 1 in a corpus of 2
    # references, so all weights are log 2 and the cosines are set counts:
    # 1-gram 3/(√3·2), 2-gram 2/(√2·√3), 3-gram 1/(1·√2), 4-gram 0 (none in the hyp).
    # Gaussian length penalty exp(-Δ²/(2·6²)) with Δ = -1 (pycocoevalcap counts the length in
    # bigrams: 2 vs 3). Score = 10 · mean(cosines) · penalty; the corpus is the mean of 10 and it.
    second = 10 * np.mean([3 / (math.sqrt(3) * 2), 2 / math.sqrt(6), 1 / math.sqrt(2), 0.0]) * math.exp(-1 / 72)
    partial = score_captions(["a b c d", "e f g"], refs)
    assert partial.cider_d == pytest.approx((10 + second) / 2, abs=1e-9)


def test_cider_d_is_none_without_pycocoevalcap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)  # find_spec / import now fail
    assert not cider_available()
    scores = score_captions(["a b c d", "e f"], ["a b c d", "e f g"])
    assert scores.cider_d is None
    assert scores.exact_match == 0.5


def test_empty_references_name_the_split() -> None:
    with pytest.raises(DataError, match="split 'validation': 1 of 2 reference captions are empty"):
        score_captions(["a", "b"], ["a", "!!"], split="validation")
    with pytest.raises(DataError, match="split 'test': no eval windows"):
        score_captions([], [], split="test")


def test_delta_is_backend_minus_reference() -> None:
    ref = CaptionScores(4, 0.5, 40.0, 0.6, 2.0)
    other = CaptionScores(4, 0.25, 35.5, 0.7, None)
    delta = CaptionDelta.between(other, ref)
    assert (delta.exact_match, delta.bleu4, delta.rouge_l, delta.cider_d) == pytest.approx((-0.25, -4.5, 0.1, None))


class _CountingBackend:
    """A toy backend: the state is the window's first caption id; it emits id+1, id+2, then EOS (2)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def encode(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append(int(inputs["captions"].shape[0]))
        assert "target" not in inputs
        return {"base": inputs["captions"][:, 0].astype(np.int64), "t": np.zeros(len(inputs["captions"]), np.int64)}

    def token_ids(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(indices).astype(np.int32)  # no shortlist: logit i is token i

    def step(self, token: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        t = state["t"] + 1
        nxt = np.where(t <= 2, state["base"] + t, 2)
        logits = np.full((len(token), 20), -10.0, np.float32)
        logits[np.arange(len(token)), nxt] = 5.0
        return logits, {"base": state["base"], "t": t}


def test_window_captions_greedy_and_beam_in_static_batches() -> None:
    windows = {"captions": np.array([[5], [9], [12]]), "target": np.zeros((3, 4), np.int32)}
    backend = _CountingBackend()
    greedy = window_captions(backend, windows, batch=2, bos_id=1, eos_id=2, max_new=6)
    assert greedy == [[6, 7], [10, 11], [13, 14]]
    assert backend.batches == [2, 2]  # the last batch padded to the static size
    beam = window_captions(backend, windows, batch=2, bos_id=1, eos_id=2, max_new=6, beam=3)
    assert beam == greedy

    class Tok:
        def decode(self, ids: list[int]) -> str:
            return " ".join(f"w{i}" for i in ids)

    assert texts(Tok(), greedy[:1]) == ["w6 w7"]


def test_scoring_downloads_nothing(tmp_path) -> None:
    """A fresh process with no network (sockets refuse) and an empty HOME scores every metric and
    writes nothing there: no NLTK data, no sacrebleu cache, no Java."""
    import os
    import subprocess
    import textwrap

    code = textwrap.dedent(
        """
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network used")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from storyedge.captions.scoring import score_captions
        s = score_captions(["a b c d", "e f g"], ["a b c d", "e f g h"])
        assert s.cider_d is not None and s.bleu4 > 0 and s.rouge_l > 0
        print("ok")
        """
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NLTK_DATA", "SACREBLEU")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert list(home.rglob("*")) == []

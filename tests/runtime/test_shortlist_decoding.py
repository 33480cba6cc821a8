"""Decoding through a vocabulary-shortlist step: logit indices become vocabulary ids, fed back as such."""

from __future__ import annotations

import numpy as np

from storyedge.manifest import DecoderSpec, StateTensor
from storyedge.runtime import Backend, beam_search, greedy_decode

VOCAB = 12
#: logit i of the shortlisted step is token IDS[i]
IDS = np.asarray([0, 2, 3, 7, 9, 11], np.int32)
EOS = 11


class ChainBackend(Backend):
    """Full-vocabulary toy step: after token t the most likely next token is NEXT[t] (EOS after 9)."""

    name, format, precision = "chain", "toy", "fp32"
    NEXT = {2: 7, 7: 3, 3: 9, 9: EOS}

    def __init__(self, shortlist: bool) -> None:
        self.decoder = DecoderSpec(state=[StateTensor("s", [1, 1], "float32", init="zeros", update="s_out")])
        self.vocab_ids = IDS if shortlist else None

    def run_encoder(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {}

    def run_step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        token = int(feeds["token"][0])
        assert 0 <= token < VOCAB and (self.vocab_ids is None or token in IDS or token == 2)
        logits = np.zeros((1, VOCAB), np.float32)
        logits[0, self.NEXT.get(token, EOS)] = 5.0
        logits[0, 5] = 4.0  # a strong token outside the shortlist
        if self.vocab_ids is not None:
            logits = logits[:, self.vocab_ids]
        return {"logits": logits, "s_out": feeds["s"]}


def test_greedy_and_beam_map_shortlist_indices_to_vocabulary_ids() -> None:
    full, short = ChainBackend(False), ChainBackend(True)
    start = {"s": np.zeros((1, 1), np.float32)}
    want = [7, 3, 9, EOS]
    assert greedy_decode(short, dict(start), 2, EOS, 8)[0].tokens == want
    assert greedy_decode(full, dict(start), 2, EOS, 8)[0].tokens == want
    best = beam_search(short, dict(start), 2, EOS, 8, beam=3)[0]
    assert best.tokens == want and set(best.tokens) <= set(IDS.tolist())
    assert 5 in [t for h in beam_search(full, dict(start), 2, EOS, 8, beam=3) for t in h.tokens]  # full can pick 5
    assert short.token_ids(np.asarray([0, 3, 5])).tolist() == [0, 7, 11] and full.token_ids(np.asarray([4])).tolist() == [4]

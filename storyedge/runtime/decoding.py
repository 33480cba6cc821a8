"""Greedy decoding and beam search, written once against :class:`~storyedge.runtime.backend.Backend`.

Both start from ``[BOS]`` and stop at ``[EOS]`` or after ``max_new`` generated tokens. Scores are
log-probabilities under the backend's own distribution (log-softmax of its logits).

Beam search runs batch-1 beams one after another (exports have a static batch; a backend with a
static batch ``B > 1`` gets the beam's token broadcast to all ``B`` rows and row 0 is used).
Hypotheses are ranked by the length-normalised log-probability
``sum(log p) / len(tokens) ** length_penalty`` (``len`` counts ``[EOS]`` when the hypothesis
ended; ``length_penalty`` 0 ranks by the raw sum). A hypothesis is finished when it emits
``[EOS]`` among the ``beam`` best candidates of a step; the search stops when ``beam``
hypotheses have finished, no live beam is left, or ``max_new`` tokens were generated (live beams
then count as finished, like a greedy caption that hit the length limit). The greedy hypothesis
is always a candidate of the final choice, so the returned hypothesis never scores below greedy
(plain beam search can prune the greedy path and end lower); with ``beam == 1`` the search *is*
greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from storyedge.runtime.backend import Backend, State, state_batch


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis (float64)."""
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@dataclass
class Hypothesis:
    """A generated caption: token ids after ``[BOS]`` (with the final ``[EOS]`` if it ended)."""

    tokens: list[int]
    logprob: float
    finished: bool
    token_logprobs: list[float] = field(default_factory=list)

    def score(self, length_penalty: float = 1.0) -> float:
        """Length-normalised log-probability ``logprob / len ** length_penalty``."""
        return self.logprob / max(len(self.tokens), 1) ** length_penalty

    def caption_ids(self, eos_id: int) -> list[int]:
        """The tokens without the trailing ``[EOS]``."""
        return self.tokens[:-1] if self.tokens and self.tokens[-1] == eos_id else list(self.tokens)


def greedy_decode(
    backend: Backend,
    state: State,
    bos_id: int,
    eos_id: int,
    max_new: int,
    *,
    force_full: bool = False,
) -> list[Hypothesis]:
    """Greedy captions for every row of ``state`` (batch B) → B hypotheses.

    ``force_full``: keep stepping to ``max_new`` tokens even after every row ended (timing);
    the hypotheses still end at their first ``[EOS]``.
    """
    batch = state_batch(state)
    token = np.full((batch,), bos_id, np.int32)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    logps: list[list[float]] = [[] for _ in range(batch)]
    done = np.zeros(batch, bool)
    for _ in range(max_new):
        logits, state = backend.step(token, state)
        logp = log_softmax(logits)
        best = logp.argmax(axis=-1)
        token = backend.token_ids(best)  # a shortlist's logit index -> its vocabulary id
        for row in range(batch):
            if not done[row]:
                tokens[row].append(int(token[row]))
                logps[row].append(float(logp[row, best[row]]))
        done |= token == eos_id
        if done.all() and not force_full:
            break
    return [
        Hypothesis(tokens[r], float(sum(logps[r])), bool(tokens[r] and tokens[r][-1] == eos_id), logps[r])
        for r in range(batch)
    ]


@dataclass
class _Beam:
    tokens: list[int]
    logprob: float
    state: State
    token_logprobs: list[float]


def beam_search(
    backend: Backend,
    state: State,
    bos_id: int,
    eos_id: int,
    max_new: int,
    beam: int = 4,
    length_penalty: float = 1.0,
) -> list[Hypothesis]:
    """Beam search from row 0 of ``state`` → finished hypotheses, best first (see module doc)."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    batch = state_batch(state)
    row0 = {k: v[:1] for k, v in state.items()}
    start = {k: np.repeat(v, batch, axis=0) for k, v in row0.items()}
    greedy = greedy_decode(backend, start, bos_id, eos_id, max_new)[0]
    if beam == 1:
        return [greedy]
    beams = [_Beam([], 0.0, start, [])]
    finished: list[Hypothesis] = []
    for _ in range(max_new):
        candidates: list[tuple[float, _Beam, int, float, State]] = []
        for b in beams:
            last = b.tokens[-1] if b.tokens else bos_id
            logits, next_state = backend.step(np.full((batch,), last, np.int32), b.state)
            logp = log_softmax(logits[:1])[0]
            for index in np.argsort(-logp, kind="stable")[:beam]:
                tok = int(backend.token_ids(index))  # a shortlist's logit index -> its vocabulary id
                candidates.append((b.logprob + float(logp[index]), b, tok, float(logp[index]), next_state))
        # Live candidates all have the same length, so the raw sum ranks them like the score.
        candidates.sort(key=lambda c: -c[0])  # stable: ties keep beam order, then token order
        beams = []
        for total, parent, tok, tok_logp, next_state in candidates[:beam]:
            tokens, token_logps = [*parent.tokens, tok], [*parent.token_logprobs, tok_logp]
            if tok == eos_id:
                finished.append(Hypothesis(tokens, total, True, token_logps))
            else:
                beams.append(_Beam(tokens, total, next_state, token_logps))
        if len(finished) >= beam or not beams:
            break
    else:
        finished.extend(Hypothesis(b.tokens, b.logprob, False, b.token_logprobs) for b in beams)
    pool = finished + [greedy]
    # Stable sort: among equal scores the beam's own hypotheses come before the greedy one.
    pool.sort(key=lambda h: -h.score(length_penalty))
    return pool

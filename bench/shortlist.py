"""Parity of vocabulary-shortlist backends, stated on the shortlist.

A shortlisted step scores only the shortlist's S tokens, so its PPL over the full vocabulary is
not comparable (a target outside the shortlist has probability 0). Teacher-forced over the same
eval windows as the full parity: each in-shortlist target is scored under the softmax over the
shortlist, for the backend and for the reference (its full logits taken at the shortlist's
ids, so the comparison is like for like); targets outside the shortlist are counted and left
out of both PPLs.
"""

from __future__ import annotations

import math

import numpy as np

from storyedge.bench.inputs import encoder_feed, iter_batches
from storyedge.bench.results import ShortlistParity
from storyedge.runtime import Backend
from storyedge.runtime.decoding import log_softmax


def shortlist_parity(reference: Backend, backends: list[Backend], windows: dict[str, np.ndarray], *, batch: int,
                     pad_id: int, vocab_size: int) -> dict[str, ShortlistParity]:
    """``{backend name: ShortlistParity}`` of each backend with ``vocab_ids`` (see module doc)."""
    out: dict[str, ShortlistParity] = {}
    for b in backends:
        ids = np.asarray(b.vocab_ids)
        index = np.full(vocab_size, -1, np.int64)
        index[ids] = np.arange(len(ids))
        nll = {"ref": 0.0, "own": 0.0}
        scored = outside = total = 0
        for chunk, valid in iter_batches(windows, batch):
            feed = encoder_feed(chunk)
            target = chunk["target"].astype(np.int32)
            real = (target[:, 1:] != pad_id) & valid[:, None]
            ref_state, own_state = reference.encode(feed), b.encode(feed)
            last = int(np.nonzero(real.any(axis=0))[0].max()) + 1 if real.any() else 0
            for t in range(last):
                token, nxt, mask = target[:, t], target[:, t + 1], real[:, t]
                ref_logits, ref_state = reference.step(token, ref_state)
                own_logits, own_state = b.step(token, own_state)
                where = index[nxt]
                inside = mask & (where >= 0)
                total += int(mask.sum())
                outside += int((mask & (where < 0)).sum())
                rows = np.nonzero(inside)[0]
                if rows.size:
                    ref_lp = log_softmax(ref_logits[:, ids])
                    own_lp = log_softmax(own_logits)
                    nll["ref"] -= float(ref_lp[rows, where[rows]].sum())
                    nll["own"] -= float(own_lp[rows, where[rows]].sum())
                    scored += int(rows.size)
        ref_ppl = math.exp(nll["ref"] / scored) if scored else float("nan")
        ppl = math.exp(nll["own"] / scored) if scored else float("nan")
        out[b.name] = ShortlistParity(size=int(len(ids)), vocab_size=vocab_size, targets_outside=outside,
                                      targets=total, reference_ppl=ref_ppl, ppl=ppl,
                                      ppl_ratio=ppl / ref_ppl if scored else float("nan"))
    return out

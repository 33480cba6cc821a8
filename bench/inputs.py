"""Inputs for the benchmark: eval windows in static batches, and synthetic inputs for timing.

TensorFlow-free. Windows are plain dicts of numpy arrays with a leading window axis:
``frames`` [N,k,S,S,3] float32, ``captions`` [N,k,L] int32, ``reason`` [N,R] int32 (models
with a reason encoder) and ``target`` [N,L] int32 framed ``[BOS] … [EOS]`` and ``[PAD]``-padded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from storyedge.macs import RealTokens
from storyedge.manifest import Manifest

ENCODER_INPUTS = ("frames", "captions", "reason")


def window_dict(windows: Any) -> dict[str, np.ndarray]:
    """Normalise the data layer's window arrays (object with attributes, or a mapping) to a dict."""
    out: dict[str, np.ndarray] = {}
    for key in (*ENCODER_INPUTS, "target"):
        value = windows.get(key) if isinstance(windows, dict) else getattr(windows, key, None)
        if value is not None:
            out[key] = np.asarray(value)
    missing = {"frames", "captions", "target"} - set(out)
    if missing:
        raise ValueError(f"window arrays lack {sorted(missing)}")
    return out


def num_windows(windows: dict[str, np.ndarray]) -> int:
    """How many windows the arrays hold."""
    return int(windows["target"].shape[0])


def iter_batches(
    windows: dict[str, np.ndarray], batch: int
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Yield (arrays of exactly ``batch`` rows, valid-row mask); the last batch is padded by
    repeating its last window (padded rows are masked out of every metric)."""
    n = num_windows(windows)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        index = np.arange(start, start + batch).clip(max=stop - 1)
        valid = np.arange(start, start + batch) < stop
        yield {k: v[index] for k, v in windows.items()}, valid


def encoder_feed(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The encoder's inputs from a batch of windows (drops ``target``)."""
    return {k: v for k, v in batch.items() if k in ENCODER_INPUTS}


def signature_shapes(manifest: Manifest) -> dict[str, dict[str, list[int]]]:
    """``{"encoder": {input: shape}, "decoder_step": {...}, "outputs": {output: shape}}`` from the
    manifest's first file carrying each signature."""
    shapes: dict[str, dict[str, list[int]]] = {"encoder": {}, "decoder_step": {}, "outputs": {}}
    for entry in manifest.files:
        for graph, sig in entry.signatures.items():
            if graph in ("encoder", "decoder_step") and not shapes[graph]:
                shapes[graph] = {t.name: list(t.shape) for t in sig.inputs}
                shapes["outputs"].update({t.name: list(t.shape) for t in sig.outputs})
    return shapes


def synthetic_inputs(
    manifest: Manifest, seed: int = 0, batch: int | None = None
) -> dict[str, np.ndarray]:
    """Random encoder inputs with the export's static shapes: frames uniform in [-1, 1) (the
    data pipeline's normalisation), each
    caption ``[BOS] w… [EOS]`` of random length with random in-vocabulary ids, then ``[PAD]``.

    Timing uses these for every backend, with or without a dataset. Only the real lengths of the
    captions and the reason can move a latency (TFLite's Bi-LSTM loops stop after the longest real
    token); the compute floor counts the same real tokens (:func:`real_tokens`).
    """
    rng = np.random.default_rng(seed)
    tok = manifest.tokenizer
    pad, bos, eos = int(tok["pad_id"]), int(tok["bos_id"]), int(tok["eos_id"])
    specials = {int(tok.get(k, -1)) for k in ("pad_id", "unk_id", "bos_id", "eos_id")}
    vocab = int(tok["vocab_size"])
    shapes = signature_shapes(manifest)["encoder"]
    b = batch or manifest.batch

    def words(n: int) -> np.ndarray:
        ids = rng.integers(0, vocab, size=n)
        for s in specials:
            ids[ids == s] = max(specials) + 1 if max(specials) + 1 < vocab else 1
        return ids

    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        shape = [b, *shape[1:]]
        if name == "frames":
            out[name] = rng.random(shape, dtype=np.float32) * 2 - 1
        elif name in ("captions", "reason"):
            arr = np.full(shape, pad, np.int32).reshape(-1, shape[-1])
            length = shape[-1]
            for row in arr:
                if name == "captions":
                    n = int(rng.integers(1, length - 1))
                    row[0], row[1 : 1 + n], row[1 + n] = bos, words(n), eos
                else:
                    n = int(rng.integers(1, length + 1))
                    row[:n] = words(n)
            out[name] = arr.reshape(shape)
    return out


def real_tokens(inputs: dict[str, np.ndarray], pad_id: int) -> RealTokens:
    """The real (non-pad) caption and reason tokens of encoder inputs (the Bi-LSTMs' work)."""
    count = {name: int((inputs[name] != pad_id).sum()) for name in ("captions", "reason") if name in inputs}
    return RealTokens(captions=count.get("captions"), reason=count.get("reason"))

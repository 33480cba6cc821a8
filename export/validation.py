"""Export-time validation: the TF reference vs each exported backend, on the same inputs.

Everything runs through the one backend interface of :mod:`storyedge.runtime`:
:class:`~storyedge.runtime.tf_reference.TFReferenceBackend` is the reference,
:func:`~storyedge.runtime.load_backend` runs the exported files. Graph outputs are compared by
name, and the decoder state is whatever the manifest's decoder declares.

Per backend two comparisons, so that a difference is attributed to the file that makes it:

* **encoder** — every encoder output (e.g. ``h0, c0, context``) vs the reference's.
* **decoder_step** — starting from the *reference* encoder state, the decoder is teacher-forced
  along the window's target caption (``[BOS] w… [EOS]``): the input token at step t is
  ``target[t]``, the recurrent state is the backend's own (so drift accumulates as it would
  when decoding). Every step output (e.g. ``logits, h_out, c_out``) is compared at every step whose next target token is
  not padding (the positions perplexity counts).

Reported per output: max |exported − reference| and the reference's max |value|.

Tolerances (a file passes when every output of its graph(s) is within): fp32 — ``atol``
absolute (default 1e-4, ``export.atol`` / ``--atol``). Quantized variants — ``atol × factor ×
max|reference output|`` (over the validation set), i.e. relative to the output's magnitude,
since quantization error scales with it; factors in :data:`TOLERANCE_FACTORS`, so at the
default atol: fp16 1 %, int8-dynamic 20 %, int8 and int4 60 % of the output's max magnitude
(int4: the trained quickstart decoder's ``h_out`` drifted by 0.42 of its magnitude through 4-bit
LSTM kernels, TFLite, while the logits stayed within 3 %).
``tolerances={precision: base}`` replaces a precision's ``atol × factor``.

Measured max |diff| / max |reference| (worst output; tiny random-init test model / trained
quickstart model / seed-size random-init model): fp16 4e-4 / 3e-3 / 2e-3; TFLite int8-dynamic
1e-2 / 0.04 / 0.04; ONNX int8-dynamic 0.02 / 0.09 / 0.06; full int8 0.24 (up to 0.5 on other
tiny models) / 0.26 / 0.08 (the encoder's h0 / c0 / context and h_out; logits 0.05 / 0.014 /
0.04). Full int8 is a coarse check: the int8 LSTM recurrence and activations outside the
calibrated range (the temporal LSTM's input) dominate; the bench's perplexity gates judge it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from storyedge.runtime.backend import Backend

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.config import Config
    from storyedge.data.pipeline import WindowArrays

#: Quantized tolerance = atol × factor × max|reference| (see the module docstring).
TOLERANCE_FACTORS: dict[str, float] = {"fp32": 1.0, "fp16": 100.0, "int8-dynamic": 2000.0, "int8": 6000.0,
                                        "int4": 6000.0}
#: Floor of max|reference| in the relative rule (an all-zero output must still match closely).
MIN_REFERENCE_SCALE = 1e-3


@dataclass
class ValidationSet:
    """Encoder inputs and target captions in batches of the export's static batch size."""

    batches: list[dict[str, np.ndarray]]
    targets: list[np.ndarray]
    #: "validation split" or "synthetic random inputs"
    data: str
    windows: int

    def __len__(self) -> int:
        return len(self.batches)


def _batched(arrays: dict[str, np.ndarray], target: np.ndarray, batch: int) -> tuple[list, list]:
    n = target.shape[0]
    if n < batch:  # repeat windows to fill one batch
        index = np.resize(np.arange(n), batch)
        arrays = {k: v[index] for k, v in arrays.items()}
        target = target[index]
        n = batch
    batches, targets = [], []
    for start in range(0, n - batch + 1, batch):
        batches.append({k: np.ascontiguousarray(v[start:start + batch]) for k, v in arrays.items()})
        targets.append(np.ascontiguousarray(target[start:start + batch]))
    return batches, targets


def from_windows(
    windows: "WindowArrays", config: "Config", batch: int, count: int, start: int = 0
) -> ValidationSet:
    """``count`` windows from ``start`` (wrapping around when the split is smaller)."""
    # lazy: storyedge.model imports TensorFlow (this module stays importable without it)
    from storyedge.model.signatures import encoder_input_names

    total = len(windows)
    if total == 0:
        raise ValueError("no validation windows")
    index = (start + np.arange(count)) % total
    names = encoder_input_names(config)
    full = {"frames": windows.frames, "captions": windows.captions, "reason": windows.reason}
    arrays = {
        name: np.asarray(full[name][index], np.float32 if name == "frames" else np.int32)
        for name in names
    }
    batches, targets = _batched(arrays, np.asarray(windows.target[index], np.int32), batch)
    return ValidationSet(batches, targets, "validation split", count)


def synthetic_set(
    config: "Config",
    vocab_size: int,
    special: dict[str, int],
    batch: int,
    count: int,
    seed: int = 0,
) -> ValidationSet:
    """Random inputs with the right shapes: frames uniform in [-1, 1) (the pipeline's range),
    captions / targets ``[BOS] w… [EOS] [PAD]…`` of random length with random ordinary ids."""
    rng = np.random.default_rng(seed)
    d = config.dataset
    pad, bos, eos = special["pad_id"], special["bos_id"], special["eos_id"]
    specials = {v for k, v in special.items() if k.endswith("_id")}
    ordinary = np.array([i for i in range(vocab_size) if i not in specials], np.int32)
    if ordinary.size == 0:
        ordinary = np.array([pad], np.int32)

    def caption(length: int, framed: bool) -> np.ndarray:
        row = np.full(length, pad, np.int32)
        body = length - 2 if framed else length
        n = int(rng.integers(1, max(1, body) + 1))
        words = rng.choice(ordinary, size=n)
        if framed:
            row[0], row[1:n + 1], row[n + 1] = bos, words, eos
        else:
            row[:n] = words
        return row

    k, size, L, R = d.seq_len, d.image_size, d.max_caption_len, d.max_reason_len
    arrays: dict[str, np.ndarray] = {
        "frames": (rng.random((count, k, size, size, 3), dtype=np.float32) * 2 - 1).astype(np.float32),
        "captions": np.stack([np.stack([caption(L, True) for _ in range(k)]) for _ in range(count)]),
    }
    if config.model.use_reason:
        arrays["reason"] = np.stack([caption(R, False) for _ in range(count)])
    target = np.stack([caption(L, True) for _ in range(count)])
    batches, targets = _batched(arrays, target, batch)
    return ValidationSet(batches, targets, "synthetic random inputs", count)


# ------------------------------------------------------------------------------ reference runs


@dataclass
class Trace:
    """A backend's outputs over a :class:`ValidationSet`."""

    encoder: list[dict[str, np.ndarray]] = field(default_factory=list)
    #: per batch, per step: the decoder step's outputs by name
    steps: list[list[dict[str, np.ndarray]]] = field(default_factory=list)


def run_trace(
    backend: Backend,
    vset: ValidationSet,
    initial_states: list[dict[str, np.ndarray]] | None = None,
    encoder: bool = True,
    decoder: bool = True,
) -> Trace:
    """Encode every batch and teacher-force the decoder along its target.

    ``initial_states``: decoder start states per batch (the reference's), else the backend's own
    encoder output.
    """
    trace = Trace()
    for i, (inputs, target) in enumerate(zip(vset.batches, vset.targets)):
        state = None
        if encoder:
            outputs = backend.run_encoder(inputs)
            trace.encoder.append(outputs)
            state = backend.decoder.initial_state(outputs)
        if not decoder:
            continue
        if initial_states is not None:
            state = dict(initial_states[i])
        assert state is not None
        steps = []
        for t in range(target.shape[1] - 1):
            token = np.ascontiguousarray(target[:, t]).astype(np.int32)
            outputs = backend.run_step({backend.decoder.token: token, **state})
            state = backend.decoder.advance(state, outputs)
            steps.append(outputs)
        trace.steps.append(steps)
    return trace


def reference_states(reference: Backend, trace: Trace) -> list[dict[str, np.ndarray]]:
    """Decoder start states from a reference trace's encoder outputs."""
    return [reference.decoder.initial_state(e) for e in trace.encoder]


# ------------------------------------------------------------------------------ comparison


@dataclass
class Comparison:
    """Max |diff| and reference magnitude per output, plus shape problems."""

    max_abs_diff: dict[str, float] = field(default_factory=dict)
    ref_max_abs: dict[str, float] = field(default_factory=dict)
    shape_errors: list[str] = field(default_factory=list)
    #: the runtime failed to load / run the graph (nothing compared)
    errors: list[str] = field(default_factory=list)
    steps: int = 0

    def _update(self, name: str, ref: np.ndarray, got: np.ndarray, mask: np.ndarray | None) -> None:
        ref = np.asarray(ref)
        got = np.asarray(got)
        if ref.shape != got.shape:
            msg = f"{name}: shape {list(got.shape)} != reference {list(ref.shape)}"
            if msg not in self.shape_errors:
                self.shape_errors.append(msg)
            return
        if mask is not None:
            ref, got = ref[mask], got[mask]
        if ref.size == 0:
            return
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        if not np.isfinite(diff):
            diff = float("inf")
        self.max_abs_diff[name] = max(self.max_abs_diff.get(name, 0.0), diff)
        self.ref_max_abs[name] = max(self.ref_max_abs.get(name, 0.0), float(np.max(np.abs(ref))))


def compare_encoder(reference: Trace, candidate: Trace) -> Comparison:
    """Encoder outputs, every batch."""
    result = Comparison()
    for ref, got in zip(reference.encoder, candidate.encoder):
        for name in ref:
            result._update(name, ref[name], got.get(name, np.empty(0)), None)
    return result


def compare_decoder(reference: Trace, candidate: Trace, vset: ValidationSet, pad_id: int) -> Comparison:
    """Decoder-step outputs at the steps whose next target token is not padding."""
    result = Comparison()
    for ref_steps, got_steps, target in zip(reference.steps, candidate.steps, vset.targets):
        for t, (ref, got) in enumerate(zip(ref_steps, got_steps)):
            rows = target[:, t + 1] != pad_id
            if not rows.any():
                continue
            result.steps += 1
            for name in ref:
                result._update(name, ref[name], got.get(name, np.empty(0)), rows)
    return result


def base_tolerance(precision: str, atol: float, tolerances: dict[str, float] | None = None) -> float:
    """``tolerances[precision]`` when given, else ``atol × TOLERANCE_FACTORS[precision]``."""
    base = (tolerances or {}).get(precision)
    return float(base) if base is not None else atol * TOLERANCE_FACTORS.get(precision, 1.0)


def tolerance_for(precision: str, atol: float, ref_max_abs: float, tolerances: dict[str, float] | None = None) -> float:
    """The tolerance of one output (see the module docstring)."""
    base = base_tolerance(precision, atol, tolerances)
    if precision == "fp32":
        return float(base)
    return float(base * max(MIN_REFERENCE_SCALE, ref_max_abs))


def judge(
    comparisons: list[Comparison],
    precision: str,
    atol: float,
    tolerances: dict[str, float] | None,
    vset: ValidationSet,
) -> dict[str, Any]:
    """The manifest's ``validation`` record of a file from its graph(s)' comparisons."""
    diffs: dict[str, float] = {}
    refs: dict[str, float] = {}
    shape_errors: list[str] = []
    errors: list[str] = []
    steps = 0
    for comparison in comparisons:
        diffs.update(comparison.max_abs_diff)
        refs.update(comparison.ref_max_abs)
        shape_errors += comparison.shape_errors
        errors += comparison.errors
        steps += comparison.steps
    tol = {name: tolerance_for(precision, atol, refs.get(name, 0.0), tolerances) for name in diffs}
    failing = sorted(name for name in diffs if not diffs[name] <= tol[name])
    passed = not failing and not shape_errors and not errors and bool(diffs)
    record: dict[str, Any] = {
        "passed": passed,
        "max_abs_diff": {k: _round(v) for k, v in diffs.items()},
        "tolerance": {k: _round(v) for k, v in tol.items()},
        "reference_max_abs": {k: _round(v) for k, v in refs.items()},
        "atol": atol,
        "rule": "max|diff| <= tolerance (absolute)" if precision == "fp32"
        else "max|diff| <= base x max|reference|",
        "base": _round(base_tolerance(precision, atol, tolerances)),
        "windows": vset.windows,
        "decoder_steps": steps,
        "data": vset.data,
    }
    if failing:
        record["failing_outputs"] = failing
    if shape_errors:
        record["shape_errors"] = shape_errors
    if errors:
        record["errors"] = errors
    return record


def _round(value: float) -> float:
    return float(f"{value:.6g}")

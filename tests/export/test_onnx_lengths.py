"""The ONNX Bi-LSTM nodes run each row for its real tokens (export.onnx_lengths) and change no output."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from storyedge.export.onnx_lengths import PREFIX  # noqa: E402
from storyedge.manifest import read_manifest  # noqa: E402


def lstm_lengths(path: Path) -> list[str]:
    """The ``sequence_lens`` input of every LSTM node of ``path`` ('' where none)."""
    graph = onnx.load(str(path)).graph
    return sorted(n.input[4] if len(n.input) > 4 else "" for n in graph.node if n.op_type.endswith("LSTM"))


@pytest.mark.parametrize(("name", "want"), [
    # captions' and reason's two directions each; the temporal LSTM (frames and captions) runs in full
    ("encoder.fp32.onnx", ["", *[f"{PREFIX}_captions_lengths"] * 2, *[f"{PREFIX}_reason_lengths"] * 2]),
    ("encoder.int8-dynamic.onnx", ["", *[f"{PREFIX}_captions_lengths"] * 2, *[f"{PREFIX}_reason_lengths"] * 2]),
    ("encoder.fp16.onnx", ["", *[f"{PREFIX}_captions_lengths"] * 2, *[f"{PREFIX}_reason_lengths"] * 2]),
    ("frame_encoder.fp32.onnx", [f"{PREFIX}_caption_lengths"] * 2),
    ("reason_encoder.fp32.onnx", [f"{PREFIX}_reason_lengths"] * 2),
    ("story_encoder.fp32.onnx", [""]),
])
def test_every_bi_lstm_direction_gets_its_rows_real_token_counts(full_export: Path, name: str, want: list[str]) -> None:
    assert lstm_lengths(full_export / "onnx" / name) == want


def session(proto) -> "ort.InferenceSession":
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def test_bounded_nodes_give_the_padded_nodes_outputs(full_export: Path, export_env) -> None:
    proto = onnx.load(str(full_export / "onnx" / "encoder.fp32.onnx"))
    padded = copy.deepcopy(proto)
    for node in padded.graph.node:
        if node.op_type == "LSTM" and len(node.input) > 4:
            node.input[4] = ""
    d, pad = export_env.config.dataset, read_manifest(full_export).tokenizer["pad_id"]
    rng = np.random.default_rng(0)
    captions = rng.integers(4, 100, (1, d.seq_len, d.max_caption_len)).astype(np.int32)
    for row, n in zip(captions[0], [3, 0]):  # a short caption and an all-pad one
        row[n:] = pad
    reason = rng.integers(4, 100, (1, d.max_reason_len)).astype(np.int32)
    reason[0, 2:] = pad
    feeds = {"frames": rng.random((1, d.seq_len, d.image_size, d.image_size, 3), np.float32),
             "captions": captions, "reason": reason}
    bounded_out, padded_out = session(proto).run(None, feeds), session(padded).run(None, feeds)
    for a, b in zip(bounded_out, padded_out):
        assert np.isfinite(a).all() and np.abs(a - b).max() < 1e-6
    probe = copy.deepcopy(proto)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(f"{PREFIX}_captions_lengths", onnx.TensorProto.INT32, None))
    lengths = session(probe).run([f"{PREFIX}_captions_lengths"], feeds)[0]
    assert lengths.tolist() == [3, 1]  # the all-pad row runs one step, which the model masks

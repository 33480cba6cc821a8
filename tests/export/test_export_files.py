"""The full export (every format x quantization), made once per session: files, ops, manifest,
validation numbers (from the manifest and recomputed through the backends)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from storyedge.errors import UserError
from storyedge.manifest import read_manifest, sha256_file, verify_files
from storyedge.runtime import backend_specs

ALL_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8", "int4")
ONNX_PRECISIONS = ALL_PRECISIONS
STORY_GRAPHS = ("reason_encoder", "frame_encoder", "story_encoder")
FRAME_STORY = "frame_story_encoder"  # a signature of the TFLite story file, an ONNX file of its own
#: Every file the full export lists: 3 TFLite graphs + the story-mode file x 5 precisions, 2 ONNX
#: graphs + 3 story-mode graphs + the frame + story graph x 5.
TFLITE_FILES = {f"tflite/{g}.{p}.tflite" for g in ("encoder", "decoder_step", "multi", "story") for p in ALL_PRECISIONS}
ONNX_FILES = {f"onnx/{g}.{p}.onnx" for g in ("encoder", "decoder_step", *STORY_GRAPHS, FRAME_STORY)
              for p in ONNX_PRECISIONS}
ALL_FILES = TFLITE_FILES | ONNX_FILES


@pytest.fixture(scope="module")
def manifest(full_export: Path):
    return read_manifest(full_export)


def test_layout_and_manifest(full_export: Path, manifest, export_env) -> None:
    assert (full_export / "tokenizer" / "tokenizer.json").is_file()
    assert (full_export / "reference" / "model.weights.h5").is_file()
    assert (full_export / "reference" / "config.yaml").read_text() == (
        export_env.run_dir / "best" / "config.yaml"
    ).read_text()
    assert manifest.reference == {"weights": "reference/model.weights.h5", "config": "reference/config.yaml"}
    assert not manifest.rejected and not (full_export / "rejected").exists()
    assert not list(full_export.parent.glob("full.tmp-*"))
    assert len(ALL_FILES) == 50 and {f.path for f in manifest.files} == ALL_FILES
    assert {(f.format, f.graph, f.precision) for f in manifest.files} == {
        ("tflite", g, p) for g in ("encoder", "decoder_step", "multi", "story") for p in ALL_PRECISIONS
    } | {("onnx", g, p) for g in ("encoder", "decoder_step", *STORY_GRAPHS, FRAME_STORY) for p in ONNX_PRECISIONS}
    top = ["manifest.json", "onnx", "reference", "tflite", "tokenizer"]
    assert sorted(p.name for p in full_export.iterdir()) == top
    on_disk = {f"{d}/{p.name}" for d in ("tflite", "onnx") for p in (full_export / d).iterdir()}
    assert on_disk == ALL_FILES  # no scratch files (SavedModels, unlisted fp32 ONNX) left
    assert "skipped" not in manifest.source  # every precision on both runtimes
    for key in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "storyedge"):
        assert manifest.versions[key]
    tok = manifest.tokenizer
    assert tok["dir"] == "tokenizer" and len(tok["fingerprint"]) == 64
    assert {"pad_id", "unk_id", "bos_id", "eos_id", "vocab_size"} <= set(tok)
    assert manifest.config["model"]["use_reason"] is True
    assert manifest.source["checkpoint"].endswith("best")
    assert manifest.source["validation"]["data"] == "validation split"
    assert manifest.batch == 1
    assert set(manifest.multi_vs_separate) == {f"tflite-{p}" for p in ALL_PRECISIONS}
    for cmp in manifest.multi_vs_separate.values():
        assert cmp["multi_bytes"] < cmp["separate_bytes"] * 1.05


def test_signatures_are_static_and_named(manifest) -> None:
    cfg = manifest.config
    H, V = cfg["model"]["decoder_hidden_dim"], manifest.tokenizer["vocab_size"]
    d = cfg["dataset"]
    assert {e.path for e in manifest.files} == ALL_FILES
    seen = {"encoder": 0, "decoder_step": 0}
    multi = {"multi": {"encoder", "decoder_step"}, "story": {*STORY_GRAPHS, FRAME_STORY}}
    for entry in manifest.files:
        assert set(entry.signatures) == multi.get(entry.graph, {entry.graph})
        for graph, sig in entry.signatures.items():
            if graph in (*STORY_GRAPHS, FRAME_STORY):
                continue  # tests/export/test_export_story.py

            seen[graph] += 1
            ins = {t.name: (t.shape, t.dtype) for t in sig.inputs}
            outs = {t.name: (t.shape, t.dtype) for t in sig.outputs}
            if graph == "encoder":
                assert ins == {
                    "frames": ([1, d["seq_len"], d["image_size"], d["image_size"], 3], "float32"),
                    "captions": ([1, d["seq_len"], d["max_caption_len"]], "int32"),
                    "reason": ([1, d["max_reason_len"]], "int32"),
                }
                assert list(outs) == ["h0", "c0", "context_gates"] and outs["h0"] == ([1, H], "float32")
            else:
                assert list(ins) == ["token", "h", "c", "context_gates"] and ins["token"] == ([1], "int32")
                assert list(outs) == ["logits", "h_out", "c_out"] and outs["logits"] == ([1, V], "float32")
    assert seen == {"encoder": 5 * 2 + 5, "decoder_step": 5 * 2 + 5}  # separate + multi per precision


def test_hashes_match(full_export: Path, manifest) -> None:
    assert {e.path for e in manifest.files} == ALL_FILES
    for entry in manifest.files:
        path = full_export / entry.path
        assert path.stat().st_size == entry.size_bytes
        assert sha256_file(path) == entry.sha256
    verify_files(full_export, manifest)


def test_corrupted_and_truncated_files_are_detected(full_export: Path, manifest, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(full_export, copy)
    target = next(f for f in manifest.files if f.graph == "decoder_step" and f.format == "tflite")
    path = copy / target.path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="size"):
        verify_files(copy, manifest)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(UserError, match="sha256"):
        verify_files(copy, manifest)
    path.unlink()
    with pytest.raises(UserError, match="missing"):
        verify_files(copy, manifest)


def test_tflite_builtins_only(full_export: Path, manifest) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from storyedge.export.tflite import inspect_tflite

    tflite = [f for f in manifest.files if f.format == "tflite"]
    assert {f.path for f in tflite} == TFLITE_FILES
    for entry in tflite:
        path = full_export / entry.path
        names = {op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details()}
        assert not [n for n in names if n.startswith("Flex")], entry.path
        info = inspect_tflite(path.read_bytes())
        assert info.custom_ops == [], entry.path
        assert not [op for op in info.ops if op.startswith("Flex")]
        assert entry.ops == info.ops
        if entry.precision == "int8":
            # full integer: the heavy ops run in int8, inside the LSTM loops too; what stayed float
            # is recorded (the loops, whose carried state the quantizer leaves float, and data moves)
            assert info.quantized_ops.get("FULLY_CONNECTED", 0) > 0
            assert entry.float_ops == sorted(info.float_ops)
            assert "FULLY_CONNECTED" not in entry.float_ops
            if entry.graph in ("encoder", "story"):  # the step's cell stays float by design
                assert not set(entry.float_ops) & {"CONV_2D", "LOGISTIC", "TANH", "MUL", "ADD"}
                # the products of two activations stay float (LiteRT's int8 kernel is the slower)
                assert "BATCH_MATMUL" in entry.float_ops and "BATCH_MATMUL" not in info.quantized_ops
        if entry.graph not in ("decoder_step", "story"):
            assert "WHILE" in info.ops  # LSTM loops as builtin WHILE
        elif entry.graph == "story":
            # the encoder's 5 LSTM loops split over the signatures, and the frame + story graph's 3 again
            assert info.ops.get("WHILE", 0) == 5 + 3
        if entry.precision != "int8":
            assert entry.float_ops == []


def test_onnx_checker_lstm_nodes_no_leftovers(full_export: Path, manifest) -> None:
    import onnx
    import onnxruntime as ort

    from storyedge.export.onnx_export import onnx_ops

    onnx_files = [f for f in manifest.files if f.format == "onnx"]
    assert {f.path for f in onnx_files} == ONNX_FILES
    for entry in onnx_files:
        model = onnx.load(str(full_export / entry.path))
        onnx.checker.check_model(model, full_check=True)
        ops = onnx_ops(model)
        assert ops == entry.ops
        assert not [op for op in ops if "TensorList" in op or op.endswith(("Loop", "Scan"))], ops
        int8_lstms = entry.precision in ("int8-dynamic", "int8")  # static int8 too: ONNX Runtime has no QDQ LSTM
        lstm = ops.get("com.microsoft.DynamicQuantizeLSTM" if int8_lstms else "LSTM", 0)
        # caption fwd/bwd + reason fwd/bwd + temporal: five Keras LSTM layers, split in story mode
        lstms = {"encoder": 5, "frame_encoder": 2, "reason_encoder": 2, "story_encoder": 1, FRAME_STORY: 3}
        assert lstm == lstms.get(entry.graph, 0), ops
        if entry.graph == "decoder_step":  # the token's embedding: one Gather of the input, nothing before it
            assert "Less" not in ops and "token" in {n.input[1] for n in model.graph.node if n.op_type == "Gather"}
        assert [i.name for i in model.graph.input] == [t.name for t in entry.signatures[entry.graph].inputs]
        assert [o.name for o in model.graph.output] == [t.name for t in entry.signatures[entry.graph].outputs]
        ort.InferenceSession(str(full_export / entry.path), providers=["CPUExecutionProvider"])


def test_manifest_validation_within_tolerance(manifest) -> None:
    assert {e.path for e in manifest.files} == ALL_FILES and manifest.rejected == []
    for entry in manifest.files:
        v = entry.validation
        assert v["passed"] is True, (entry.path, v)
        assert v["windows"] == 4
        assert (v["decoder_steps"] > 0) == (entry.graph in ("decoder_step", "multi"))
        outputs = {"encoder": {"h0", "c0", "context_gates"}, "decoder_step": {"logits", "h_out", "c_out"}}
        outputs.update({g: outputs["encoder"] for g in (*STORY_GRAPHS, FRAME_STORY, "story")})
        want = outputs.get(entry.graph, outputs["encoder"] | outputs["decoder_step"])
        assert set(v["max_abs_diff"]) == want
        for name, diff in v["max_abs_diff"].items():
            assert diff <= v["tolerance"][name]
        if entry.precision == "fp32":
            assert max(v["max_abs_diff"].values()) < 1e-4


def _reference(export_dir: Path, manifest):
    from storyedge.runtime.tf_reference import TFReferenceBackend
    from storyedge.config import config_from_dict
    from storyedge.model.story_model import build_model

    cfg = config_from_dict(manifest.config)
    model = build_model(cfg, manifest.tokenizer["vocab_size"], manifest.tokenizer["pad_id"])
    model.load_weights(str(export_dir / manifest.reference["weights"]))
    return cfg, TFReferenceBackend(model, manifest.batch)


def test_validation_recomputed_through_backends(full_export: Path, manifest, export_env) -> None:
    """Re-run every backend (separate pairs and multi files) on validation windows."""
    from storyedge.runtime import load_backend
    from storyedge.export.exporter import load_validation_windows
    from storyedge.export.validation import tolerance_for
    from storyedge.tokenizer import StoryTokenizer

    cfg, reference = _reference(full_export, manifest)
    tokenizer = StoryTokenizer.load(full_export / "tokenizer")
    windows = load_validation_windows(export_env.config, tokenizer, 2)
    pad = tokenizer.pad_id
    specs = backend_specs(full_export, manifest)
    assert {s.name for s in specs} == {f"tflite-{p}" for p in ALL_PRECISIONS} | {
        f"tflite-{p}-multi" for p in ALL_PRECISIONS
    } | {f"onnx-{p}" for p in ONNX_PRECISIONS}
    assert len(specs) == 15
    results: dict[str, dict[str, float]] = {}
    for spec in specs:
        backend = load_backend(spec, threads=1)
        worst: dict[str, float] = {}
        ref_max: dict[str, float] = {}
        for i in range(len(windows)):
            inputs = {"frames": windows.frames[i:i + 1], "captions": windows.captions[i:i + 1],
                      "reason": windows.reason[i:i + 1]}
            ref_state = reference.encode(inputs)
            state = backend.encode(inputs)
            for name, key in (("h0", "h"), ("c0", "c"), ("context_gates", "context_gates")):
                assert state[key].shape == ref_state[key].shape
                worst[name] = max(worst.get(name, 0.0), float(np.abs(state[key] - ref_state[key]).max()))
                ref_max[name] = max(ref_max.get(name, 0.0), float(np.abs(ref_state[key]).max()))
            target = windows.target[i:i + 1]
            ref_s, got_s = ref_state, dict(ref_state)
            for t in range(target.shape[1] - 1):
                if target[0, t + 1] == pad:
                    break
                ref_logits, ref_s = reference.step(target[:, t], ref_s)
                logits, got_s = backend.step(target[:, t], got_s)
                assert logits.shape == ref_logits.shape == (1, manifest.tokenizer["vocab_size"])
                worst["logits"] = max(worst.get("logits", 0.0), float(np.abs(logits - ref_logits).max()))
                ref_max["logits"] = max(ref_max.get("logits", 0.0), float(np.abs(ref_logits).max()))
        atol = manifest.files[0].validation["atol"]
        for name, diff in worst.items():
            assert diff <= tolerance_for(spec.precision, atol, ref_max[name]), (spec.name, name, diff)
        assert set(worst) == {"h0", "c0", "context_gates", "logits"}, spec.name
        results[spec.name] = worst
    # the multi-signature file (merged from the two separate files) computes what they compute
    for p in ALL_PRECISIONS:
        for name in ("h0", "context_gates", "logits"):
            assert results[f"tflite-{p}-multi"][name] == results[f"tflite-{p}"][name]


def test_multi_signature_file_runs_both_signatures(full_export: Path, manifest) -> None:
    from storyedge.runtime.litert import TFLiteBackend

    specs = {s.name: s for s in backend_specs(full_export, manifest)}
    multi = TFLiteBackend(specs["tflite-fp32-multi"], threads=1)
    separate = TFLiteBackend(specs["tflite-fp32"], threads=1)
    assert specs["tflite-fp32-multi"].encoder_path == specs["tflite-fp32-multi"].decoder_path
    cfg = manifest.config
    rng = np.random.default_rng(3)
    d = cfg["dataset"]
    inputs = {
        "frames": rng.random((1, d["seq_len"], d["image_size"], d["image_size"], 3), dtype=np.float32),
        "captions": rng.integers(5, 50, (1, d["seq_len"], d["max_caption_len"])).astype(np.int32),
        "reason": rng.integers(5, 50, (1, d["max_reason_len"])).astype(np.int32),
    }
    a, b = multi.encode(inputs), separate.encode(inputs)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    token = np.array([manifest.tokenizer["bos_id"]], np.int32)
    for _ in range(3):
        la, a = multi.step(token, a)
        lb, b = separate.step(token, b)
        np.testing.assert_array_equal(la, lb)
        token = la.argmax(-1).astype(np.int32)


@pytest.mark.parametrize("precision", ["int8-dynamic", "int8"])
def test_litert_runs_once_a_caption_graphs_compiled_and_the_step_interpreted(
        full_export: Path, manifest, precision: str) -> None:
    from storyedge.runtime.litert import TFLiteBackend
    from storyedge.runtime.litert_compiled import CompiledSignature, compiled_model_available
    from storyedge.runtime.litert_signature import FastSignature
    from storyedge.runtime.story import story_window_outputs

    if not compiled_model_available():
        pytest.skip("this ai-edge-litert has no CompiledModel")
    spec = {s.name: s for s in backend_specs(full_export, manifest)}[f"tflite-{precision}-multi"]
    compiled, interpreted = TFLiteBackend(spec, threads=1), TFLiteBackend(spec, threads=1, compiled=False)
    assert isinstance(compiled._encoder, CompiledSignature) and isinstance(compiled._decoder, FastSignature)
    assert isinstance(interpreted._encoder, FastSignature)
    d = manifest.config["dataset"]
    rng = np.random.default_rng(5)
    inputs = {
        "frames": rng.random((1, d["seq_len"], d["image_size"], d["image_size"], 3), dtype=np.float32),
        "captions": rng.integers(5, 50, (1, d["seq_len"], d["max_caption_len"])).astype(np.int32),
        "reason": rng.integers(5, 50, (1, d["max_reason_len"])).astype(np.int32),
    }
    # int8-dynamic: the same float math on the same weights, packed once or per op, bit for bit;
    # full int8: the two set-ups' integer kernels may round an output one quantization step apart,
    # and the LSTM loops carry such a step on through the time steps (3 steps of 1/128 seen)
    atol = 0.0 if precision == "int8-dynamic" else 4 / 128
    a, b = compiled.encode(inputs), interpreted.encode(inputs)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=atol)
    for one_call in (True, False):  # reason, frame and frame + story graphs; reason, frame and story graphs
        a, b = story_window_outputs(compiled, inputs, one_call), story_window_outputs(interpreted, inputs, one_call)
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=atol)
    assert set(compiled._story_runners) == {*STORY_GRAPHS, FRAME_STORY}
    assert all(isinstance(r, CompiledSignature) for r in compiled._story_runners.values())


def test_table_as_text_and_markdown(manifest) -> None:
    from storyedge.export.report import HEADERS, format_markdown, format_table, summary_lines

    summary = summary_lines(manifest)
    assert len(summary) == 5 + 1  # multi vs separate per TFLite precision, validation data (nothing skipped)
    text = format_table(manifest).splitlines()
    assert text[0].split("  ")[0] == "file" and all(h in text[0] for h in HEADERS)
    assert set(text[1]) == {"-", " "}
    rows = text[2:2 + len(ALL_FILES)]
    assert {r.split()[0] for r in rows} == ALL_FILES and {r.split()[-1] for r in rows} == {"ok"}
    starts = [text[0].index(h) for h in HEADERS]
    for row in rows:  # every cell starts under its header
        for start in starts[1:]:
            assert row[start - 2:start] == "  " and row[start] != " ", (row, start)
    assert text[2 + len(ALL_FILES):] == summary
    assert all(line == line.rstrip() for line in text)
    header_only = format_table(manifest, only_rejected=True).splitlines()  # nothing rejected
    assert len(header_only) == 2 and header_only[0].split() == text[0].split() and set(header_only[1]) == {"-", " "}

    md = format_markdown(manifest).splitlines()
    assert md[0].startswith("| file ") and "max \\|diff\\|" in md[0]
    assert set(md[1]) <= set("|-:")
    md_rows = md[2:2 + len(ALL_FILES)]
    assert {r.split("|")[1].strip() for r in md_rows} == ALL_FILES
    assert all(r.replace("\\|", "").count("|") == len(HEADERS) + 1 for r in md_rows)
    assert md[2 + len(ALL_FILES):] == ["", *(f"- {line}" for line in summary)]

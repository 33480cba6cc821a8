"""Story mode in the full export: the graphs the manifest declares, their parity with the
full-window encoder (< 1e-5 at fp32), ``generate --story`` and the bench's story-mode latency."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from storyedge.app.cli import main
from storyedge.constants import STORY_PARITY_ATOL
from storyedge.manifest import read_manifest
from storyedge.runtime import StoryEncoder, backend_specs, greedy_decode, load_backend, story_window_outputs
from storyedge.runtime.story import caption_story

STORY_GRAPHS = ["reason_encoder", "frame_encoder", "story_encoder"]
#: the frame and story graphs in one call (a TFLite signature, an ONNX file)
FRAME_STORY = "frame_story_encoder"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture(scope="module")
def manifest(full_export: Path):
    return read_manifest(full_export)


def _windows(full_export: Path, export_env, count: int):
    from storyedge.export.exporter import load_validation_windows
    from storyedge.tokenizer import StoryTokenizer

    return load_validation_windows(export_env.config, StoryTokenizer.load(full_export / "tokenizer"), count)


def test_manifest_declares_story_graphs_builtins_only(full_export: Path, manifest) -> None:
    from storyedge.export.tflite import inspect_tflite

    story = manifest.story
    assert story is not None and story.graphs == STORY_GRAPHS and story.window == manifest.config["dataset"]["seq_len"]
    assert story.frame_inputs == {"frame": "frames", "caption": "captions"} and story.story_reason == "reason_heads"
    assert story.frame_story_graph == FRAME_STORY and story.all_graphs == STORY_GRAPHS + [FRAME_STORY]
    files = [f for f in manifest.files if set(f.signatures) & set(STORY_GRAPHS)]
    precisions = ("fp32", "fp16", "int8-dynamic", "int8", "int4")
    assert {(f.format, f.precision) for f in files} == {(fmt, p) for fmt in ("tflite", "onnx") for p in precisions}
    for entry in files:
        assert entry.coverage is not None and entry.coverage.count("float") + entry.coverage.count("fp16") > 0
        if entry.format == "onnx" and entry.precision == "int8":  # calibrated on the story graphs' own feeds
            note = next(n for n in entry.coverage.notes if n.startswith("static int8 calibrated on "))
            assert int(note.split()[4]) > 0, note
        assert set(entry.signatures) == ({*STORY_GRAPHS, FRAME_STORY} if entry.format == "tflite" else {entry.graph})
        v = entry.validation
        assert v["passed"] is True, (entry.path, v)
        assert max(v["reference_story_vs_full_window"].values()) < STORY_PARITY_ATOL
        if entry.precision == "fp32":
            assert max(v["story_vs_full_window"].values()) < STORY_PARITY_ATOL, entry.path
        if entry.format == "tflite":
            info = inspect_tflite((full_export / entry.path).read_bytes())
            assert info.custom_ops == [] and not [op for op in info.ops if op.startswith("Flex")]
    sig = next(f for f in files if f.format == "tflite").signatures
    assert [t.name for t in sig["story_encoder"].inputs] == ["fused_frames", "reason_heads"]
    assert [t.name for t in sig["story_encoder"].outputs] == ["h0", "c0", "context_gates"]
    assert [t.name for t in sig["frame_encoder"].outputs] == ["fused_frame"]
    assert [t.name for t in sig[FRAME_STORY].inputs] == ["frame", "caption", "earlier_fused_frames", "reason_heads"]
    assert [t.name for t in sig[FRAME_STORY].outputs] == ["fused_frame", "h0", "c0", "context_gates"]
    assert [t.name for t in sig["reason_encoder"].outputs] == ["reason_vector", "reason_heads"]


def test_story_state_equals_full_window_state(full_export: Path, manifest, export_env) -> None:
    """fp32 TFLite and ONNX: the decoder state story mode starts from is the full window's."""
    windows = _windows(full_export, export_env, 3)
    specs = {s.name: s for s in backend_specs(full_export, manifest)}
    assert all(specs[f"{fmt}-{p}"].story is not None for fmt in ("tflite", "onnx")
               for p in ("fp32", "fp16", "int8-dynamic", "int8", "int4"))
    assert specs["tflite-fp32-multi"].story is not None
    assert specs["tflite-fp32"].story.frame_story_graph == FRAME_STORY
    assert specs["onnx-fp32"].story.frame_story_graph == FRAME_STORY
    for name in ("tflite-fp32", "onnx-fp32"):
        backend = load_backend(specs[name], threads=1)
        for i in range(len(windows)):
            inputs = {"frames": windows.frames[i:i + 1], "captions": windows.captions[i:i + 1],
                      "reason": windows.reason[i:i + 1]}
            full = backend.encode(inputs)
            for one_call in (True, False):
                story = backend.decoder.initial_state(story_window_outputs(backend, inputs, one_call))
                for key in full:
                    assert np.max(np.abs(story[key] - full[key])) < STORY_PARITY_ATOL, (name, key, one_call)


@pytest.mark.parametrize("name", ["tflite-fp32", "onnx-int8"])
def test_next_frame_is_one_runtime_call(name: str, full_export: Path, manifest, export_env) -> None:
    """Once k-1 frames are cached, a new frame and the window's story outputs are one call of
    the frame + story graph. TFLite encodes the first k-1 frames with the frame graph (a signature
    of the same file); ONNX with the frame + story graph too, so it never opens the frame file's
    session, which would hold the frame graph's weights a second time."""
    windows = _windows(full_export, export_env, 1)
    spec = next(s for s in backend_specs(full_export, manifest) if s.name == name)
    backend = load_backend(spec, threads=1)
    calls: list[str] = []
    run_graph = backend.run_graph
    backend.run_graph = lambda g, f: (calls.append(g), run_graph(g, f))[1]  # type: ignore[method-assign]
    inputs = {"frames": windows.frames[:1], "captions": windows.captions[:1], "reason": windows.reason[:1]}
    story = StoryEncoder(backend)
    story.push_window(inputs)
    first = story.outputs()
    k = windows.k
    first_frames = "frame_encoder" if spec.format == "tflite" else FRAME_STORY
    assert calls == ["reason_encoder"] + [first_frames] * (k - 1) + [FRAME_STORY]
    if spec.format == "onnx":
        assert set(backend._story_sessions) == {"reason_encoder", FRAME_STORY}
    calls.clear()
    story.push({"frames": inputs["frames"][:, 0], "captions": inputs["captions"][:, 0]})
    story.outputs()
    assert calls == [FRAME_STORY]
    assert set(first) == {"h0", "c0", "context_gates"}


def test_story_captions_equal_full_window_captions(full_export: Path, manifest, export_env) -> None:
    """Sliding along a story with the given captions, each frame encoded once, writes what the
    full-window encoder writes for each of the story's windows."""
    windows = _windows(full_export, export_env, 8)
    rows = [i for i, sid in enumerate(windows.story_ids) if sid == windows.story_ids[0]]
    k = windows.k
    frames = np.concatenate([windows.frames[rows[0]][:k]] + [windows.frames[i][k - 1:k] for i in rows[1:]])[None]
    captions = np.concatenate([windows.captions[rows[0]]] + [windows.captions[i][k - 1:k] for i in rows[1:]])[None]
    spec = next(s for s in backend_specs(full_export, manifest) if s.name == "tflite-fp32")
    backend = load_backend(spec, threads=1)
    tok = read_manifest(full_export).tokenizer
    max_new = export_env.config.dataset.max_caption_len - 1

    def decode(state):
        return greedy_decode(backend, state, tok["bos_id"], tok["eos_id"], max_new)[0].tokens

    written = caption_story(backend, frames, captions, windows.reason[rows[0]][None], decode, tok, feed="given")
    assert [j for j, _, _ in written] == list(range(k, k + len(rows)))
    for (j, tokens, _), i in zip(written, rows):
        inputs = {"frames": windows.frames[i:i + 1], "captions": windows.captions[i:i + 1], "reason": windows.reason[i:i + 1]}
        assert tokens == decode(backend.encode(inputs))


def test_generate_story_captions_n_minus_k_frames(full_export: Path, export_env, capsys, tmp_path: Path) -> None:
    from PIL import Image

    k = export_env.config.dataset.seq_len
    code, out, err = run_cli(["generate", "--exports", str(full_export), "--story", "--index", "0", "--json",
                              "--precision", "int8-dynamic"], capsys)
    assert code == 0, err
    result = json.loads(out)
    n = len(result["context"]) + len(result["captions"])
    assert len(result["context"]) == k and len(result["captions"]) == n - k >= 1
    assert [c["frame"] for c in result["captions"]] == list(range(k + 1, n + 1))
    assert all(c["truth"] and c["tokens"] is not None for c in result["captions"])
    assert result["feed"] == "generated" and result["backend"] == "tflite-int8-dynamic"
    # n images on the command line, k captions: n - k written (given feed needs n - 1 captions)
    images = []
    for i in range(k + 2):
        path = tmp_path / f"f{i}.png"
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(path)
        images.append(str(path))
    texts = ["a red circle starts moving left", "the red circle moves left", "the red circle moves left"]
    args = ["generate", "--exports", str(full_export), "--backend", "onnx", "--story", "--images", *images,
            "--reason", "a red circle moves", "--captions"]
    code, out, err = run_cli([*args, *texts[:k]], capsys)
    assert code == 0, err
    assert out.count("→ ") == 2 and "story mode, --feed generated" in out
    code, out, err = run_cli([*args, *texts[:k], "--feed", "given"], capsys)
    assert code == 2 and err.startswith("error: --story reads") and "--feed given" in err


def test_export_without_story_graphs(full_export: Path, capsys, tmp_path: Path) -> None:
    """A manifest from before story mode (schema 2.0, no ``story``) still reads; --story says why not."""
    copy = tmp_path / "old"
    shutil.copytree(full_export, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data.pop("story")
    data["schema_version"] = "2.0"
    (copy / "manifest.json").write_text(json.dumps(data))
    manifest = read_manifest(copy)
    assert manifest.story is None and all(s.story is None for s in backend_specs(copy, manifest))
    code, out, err = run_cli(["generate", "--exports", str(copy), "--story", "--index", "0"], capsys)
    assert code == 2 and "no story-mode graphs" in err and len(err.strip().splitlines()) == 1


def test_manifest_without_the_frame_story_graph(full_export: Path, export_env, tmp_path: Path) -> None:
    """A manifest from before the frame + story graph: story mode runs the frame and story graphs."""
    copy = tmp_path / "old"
    shutil.copytree(full_export, copy)
    data = json.loads((copy / "manifest.json").read_text())
    del data["story"]["frame_story_graph"], data["story"]["earlier_fused"]
    (copy / "manifest.json").write_text(json.dumps(data))
    manifest = read_manifest(copy)
    spec = next(s for s in backend_specs(copy, manifest) if s.name == "tflite-fp32")
    assert spec.story is not None and spec.story.frame_story_graph is None
    backend = load_backend(spec, threads=1)
    windows = _windows(full_export, export_env, 1)
    inputs = {"frames": windows.frames[:1], "captions": windows.captions[:1], "reason": windows.reason[:1]}
    story, full = story_window_outputs(backend, inputs), backend.run_encoder(inputs)
    assert max(float(np.max(np.abs(story[k] - full[k]))) for k in full) < STORY_PARITY_ATOL


def test_bench_reports_story_mode_latency(full_export: Path, capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "bench"
    code, out, err = run_cli(["bench", "--exports", str(full_export), "--latency-only", "--backends",
                              "tflite-fp32,onnx-fp32", "--warmup", "1", "--runs", "3", "--bandwidth-mb", "16",
                              "--threads", "1", "--out", str(out_dir)], capsys)
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    for b in report["backends"]:
        story = b["story"]
        assert story["runs"] == 3 and story["frame"]["count"] == 3 and story["window"] == 2
        assert 0 < story["frame"]["p50_ms"] <= story["encoder"]["p50_ms"] <= story["caption"]["p50_ms"]
        assert story["encoder_vs_full"] == pytest.approx(story["encoder"]["p50_ms"] / b["latency"]["encoder"]["p50_ms"])
        assert story["reason_ms"] > 0
        assert story["one_call"] is True
    assert "Story mode" in out and "### Story mode" in (out_dir / "report.md").read_text()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_frame_story_reads_the_frame_and_story_files_weights(precision: str, full_export: Path, manifest,
                                                                    export_env) -> None:
    """The ONNX frame + story file holds a graph, not a third copy of the weights: its large
    initializers point into the frame and story files, and one call of it gives the two files'
    outputs bit for bit."""
    import onnx
    import onnxruntime as ort

    files = {f.graph: f for f in manifest.files if f.format == "onnx" and f.precision == precision}
    joined, frame, story = (full_export / files[g].path for g in (FRAME_STORY, "frame_encoder", "story_encoder"))
    from storyedge.export.onnx_frame_story import MIN_SHARED_BYTES

    proto = onnx.load(str(joined), load_external_data=False)
    external = [dict((e.key, e.value) for e in t.external_data) for t in proto.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    assert {e["location"] for e in external} == {frame.name, story.name}
    assert max(len(t.raw_data) for t in proto.graph.initializer) < MIN_SHARED_BYTES  # nothing large inline
    assert sum(int(e["length"]) for e in external) > 0
    assert any("read in place" in note for note in files[FRAME_STORY].coverage.notes)
    windows = _windows(full_export, export_env, 1)
    sessions = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (joined, frame, story)}
    rng = np.random.default_rng(0)
    dim = sessions[story].get_inputs()[0].shape[2]
    earlier = rng.standard_normal((1, windows.k - 1, dim)).astype(np.float32)
    heads = rng.standard_normal(sessions[story].get_inputs()[1].shape).astype(np.float32)
    frame_feeds = {"frame": windows.frames[:1, 0], "caption": windows.captions[:1, 0]}
    one = dict(zip([o.name for o in sessions[joined].get_outputs()], sessions[joined].run(
        None, {**frame_feeds, "earlier_fused_frames": earlier, "reason_heads": heads})))
    fused = sessions[frame].run(None, frame_feeds)[0]
    two = dict(zip([o.name for o in sessions[story].get_outputs()], sessions[story].run(
        None, {"fused_frames": np.concatenate([earlier, fused[:, None]], axis=1), "reason_heads": heads})))
    assert np.array_equal(one.pop("fused_frame"), fused)
    assert set(one) == set(two) == {"h0", "c0", "context_gates"}
    for key in two:
        assert np.array_equal(one[key], two[key]), key

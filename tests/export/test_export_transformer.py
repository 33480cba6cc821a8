"""The Transformer decoder through the whole suite at a tiny size: export (TFLite separate and
multi-signature, ONNX, every precision), builtins-only op lists on every subgraph, ONNX checker
without contrib ops at fp32, ``storyedge bench`` parity gates and ``generate --beam 1`` == greedy.

One random-init bundle, exported once per module (~100 s of conversion on 2 CPU cores).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


TRANSFORMER = {"model.decoder": "transformer", "model.decoder_layers": 2, "model.decoder_heads": 2,
               "model.decoder_ff_dim": 32, "model.decoder_hidden_dim": 24}
#: The precisions this decoder is exported at (int4 needs a hidden dim its block size divides).
QUANTIZE = "none,fp16,int8-dynamic,int8"
#: bench flags of the bench tests (tests/bench/bench_testutil.py FAST + RELAXED: random weights).
FAST = ["--warmup", "1", "--runs", "3", "--bandwidth-mb", "16", "--threads", "1"]
RELAXED = ["--gate-int8-dynamic-ppl-max", "100", "--gate-int8-dynamic-top1-min", "0",
           "--gate-bleu-drop", "100", "--gate-cider-drop", "10", "--gate-exact-match-drop", "1"]


@dataclass
class TransformerExport:
    root: Path
    exports: Path
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def transformer_export(tmp_path_factory: pytest.TempPathFactory, make_tiny_config) -> TransformerExport:
    import keras

    from storyedge.data.loading import load_story_splits
    from storyedge.export import export_from_checkpoint
    from storyedge.model.story_model import build_model
    from storyedge.run_dir import save_bundle
    from storyedge.tokenizer import train_wordpiece
    from storyedge.training.prepare import tokenizer_texts

    root = tmp_path_factory.mktemp("transformer_export")
    cfg = make_tiny_config(root / "data", **TRANSFORMER)
    splits = load_story_splits(cfg.dataset)
    tokenizer = train_wordpiece(list(tokenizer_texts(splits["train"])), cfg.tokenizer.vocab_size)
    keras.utils.set_random_seed(0)
    model = build_model(cfg, tokenizer.vocab_size, tokenizer.pad_id)
    save_bundle(root / "run", model, cfg, tokenizer, {"epoch": 0, "note": "random init (test)"})
    out = root / "exports"
    # int8 base 0.9 (90 % of max|ref|, default 60 %): ONNX's QDQ static int8 step of this
    # random-init Transformer reached a logits max|diff| of 1.37 against a 60 % tolerance of 1.2
    # (the bench's PPL gates judge int8)
    export_from_checkpoint(root / "run", out, formats="all", quantize=QUANTIZE, tolerances={"int8": 0.9},
                           calibration_windows=8, progress=False)
    return TransformerExport(root, out, json.loads((out / "manifest.json").read_text()))


def test_every_file_exported_and_validated(transformer_export: TransformerExport) -> None:
    files = {(f["format"], f["graph"], f["precision"]): f for f in transformer_export.manifest["files"]}
    for precision in ("fp32", "fp16", "int8-dynamic", "int8"):
        for graph in ("encoder", "decoder_step", "multi"):
            assert ("tflite", graph, precision) in files
    for precision in ("fp32", "int8-dynamic"):
        for graph in ("encoder", "decoder_step"):
            assert ("onnx", graph, precision) in files
    assert not transformer_export.manifest["rejected"]
    assert all(f["validation"]["passed"] for f in files.values())
    state = {t["name"]: t for t in transformer_export.manifest["decoder"]["state"]}
    assert state["position"]["dtype"] == "int32" and state["position"]["update"] == "position_out"
    assert state["k_cache_1"]["shape"] == [1, 2, 8, 12] and state["k_cache_1"]["init"] == "zeros"
    carried = {c["name"] for c in transformer_export.manifest["decoder"]["carried"]}
    assert carried == {"cross_k_0", "cross_v_0", "cross_k_1", "cross_v_1"}


def test_tflite_builtins_only_on_every_subgraph(transformer_export: TransformerExport) -> None:
    from storyedge.export.tflite import inspect_tflite, interpreter_op_names

    for path in sorted((transformer_export.exports / "tflite").glob("*.tflite")):
        info = inspect_tflite(path.read_bytes())
        assert not info.custom_ops, (path.name, info.custom_ops)
        assert not [op for op in info.ops if op.startswith("Flex") or op.startswith("BUILTIN_")], path.name
        assert not [op for op in interpreter_op_names(path) if op.startswith("Flex")], path.name
        if "decoder_step" in path.name:
            # the step is straight-line: no scatter, no control flow
            assert not {"WHILE", "SCATTER_ND", "TENSOR_SCATTER_UPDATE"} & set(info.ops), info.ops


def test_onnx_checker_and_no_contrib_ops_at_fp32(transformer_export: TransformerExport) -> None:
    import onnx

    for path in sorted((transformer_export.exports / "onnx").glob("*.onnx")):
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        if ".fp32." in path.name:
            domains = {n.domain for n in proto.graph.node} - {"", "ai.onnx"}
            assert not domains, (path.name, domains)


def _cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    from storyedge.app.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_bench_parity_gates_pass_for_every_precision(transformer_export: TransformerExport,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = transformer_export.root / "bench"
    code, _, err = _cli(capsys, "bench", "--exports", transformer_export.exports, "--out", out_dir, *FAST, *RELAXED)
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    text = json.dumps(report)
    for precision in ("fp32", "fp16", "int8-dynamic", "int8"):
        assert f'"{precision}"' in text


def test_generate_beam_1_equals_greedy_across_backends(transformer_export: TransformerExport,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    tokens = {}
    for backend in ("tflite", "onnx", "tf"):
        base = ("generate", "--exports", transformer_export.exports, "--json", "--backend", backend,
                "--precision", "fp32", "--index", "0", "--threads", "1")
        results = []
        for extra in ((), ("--beam", "1"), ("--beam", "3")):
            code, out, err = _cli(capsys, *base, *extra)
            assert code == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        greedy, beam1, beam3 = results
        assert beam1["tokens"] == greedy["tokens"] and beam1["caption"] == greedy["caption"]
        assert beam3["score"] >= greedy["score"] - 1e-9
        tokens[backend] = greedy["tokens"]
    assert tokens["tflite"] == tokens["onnx"] == tokens["tf"]


@pytest.mark.parametrize("field, value", [("update", "k_cache_1_gone"), ("shape", [1, 2, 9, 12])])
def test_a_manifest_whose_cache_state_does_not_match_exits_2_naming_it(
    transformer_export: TransformerExport, tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: Any,
) -> None:
    import shutil

    copy = tmp_path / "exports"
    shutil.copytree(transformer_export.exports, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (entry,) = [t for t in manifest["decoder"]["state"] if t["name"] == "k_cache_1"]
    entry[field] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _cli(capsys, "bench", "--exports", copy, "--out", tmp_path / "bench", "--latency-only", *FAST)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "k_cache_1" in errors[0], err

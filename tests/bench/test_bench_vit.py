"""``image_encoder: vit`` end to end at a tiny size: ``storyedge export`` (TFLite + ONNX, every
precision) then ``storyedge bench``, whose parity gates must pass (int8-dynamic gates relaxed as
for every random-init model, see :data:`bench_testutil.RELAXED`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_testutil import FAST, RELAXED, tiny_config

from storyedge.app.cli import main
from storyedge.bench.results import BenchReport
from storyedge.manifest import read_manifest

pytestmark = pytest.mark.slow

VIT = {"model.image_encoder": "vit", "model.vit_patch_size": 8, "model.vit_layers": 2, "model.vit_heads": 2,
       "model.use_reason": False}


def _cli(*args: object) -> int:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    code = info.value.code
    return code if isinstance(code, int) else 0


@pytest.fixture(scope="module")
def vit_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny ViT bundle exported through the CLI: tflite + onnx, every precision."""
    import keras

    from storyedge.data.loading import load_story_splits
    from storyedge.data.synthetic import write_synthetic_dataset
    from storyedge.model.story_model import build_model
    from storyedge.run_dir import save_bundle
    from storyedge.tokenizer import train_wordpiece
    from storyedge.training.prepare import tokenizer_texts

    root = tmp_path_factory.mktemp("vit_env")
    cfg = tiny_config(write_synthetic_dataset(root / "data", 20, seed=0, frame_size=32), **VIT)
    splits = load_story_splits(cfg.dataset)
    tokenizer = train_wordpiece(list(tokenizer_texts(splits["train"])), cfg.tokenizer.vocab_size)
    keras.utils.set_random_seed(0)
    model = build_model(cfg, tokenizer.vocab_size, tokenizer.pad_id)
    save_bundle(root / "run", model, cfg, tokenizer, {"epoch": 0, "note": "random init (test)"})
    out = root / "exports"
    code = _cli("export", "--checkpoint", root / "run", "--out", out, "--format", "all",
                "--quantize", "none,fp16,int8-dynamic,int8")
    # 1: a random model's int8 file may miss validation (moved to rejected/, the rest is exported)
    assert code in (0, 1) and (out / "manifest.json").is_file()
    return out


def test_vit_export_is_builtins_only_and_onnx_checker_clean(vit_export: Path) -> None:
    import onnx

    from storyedge.export.onnx_export import onnx_ops
    from storyedge.export.tflite import inspect_tflite

    manifest = read_manifest(vit_export)
    assert {(f.format, f.precision) for f in manifest.files if f.graph == "encoder"} >= {
        ("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8-dynamic"), ("onnx", "fp32"), ("onnx", "int8-dynamic")}
    for entry in manifest.files:
        path = vit_export / entry.path
        if entry.format == "tflite":
            info = inspect_tflite(path.read_bytes())  # every subgraph
            assert info.custom_ops == [] and not [op for op in info.ops if op.startswith("Flex")], entry.path
            if entry.graph == "encoder":
                assert {"CONV_2D", "SOFTMAX", "BATCH_MATMUL"} <= set(info.ops), info.ops
        else:
            model = onnx.load(str(path))
            onnx.checker.check_model(model, full_check=True)
            ops = onnx_ops(model)
            assert not [op for op in ops if "TensorList" in op or op.endswith(("Loop", "Scan"))], ops


def test_vit_bench_parity_gates_pass(vit_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert _cli("bench", "--exports", vit_export, "--out", out, *FAST, *RELAXED) == 0
    report = BenchReport.from_json((out / "report.json").read_text(), out / "report.json")
    fp32 = [b for b in report.backends if b.precision == "fp32" and not b.reference]
    assert {b.format for b in fp32} == {"tflite", "onnx"}
    for backend in report.backends:
        if backend.parity is not None and not backend.reference:
            assert backend.parity.passed, (backend.name, backend.parity.gates)
    for backend in fp32:
        assert abs(backend.parity.ppl_ratio - 1) <= 1e-3

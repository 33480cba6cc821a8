"""The Python API other stages call (bench --random-init, quickstart): ``export_model``."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyedge.errors import UserError


def test_export_model_random_init_synthetic_validation_batch_2(export_env, tmp_path: Path) -> None:
    import keras

    from storyedge.export import export_model
    from storyedge.model.story_model import build_model
    from storyedge.tokenizer import StoryTokenizer

    cfg = export_env.config.replace(**{"model.use_reason": False})
    tokenizer = StoryTokenizer.load(export_env.run_dir / "best" / "tokenizer")
    keras.utils.set_random_seed(1)
    model = build_model(cfg, tokenizer.vocab_size, tokenizer.pad_id)
    out = tmp_path / "api"
    manifest = export_model(
        model, cfg, tokenizer, out, formats=["onnx"], quantize=["none"], batch=2,
        validation_windows=3, source={"random_init": True, "seed": 1}, progress=False,
    )
    assert manifest.batch == 2
    assert manifest.source["random_init"] is True
    assert manifest.source["validation"]["data"] == "synthetic random inputs"
    assert manifest.source["validation"]["batches"] == 1  # 3 windows -> one batch of 2
    enc = manifest.file("onnx", "encoder", "fp32")
    assert enc is not None and enc.validation["passed"]
    assert [t.name for t in enc.signatures["encoder"].inputs] == ["frames", "captions"]
    assert enc.signatures["encoder"].inputs[0].shape[0] == 2
    assert enc.ops["LSTM"] == 3  # caption fwd/bwd + temporal (no reason encoder)
    assert (out / "reference" / "model.weights.h5").is_file()
    assert (out / "reference" / "config.yaml").is_file()

    with pytest.raises(UserError, match="not empty"):
        export_model(model, cfg, tokenizer, out, formats="onnx", quantize="none", progress=False)
    with pytest.raises(UserError, match="unknown quantization"):
        export_model(model, cfg, tokenizer, tmp_path / "y", quantize="int3", progress=False)
    with pytest.raises(UserError, match="unknown export format"):
        export_model(model, cfg, tokenizer, tmp_path / "y", formats="tensorrt", progress=False)
    assert not (tmp_path / "y").exists()


def test_parse_helpers() -> None:
    from storyedge.export.exporter import parse_formats, parse_quantize

    assert parse_formats("all", []) == ["tflite", "onnx"]
    assert parse_formats(None, ["onnx"]) == ["onnx"]
    assert parse_quantize("int8,none,fp16", []) == ["fp32", "fp16", "int8"]
    assert parse_quantize(["int8-dynamic"], []) == ["int8-dynamic"]
    with pytest.raises(UserError):
        parse_quantize("", [])


def test_tolerance_rule() -> None:
    from storyedge.export.validation import tolerance_for

    assert tolerance_for("fp32", 1e-4, 50.0) == 1e-4  # absolute
    assert tolerance_for("fp16", 1e-4, 10.0) == pytest.approx(1e-1)  # 1 % of the magnitude
    assert tolerance_for("int8-dynamic", 1e-4, 2.0) == pytest.approx(0.4)
    assert tolerance_for("int8", 1e-4, 1.0) == pytest.approx(0.6)
    assert tolerance_for("int8", 1e-4, 1.0, {"int8": 0.1}) == pytest.approx(0.1)


def test_crash_mid_export_leaves_old_out_untouched(export_env, tmp_path: Path, monkeypatch) -> None:
    """A failure after some files were written: no partial OUT, no temp dir, old OUT intact."""
    from storyedge.export import onnx_export
    from storyedge.export.exporter import export_from_checkpoint

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous export")
    real = onnx_export.convert_onnx

    def crash_on_decoder(model, graph, batch, opset):
        if graph == "decoder_step":
            raise RuntimeError("simulated crash")
        return real(model, graph, batch, opset)

    monkeypatch.setattr(onnx_export, "convert_onnx", crash_on_decoder)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export_from_checkpoint(
            export_env.run_dir, out, formats="onnx", quantize="none", overwrite=True,
            validation_data="synthetic", validation_windows=1, progress=False,
        )
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

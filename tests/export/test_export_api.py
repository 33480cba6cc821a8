"""The Python API other stages call (bench --random-init, quickstart): ``export_model``."""

from __future__ import annotations

from dataclasses import replace
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
    events = []
    manifest = export_model(
        model, cfg, tokenizer, out, formats=["onnx"], quantize=["none"], batch=2,
        validation_windows=3, source={"random_init": True, "seed": 1}, progress=False,
        on_progress=events.append,
    )
    # progress: reference, two ONNX conversions, one backend validated; each file once, in order
    steps = [e for e in events if e.kind == "step"]
    assert [e.done for e in steps] == [1, 2, 3, 4] and {e.total for e in events} == {4}
    assert [e.path for e in steps if e.path] == ["onnx/encoder.fp32.onnx", "onnx/decoder_step.fp32.onnx"]
    assert all(e.seconds is not None and e.seconds > 0 for e in steps if e.path)
    assert [e.text for e in events if e.kind == "stage"] == [
        "reference + tokenizer", "onnx encoder fp32: convert", "onnx decoder_step fp32: convert",
        "validate onnx fp32 separate",
    ]
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


def test_plan_resolves_checks_and_counts_progress_steps() -> None:
    from storyedge.config import load_config
    from storyedge.export.plan import make_plan

    cfg = load_config("quickstart.yaml")
    full = make_plan(cfg, formats="all", quantize="int8,none,fp16,int8-dynamic")
    assert full.tflite_precisions == ["fp32", "fp16", "int8-dynamic", "int8"]
    assert full.onnx_precisions == ["fp32", "fp16", "int8-dynamic", "int8"]
    assert full.skipped == []
    assert full.rnn_layouts() == {"loop": ["fp32", "fp16"], "chunked": ["int8-dynamic", "int8"]}
    assert full.file_count() == 20
    # reference, 2 SavedModels (one per layout), 12 TFLite files, 2 ONNX fp32 + 2 x 3 derived, 8 + 4 validations
    assert full.total_steps() == 1 + 2 + 12 + 8 + 12
    assert full.calibration_windows == 64 and full.batch == cfg.export.batch
    story = replace(full, story_graphs=["reason_encoder", "frame_encoder", "story_encoder"],
                    frame_story_graph="frame_story_encoder")
    # + a story file per TFLite precision; per ONNX precision 3 story graphs and the frame + story graph
    assert story.file_count() == 20 + 4 + 4 * 4
    # 16 TFLite files, ONNX (2 + 3 graphs) x (fp32 + 3 derived) + 4 joins, 12 + 8 validations
    assert story.total_steps() == 1 + 2 + 16 + 24 + 20
    assert replace(story, frame_story_graph=None).file_count() == 20 + 4 + 4 * 3
    assert (full.calibration_method, full.int4_block_size, full.portable) == ("minmax", 32, False)
    effective = full.effective_config(cfg)
    assert effective.export.quantize == ["none", "fp16", "int8-dynamic", "int8"]
    # --portable: no ONNX int4 (MatMulNBits is a contrib op), said why
    portable = make_plan(cfg, formats="all", quantize="none,int4", portable=True)
    assert portable.onnx_precisions == ["fp32"] and portable.tflite_precisions == ["fp32", "int4"]
    # --portable full int8: LSTMs unrolled (no WHILE, whose carried state stays float)
    assert make_plan(cfg, formats="tflite", quantize="int8,int8-dynamic", portable=True).rnn_layouts() == {
        "chunked": ["int8-dynamic"], "unrolled": ["int8"]}
    assert [(s["format"], s["precision"]) for s in portable.skipped] == [("onnx", "int4")]
    assert "opset 21" in portable.skipped[0]["reason"]
    assert effective.export.formats == ["tflite", "onnx"]
    # int8-dynamic ONNX alone still converts (unlisted) fp32 first: those steps count too
    onnx_q = make_plan(cfg, formats="onnx", quantize="int8-dynamic")
    assert onnx_q.file_count() == 2 and onnx_q.total_steps() == 1 + 4 + 1
    for kwargs, message in (
        ({"formats": "onnx", "quantize": "int4", "portable": True}, "nothing to export"),
        ({"calibration_method": "kl"}, "--calibration-method"),
        ({"int4_block_size": 48}, "--int4-block-size"),
        ({"batch": 0}, "--batch"),
        ({"opset": 12}, "--opset"),
        ({"atol": 0.0}, "--atol"),
        ({"tolerances": {"int2": 0.1}}, "--tolerance"),
        ({"validation_windows": 0}, "--validation-windows"),
    ):
        with pytest.raises(UserError, match=message):
            make_plan(cfg, **kwargs)


def test_config_tolerances_apply_and_the_command_line_wins(export_env) -> None:
    from storyedge.config import load_config
    from storyedge.export.plan import make_plan

    cfg = export_env.config.replace(**{"export.tolerances": {"int8-dynamic": 0.25, "int8": 0.7}})
    assert make_plan(cfg).tolerances == {"int8-dynamic": 0.25, "int8": 0.7}
    assert make_plan(cfg, tolerances={"int8": 0.9}).tolerances == {"int8-dynamic": 0.25, "int8": 0.9}
    with pytest.raises(UserError, match="--tolerance"):
        make_plan(export_env.config.replace(**{"export.tolerances": {"int2": 0.1}}))
    # the shipped configs judge every precision at the default bases
    assert make_plan(load_config("quickstart.yaml")).tolerances == {}
    assert make_plan(load_config("storyreasoning.yaml")).tolerances == {}


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

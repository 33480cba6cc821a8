"""The quantized precisions of the full export (ONNX fp16 / static int8 / int4, TFLite int4), their
coverage and portability records, ``--portable``, and the int4 / calibration bad-input rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from storyedge.app.cli import main
from storyedge.manifest import Manifest, read_manifest

#: Bytes of one block's scale: ai-edge-quantizer keeps blockwise scales as float16, MatMulNBits as
#: float32; both are symmetric here (no zero points).
SCALE_BYTES = {"tflite": 2, "onnx": 4}


@pytest.fixture(scope="module")
def manifest(full_export: Path) -> Manifest:
    return read_manifest(full_export)


def _entry(manifest: Manifest, fmt: str, graph: str, precision: str):
    entry = manifest.file(fmt, graph, precision)
    assert entry is not None, (fmt, graph, precision)
    return entry


def test_every_file_has_coverage_and_portability(manifest: Manifest) -> None:
    assert manifest.schema_version == "2.3"
    for entry in manifest.files:
        cov = entry.coverage
        assert cov is not None, entry.path
        assert sum(cov.count(c) for c in cov.compute) == sum(entry.ops.values()), entry.path
        assert sum(cov.weight_bytes.values()) > 0
        if entry.format == "tflite":
            assert cov.portable and not cov.nonportable_ops, entry.path  # builtins only
    fp32 = _entry(manifest, "tflite", "decoder_step", "fp32").coverage
    assert set(fp32.compute) <= {"float", "convert"} and "float16" not in fp32.weight_bytes
    # TFLite fp16 stores fp16 weights but computes in float32; ONNX fp16 computes in fp16
    t16 = _entry(manifest, "tflite", "decoder_step", "fp16").coverage
    assert t16.weight_bytes["float16"] > t16.weight_bytes.get("float32", 0) and t16.count("fp16") == 0
    o16 = _entry(manifest, "onnx", "decoder_step", "fp16").coverage
    assert o16.count("fp16") > 0 and o16.weight_bytes["float16"] > 0
    assert "LSTM" in _entry(manifest, "onnx", "encoder", "fp16").coverage.compute["float"]  # blocked
    # dynamic range: quantized weights, float activations; full int8: integer kernels
    assert _entry(manifest, "tflite", "decoder_step", "int8-dynamic").coverage.compute["hybrid"]["FULLY_CONNECTED"] > 0
    assert _entry(manifest, "tflite", "decoder_step", "int8").coverage.compute["integer"]["FULLY_CONNECTED"] > 0


def test_onnx_int8_dynamic_encoder_is_not_portable(manifest: Manifest) -> None:
    cov = _entry(manifest, "onnx", "encoder", "int8-dynamic").coverage
    assert cov.portable is False
    assert cov.nonportable_ops == {"com.microsoft.DynamicQuantizeLSTM": 5}
    assert cov.compute["integer"]["com.microsoft.DynamicQuantizeLSTM"] == 5
    assert any("DynamicQuantizeLSTM" in note for note in cov.notes)


def test_onnx_int8_dynamic_step_products_are_8bit_matmulnbits(full_export: Path, manifest: Manifest) -> None:
    import onnx

    entry = _entry(manifest, "onnx", "decoder_step", "int8-dynamic")
    model = onnx.load(str(full_export / entry.path))
    nbits = [{a.name: a.i for a in n.attribute} for n in model.graph.node if n.op_type == "MatMulNBits"]
    H, V = manifest.config["model"]["decoder_hidden_dim"], manifest.tokenizer["vocab_size"]
    assert (H, V) in {(a["K"], a["N"]) for a in nbits}  # the logits projection
    assert all(a["bits"] == 8 and a["accuracy_level"] == 4 for a in nbits)
    assert entry.coverage.portable is False and set(entry.coverage.nonportable_ops) == {"com.microsoft.MatMulNBits"}
    assert entry.coverage.int4 == {}  # 8-bit blocks are not int4
    assert entry.validation["passed"]


def test_onnx_int8_dynamic_convolutions_are_integer_patch_products(full_export: Path, manifest: Manifest) -> None:
    import onnx
    from onnx import numpy_helper

    from storyedge.export.onnx_conv_int8 import MIN_PATCH
    from storyedge.export.onnx_export import DYNAMIC_FLOAT_OPS

    assert DYNAMIC_FLOAT_OPS == ("Conv",)  # never ConvInteger
    fp32 = onnx.load(str(full_export / _entry(manifest, "onnx", "encoder", "fp32").path))
    inits = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    patches = [int(np.prod(inits[n.input[1]].shape[1:])) for n in fp32.graph.node if n.op_type == "Conv"]
    narrow = sum(p < MIN_PATCH for p in patches)
    assert 0 < narrow < len(patches)  # the tiny CNN's narrow layers (and the RGB stem) stay float
    for graph in ("encoder", "frame_encoder"):
        fp32_entry, dynamic = _entry(manifest, "onnx", graph, "fp32"), _entry(manifest, "onnx", graph, "int8-dynamic")
        assert dynamic.ops.get("Conv", 0) == narrow == dynamic.coverage.compute["float"]["Conv"]
        assert "ConvInteger" not in dynamic.ops
        model = onnx.load(str(full_export / dynamic.path))
        products = [n for n in model.graph.node if n.op_type == "MatMulInteger" and n.name.endswith("/int8/matmul")]
        # one integer product per rewritten convolution, its int8 weights [kh * kw * C, out]
        assert len(products) == fp32_entry.ops["Conv"] - narrow > 0
        weights = {i.name: i for i in model.graph.initializer}
        assert all(weights[n.input[1]].data_type == onnx.TensorProto.INT8 for n in products)
        assert dynamic.coverage.compute["integer"]["MatMulInteger"] == dynamic.ops["MatMulInteger"]
        assert dynamic.validation["passed"]


def test_qdq_pairs_around_the_weights_they_claim(full_export: Path, manifest: Manifest) -> None:
    import onnx
    from onnx import numpy_helper

    for graph in ("encoder", "decoder_step"):
        entry = _entry(manifest, "onnx", graph, "int8")
        model = onnx.load(str(full_export / entry.path))
        inits = {i.name: i for i in model.graph.initializer}
        producers = {o: n for n in model.graph.node for o in n.output}
        consumers: dict[str, list] = {}
        for n in model.graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        # every activation QuantizeLinear feeds a DequantizeLinear (a pair)
        quants = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
        assert quants
        for q in quants:
            assert {c.op_type for c in consumers[q.output[0]]} == {"DequantizeLinear"}, q.name
        # every MatMul / Conv weight is an int8 initializer behind a DequantizeLinear, per channel
        claimed = entry.coverage.compute.get("integer", {})
        weighted = [n for n in model.graph.node if n.op_type in ("MatMul", "Conv")
                    and producers.get(n.input[1]) is not None and producers[n.input[1]].input[0] in inits]
        assert weighted and sum(claimed.get(op, 0) for op in ("MatMul", "Conv")) >= 1
        for n in weighted:
            dq = producers[n.input[1]]
            assert dq.op_type == "DequantizeLinear"
            w = inits[dq.input[0]]
            assert w.data_type == onnx.TensorProto.INT8, n.name
            scale = numpy_helper.to_array(inits[dq.input[1]])
            assert scale.size == (w.dims[1] if n.op_type == "MatMul" else w.dims[0]), n.name  # per channel
        if graph == "encoder":  # ONNX Runtime has no QDQ LSTM: its LSTMs take int8 weights dynamically
            assert entry.coverage.nonportable_ops == {"com.microsoft.DynamicQuantizeLSTM": 5}
            assert entry.coverage.compute["integer"]["com.microsoft.DynamicQuantizeLSTM"] == 5
            assert "LSTM" not in entry.ops and "LSTM" not in entry.coverage.compute["float"]
        else:  # the step's one-row products the block divides are 8-bit MatMulNBits, the rest QDQ
            assert set(entry.coverage.nonportable_ops) == {"com.microsoft.MatMulNBits"}
            H, V = manifest.config["model"]["decoder_hidden_dim"], manifest.tokenizer["vocab_size"]
            nbits = [{a.name: a.i for a in n.attribute} for n in model.graph.node if n.op_type == "MatMulNBits"]
            assert (H, V, 8) in {(a["K"], a["N"], a["bits"]) for a in nbits}  # the logits projection


@pytest.mark.parametrize("fmt, cell_ops, products", [
    ("tflite", ("LOGISTIC", "TANH", "MUL", "ADD"), "FULLY_CONNECTED"),
    ("onnx", ("Sigmoid", "Tanh", "Mul", "Add"), "MatMul"),
])
def test_int8_step_keeps_its_recurrent_cell_float(manifest: Manifest, fmt: str, cell_ops: tuple[str, ...],
                                                  products: str) -> None:
    """A static-int8 decoder step computes its products in integer and its cell (gates, c, h) in
    float: the state it carries from step to step never passes through one int8 scale."""
    step = _entry(manifest, fmt, "decoder_step", "int8").coverage.compute
    if fmt == "tflite":
        assert step["integer"][products] >= 2, step
    else:  # one QDQ product, the two the block divides as MatMulNBits (int8 compute, dynamic activations)
        assert step["integer"][products] + step["hybrid"]["com.microsoft.MatMulNBits"] >= 2, step
    assert set(cell_ops) <= set(step["float"]), step
    assert not set(cell_ops) & set(step.get("integer", {})), step
    if fmt == "tflite":  # the encoder's own LSTM cells stay integer
        encoder = _entry(manifest, fmt, "encoder", "int8").coverage.compute
        assert {"LOGISTIC", "TANH"} <= set(encoder["integer"]), encoder


def test_qdq_weights_are_not_dequantized_per_call(full_export: Path, manifest: Manifest, tmp_path: Path) -> None:
    """ONNX Runtime's optimized graph of every static-int8 file keeps no weight DequantizeLinear
    (those would run on every call): each is fused into a QLinear op, or its weight stored float;
    the embedding table stays 8-bit with only the gathered rows dequantized."""
    import onnx
    import onnxruntime as ort

    files = [f for f in manifest.files if f.format == "onnx" and f.precision == "int8"]
    assert {f.graph for f in files} >= {"encoder", "decoder_step"}
    for entry in files:
        model = onnx.load(str(full_export / entry.path))
        inits = {i.name: i for i in model.graph.initializer}
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp_path / f"{entry.graph}.onnx")
        ort.InferenceSession(str(full_export / entry.path), options, providers=["CPUExecutionProvider"])
        # the frame + story file's weights stay in the frame / story files: not read back here
        optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
        per_call = [n.name for n in optimized.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
        assert per_call == [], (entry.path, per_call)
        if entry.graph in ("encoder", "decoder_step"):  # the reason graph has no MatMul
            assert "QLinearMatMul" in {n.op_type for n in optimized.graph.node}, entry.path
        convs = sum(n.op_type == "Conv" for n in model.graph.node)
        if convs:  # every convolution runs in integer, with no layout transposes between them
            fused = [n.op_type for n in optimized.graph.node if n.op_type in ("Conv", "QLinearConv", "Transpose")]
            assert fused.count("QLinearConv") == convs and "Conv" not in fused, (entry.path, fused)
        for gather in (n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits):
            table = inits[gather.input[0]]
            if len(table.dims) == 2 and table.dims[0] == manifest.tokenizer["vocab_size"]:
                assert table.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8), entry.path


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_int4_files_hold_4bit_weights(full_export: Path, manifest: Manifest, fmt: str) -> None:
    block = manifest.config["export"]["int4_block_size"]
    entry = _entry(manifest, fmt, "decoder_step", "int4")
    q = entry.coverage.int4
    assert q["elements"] > 0 and q["blocks"] == q["elements"] // block
    per_weight = (q["payload_bytes"] + q["scale_bytes"] + q["zero_point_bytes"]) / q["elements"]
    expected = 0.5 + SCALE_BYTES[fmt] / block
    assert per_weight == pytest.approx(expected, rel=0.10), (per_weight, expected)
    # the logits projection [H, V] is among them: at least H x V weights are 4-bit
    H, V = manifest.config["model"]["decoder_hidden_dim"], manifest.tokenizer["vocab_size"]
    assert q["elements"] >= H * V
    fp32 = _entry(manifest, fmt, "decoder_step", "fp32")
    assert entry.size_bytes < 0.8 * fp32.size_bytes
    if fmt == "onnx":
        import onnx

        model = onnx.load(str(full_export / entry.path))
        nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
        assert nbits and all(n.domain == "com.microsoft" for n in nbits)
        for node in nbits:  # 4-bit weights, int8 compute
            assert {a.name: a.i for a in node.attribute}["bits"] == 4
            assert {a.name: a.i for a in node.attribute}["accuracy_level"] == 4
        assert entry.coverage.portable is False and "opset 21" in " ".join(entry.coverage.notes)
        assert "Gemm" not in entry.ops  # the logits Gemm became MatMul(NBits) + Add
    else:
        assert entry.coverage.compute["hybrid"]["FULLY_CONNECTED"] >= 1
        assert entry.coverage.weight_bytes["int4"] * 2 == entry.coverage.weight_elements["int4"]
        multi = _entry(manifest, "tflite", "multi", "int4").coverage
        assert multi.count("hybrid") >= entry.coverage.count("hybrid") and multi.int4["elements"] >= q["elements"]


def test_manifest_schema_2_0_without_coverage_still_reads(full_export: Path) -> None:
    data = json.loads((full_export / "manifest.json").read_text())
    data["schema_version"] = "2.0"
    for f in data["files"]:
        f.pop("coverage", None)
    old = Manifest.from_json(json.dumps(data))
    assert old.files and all(f.coverage is None for f in old.files)


def test_calibration_feeds_are_teacher_forced_reference_states(manifest: Manifest) -> None:
    src = manifest.source["validation"]
    assert src["calibration_windows"] > 0
    from storyedge.export.calibration import graph_feeds, ort_method

    samples = [("encoder", {"frames": np.zeros(1), "captions": np.zeros(1), "x": np.zeros(1)}),
               ("decoder_step", {"token": np.zeros(1, np.int32), "h": np.ones(1)})]
    assert graph_feeds(samples, "decoder_step", ["token", "h"]) == [samples[1][1]]
    assert [len(f) for f in graph_feeds(samples, "encoder", ["frames", "captions"])] == [2]
    assert {ort_method(m).name for m in ("minmax", "entropy", "percentile")} == {"MinMax", "Entropy", "Percentile"}
    assert manifest.config["export"]["calibration_method"] == "minmax"


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(["export", *args])
    _, err = capsys.readouterr()
    return int(info.value.code or 0), err


@pytest.mark.parametrize(("extra", "option"), [
    (["--quantize", "int4", "--int4-block-size", "64"], "--int4-block-size"),  # 64 does not divide H = 32
    (["--quantize", "int4", "--int4-block-size", "48"], "--int4-block-size"),  # not a block size
    (["--quantize", "int8", "--calibration-method", "kl"], "--calibration-method"),
])
def test_bad_quantization_options_exit_2_nothing_written(export_env, tmp_path: Path, capsys, extra, option) -> None:
    out = tmp_path / "out"
    code, err = _cli(["--checkpoint", str(export_env.run_dir), "--out", str(out), "--no-progress", *extra], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_portable_keeps_lstms_float_and_skips_onnx_int4(export_env, tmp_path: Path, capsys) -> None:
    out = tmp_path / "portable"
    code, err = _cli(["--checkpoint", str(export_env.run_dir), "--out", str(out), "--format", "onnx",
                      "--quantize", "int8-dynamic,int8,int4", "--portable", "--validation-windows", "2",
                      "--no-progress"], capsys)
    assert code == 0, err
    manifest = read_manifest(out)
    assert [f.path for f in manifest.files] == [
        "onnx/encoder.int8-dynamic.onnx", "onnx/decoder_step.int8-dynamic.onnx",
        "onnx/encoder.int8.onnx", "onnx/decoder_step.int8.onnx"]
    assert manifest.files[1].coverage.portable is True and "MatMulNBits" not in manifest.files[1].ops
    for enc in (manifest.files[0], manifest.files[2]):
        assert enc.coverage.portable is True and enc.coverage.nonportable_ops == {}, enc.path
        assert "com.microsoft.DynamicQuantizeLSTM" not in enc.ops and enc.ops["LSTM"] == 5
        assert enc.coverage.compute["float"]["LSTM"] == 5 and enc.coverage.count("integer") > 0
        assert any("LSTM nodes kept float" in note for note in enc.coverage.notes), enc.coverage.notes
    assert all(f.validation["passed"] for f in manifest.files)
    assert [(s["format"], s["precision"]) for s in manifest.source["skipped"]] == [("onnx", "int4")]
    assert manifest.config["export"]["portable"] is True


def test_portable_tflite_int8_unrolls_the_lstms(export_env, tmp_path: Path, capsys) -> None:
    """Default full int8 keeps the LSTM loops (calibrated inside them); --portable unrolls them:
    no WHILE, every LSTM op and activation product in int8, for delegates that run integer
    kernels only."""
    from storyedge.export.tflite import inspect_tflite

    out = tmp_path / "portable"
    code, err = _cli(["--checkpoint", str(export_env.run_dir), "--out", str(out), "--format", "tflite",
                      "--quantize", "int8", "--portable", "--validation-windows", "2", "--no-progress"], capsys)
    assert code == 0, err
    manifest = read_manifest(out)
    encoder = next(f for f in manifest.files if f.graph == "encoder")
    info = inspect_tflite((out / encoder.path).read_bytes())
    assert "WHILE" not in info.ops and info.subgraphs == 1 and encoder.validation["passed"]
    assert not {"WHILE", "DYNAMIC_UPDATE_SLICE", "LOGISTIC", "TANH", "BATCH_MATMUL"} & set(encoder.float_ops)
    assert info.quantized_ops.get("BATCH_MATMUL", 0) > 0  # the activation products too, unlike the default
    assert all(f.validation["passed"] for f in manifest.files)

"""MAC counts of the graphs (storyedge.macs) against hand counts, and the binding-floor rule."""

from __future__ import annotations

import numpy as np
import pytest

from storyedge.bench.compute import graph_floor
from storyedge.bench.results import ComputePeak, GraphFloor
from storyedge.config import Config
from storyedge.macs import encoder_macs, step_macs

#: k 2, 32 px, L 4, R 5, E 8, h 4, D 8 (2 heads), T 6, H 10, CNN base 2 / stem 2, feat 3, spatial 5
HAND = {
    "dataset.seq_len": 2, "dataset.image_size": 32, "dataset.max_caption_len": 4, "dataset.max_reason_len": 5,
    "model.text_embed_dim": 8, "model.text_hidden_dim": 4, "model.multimodal_dim": 8, "model.attention_heads": 2,
    "model.temporal_hidden_dim": 6, "model.decoder_hidden_dim": 10, "model.cnn_base_filters": 2,
    "model.cnn_stem_stride": 2, "model.image_feat_dim": 3, "model.image_spatial_dim": 5, "model.use_reason": True,
}


def hand_config(**overrides: object) -> Config:
    return Config().replace(**{**HAND, **overrides})


def test_encoder_and_lstm_step_macs_equal_a_hand_count() -> None:
    enc = encoder_macs(hand_config())
    # Bi-LSTM: 2 rows x 4 tokens x 4h(E+h)=192, two directions, + reversal matmuls 2 x 4² x (8+4)
    assert enc.macs["caption_encoder"] == 2 * 192 * 8 + 384 == 3456
    # the reason's is pooled only: its reversal matmul reverses the embedded input, no output (5² x 8)
    assert enc.macs["reason_encoder"] == 2 * 192 * 5 + 25 * 8 == 2120
    # CNN: stem 16²x27x2 per frame; stage1 8² px x (9·2·2 + 9·2·2 + 2·2); stage2 4² px x (9·2·4 + 9·4·4 + 2·4);
    # global 4x3; patches 16 cells x 4x5 — each for 2 frames
    assert enc.macs["image_encoder"] == 2 * (256 * 54 + 64 * 76 + 16 * 224 + 12 + 16 * 20) == 45208
    # mix 11x8; per frame: attention q 4x8x8, k 16x5x8, v of 2 heads' patches 2x5x8 and out 8x8 (after
    # the mean over tokens); scores 4x16x8, the mean of 2 heads' weights 2x4x16, their patches 2x16x5
    assert enc.macs["fusion"] == 2 * 88 + 2 * (256 + 640 + 80 + 64) + 2 * (512 + 128 + 160) == 3856
    assert enc.macs["temporal_lstm"] == 2 * 4 * 6 * (8 + 6) == 672
    # init_h, init_c over C = T + 2h = 14, and the context's share of the cell's 4h gates
    assert enc.macs["decoder_init"] == 2 * 14 * 10 + 14 * 40 == 840
    assert enc.total == 3456 + 2120 + 45208 + 3856 + 672 + 840 == 56152
    # recurrent h U products: directions x steps x rows x 4h·h (caption 2 rows, reason and temporal 1)
    assert enc.sequential == {"caption_encoder": 2 * 4 * 2 * 64, "reason_encoder": 2 * 5 * 64,
                              "temporal_lstm": 2 * 4 * 6 * 6}
    assert enc.total_sequential == 1024 + 640 + 288
    step = step_macs(hand_config(), vocab=50)
    # the step's cell reads the token's embedding (E 8) and h (10): the context's gates come from the encoder
    assert step.macs == {"decoder": 8 * 40 + 10 * 40, "logits": 10 * 50}
    assert step.total == 1220 and step.total_weights == 1220  # batch 1: every weight once


def test_bi_lstms_count_the_real_tokens_when_known() -> None:
    from storyedge.bench.inputs import real_tokens
    from storyedge.macs import RealTokens

    captions = np.array([[[2, 7, 3, 0], [2, 3, 0, 0]]], np.int32)  # 3 + 2 real tokens of 2 x 4
    reason = np.array([[5, 6, 7, 0, 0]], np.int32)
    real = real_tokens({"captions": captions, "reason": reason, "frames": np.zeros(1)}, pad_id=0)
    assert real == RealTokens(captions=5, reason=3)
    enc = encoder_macs(hand_config(), real=real)
    # 4h(E+h) = 192 a token and direction, over the real tokens; the reversal matmuls keep the padded shape
    assert enc.macs["caption_encoder"] == 2 * 192 * 5 + 384
    assert enc.macs["reason_encoder"] == 2 * 192 * 3 + 25 * 8
    assert enc.sequential["caption_encoder"] == 2 * 5 * 64 and enc.sequential["reason_encoder"] == 2 * 3 * 64
    padded = encoder_macs(hand_config())
    assert {k: v for k, v in enc.macs.items() if "encoder" not in k or k == "image_encoder"} == \
        {k: v for k, v in padded.macs.items() if "encoder" not in k or k == "image_encoder"}
    assert encoder_macs(hand_config(), real=RealTokens()).macs == padded.macs  # unknown: the padded length


def test_vit_transformer_and_batch_hand_counts() -> None:
    vit = encoder_macs(hand_config(**{"model.image_encoder": "vit", "model.vit_patch_size": 8,
                                      "model.vit_layers": 1, "model.vit_heads": 1}))
    # 16 patches of 8x8x3 -> 5; one block: q k v o 4x5² + MLP 2x4x5² per token, attention 2x16²x5; global 5x3
    assert vit.macs["image_encoder"] == 2 * (16 * 960 + 16 * 300 + 2 * 256 * 5 + 15) == 45470
    cfg = hand_config(**{"model.decoder": "transformer", "model.decoder_heads": 2, "model.decoder_ff_dim": 12,
                         "model.decoder_layers": 1})
    # in_proj 8x10; self q k v o + cross q o 6x10², ff 2x10x12; attention over the 4-slot cache + 4 memory slots
    assert step_macs(cfg, vocab=50).total == 80 + 600 + 240 + 2 * (4 + 4) * 10 + 500 == 1580
    assert step_macs(hand_config(), vocab=50, batch=3).total == 3 * 1220
    assert step_macs(hand_config(), vocab=7).macs["logits"] == 70  # a shortlist's width


@pytest.mark.parametrize("overrides", [{}, {"model.image_encoder": "vit", "model.vit_patch_size": 8,
                                            "model.vit_heads": 1, "model.decoder": "transformer",
                                            "model.decoder_heads": 2}])
def test_counted_weights_are_the_models_kernels(overrides: dict[str, object]) -> None:
    from storyedge.model.story_model import build_model, context_dim

    cfg = hand_config(**overrides)
    model = build_model(cfg, 50, 0)

    def kernels(*layers: object) -> int:
        return sum(int(np.prod(v.shape)) for layer in layers for v in layer.weights
                   if v.name in ("kernel", "recurrent_kernel"))

    enc = encoder_macs(cfg)
    assert enc.weights["image_encoder"] == kernels(model.image_encoder)
    assert enc.weights["caption_encoder"] == kernels(model.caption_encoder)
    assert enc.weights["fusion"] == kernels(model.fusion)
    assert enc.weights["temporal_lstm"] == kernels(model.temporal_lstm)
    if cfg.model.decoder == "lstm":  # the cell kernel's context rows run in the encoder (context_gates)
        context_rows = context_dim(cfg) * 4 * cfg.model.decoder_hidden_dim
        assert step_macs(cfg, 50).total_weights == kernels(model.decoder_cell, model.logits_proj) - context_rows
        assert enc.weights["decoder_init"] == kernels(model.init_h, model.init_c) + context_rows
    else:  # the cross K / V projections run in the encoder (decoder_init), not in the step
        cross = sum(int(np.prod(b.cross_k.kernel.shape)) * 2 for b in model.transformer_decoder.blocks)
        assert step_macs(cfg, 50).total_weights == kernels(model.transformer_decoder, model.logits_proj) - cross


def test_binding_floor_is_bytes_only_beyond_the_cache() -> None:
    peak = ComputePeak("onnxruntime", "fp32", "step", [1, 10, 40], 0.001, 1e9)  # 1 GMAC/s
    in_cache = graph_floor(2_000_000, peak, 8_000_000, read_gbps=1.0, llc_bytes=16 << 20, p50_ms=4.0)
    assert in_cache.binding == "compute" and in_cache.floor_ms == pytest.approx(2.0) and in_cache.vs_floor == 2.0
    beyond = graph_floor(2_000_000, peak, 8_000_000, read_gbps=1.0, llc_bytes=1 << 20, p50_ms=4.0)
    assert beyond.binding == "bytes" and beyond.floor_ms == pytest.approx(8.0) and beyond.vs_floor == 0.5
    assert graph_floor(1, None, 1, 1.0, None, 1.0) is None


def test_the_weight_read_floor_binds_where_reading_the_weights_takes_longer() -> None:
    peak = ComputePeak("litert", "int8", "step", [1, 10, 40], 0.001, 1e9)  # 1 GMAC/s
    # a 2-row product reads each of its weights once per 2 MACs: 0.5 GMAC/s is 0.25 G weights/s
    weights = ComputePeak("litert", "int8", "weights", [2, 10, 400], 0.001, 0.5e9)
    # 2M MACs: compute 2 ms; 1M weights at 0.25 G weights/s: 4 ms, though they fit the cache
    f = graph_floor(2_000_000, peak, 1_000_000, read_gbps=1.0, llc_bytes=16 << 20, p50_ms=6.0,
                    read=(1_000_000, weights))
    assert f.read_floor_ms == pytest.approx(4.0) and (f.binding, f.floor_ms, f.vs_floor) == ("read", 4.0, 1.5)
    assert f.read_peak == "litert int8"
    # beyond the cache, the slower of the DRAM bytes floor and the read floor binds
    beyond = graph_floor(2_000_000, peak, 8_000_000, read_gbps=1.0, llc_bytes=1 << 20, p50_ms=6.0,
                         read=(1_000_000, weights))
    assert (beyond.binding, beyond.floor_ms) == ("bytes", pytest.approx(8.0))
    fast = ComputePeak("litert", "int8", "weights", [1, 10, 400], 0.001, 1e10)
    quick = graph_floor(2_000_000, peak, 1_000_000, 1.0, 16 << 20, 6.0, read=(1_000_000, fast))
    assert quick.binding == "compute" and quick.read_floor_ms == pytest.approx(0.1)
    unmeasured = graph_floor(2_000_000, peak, 1_000_000, 1.0, 16 << 20, 6.0, read=(1_000_000, None))
    assert unmeasured.read_floor_ms is None and unmeasured.read_peak == "" and unmeasured.binding == "compute"


def test_the_step_s_macs_take_the_faster_of_the_step_and_weights_probes() -> None:
    from storyedge.bench.compute import backend_floors, compute_floors
    from storyedge.bench.results import Roofline

    cfg = hand_config()
    roofline = Roofline(weight_bytes=1000, bytes_per_weight=4, floor_ms=1.0, step_vs_floor=1.0, step_vs_fp32_floor=1.0,
                        fits_in_llc=None)

    def step_floor(step_rate: float, weights_rate: float) -> GraphFloor:
        peaks = [ComputePeak("litert", "fp32", "encoder", [1, 10, 10], 0.001, 1e9),
                 ComputePeak("litert", "fp32", "step", [1, 10, 40], 0.001, step_rate),
                 ComputePeak("litert", "fp32", "weights", [1, 10, 400], 0.001, weights_rate)]
        floors = compute_floors(cfg, vocab=50, batch=1, peaks=peaks)
        return backend_floors(floors, "tflite", "fp32", 1.0, 1.0, roofline, 1.0, None).step

    macs = step_macs(cfg, 50).total
    # a step probe whose weights left the cache (slower than the big product): the big product's rate,
    # and then the compute floor is the read floor, named so
    slow = step_floor(0.5e9, 1e9)
    assert slow.compute_floor_ms == pytest.approx(macs / 1e9 * 1e3) == pytest.approx(slow.read_floor_ms)
    assert slow.binding == "read"
    assert step_floor(2e9, 1e9).compute_floor_ms == pytest.approx(macs / 2e9 * 1e3)  # in cache: its own


def test_int8_weights_are_never_read_at_numpy_s_fp32_rate() -> None:
    from storyedge.bench.compute import backend_floors, compute_floors
    from storyedge.bench.results import Roofline

    cfg = hand_config()
    peaks = [ComputePeak("numpy", "fp32", role, [1, 10, 10], 0.001, 1e9) for role in ("encoder", "step", "weights")]
    floors = compute_floors(cfg, vocab=50, batch=1, peaks=peaks)
    assert floors.step_weights == step_macs(cfg, 50).total_weights
    roofline = Roofline(weight_bytes=1000, bytes_per_weight=1, floor_ms=1.0, step_vs_floor=1.0, step_vs_fp32_floor=1.0,
                        fits_in_llc=None)
    int8 = backend_floors(floors, "tflite", "int8-dynamic", 1.0, 1.0, roofline, 1.0, None)
    assert int8.step.read_floor_ms is None and int8.encoder.read_floor_ms is None
    fp32 = backend_floors(floors, "tflite", "fp32", 1.0, 1.0, roofline, 1.0, None, caption=(12, 30.0))
    assert fp32.step.read_floor_ms == pytest.approx(floors.step_weights / 1e9 * 1e3)
    assert fp32.encoder.read_floor_ms == pytest.approx(floors.encoder_weights / 1e9 * 1e3)
    assert fp32.step.read_peak == "numpy fp32"
    # the caption's floor: the encoder's binding floor and 12 steps at the step's
    assert fp32.caption_floor_ms == pytest.approx(fp32.encoder.floor_ms + 12 * fp32.step.floor_ms)
    assert fp32.caption_vs_floor == pytest.approx(30.0 / fp32.caption_floor_ms)
    assert int8.caption_floor_ms is None and int8.caption_vs_floor is None  # no caption given


def test_recurrent_macs_are_priced_at_their_own_peak() -> None:
    gemm = ComputePeak("onnxruntime", "fp32", "encoder", [96, 300, 2048], 0.001, 4e9)  # 4 GMAC/s
    recurrent = ComputePeak("onnxruntime", "fp32", "recurrent", [3, 512, 2048], 0.001, 1e9)  # 1 GMAC/s
    row = ComputePeak("onnxruntime", "fp32", "recurrent_row", [1, 512, 2048], 0.001, 0.5e9)  # 0.5 GMAC/s
    # 3M batched MACs at 4 GMAC/s + 1M recurrent at 1 GMAC/s = 0.75 + 1.0 ms
    f = graph_floor(4_000_000, gemm, 1000, read_gbps=1.0, llc_bytes=16 << 20, p50_ms=3.5,
                    sequential=[(1_000_000, recurrent)])
    assert f.compute_floor_ms == pytest.approx(1.75) and f.vs_floor == pytest.approx(2.0)
    assert (f.sequential_macs, f.sequential_peak) == (1_000_000, "onnxruntime fp32 recurrent")
    # + 0.5M of one-row products at 0.5 GMAC/s: 2.5M at 4 + 1M at 1 + 0.5M at 0.5 = 0.625 + 1.0 + 1.0 ms
    f = graph_floor(4_000_000, gemm, 1000, 1.0, 16 << 20, 3.5, sequential=[(1_000_000, recurrent), (500_000, row)])
    assert f.compute_floor_ms == pytest.approx(2.625) and f.sequential_macs == 1_500_000
    assert f.sequential_peak == "onnxruntime fp32 recurrent, recurrent_row"
    # without a recurrent peak (a report of schema 1.4) every MAC is priced at the GEMM's rate
    assert graph_floor(4_000_000, gemm, 1000, 1.0, 16 << 20, 3.5, [(1_000_000, None)]).compute_floor_ms == \
        pytest.approx(1.0)


def test_each_lstm_s_recurrent_macs_take_the_peak_of_its_rows() -> None:
    from storyedge.bench.compute import compute_floors, encoder_sequential, peak_shapes

    cfg = hand_config()
    shapes = peak_shapes(cfg, batch=1, vocab=50)
    assert shapes["recurrent"] == (2, 4, 16) and shapes["recurrent_row"] == (1, 4, 16)  # B·k = 2 rows, B = 1
    # the step's weights in one product: H = 10 rows of ceil(weights / 10) columns
    assert shapes["weights"] == (1, 10, -(-step_macs(cfg, 50).total_weights // 10))
    peaks = [ComputePeak("onnxruntime", "int8", role, list(shapes[role]), 0.001, rate)
             for role, rate in (("encoder", 4e9), ("recurrent", 2e9), ("recurrent_row", 1e9))]
    floors = compute_floors(cfg, vocab=50, batch=1, peaks=peaks)
    assert floors.encoder_sequential_rows == {"caption_encoder": 2, "reason_encoder": 1, "temporal_lstm": 1}
    pairs = encoder_sequential(floors, "onnx", "int8-dynamic")
    assert [(n, p.role) for n, p in pairs] == [(1024, "recurrent"), (640, "recurrent_row"), (288, "recurrent_row")]
    # a report without rows (schema 1.6) prices them all at the caption's recurrent role
    floors.encoder_sequential_rows = {}
    assert {p.role for _, p in encoder_sequential(floors, "onnx", "int8-dynamic")} == {"recurrent"}


def test_int8_onnx_probe_keeps_the_quantizer_s_advice_off_the_screen(tmp_path, caplog) -> None:
    from storyedge.bench.compute import ort_probe

    run = ort_probe((1, 16, 32), "int8", 1, tmp_path)
    run()
    said = " ".join(record.getMessage() for record in caplog.records)
    assert "pre-processing" not in said and "Quantization parameters" not in said


def test_peak_probes_measure_round_by_round() -> None:
    from storyedge.bench.compute import ROLES, PeakProbes

    probes = PeakProbes(hand_config(), batch=1, vocab=50, threads=1, runtimes=["numpy"])
    assert probes.peaks() == [] and probes.rounds == 0  # nothing timed yet
    probes.round()
    first = {p.role: p.ms for p in probes.peaks()}
    probes.round()
    peaks = probes.peaks()
    assert probes.rounds == 2 and probes.seconds > 0
    assert {p.role for p in peaks} == set(ROLES) and {(p.runtime, p.precision) for p in peaks} == {("numpy", "fp32")}
    assert all(p.ms <= first[p.role] and p.macs_per_s > 0 for p in peaks)  # each probe's best round
    probes.top_up(3)
    assert probes.rounds == 3
    probes.top_up(2)  # never fewer than already run
    assert probes.rounds == 3


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-5), ("int8", 0.03)])
def test_litert_probes_are_the_converter_s_product_at_any_shape(precision: str, tolerance: float) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from storyedge.bench.compute import _weights, litert_template, widened_product
    from storyedge.tflite_schema import schema

    m, k, n = 3, 96, 1500
    content = widened_product(litert_template(precision), m, _weights(k, n))
    tfl = schema()
    graph = tfl.ModelT.InitFromPackedBuf(content, 0).subgraphs[0]
    weight = graph.tensors[graph.operators[0].inputs[1]]
    assert list(weight.shape) == [n, k]
    expected = tfl.TensorType.INT8 if precision == "int8" else tfl.TensorType.FLOAT32
    assert weight.type == expected and (precision == "fp32" or len(weight.quantization.scale) == n)
    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    reference = x @ _weights(k, n)
    assert y.shape == (m, n) and np.abs(y - reference).max() <= tolerance * np.abs(reference).max()

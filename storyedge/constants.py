"""Names and numbers shared across storyedge, each defined once.

The config (``storyedge.config``), the manifest, the tokenizer, the exporter and the bench
import these instead of spelling them out. Core module: imports nothing but :mod:`typing`, so
any part of the package (including the TensorFlow-free runtime path) can use it.
"""

from typing import Final

# ----------------------------------------------------------------------------------- data

#: ``dataset.name`` of the embedded synthetic story generator.
SYNTHETIC_DATASET: Final = "synthetic"
#: ``dataset.schema``: ``auto`` picks ``storyreasoning`` when its columns are present, else
#: ``generic``.
DATASET_SCHEMAS: Final = ("auto", "generic", "storyreasoning")

# ------------------------------------------------------------------------------ tokenizer

#: ``tokenizer.name`` of the WordPiece trained offline on the dataset's captions.
WORDPIECE_TOKENIZER: Final = "wordpiece"
#: ``tokenizer.name`` of the pretrained tokenizer (Hugging Face hub / cache).
PRETRAINED_TOKENIZER: Final = "bert-base-uncased"
#: Every valid ``tokenizer.name``.
TOKENIZER_NAMES: Final = (WORDPIECE_TOKENIZER, PRETRAINED_TOKENIZER)
#: Directory holding the saved tokenizer inside a run bundle and an export directory.
TOKENIZER_DIR: Final = "tokenizer"
#: Vocabulary size of ``bert-base-uncased`` (the seed's V); a trained WordPiece is padded to it
#: when the pretrained tokenizer cannot be had offline (``tokenizer.pad_to_vocab_size``).
BERT_VOCAB_SIZE: Final = 30522
#: Entries a padded vocabulary gets after the trained ones, as BERT's own vocabulary has them
#: (``[unused0]``, ``[unused1]``, ...): never produced by encoding.
UNUSED_TOKEN: Final = "[unused{}]"

# ---------------------------------------------------------------------------------- model

#: ``model.fusion``: cross-modal attention, plain concatenation, or images ignored (ablation).
FUSION_MODES: Final = ("attention", "concat", "text_only")
#: Where the reason vector enters the model: nowhere, the per-frame fusion, or the decoder's
#: initial state.
REASON_MODES: Final = ("none", "fusion", "init")
#: ``model.cnn_stem_stride``: stride of the CNN's stem conv.
CNN_STEM_STRIDES: Final = (1, 2, 4)
#: ``model.decoder``: the LSTMCell caption decoder (default) or a pre-norm Transformer decoder
#: with a static-shape key/value cache per layer.
DECODER_KINDS: Final = ("lstm", "transformer")

#: ``model.image_encoder``: the ResNet-like CNN (default) or a Vision Transformer.
IMAGE_ENCODERS: Final = ("cnn", "vit")

# ------------------------------------------------------------------------------- training

#: ``--device`` choices; ``auto`` picks a GPU (CUDA or Metal) when one is usable.
DEVICES: Final = ("auto", "cpu", "cuda", "metal")
#: ``--strategy`` / ``training.strategy``: how many devices / machines train (tf.distribute).
#: auto: MirroredStrategy when TensorFlow sees more than one GPU, else the default strategy.
STRATEGIES: Final = ("auto", "default", "mirrored", "multi-worker")
#: Default ``training.collective_timeout_seconds``: how long a worker waits in one collective
#: (all-reduce) for a peer before it gives up and exits non-zero.
COLLECTIVE_TIMEOUT_SECONDS: Final = 120.0
#: How long multi-worker processes wait for each other once before training (their start-up
#: times differ: TensorFlow import, data, tokenizer).
STARTUP_TIMEOUT_SECONDS: Final = 600.0

# --------------------------------------------------------------------------------- export

#: The exported decoder step's signature / graph name (the encoder's is ``encoder``).
DECODER_STEP: Final = "decoder_step"
#: Export formats, in the order they are written and listed.
EXPORT_FORMATS: Final = ("tflite", "onnx")
#: ``--quantize`` / ``export.quantize`` name → precision label used in file names and the
#: manifest. The order is the order precisions are exported and listed.
QUANTIZE_PRECISIONS: Final[dict[str, str]] = {
    "none": "fp32",
    "fp16": "fp16",
    "int8-dynamic": "int8-dynamic",
    "int8": "int8",
    "int4": "int4",
}
#: Every valid ``export.quantize`` item.
QUANTIZE_NAMES: Final = tuple(QUANTIZE_PRECISIONS)
#: Precisions a TFLite export can have (all of them).
TFLITE_PRECISIONS: Final = tuple(QUANTIZE_PRECISIONS.values())
#: Precisions an ONNX export can have (all of them; int4 needs the ``com.microsoft`` MatMulNBits
#: op, so it is left out under ``--portable``).
ONNX_PRECISIONS: Final = ("fp32", "fp16", "int8-dynamic", "int8", "int4")
#: ONNX opsets the exporter accepts, inclusive (``export.opset`` and ``--opset``).
ONNX_OPSET_MIN: Final = 13
ONNX_OPSET_MAX: Final = 18
#: The first ONNX opset whose standard ``DequantizeLinear`` takes int4 and a ``block_size``.
ONNX_STANDARD_INT4_OPSET: Final = 21
#: ``export.calibration_method`` / ``--calibration-method``: how static int8 (ONNX) turns the
#: calibration activations into ranges (onnxruntime's MinMax / Entropy / Percentile).
CALIBRATION_METHODS: Final = ("minmax", "entropy", "percentile")
#: ``export.int4_block_size`` / ``--int4-block-size``: weights per int4 scale. These four are the
#: blockwise granularities ai-edge-quantizer has; MatMulNBits takes any power of two >= 16.
INT4_BLOCK_SIZES: Final = (32, 64, 128, 256)

# ---------------------------------------------------------------------------------- bench

#: Parity gate defaults (``bench.gate_*``), exported vs. the TF reference on the same windows.
#: fp32: |PPL ratio - 1| at most this.
GATE_FP32_PPL_RATIO_TOL: Final = 1e-3
#: fp32: greedy-decode token agreement at least this.
GATE_FP32_GREEDY_AGREEMENT: Final = 1.0
#: fp16: PPL ratio at most this.
GATE_FP16_PPL_RATIO_MAX: Final = 1.005
#: int8-dynamic: PPL ratio at most this.
GATE_INT8_DYNAMIC_PPL_RATIO_MAX: Final = 1.02
#: int8-dynamic: top-1 next-token agreement at least this.
GATE_INT8_DYNAMIC_TOP1_MIN: Final = 0.95
#: The top-1 gates count only *decisive* positions: where the reference's top logit leads its
#: runner-up by at least this (nats). Below it the reference itself is undecided (its runner-up has
#: >= 95 % of the top's probability), so a backend that swaps the two changes the distribution by
#: less than that and says nothing about the prediction; the share of such near-ties is reported.
TOP1_TIE_MARGIN: Final = 0.05
#: static int8: PPL ratio at most this.
GATE_INT8_PPL_RATIO_MAX: Final = 1.05
#: int4 (weight-only, blockwise): PPL ratio at most this.
GATE_INT4_PPL_RATIO_MAX: Final = 1.05
#: int4: top-1 next-token agreement at least this.
GATE_INT4_TOP1_MIN: Final = 0.9

#: Story mode: its outputs must equal the full-window encoder's within this (fp32, max |diff|).
STORY_PARITY_ATOL: Final = 1e-5

#: Caption-quality gate defaults (``bench.gate_*_drop``): the most a backend's caption metric may
#: fall below the TF reference's on the same eval windows (delta = backend - reference), for
#: every exported backend. Chosen from the measured noise on 64 windows (README, Results): fp32
#: deltas were exactly 0; int8-dynamic deltas ranged -1.39..+0.64 BLEU-4, -0.18..+0.07 CIDEr-D,
#: -0.016..+0.016 exact match, paired-bootstrap SD up to 1.19 BLEU-4 / 0.13 CIDEr-D: the gates
#: sit at about three of those SDs. BLEU-4 in sacrebleu points (0-100).
GATE_BLEU_DROP: Final = 4.0
#: CIDEr-D (pycocoevalcap, 0-10) drop.
GATE_CIDER_DROP: Final = 0.4
#: Exact-match rate (fraction of captions) drop.
GATE_EXACT_MATCH_DROP: Final = 0.05
#: ``bench.quality_windows``'s default is ``bench.max_windows``: the greedy captions parity
#: decodes anyway. Training scores at most this many validation windows per epoch.
TRAIN_QUALITY_WINDOWS: Final = 64

#: Keys of an export's timings (manifest ``source.export.seconds``) that the bench reads back:
#: the whole export, and a backend's validation (``validate <backend>``, story mode's with the suffix).
EXPORT_TOTAL_TIMING: Final = "total"
VALIDATION_TIMING_PREFIX: Final = "validate "
STORY_VALIDATION_TIMING_SUFFIX: Final = " story mode"

"""Typed configuration: pydantic sections, YAML loading and validation with clear errors.

A config file is a YAML mapping with the sections ``dataset``, ``tokenizer``, ``model``,
``training``, ``export`` and ``bench``. Every key is optional (defaults below); an unknown key,
a value of the wrong type or an impossible value raises :class:`~storyedge.errors.ConfigError`
with one line naming the key, e.g. ``model.attention_heads: must be >= 1, got 0``.

Validation is strict: ``"3"`` is not an integer and ``true`` is not a number; an integer is
accepted for a float key (``lr: 1`` → ``1.0``), and list keys also take a comma-separated
string (``formats: tflite,onnx``). Sections validate on assignment too.

Vocabulary size and special token ids are deliberately absent: they come from the tokenizer.
"""

from __future__ import annotations

import difflib
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError, PydanticKnownError

from storyedge.constants import (
    CNN_STEM_STRIDES,
    COLLECTIVE_TIMEOUT_SECONDS,
    STRATEGIES,
    DATASET_SCHEMAS,
    DECODER_KINDS,
    EXPORT_FORMATS,
    FUSION_MODES,
    GATE_FP16_PPL_RATIO_MAX,
    GATE_FP32_GREEDY_AGREEMENT,
    GATE_FP32_PPL_RATIO_TOL,
    GATE_INT8_DYNAMIC_PPL_RATIO_MAX,
    GATE_INT8_DYNAMIC_TOP1_MIN,
    GATE_INT8_PPL_RATIO_MAX,
    IMAGE_ENCODERS,
    ONNX_OPSET_MAX,
    ONNX_OPSET_MIN,
    QUANTIZE_NAMES,
    REASON_MODES,
    SYNTHETIC_DATASET,
    TOKENIZER_NAMES,
    WORDPIECE_TOKENIZER,
)
from storyedge.constants import (
    CALIBRATION_METHODS,
    GATE_INT4_PPL_RATIO_MAX,
    GATE_INT4_TOP1_MIN,
    INT4_BLOCK_SIZES,
)
from storyedge.constants import GATE_BLEU_DROP, GATE_CIDER_DROP, GATE_EXACT_MATCH_DROP, TRAIN_QUALITY_WINDOWS
from storyedge.errors import ConfigError

__all__ = [
    "BenchConfig",
    "Config",
    "DatasetConfig",
    "ExportConfig",
    "FUSION_MODES",
    "ModelConfig",
    "REASON_MODES",
    "SYNTHETIC_DATASET",
    "TOKENIZER_NAMES",
    "TokenizerConfig",
    "TrainingConfig",
    "config_from_dict",
    "load_config",
    "shipped_configs",
]

# Literal types built from the shared tuples, so a choice is spelled once (storyedge.constants).
DatasetSchema = Literal[DATASET_SCHEMAS]
TokenizerName = Literal[TOKENIZER_NAMES]
FusionMode = Literal[FUSION_MODES]
StemStride = Literal[CNN_STEM_STRIDES]
DecoderKind = Literal[DECODER_KINDS]
ImageEncoder = Literal[IMAGE_ENCODERS]
ExportFormat = Literal[EXPORT_FORMATS]
QuantizeName = Literal[QUANTIZE_NAMES]
StrategyName = Literal[STRATEGIES]
CalibrationMethod = Literal[CALIBRATION_METHODS]
Int4BlockSize = Literal[INT4_BLOCK_SIZES]

#: The error type of a rule checked by a ``model_validator``; its context names the key.
_RULE = "config_rule"


class _Section(BaseModel):
    """Base of every config model: strict, closed, validated on assignment.

    A bad assignment raises :class:`ConfigError`. Building a section directly
    (``DatasetConfig(seq_len=0)``) raises pydantic's ``ValidationError``: user input goes
    through :func:`config_from_dict` (and so :func:`load_config`, :meth:`Config.replace`),
    which turns it into the one-line :class:`ConfigError`.
    """

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    #: Location of this model inside :class:`Config`, for error messages (``()`` for Config).
    _prefix: ClassVar[tuple[str, ...]] = ()

    # No __init__ override: pydantic would then call it for nested sections too.
    def __setattr__(self, name: str, value: Any) -> None:
        """Validated assignment; a bad value raises :class:`ConfigError` and changes nothing."""
        before = self.__dict__.get(name)
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            # pydantic has already stored the value when a model_validator rejects it
            if name in type(self).model_fields:
                self.__dict__[name] = before
            raise _config_error(exc, self._prefix) from None


def _rule(key: str, problem: str) -> PydanticCustomError:
    """A cross-field rule failure reported against ``key`` of the section being validated."""
    return PydanticCustomError(_RULE, "{key}: {problem}", {"key": key, "problem": problem})


def _split_commas(value: Any) -> Any:
    """``"tflite, onnx"`` → ``["tflite", "onnx"]``; anything else is left to the list check."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# ``dataset.schema`` is a config key; the BaseModel.schema() it shadows is deprecated and unused.
warnings.filterwarnings(
    "ignore", message='Field name "schema" in "DatasetConfig" shadows', category=UserWarning
)


class DatasetConfig(_Section):
    """Where stories come from and how they are windowed and batched."""

    _prefix: ClassVar[tuple[str, ...]] = ("dataset",)

    #: ``synthetic`` (the embedded generator), a hub name such as ``daniel3303/StoryReasoning``,
    #: or a local directory (``save_to_disk`` output or a folder of parquet files).
    name: str = Field(SYNTHETIC_DATASET, min_length=1)
    #: Local copy of ``name`` (directory written by ``save_to_disk`` or holding parquet files).
    #: For ``synthetic``, where the generated dataset is written / read.
    path: str | None = None
    #: ``auto`` (StoryReasoning layout if its columns are present, else generic), ``generic``
    #: or ``storyreasoning``.
    schema: DatasetSchema = "auto"
    #: k: frames + captions given; the model writes caption k+1.
    seq_len: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    image_size: int = Field(32, ge=8)
    max_caption_len: int = Field(16, ge=3)
    max_reason_len: int = Field(32, ge=1)
    frames_key: str = "frames"
    captions_key: str = "captions"
    reason_key: str = "reason"
    #: Fraction of train carved (deterministically, by story id hash) into validation when the
    #: source has no validation split (StoryReasoning has train and test only).
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    #: Embedded generator: number of stories (all splits) and seed.
    synthetic_stories: int = Field(1200, ge=3)
    synthetic_seed: int = 0
    shuffle_buffer: int = Field(2048, ge=1)


class TokenizerConfig(_Section):
    """Which tokenizer: pretrained ``bert-base-uncased`` or a WordPiece trained on the data."""

    _prefix: ClassVar[tuple[str, ...]] = ("tokenizer",)

    name: TokenizerName = WORDPIECE_TOKENIZER
    #: Target vocabulary size when training WordPiece (the result may be smaller).
    vocab_size: int = Field(1000, ge=16)
    lowercase: bool = True
    #: WordPiece only: pad the trained vocabulary with never-produced ``[unusedN]`` entries to
    #: this size (e.g. 30522, ``bert-base-uncased``'s V, for the seed's output layer without the
    #: pretrained tokenizer); null: no padding. Must be at least the trained size.
    pad_to_vocab_size: int | None = Field(None, ge=16)

    @model_validator(mode="after")
    def _check_rules(self) -> TokenizerConfig:
        if self.pad_to_vocab_size is None:
            return self
        if self.name != WORDPIECE_TOKENIZER:
            raise _rule(
                "pad_to_vocab_size",
                f"only pads a trained vocabulary (tokenizer.name: {WORDPIECE_TOKENIZER}), got name {self.name!r}",
            )
        if self.pad_to_vocab_size < self.vocab_size:
            raise _rule(
                "pad_to_vocab_size",
                f"must be >= tokenizer.vocab_size ({self.vocab_size}), got {self.pad_to_vocab_size}",
            )
        return self


class ModelConfig(_Section):
    """Layer sizes and the fusion switch of the cross-modal attention fusion model."""

    _prefix: ClassVar[tuple[str, ...]] = ("model",)

    #: Global image vector size (CNN pooled output).
    image_feat_dim: int = Field(64, ge=1)
    #: Channels of the CNN spatial map whose cells are the attention keys/values.
    image_spatial_dim: int = Field(64, ge=1)
    #: Filters of the first CNN stage; later stages double it.
    cnn_base_filters: int = Field(16, ge=1)
    #: Stride of the CNN's stem conv (1, 2 or 4); 2 halves the resolution before the first
    #: residual stage, as ResNet's stem does (one stage fewer, ~4x cheaper at 32 px).
    cnn_stem_stride: StemStride = 2
    #: ``cnn`` (the ResNet-like CNN) or ``vit`` (a Vision Transformer over patches): either gives
    #: the patch sequence the attention reads and the global image vector.
    image_encoder: ImageEncoder = "cnn"
    #: ViT: side of a square patch in pixels (must divide ``dataset.image_size``).
    vit_patch_size: int = Field(8, ge=1)
    #: ViT: number of pre-norm Transformer blocks.
    vit_layers: int = Field(2, ge=1)
    #: ViT: attention heads per block (must divide ``model.image_spatial_dim``, the token width).
    vit_heads: int = Field(2, ge=1)
    text_embed_dim: int = Field(64, ge=1)
    #: Hidden size of each direction of the caption (and reason) Bi-LSTM.
    text_hidden_dim: int = Field(64, ge=1)
    #: Size of the fused per-frame vector (attention model dim).
    multimodal_dim: int = Field(64, ge=1)
    temporal_hidden_dim: int = Field(96, ge=1)
    decoder_hidden_dim: int = Field(96, ge=1)
    attention_heads: int = Field(2, ge=1)
    #: ``attention`` (default), ``concat`` (no attention: text pool ++ image global) or
    #: ``text_only`` (images ignored) for ablations.
    fusion: FusionMode = "attention"
    use_reason: bool = False
    #: With ``use_reason``: add the reason vector to each frame's fusion input (True) or only to
    #: the decoder's initial state (False).
    use_reason_in_fusion: bool = False
    dropout: float = Field(0.1, ge=0, lt=1)
    #: ``lstm`` (an LSTMCell step) or ``transformer`` (pre-norm decoder layers, width
    #: ``decoder_hidden_dim``, causal self-attention with a KV cache, cross-attention to the story).
    decoder: DecoderKind = "lstm"
    #: Transformer decoder only: number of layers, attention heads (must divide
    #: ``decoder_hidden_dim``) and the feed-forward inner size.
    decoder_layers: int = Field(2, ge=1)
    decoder_heads: int = Field(4, ge=1)
    decoder_ff_dim: int = Field(192, ge=1)

    @field_validator("cnn_stem_stride", mode="before")
    @classmethod
    def _stride_is_int(cls, value: Any) -> Any:
        # Literal[1, 2, 4] alone would take True as 1 and 2.0 as 2, even in strict mode.
        if isinstance(value, bool) or not isinstance(value, int):
            raise PydanticKnownError("int_type")
        return value

    @model_validator(mode="after")
    def _check_rules(self) -> ModelConfig:
        if self.multimodal_dim % self.attention_heads:
            raise _rule(
                "attention_heads",
                f"must divide model.multimodal_dim ({self.multimodal_dim}), got {self.attention_heads}",
            )
        if self.use_reason_in_fusion and not self.use_reason:
            raise _rule("use_reason_in_fusion", "requires model.use_reason: true")
        if self.decoder == "transformer" and self.decoder_hidden_dim % self.decoder_heads:
            raise _rule(
                "decoder_heads",
                f"must divide model.decoder_hidden_dim ({self.decoder_hidden_dim}), got {self.decoder_heads}",
            )
        if self.image_encoder == "vit" and self.image_spatial_dim % self.vit_heads:
            raise _rule(
                "vit_heads",
                f"must divide model.image_spatial_dim ({self.image_spatial_dim}), got {self.vit_heads}",
            )
        return self


class TrainingConfig(_Section):
    """Optimiser, loop and checkpointing settings."""

    _prefix: ClassVar[tuple[str, ...]] = ("training",)

    lr: float = Field(2e-3, gt=0)
    epochs: int = Field(10, ge=1)
    clip_norm: float = Field(1.0, gt=0)
    log_interval: int = Field(20, ge=1)
    save_dir: str = Field("runs/quickstart", min_length=1)
    seed: int = 42
    #: Save a checkpoint every this many steps as well as at each epoch end (0: epoch ends only).
    checkpoint_every_steps: int = Field(0, ge=0)
    keep_checkpoints: int = Field(3, ge=1)
    #: Stop after this many epochs without val-loss improvement (0: never).
    early_stopping_patience: int = Field(0, ge=0)
    jit_compile: bool = False
    #: Stop training after this many seconds (0: no limit); the epoch in progress finishes.
    max_train_seconds: float = Field(0.0, ge=0)
    #: Weight of the contrastive (InfoNCE) image-caption alignment loss added to the caption
    #: loss (0: off, the default graph and numbers).
    contrastive_weight: float = Field(0.0, ge=0)
    #: Temperature of the contrastive loss's cosine similarities.
    contrastive_temperature: float = Field(0.1, gt=0)
    #: tf.distribute strategy (``--strategy``): auto, default, mirrored or multi-worker (TF_CONFIG).
    strategy: StrategyName = "auto"
    #: Seconds a worker waits in one collective for its peers before it fails (multi-worker).
    collective_timeout_seconds: float = Field(COLLECTIVE_TIMEOUT_SECONDS, gt=0)
    #: Validation captions scored every epoch (greedy; exact match and BLEU-4): the first this
    #: many validation windows (0: off).
    quality_windows: int = Field(TRAIN_QUALITY_WINDOWS, ge=0)


class ExportConfig(_Section):
    """Defaults for ``storyedge export``."""

    _prefix: ClassVar[tuple[str, ...]] = ("export",)

    formats: list[ExportFormat] = Field(default_factory=lambda: list(EXPORT_FORMATS))
    quantize: list[QuantizeName] = Field(default_factory=lambda: ["none", "int8-dynamic"])
    batch: int = Field(1, ge=1)
    opset: int = Field(17, ge=ONNX_OPSET_MIN, le=ONNX_OPSET_MAX)
    #: Max |diff| on logits tolerated for fp32 exports at validation time.
    atol: float = Field(1e-4, gt=0)
    #: Validation base per precision label replacing ``atol x factor`` (``--tolerance
    #: PRECISION=BASE``, which wins over an entry here), e.g. ``{int8-dynamic: 0.25}``.
    tolerances: dict[str, float] = Field(default_factory=dict)
    validation_windows: int = Field(8, ge=1)
    #: Static int8 (ONNX): how calibration activations become ranges.
    calibration_method: CalibrationMethod = "minmax"
    #: int4: weights per scale (must divide the logits projection's input dim).
    int4_block_size: Int4BlockSize = 32
    #: Refuse non-standard ops: no ONNX ``com.microsoft`` contrib ops (LSTMs stay float in
    #: int8 and int8-dynamic, the decoder steps' products MatMulInteger / QDQ; ONNX int4 is skipped).
    portable: bool = False
    #: Also export story mode's graphs (per-frame, reason and story encoders) at every precision.
    story_mode: bool = True
    #: Processes converting TFLite files side by side (null: one per CPU core, at most 4; 1: all
    #: in the export's own process). Each holds TensorFlow and one conversion (GBs at the seed size).
    workers: int | None = Field(None, ge=1)

    _comma_lists = field_validator("formats", "quantize", mode="before")(_split_commas)


class BenchConfig(_Section):
    """Defaults for ``storyedge bench``: eval windows, timing runs and parity gates."""

    _prefix: ClassVar[tuple[str, ...]] = ("bench",)

    split: str = "validation"
    max_windows: int = Field(64, ge=1)
    threads: int = Field(2, ge=1)
    warmup: int = Field(10, ge=0)
    runs: int = Field(100, ge=1)
    gate_fp32_ppl_ratio_tol: float = GATE_FP32_PPL_RATIO_TOL
    gate_fp32_greedy_agreement: float = GATE_FP32_GREEDY_AGREEMENT
    gate_fp16_ppl_ratio_max: float = GATE_FP16_PPL_RATIO_MAX
    gate_int8_dynamic_ppl_ratio_max: float = GATE_INT8_DYNAMIC_PPL_RATIO_MAX
    gate_int8_dynamic_top1_min: float = GATE_INT8_DYNAMIC_TOP1_MIN
    gate_int8_ppl_ratio_max: float = GATE_INT8_PPL_RATIO_MAX
    gate_int4_ppl_ratio_max: float = GATE_INT4_PPL_RATIO_MAX
    gate_int4_top1_min: float = GATE_INT4_TOP1_MIN
    #: User budgets (unset: none): every backend is marked within / over each one that is set.
    budget_caption_ms: float | None = Field(None, gt=0)
    budget_step_ms: float | None = Field(None, gt=0)
    budget_encoder_ms: float | None = Field(None, gt=0)
    budget_size_mb: float | None = Field(None, gt=0)
    budget_peak_rss_mb: float | None = Field(None, gt=0)
    #: Exit 1 (after the reports are written) when no backend passing the gates is within every budget.
    fail_over_budget: bool = False
    #: Caption-quality gates: the most an exported backend's metric may fall below the TF
    #: reference's (delta = backend - reference, both against the references); null: off.
    gate_bleu_drop: float | None = Field(GATE_BLEU_DROP, ge=0)
    gate_cider_drop: float | None = Field(GATE_CIDER_DROP, ge=0)
    gate_exact_match_drop: float | None = Field(GATE_EXACT_MATCH_DROP, ge=0)
    #: Also score beam-search captions with this many beams (1: greedy captions only).
    beam: int = Field(1, ge=1)


class Config(_Section):
    """The whole configuration; ``Config()`` is the quickstart default."""

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        # A section header with nothing under it (``bench:``) parses as None: all defaults.
        return {} if value is None else value

    @model_validator(mode="after")
    def _check_cross_section_rules(self) -> Config:
        image_size, patch = self.dataset.image_size, self.model.vit_patch_size
        if self.model.image_encoder == "vit" and image_size % patch:
            raise _rule(
                "model.vit_patch_size", f"must divide dataset.image_size ({image_size}), got {patch}"
            )
        if self.training.contrastive_weight > 0 and self.model.fusion == "text_only":
            raise _rule(
                "training.contrastive_weight",
                "must be 0 with model.fusion: text_only (the contrastive loss aligns the image "
                "vector with the caption vector, and text_only has no image vector)",
            )
        return self

    def validate(self) -> Config:  # type: ignore[override]  # BaseModel.validate is deprecated
        """Re-check every key and rule; raise :class:`ConfigError` naming the first bad key."""
        config_from_dict(self.to_dict())
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-serialisable)."""
        return self.model_dump()

    def replace(self, **overrides: Any) -> Config:
        """Copy with dotted-key overrides, e.g. ``replace(**{"training.epochs": 2})``; validated."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if not key:
                raise ConfigError(f"{dotted}: unknown key (expected section.key)")
            data.setdefault(section, {})[key] = value
        return config_from_dict(data)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def config_from_dict(data: dict[str, Any] | None, source: str = "config") -> Config:
    """Build and validate a :class:`Config` from a nested mapping."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections, got {type(data).__name__}")
    try:
        # model_validate, not Config(**data): YAML keys need not be strings (``1: x``)
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc) from None


def load_config(path: str | Path | None = None) -> Config:
    """Load a YAML config; ``None`` gives the shipped quickstart config.

    ``path`` may also name a shipped config (``quickstart.yaml``, ``storyreasoning``).
    """
    if path is None:
        path = "quickstart.yaml"
    text, source = _read_config_text(str(path))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    return config_from_dict(data, source)


def shipped_configs() -> list[str]:
    """Names of the YAML configs shipped with the package."""
    return sorted(
        p.name for p in resources.files("storyedge.configs").iterdir() if p.name.endswith(".yaml")
    )


def _read_config_text(path: str) -> tuple[str, str]:
    candidate = Path(path)
    if candidate.is_file():
        return candidate.read_text(), str(candidate)
    if candidate.parent == Path("."):
        name = path if path.endswith((".yaml", ".yml")) else f"{path}.yaml"
        shipped = resources.files("storyedge.configs").joinpath(name)
        if shipped.is_file():
            return shipped.read_text(), f"{name} (shipped)"
    raise ConfigError(
        f"{path}: config file not found (shipped configs: {', '.join(shipped_configs())})"
    )


# ------------------------------------------------------------- ValidationError → one line


def _config_error(exc: ValidationError, prefix: tuple[str, ...] = ()) -> ConfigError:
    """The one-line :class:`ConfigError` for the first error of a pydantic ``ValidationError``.

    ``prefix``: the location of the validated model inside :class:`Config` (``("model",)``
    when a :class:`ModelConfig` was built on its own).
    """
    error = exc.errors(include_url=False)[0]
    # The config is two levels deep: anything after section.key is a list index.
    loc = (prefix + tuple(error["loc"]))[:2]
    kind, ctx, value = error["type"], error.get("ctx") or {}, error["input"]
    if kind == _RULE:
        loc = (*loc, ctx["key"])
    dotted = ".".join(map(str, loc))
    return ConfigError(f"{dotted}: {_problem(loc, kind, ctx, value, error['msg'])}")


_TYPE_PROBLEMS = {
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true/false",
    "string_type": "expected a string",
}


def _problem(loc: tuple[Any, ...], kind: str, ctx: dict[str, Any], value: Any, msg: str) -> str:
    """Our wording for one pydantic error at ``loc`` (``(section,)`` or ``(section, key)``)."""
    if kind in _TYPE_PROBLEMS:
        return f"{_TYPE_PROBLEMS[kind]}, got {value!r}"
    if kind in ("extra_forbidden", "invalid_key"):
        return _unknown(loc)
    if kind in ("model_type", "dict_type"):
        return f"must be a mapping, got {type(value).__name__}"
    if kind == "list_type":
        return f"expected a list, got {type(value).__name__}"
    if kind == "literal_error":
        return f"must be one of {', '.join(map(str, _choices(*loc)))}, got {value!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{_bounds(*loc)}, got {value}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == _RULE:
        return str(ctx["problem"])
    return " ".join(msg.split())  # never pydantic's multi-line text


def _unknown(loc: tuple[Any, ...]) -> str:
    """An unknown section, or an unknown key with the closest known one as a hint."""
    if len(loc) == 1:
        return f"unknown section (expected one of {', '.join(Config.model_fields)})"
    close = [k for k in _section_model(loc[0]).model_fields if _similar(k, str(loc[1]))]
    return "unknown key" + (f" (did you mean {close[0]}?)" if close else "")


def _section_model(section: str) -> type[BaseModel]:
    return Config.model_fields[section].annotation  # type: ignore[return-value]


def _choices(section: str, key: str) -> tuple[Any, ...]:
    """The Literal choices of ``section.key`` (of its items, for a list key)."""
    annotation = _section_model(section).model_fields[key].annotation
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    return get_args(annotation)


_BOUND_SYMBOLS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _bounds(section: str, key: str) -> str:
    """``must be >= 1``, or an interval such as ``must be in [0, 1)`` for a two-sided bound."""
    limits = {
        name: f"{getattr(item, name):g}"
        for item in _section_model(section).model_fields[key].metadata
        for name in _BOUND_SYMBOLS
        if getattr(item, name, None) is not None
    }
    low = next(((n, v) for n, v in limits.items() if n in ("ge", "gt")), None)
    high = next(((n, v) for n, v in limits.items() if n in ("le", "lt")), None)
    if low and high:
        opening, closing = ("[" if low[0] == "ge" else "("), ("]" if high[0] == "le" else ")")
        return f"must be in {opening}{low[1]}, {high[1]}{closing}"
    name, limit = low or high  # type: ignore[misc]  # a bound error implies a bound
    return f"must be {_BOUND_SYMBOLS[name]} {limit}"


def _similar(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75

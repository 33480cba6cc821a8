"""Typed configuration: dataclass sections, YAML loading and validation with clear errors.

A config file is a YAML mapping with the sections ``dataset``, ``tokenizer``, ``model``,
``training``, ``export`` and ``bench``. Every key is optional (defaults below); an unknown key,
a value of the wrong type or an impossible value raises :class:`~storyedge.errors.ConfigError`
naming the key, e.g. ``model.attention_heads: must be >= 1, got 0``.

Vocabulary size and special token ids are deliberately absent: they come from the tokenizer.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from storyedge.errors import ConfigError

SYNTHETIC_DATASET = "synthetic"
FUSION_MODES = ("attention", "concat", "text_only")
REASON_MODES = ("none", "fusion", "init")
TOKENIZER_NAMES = ("wordpiece", "bert-base-uncased")


@dataclass
class DatasetConfig:
    """Where stories come from and how they are windowed and batched."""

    #: ``synthetic`` (the embedded generator), a hub name such as ``daniel3303/StoryReasoning``,
    #: or a local directory (``save_to_disk`` output or a folder of parquet files).
    name: str = SYNTHETIC_DATASET
    #: Local copy of ``name`` (directory written by ``save_to_disk`` or holding parquet files).
    #: For ``synthetic``, where the generated dataset is written / read.
    path: str | None = None
    #: ``auto`` (StoryReasoning layout if its columns are present, else generic), ``generic``
    #: or ``storyreasoning``.
    schema: str = "auto"
    #: k: frames + captions given; the model writes caption k+1.
    seq_len: int = 3
    batch_size: int = 16
    image_size: int = 32
    max_caption_len: int = 16
    max_reason_len: int = 32
    frames_key: str = "frames"
    captions_key: str = "captions"
    reason_key: str = "reason"
    #: Fraction of train carved (deterministically, by story id hash) into validation when the
    #: source has no validation split (StoryReasoning has train and test only).
    validation_fraction: float = 0.1
    #: Embedded generator: number of stories (all splits) and seed.
    synthetic_stories: int = 1200
    synthetic_seed: int = 0
    shuffle_buffer: int = 2048

    def validate(self) -> None:
        _positive("dataset.seq_len", self.seq_len)
        _positive("dataset.batch_size", self.batch_size)
        _at_least("dataset.image_size", self.image_size, 8)
        _at_least("dataset.max_caption_len", self.max_caption_len, 3)
        _positive("dataset.max_reason_len", self.max_reason_len)
        _choice("dataset.schema", self.schema, ("auto", "generic", "storyreasoning"))
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(
                f"dataset.validation_fraction: must be between 0 and 1 (exclusive), "
                f"got {self.validation_fraction}"
            )
        _at_least("dataset.synthetic_stories", self.synthetic_stories, 3)
        _positive("dataset.shuffle_buffer", self.shuffle_buffer)
        if not self.name:
            raise ConfigError("dataset.name: must not be empty")


@dataclass
class TokenizerConfig:
    """Which tokenizer: pretrained ``bert-base-uncased`` or a WordPiece trained on the data."""

    name: str = "wordpiece"
    #: Target vocabulary size when training WordPiece (the result may be smaller).
    vocab_size: int = 1000
    lowercase: bool = True

    def validate(self) -> None:
        _choice("tokenizer.name", self.name, TOKENIZER_NAMES)
        _at_least("tokenizer.vocab_size", self.vocab_size, 16)


@dataclass
class ModelConfig:
    """Layer sizes and the fusion switch of the cross-modal attention fusion model."""

    #: Global image vector size (CNN pooled output).
    image_feat_dim: int = 64
    #: Channels of the CNN spatial map whose cells are the attention keys/values.
    image_spatial_dim: int = 64
    #: Filters of the first CNN stage; later stages double it.
    cnn_base_filters: int = 16
    #: Stride of the CNN's stem conv (1, 2 or 4); 2 halves the resolution before the first
    #: residual stage, as ResNet's stem does (one stage fewer, ~4x cheaper at 32 px).
    cnn_stem_stride: int = 2
    text_embed_dim: int = 64
    #: Hidden size of each direction of the caption (and reason) Bi-LSTM.
    text_hidden_dim: int = 64
    #: Size of the fused per-frame vector (attention model dim).
    multimodal_dim: int = 64
    temporal_hidden_dim: int = 96
    decoder_hidden_dim: int = 96
    attention_heads: int = 2
    #: ``attention`` (default), ``concat`` (no attention: text pool ++ image global) or
    #: ``text_only`` (images ignored) for ablations.
    fusion: str = "attention"
    use_reason: bool = False
    #: With ``use_reason``: add the reason vector to each frame's fusion input (True) or only to
    #: the decoder's initial state (False).
    use_reason_in_fusion: bool = False
    dropout: float = 0.1

    def validate(self) -> None:
        for name in (
            "image_feat_dim",
            "image_spatial_dim",
            "cnn_base_filters",
            "text_embed_dim",
            "text_hidden_dim",
            "multimodal_dim",
            "temporal_hidden_dim",
            "decoder_hidden_dim",
            "attention_heads",
        ):
            _positive(f"model.{name}", getattr(self, name))
        _choice("model.fusion", self.fusion, FUSION_MODES)
        _choice("model.cnn_stem_stride", self.cnn_stem_stride, (1, 2, 4))
        if self.multimodal_dim % self.attention_heads:
            raise ConfigError(
                f"model.attention_heads: must divide model.multimodal_dim "
                f"({self.multimodal_dim}), got {self.attention_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout: must be in [0, 1), got {self.dropout}")
        if self.use_reason_in_fusion and not self.use_reason:
            raise ConfigError("model.use_reason_in_fusion: requires model.use_reason: true")


@dataclass
class TrainingConfig:
    """Optimiser, loop and checkpointing settings."""

    lr: float = 2e-3
    epochs: int = 10
    clip_norm: float = 1.0
    log_interval: int = 20
    save_dir: str = "runs/quickstart"
    seed: int = 42
    #: Save a checkpoint every this many steps as well as at each epoch end (0: epoch ends only).
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 3
    #: Stop after this many epochs without val-loss improvement (0: never).
    early_stopping_patience: int = 0
    jit_compile: bool = False
    #: Stop training after this many seconds (0: no limit); the epoch in progress finishes.
    max_train_seconds: float = 0.0

    def validate(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"training.lr: must be > 0, got {self.lr}")
        _positive("training.epochs", self.epochs)
        if not self.clip_norm > 0:
            raise ConfigError(f"training.clip_norm: must be > 0, got {self.clip_norm}")
        _positive("training.log_interval", self.log_interval)
        _non_negative("training.checkpoint_every_steps", self.checkpoint_every_steps)
        _positive("training.keep_checkpoints", self.keep_checkpoints)
        _non_negative("training.early_stopping_patience", self.early_stopping_patience)
        if self.max_train_seconds < 0:
            raise ConfigError(
                f"training.max_train_seconds: must be >= 0, got {self.max_train_seconds}"
            )
        if not self.save_dir:
            raise ConfigError("training.save_dir: must not be empty")


@dataclass
class ExportConfig:
    """Defaults for ``storyedge export``."""

    formats: list[str] = field(default_factory=lambda: ["tflite", "onnx"])
    quantize: list[str] = field(default_factory=lambda: ["none", "int8-dynamic"])
    batch: int = 1
    opset: int = 17
    #: Max |diff| on logits tolerated for fp32 exports at validation time.
    atol: float = 1e-4
    validation_windows: int = 8

    def validate(self) -> None:
        for fmt in self.formats:
            _choice("export.formats", fmt, ("tflite", "onnx"))
        for q in self.quantize:
            _choice("export.quantize", q, ("none", "fp16", "int8-dynamic", "int8"))
        _positive("export.batch", self.batch)
        _at_least("export.opset", self.opset, 13)
        if not self.atol > 0:
            raise ConfigError(f"export.atol: must be > 0, got {self.atol}")
        _positive("export.validation_windows", self.validation_windows)


@dataclass
class BenchConfig:
    """Defaults for ``storyedge bench``: eval windows, timing runs and parity gates."""

    split: str = "validation"
    max_windows: int = 64
    threads: int = 2
    warmup: int = 10
    runs: int = 100
    gate_fp32_ppl_ratio_tol: float = 1e-3
    gate_fp32_greedy_agreement: float = 1.0
    gate_fp16_ppl_ratio_max: float = 1.005
    gate_int8_dynamic_ppl_ratio_max: float = 1.02
    gate_int8_dynamic_top1_min: float = 0.95
    gate_int8_ppl_ratio_max: float = 1.05

    def validate(self) -> None:
        _positive("bench.max_windows", self.max_windows)
        _positive("bench.threads", self.threads)
        _non_negative("bench.warmup", self.warmup)
        _positive("bench.runs", self.runs)


@dataclass
class Config:
    """The whole configuration; ``Config()`` is the quickstart default."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def validate(self) -> "Config":
        """Check every section; raise :class:`ConfigError` naming the first bad key."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-serialisable)."""
        return dataclasses.asdict(self)

    def replace(self, **overrides: Any) -> "Config":
        """Copy with dotted-key overrides, e.g. ``replace(**{"training.epochs": 2})``; validated."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if section not in data or key not in data[section]:
                raise ConfigError(f"{dotted}: unknown key")
            data[section][key] = value
        return config_from_dict(data)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def config_from_dict(data: dict[str, Any] | None, source: str = "config") -> Config:
    """Build and validate a :class:`Config` from a nested mapping."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections, got {type(data).__name__}")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    kwargs: dict[str, Any] = {}
    for section_name, section_data in data.items():
        if section_name not in sections:
            raise ConfigError(
                f"{section_name}: unknown section (expected one of {', '.join(sections)})"
            )
        section_cls = _resolve_type(sections[section_name].type)
        kwargs[section_name] = _build_section(section_cls, section_name, section_data or {})
    return Config(**kwargs).validate()


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


def _build_section(cls: type, section_name: str, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{section_name}: must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{section_name}.{key}"
        if key not in fields:
            close = [k for k in fields if _similar(k, str(key))]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{dotted}: unknown key{hint}")
        kwargs[key] = _coerce(dotted, value, _resolve_type(fields[key].type))
    return cls(**kwargs)


def _resolve_type(annotation: Any) -> Any:
    if isinstance(annotation, str):
        return eval(annotation, {**globals(), **typing.__dict__})  # noqa: S307 - our own annotations
    return annotation


def _coerce(dotted: str, value: Any, expected: Any) -> Any:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        non_none = [o for o in options if o is not type(None)]
        return _coerce(dotted, value, non_none[0])
    if origin is list:
        (item_type,) = typing.get_args(expected)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{dotted}: expected a list, got {type(value).__name__}")
        return [_coerce(dotted, v, item_type) for v in value]
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{dotted}: expected true/false, got {value!r}")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{dotted}: expected an integer, got {value!r}")
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{dotted}: expected a number, got {value!r}")
    if expected is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{dotted}: expected a string, got {value!r}")
    return value


def _similar(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{key}: must be >= 1, got {value}")


def _non_negative(key: str, value: int) -> None:
    if value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {value}")


def _at_least(key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {value}")


def _choice(key: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))}, got {value!r}")

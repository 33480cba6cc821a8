"""Config: shipped files load, validation names the bad key, overrides validate."""

import re

import pytest
import yaml

from storyedge.config import Config, ModelConfig, config_from_dict, load_config, shipped_configs
from storyedge.errors import ConfigError


def config_error(data: dict) -> str:
    """The ConfigError message for ``data``; it must be a single line."""
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def test_shipped_configs_load_and_validate():
    assert {"quickstart.yaml", "storyreasoning.yaml"} <= set(shipped_configs())
    quick = load_config("quickstart.yaml")
    seed = load_config("storyreasoning")
    assert quick.dataset.name == "synthetic" and quick.dataset.image_size == 32
    assert seed.dataset.name == "daniel3303/StoryReasoning"
    assert (seed.dataset.seq_len, seed.dataset.image_size) == (3, 128)
    assert (seed.model.text_embed_dim, seed.model.decoder_hidden_dim) == (300, 512)
    assert seed.tokenizer.name == "bert-base-uncased"


def test_seed_synthetic_is_the_seed_model_on_the_synthetic_stories():
    """The trained seed-size path: storyreasoning.yaml's graph (V 30522 from a padded WordPiece),
    the embedded stories, a training budget within 15 minutes, every export variant."""
    from storyedge import constants
    from storyedge.run_dir import SHAPE_KEYS

    seed, trained = load_config("storyreasoning.yaml"), load_config("seed-synthetic.yaml")
    for section in ("dataset", "model"):
        for key in SHAPE_KEYS[section]:
            assert getattr(getattr(trained, section), key) == getattr(getattr(seed, section), key), f"{section}.{key}"
    assert trained.dataset.name == "synthetic" and trained.dataset.path != load_config("quickstart").dataset.path
    assert trained.tokenizer.name == "wordpiece"
    assert trained.tokenizer.pad_to_vocab_size == constants.BERT_VOCAB_SIZE == 30522
    assert 0 < trained.training.max_train_seconds <= 900
    assert trained.export.formats == list(constants.EXPORT_FORMATS)
    assert trained.export.quantize == list(constants.QUANTIZE_NAMES)


def test_pad_to_vocab_size_edges_accepted():
    assert config_from_dict({"tokenizer": {"vocab_size": 16, "pad_to_vocab_size": 16}}).tokenizer.pad_to_vocab_size == 16
    assert config_from_dict({"tokenizer": {"pad_to_vocab_size": None}}).tokenizer.pad_to_vocab_size is None
    assert Config().tokenizer.pad_to_vocab_size is None


def test_default_is_quickstart():
    assert load_config(None) == load_config("quickstart.yaml")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"atention_heads": 2}}, r"model\.atention_heads: unknown key \(did you mean attention_heads\?\)"),
        ({"modle": {}}, r"modle: unknown section"),
        ({"dataset": {"seq_len": 0}}, r"dataset\.seq_len: must be >= 1, got 0"),
        ({"dataset": {"image_size": -4}}, r"dataset\.image_size: must be >= 8, got -4"),
        ({"dataset": {"image_size": "big"}}, r"dataset\.image_size: expected an integer, got 'big'"),
        ({"training": {"lr": 0}}, r"training\.lr: must be > 0"),
        ({"training": {"jit_compile": "yes"}}, r"training\.jit_compile: expected true/false"),
        ({"model": {"fusion": "sum"}}, r"model\.fusion: must be one of attention, concat, text_only"),
        ({"model": {"cnn_stem_stride": 3}}, r"model\.cnn_stem_stride: must be one of 1, 2, 4, got 3"),
        ({"model": {"multimodal_dim": 10, "attention_heads": 3}}, r"model\.attention_heads: must divide"),
        ({"model": {"use_reason_in_fusion": True}}, r"requires model\.use_reason"),
        ({"export": {"quantize": ["int2"]}}, r"export\.quantize: must be one of"),
        ({"dataset": {"validation_fraction": 1.5}}, r"dataset\.validation_fraction: must be in \(0, 1\), got 1\.5"),
        ({"dataset": 3}, r"dataset: must be a mapping"),
    ],
)
def test_invalid_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_int_accepted_for_float_and_list_from_comma_string():
    cfg = config_from_dict({"training": {"lr": 1}, "export": {"quantize": "none,fp16"}})
    assert cfg.training.lr == 1.0 and isinstance(cfg.training.lr, float)
    assert cfg.export.quantize == ["none", "fp16"]


def test_replace_overrides_and_validates():
    cfg = Config().replace(**{"training.epochs": 2, "dataset.batch_size": 4})
    assert (cfg.training.epochs, cfg.dataset.batch_size) == (2, 4)
    with pytest.raises(ConfigError, match="training.epochs: must be >= 1"):
        Config().replace(**{"training.epochs": 0})
    with pytest.raises(ConfigError, match="training.epoch: unknown key"):
        Config().replace(**{"training.epoch": 3})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  fusion: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_save_round_trip(tmp_path):
    cfg = load_config("storyreasoning")
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        # strict types: no string → number, no bool → number, no float → int, bool only true/false
        ({"dataset": {"seq_len": "3"}}, "dataset.seq_len: expected an integer, got '3'"),
        ({"dataset": {"seq_len": 1.5}}, "dataset.seq_len: expected an integer, got 1.5"),
        ({"dataset": {"seq_len": 3.0}}, "dataset.seq_len: expected an integer, got 3.0"),
        ({"dataset": {"seq_len": True}}, "dataset.seq_len: expected an integer, got True"),
        ({"model": {"use_reason": "yes"}}, "model.use_reason: expected true/false, got 'yes'"),
        ({"tokenizer": {"lowercase": 1}}, "tokenizer.lowercase: expected true/false, got 1"),
        ({"training": {"lr": "0.001"}}, "training.lr: expected a number, got '0.001'"),
        ({"training": {"lr": True}}, "training.lr: expected a number, got True"),
        ({"dataset": {"path": 3}}, "dataset.path: expected a string, got 3"),
        ({"export": {"formats": 3}}, "export.formats: expected a list, got int"),
        ({"export": {"formats": ("tflite",)}}, "export.formats: expected a list, got tuple"),
        # Literal choices
        ({"dataset": {"schema": "csv"}}, "dataset.schema: must be one of auto, generic, storyreasoning, got 'csv'"),
        ({"tokenizer": {"name": "gpt2"}}, "tokenizer.name: must be one of wordpiece, bert-base-uncased, got 'gpt2'"),
        ({"model": {"fusion": "foo"}}, "model.fusion: must be one of attention, concat, text_only, got 'foo'"),
        ({"model": {"cnn_stem_stride": True}}, "model.cnn_stem_stride: expected an integer, got True"),
        ({"model": {"cnn_stem_stride": 2.0}}, "model.cnn_stem_stride: expected an integer, got 2.0"),
        ({"model": {"cnn_stem_stride": "2"}}, "model.cnn_stem_stride: expected an integer, got '2'"),
        ({"export": {"formats": ["tflite", "coreml"]}}, "export.formats: must be one of tflite, onnx, got 'coreml'"),
        ({"export": {"formats": "tflite,coreml"}}, "export.formats: must be one of tflite, onnx, got 'coreml'"),
        ({"export": {"quantize": ["int2"]}},
         "export.quantize: must be one of none, fp16, int8-dynamic, int8, int4, got 'int2'"),
        ({"export": {"calibration_method": "kl"}},
         "export.calibration_method: must be one of minmax, entropy, percentile, got 'kl'"),
        # cross-field rules and non-empty strings
        ({"model": {"multimodal_dim": 64, "attention_heads": 3}},
         "model.attention_heads: must divide model.multimodal_dim (64), got 3"),
        ({"model": {"use_reason_in_fusion": True}}, "model.use_reason_in_fusion: requires model.use_reason: true"),
        ({"model": {"decoder": "transformer", "decoder_hidden_dim": 96, "decoder_heads": 5}},
         "model.decoder_heads: must divide model.decoder_hidden_dim (96), got 5"),
        ({"model": {"decoder": "gru"}}, "model.decoder: must be one of lstm, transformer, got 'gru'"),
        ({"tokenizer": {"pad_to_vocab_size": 500}},
         "tokenizer.pad_to_vocab_size: must be >= tokenizer.vocab_size (1000), got 500"),
        ({"tokenizer": {"name": "bert-base-uncased", "pad_to_vocab_size": 30522}},
         "tokenizer.pad_to_vocab_size: only pads a trained vocabulary (tokenizer.name: wordpiece), "
         "got name 'bert-base-uncased'"),
        ({"tokenizer": {"pad_to_vocab_size": "30522"}}, "tokenizer.pad_to_vocab_size: expected an integer, got '30522'"),
        ({"dataset": {"name": ""}}, "dataset.name: must not be empty"),
        ({"training": {"save_dir": ""}}, "training.save_dir: must not be empty"),
        # structure
        ({"foo": {}}, "foo: unknown section (expected one of dataset, tokenizer, model, training, export, bench)"),
        ({"model": {1: 2}}, "model.1: unknown key"),
        ({"bench": ["runs"]}, "bench: must be a mapping, got list"),
    ],
)
def test_invalid_values_exact_message(data, message):
    assert config_error(data) == message


#: Every bound today's config enforces: (section.key, first refused value, the rule).
BOUNDS = [
    ("dataset.seq_len", 0, "must be >= 1"),
    ("dataset.batch_size", 0, "must be >= 1"),
    ("dataset.image_size", 7, "must be >= 8"),
    ("dataset.max_caption_len", 2, "must be >= 3"),
    ("dataset.max_reason_len", 0, "must be >= 1"),
    ("dataset.validation_fraction", 0, "must be in (0, 1)"),
    ("dataset.validation_fraction", 1.0, "must be in (0, 1)"),
    ("dataset.synthetic_stories", 2, "must be >= 3"),
    ("dataset.shuffle_buffer", 0, "must be >= 1"),
    ("tokenizer.vocab_size", 15, "must be >= 16"),
    ("tokenizer.pad_to_vocab_size", 15, "must be >= 16"),
    *[(f"model.{k}", 0, "must be >= 1") for k in (
        "image_feat_dim", "image_spatial_dim", "cnn_base_filters", "text_embed_dim", "text_hidden_dim",
        "multimodal_dim", "temporal_hidden_dim", "decoder_hidden_dim", "attention_heads",
        "decoder_layers", "decoder_heads", "decoder_ff_dim")],
    ("model.dropout", -0.1, "must be in [0, 1)"),
    ("model.dropout", 1.0, "must be in [0, 1)"),
    ("training.lr", 0.0, "must be > 0"),
    ("training.epochs", 0, "must be >= 1"),
    ("training.clip_norm", -1.0, "must be > 0"),
    ("training.log_interval", 0, "must be >= 1"),
    ("training.checkpoint_every_steps", -1, "must be >= 0"),
    ("training.keep_checkpoints", 0, "must be >= 1"),
    ("training.early_stopping_patience", -1, "must be >= 0"),
    ("training.max_train_seconds", -0.5, "must be >= 0"),
    ("export.batch", 0, "must be >= 1"),
    ("export.opset", 12, "must be in [13, 18]"),
    ("export.opset", 19, "must be in [13, 18]"),
    ("export.atol", 0.0, "must be > 0"),
    ("export.validation_windows", 0, "must be >= 1"),
    ("bench.max_windows", 0, "must be >= 1"),
    ("bench.threads", 0, "must be >= 1"),
    ("bench.warmup", -1, "must be >= 0"),
    ("bench.runs", 0, "must be >= 1"),
]


@pytest.mark.parametrize("dotted, value, rule", BOUNDS, ids=[f"{d}={v}" for d, v, _ in BOUNDS])
def test_bounds_refused_with_key_and_rule(dotted, value, rule):
    section, key = dotted.split(".")
    assert config_error({section: {key: value}}) == f"{dotted}: {rule}, got {value}"


def test_bound_and_choice_edges_accepted():
    cfg = config_from_dict({
        "dataset": {"image_size": 8, "max_caption_len": 3, "validation_fraction": 0.999},
        "tokenizer": {"name": "bert-base-uncased", "vocab_size": 16},
        "model": {"dropout": 0, "cnn_stem_stride": 4, "fusion": "text_only", "use_reason": True,
                  "use_reason_in_fusion": True, "multimodal_dim": 12, "attention_heads": 3},
        "training": {"checkpoint_every_steps": 0, "max_train_seconds": 0, "clip_norm": 1e-9},
        "export": {"opset": 18, "formats": [], "quantize": " int8 , fp16 "},
        "bench": {"warmup": 0},
    })
    assert cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)
    assert cfg.export.opset == 18 and cfg.export.quantize == ["int8", "fp16"]
    assert config_from_dict({"export": {"opset": 13}}).export.opset == 13


def test_empty_section_means_defaults():
    assert config_from_dict({"bench": None, "model": {}}) == Config()


def test_assignment_is_validated_and_a_refused_value_changes_nothing():
    cfg = Config()
    with pytest.raises(ConfigError, match=r"^dataset\.seq_len: expected an integer, got '3'$"):
        cfg.dataset.seq_len = "3"
    with pytest.raises(ConfigError, match=r"^model\.attention_heads: must divide"):
        cfg.model.attention_heads = 3
    assert (cfg.dataset.seq_len, cfg.model.attention_heads) == (3, 2)
    cfg.model.attention_heads = 4
    assert cfg.model.attention_heads == 4 and cfg.validate() is cfg


def test_sections_keep_attribute_access_and_plain_dicts():
    cfg = Config()
    assert cfg.model.__dict__ == cfg.to_dict()["model"]
    assert ModelConfig(fusion="concat").fusion == "concat"
    assert cfg.to_dict()["export"]["formats"] == ["tflite", "onnx"]


def test_replace_unknown_section_and_undotted_key():
    with pytest.raises(ConfigError, match=r"^modle: unknown section"):
        Config().replace(**{"modle.fusion": "concat"})
    with pytest.raises(ConfigError, match=r"^training: unknown key"):
        Config().replace(training=3)
    with pytest.raises(ConfigError, match=r"^model\.fusion: must be one of"):
        Config().replace(**{"model.fusion": "sum"})


def test_bad_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: 3\n  lr 0.001\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}: not valid YAML \(line \d+\)$"):
        load_config(bad)


def test_shared_constants_come_from_one_module():
    import storyedge.config as config
    import storyedge.constants as constants
    import storyedge.manifest as manifest

    assert (config.FUSION_MODES, config.REASON_MODES, config.TOKENIZER_NAMES, config.SYNTHETIC_DATASET) == (
        constants.FUSION_MODES, constants.REASON_MODES, constants.TOKENIZER_NAMES, constants.SYNTHETIC_DATASET)
    assert manifest.PRECISIONS is constants.QUANTIZE_PRECISIONS and manifest.FORMATS is constants.EXPORT_FORMATS
    assert Config().bench.gate_int8_dynamic_top1_min == constants.GATE_INT8_DYNAMIC_TOP1_MIN


def test_decoder_switch_defaults_and_transformer_keys():
    from storyedge.constants import DECODER_KINDS
    from storyedge.run_dir import SHAPE_KEYS

    assert Config().model.decoder == "lstm" and DECODER_KINDS == ("lstm", "transformer")
    cfg = config_from_dict({"model": {"decoder": "transformer", "decoder_hidden_dim": 12,
                                      "decoder_heads": 3, "decoder_layers": 1, "decoder_ff_dim": 7}})
    assert (cfg.model.decoder_layers, cfg.model.decoder_heads, cfg.model.decoder_ff_dim) == (1, 3, 7)
    # heads need not divide the width of an LSTM decoder (they are unused there)
    assert config_from_dict({"model": {"decoder_hidden_dim": 10, "decoder_heads": 3}}).model.decoder == "lstm"
    assert {"decoder", "decoder_layers", "decoder_heads", "decoder_ff_dim"} <= set(SHAPE_KEYS["model"])


@pytest.mark.parametrize("model, message", [
    ({"decoder": "transformer", "decoder_hidden_dim": 8, "decoder_heads": 3},
     "model.decoder_heads: must divide model.decoder_hidden_dim (8), got 3"),
    ({"decoder": "transformer", "decoder_layers": 0}, "model.decoder_layers: must be >= 1, got 0"),
])
def test_bad_transformer_keys_exit_2_with_one_line(tmp_path, capsys, model, message):
    from storyedge.app.cli import main

    bad = tmp_path / "c.yaml"
    bad.write_text(yaml.safe_dump({"model": model}))
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(bad), "--save-dir", str(tmp_path / "run")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exc.value.code == 2 and len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "run").exists()

VIT = {"image_encoder": "vit"}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"image_encoder": "swin"}}, "model.image_encoder: must be one of cnn, vit, got 'swin'"),
        ({"model": {**VIT, "vit_patch_size": 5}}, "model.vit_patch_size: must divide dataset.image_size (32), got 5"),
        ({"dataset": {"image_size": 36}, "model": {**VIT, "vit_patch_size": 8}},
         "model.vit_patch_size: must divide dataset.image_size (36), got 8"),
        ({"model": {**VIT, "vit_patch_size": 0}}, "model.vit_patch_size: must be >= 1, got 0"),
        ({"model": {**VIT, "vit_layers": 0}}, "model.vit_layers: must be >= 1, got 0"),
        ({"model": {**VIT, "vit_heads": 0}}, "model.vit_heads: must be >= 1, got 0"),
        ({"model": {**VIT, "vit_heads": 3}}, "model.vit_heads: must divide model.image_spatial_dim (64), got 3"),
        ({"model": {**VIT, "vit_layers": "2"}}, "model.vit_layers: expected an integer, got '2'"),
        ({"training": {"contrastive_weight": -0.5}}, "training.contrastive_weight: must be >= 0, got -0.5"),
        ({"training": {"contrastive_temperature": 0}}, "training.contrastive_temperature: must be > 0, got 0"),
        ({"training": {"contrastive_temperature": -1.0}}, "training.contrastive_temperature: must be > 0, got -1.0"),
        ({"training": {"contrastive_weight": 0.5}, "model": {"fusion": "text_only"}},
         "training.contrastive_weight: must be 0 with model.fusion: text_only (the contrastive loss aligns "
         "the image vector with the caption vector, and text_only has no image vector)"),
    ],
)
def test_vit_and_contrastive_bad_input(data, message):
    assert config_error(data) == message


def test_vit_and_contrastive_defaults_and_good_input():
    cfg = Config()
    assert (cfg.model.image_encoder, cfg.training.contrastive_weight) == ("cnn", 0.0)
    # the ViT rules bind only when the ViT is chosen: the CNN takes any image size
    assert config_from_dict({"dataset": {"image_size": 36}, "model": {"vit_heads": 3}}).dataset.image_size == 36
    vit = config_from_dict({"model": {**VIT, "vit_patch_size": 16, "vit_heads": 4, "vit_layers": 1},
                            "training": {"contrastive_weight": 1, "contrastive_temperature": 0.07}})
    assert (vit.model.vit_patch_size, vit.training.contrastive_weight) == (16, 1.0)
    assert config_from_dict({"model": {"fusion": "concat"}, "training": {"contrastive_weight": 0.1}})


def test_vit_keys_change_the_graph():
    from storyedge.run_dir import SHAPE_KEYS

    assert {"image_encoder", "vit_patch_size", "vit_layers", "vit_heads"} <= set(SHAPE_KEYS["model"])
    # the contrastive heads are not exported and do not change the exported graph
    assert "training" not in SHAPE_KEYS

"""Config: shipped files load, validation names the bad key, overrides validate."""

import pytest

from storyedge.config import Config, config_from_dict, load_config, shipped_configs
from storyedge.errors import ConfigError


def test_shipped_configs_load_and_validate():
    assert {"quickstart.yaml", "storyreasoning.yaml"} <= set(shipped_configs())
    quick = load_config("quickstart.yaml")
    seed = load_config("storyreasoning")
    assert quick.dataset.name == "synthetic" and quick.dataset.image_size == 32
    assert seed.dataset.name == "daniel3303/StoryReasoning"
    assert (seed.dataset.seq_len, seed.dataset.image_size) == (3, 128)
    assert (seed.model.text_embed_dim, seed.model.decoder_hidden_dim) == (300, 512)
    assert seed.tokenizer.name == "bert-base-uncased"


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
        ({"export": {"quantize": ["int4"]}}, r"export\.quantize: must be one of"),
        ({"dataset": {"validation_fraction": 1.5}}, r"dataset\.validation_fraction"),
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

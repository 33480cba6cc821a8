"""The trained-model bundle: what training writes and export / bench / generate load.

A run directory (``training.save_dir``) holds, among training's other outputs, ``best/``::

    best/
      model.weights.h5   Keras weights of the best epoch (by val loss)
      config.yaml        the resolved config the model was built from
      tokenizer/         BertTokenizerFast-loadable tokenizer directory
      meta.json          epoch, step, val_loss, val_ppl, vocab/special ids, tokenizer fingerprint

``best/`` is replaced atomically (:func:`storyedge.atomic.atomic_directory`): the new bundle is
written to ``best.tmp-<pid>`` and swapped in by renames, so a crash at any point leaves a complete
``best/`` (or, between the two renames, the previous one as ``best.old-<pid>``, which
:func:`resolve_bundle` falls back to).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyedge.atomic import atomic_directory, displaced
from storyedge.config import Config, load_config
from storyedge.constants import TOKENIZER_DIR
from storyedge.errors import UserError
from storyedge.tokenizer import StoryTokenizer

if TYPE_CHECKING:  # TensorFlow stays out of imports that don't need it
    from storyedge.model.story_model import StoryModel

BEST_DIR = "best"
WEIGHTS_FILE = "model.weights.h5"
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"


@dataclass
class ModelBundle:
    """A model rebuilt from a bundle directory, with what it was trained with."""

    model: "StoryModel"
    config: Config
    tokenizer: StoryTokenizer
    meta: dict[str, Any]
    path: Path


def save_bundle(
    run_dir: str | Path,
    model: "StoryModel",
    config: Config,
    tokenizer: StoryTokenizer,
    meta: dict[str, Any],
) -> Path:
    """Atomically (re)write ``run_dir/best``; returns its path."""
    final = Path(run_dir) / BEST_DIR
    with atomic_directory(final, replace=True) as tmp:
        model.save_weights(str(tmp / WEIGHTS_FILE))
        config.save(tmp / CONFIG_FILE)
        tokenizer.save(tmp / TOKENIZER_DIR)
        full_meta = {**meta, **tokenizer.special_ids, "tokenizer_fingerprint": tokenizer.fingerprint()}
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2))
    return final


def resolve_bundle(path: str | Path) -> Path:
    """The bundle directory for a run dir or a bundle dir; :class:`UserError` if there is none."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    for candidate in (path, path / BEST_DIR, *displaced(path / BEST_DIR)):
        if (candidate / WEIGHTS_FILE).is_file() and (candidate / CONFIG_FILE).is_file():
            return candidate
    raise UserError(
        f"{path}: no trained model here (expected {BEST_DIR}/{WEIGHTS_FILE} and "
        f"{BEST_DIR}/{CONFIG_FILE}; train with `storyedge train` first)"
    )


def load_bundle(path: str | Path, expected_config: Config | None = None) -> ModelBundle:
    """Rebuild the model of a run dir (or bundle dir) and load its best weights.

    ``expected_config``: when given, its model and data shapes must match the bundle's, else
    :class:`UserError` naming the first differing key (a checkpoint of a different config).
    """
    bundle = resolve_bundle(path)  # a wrong path fails before TensorFlow is imported
    # lazy: storyedge.model imports TensorFlow
    from storyedge.model.story_model import build_model

    config = load_config(bundle / CONFIG_FILE)
    if expected_config is not None:
        check_compatible(config, expected_config, str(bundle))
    tokenizer = StoryTokenizer.load(bundle / TOKENIZER_DIR)
    meta_path = bundle / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    model = build_model(config, tokenizer.vocab_size, tokenizer.pad_id)
    try:
        model.load_weights(str(bundle / WEIGHTS_FILE))
    except Exception as exc:  # noqa: BLE001 - h5 errors vary; the user needs one line
        raise UserError(
            f"{bundle / WEIGHTS_FILE}: cannot load weights ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]})"
        ) from None
    return ModelBundle(model, config, tokenizer, meta, bundle)


#: Keys that change the graph: a bundle trained with other values cannot be used with this config.
SHAPE_KEYS = {
    "dataset": ("seq_len", "image_size", "max_caption_len", "max_reason_len"),
    "model": (
        "image_feat_dim", "image_spatial_dim", "cnn_base_filters", "cnn_stem_stride",
        "text_embed_dim", "text_hidden_dim", "multimodal_dim", "temporal_hidden_dim",
        "decoder_hidden_dim", "attention_heads", "fusion", "use_reason", "use_reason_in_fusion",
        "decoder", "decoder_layers", "decoder_heads", "decoder_ff_dim",
        "image_encoder", "vit_patch_size", "vit_layers", "vit_heads",
    ),
    "tokenizer": ("name", "vocab_size", "lowercase", "pad_to_vocab_size"),
}


def check_compatible(found: Config, expected: Config, where: str) -> None:
    """Raise :class:`UserError` naming the first graph-changing key that differs."""
    for section, keys in SHAPE_KEYS.items():
        for key in keys:
            a = getattr(getattr(found, section), key)
            b = getattr(getattr(expected, section), key)
            if a != b:
                raise UserError(
                    f"{where}: was trained with {section}.{key}={a!r} but the config says {b!r}"
                )


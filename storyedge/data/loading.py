"""Load the configured stories as ``train`` / ``validation`` / ``test`` in the generic layout.

Sources (``DatasetConfig``):

- ``name: synthetic``: the embedded generator's dataset at ``path`` (default
  ``data_cache/synthetic``), generated there first when absent (or when it was generated with
  other settings);
- a local directory (``path``, or ``name`` naming an existing directory): ``save_to_disk``
  output, or parquet files named ``{split}-*.parquet`` / ``{split}.parquet``, directly or under
  ``data/`` (the hub's layout);
- otherwise a hub name, through ``datasets.load_dataset``. An unreachable hub with nothing
  cached is a one-line :class:`DataError` saying how to point at a local copy.

Schema: ``storyreasoning`` (see :mod:`storyedge.data.storyreasoning`) or ``generic``: columns
``frames_key`` / ``captions_key`` / ``reason_key`` renamed to ``frames`` / ``captions`` /
``reason`` (reason optional, empty when absent). ``auto`` picks StoryReasoning when the
``images`` and ``story`` columns are present.

A source without a validation split gets one carved from train: a story goes to validation iff
``sha256("validation:" + story_id)`` read as a fraction is below ``validation_fraction``, so the
carve is stable across runs, machines and Python versions. (Likewise a missing test split.)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc

from storyedge.config import SYNTHETIC_DATASET, DatasetConfig
from storyedge.data.pipeline import CaptionTokenizer, WindowArrays, encode_windows
from storyedge.data.storyreasoning import adapt_storyreasoning, is_storyreasoning
from storyedge.data.synthetic import (
    read_synthetic_meta,
    story_features,
    synthetic_meta,
    write_synthetic_dataset,
)
from storyedge.errors import DataError
from storyedge.hub import hub_reachable, offline_env

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
#: Source split names accepted for each generic split.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
DEFAULT_SYNTHETIC_DIR = "data_cache/synthetic"
GENERIC_COLUMNS = ("story_id", "frames", "captions", "reason", "frame_count")
#: Smallest frame size the configured synthetic dataset is generated at (models resize to
#: image_size): larger model inputs get frames drawn at their own size (:func:`synthetic_frame_size`).
SYNTHETIC_FRAME_SIZE = 64


def synthetic_frame_size(cfg: DatasetConfig) -> int:
    """Frame size of ``cfg``'s synthetic dataset: 64 px, or ``dataset.image_size`` when larger
    (the seed's 128 px model input sees frames drawn at 128 px, not upscaled ones)."""
    return max(SYNTHETIC_FRAME_SIZE, cfg.image_size)


def load_story_splits(cfg: DatasetConfig) -> datasets.DatasetDict:
    """The configured dataset as a ``DatasetDict`` with ``train``, ``validation`` and ``test``
    in the generic layout (``story_id``, ``frames``, ``captions``, ``reason``, ``frame_count``)."""
    raw = _load_source(cfg)
    splits: dict[str, datasets.Dataset] = {}
    for source_name, split in raw.items():
        target = SPLIT_ALIASES.get(source_name.lower())
        if target is None:
            log.info("dataset %s: ignoring split %r", cfg.name, source_name)
            continue
        if target in splits:
            raise DataError(f"dataset {cfg.name}: two splits map to {target!r} ({', '.join(raw)})")
        splits[target] = adapt_split(split, cfg, target)
    if "train" not in splits:
        raise DataError(f"dataset {cfg.name}: no train split (splits found: {', '.join(raw) or 'none'})")
    for missing in ("validation", "test"):
        if missing not in splits:
            rest, carved = carve_split(splits["train"], cfg.validation_fraction, missing)
            log.info(
                "dataset %s has no %s split: carved %d of %d train stories into %s "
                "(sha256 of story_id < %.3g, deterministic)",
                cfg.name,
                missing,
                len(carved),
                len(splits["train"]),
                missing,
                cfg.validation_fraction,
            )
            splits["train"], splits[missing] = rest, carved
    return datasets.DatasetDict({name: splits[name] for name in SPLITS})


# --------------------------------------------------------------------------- sources



def load_split(cfg: DatasetConfig, split: str) -> datasets.Dataset:
    """The stories of ``split``; :class:`DataError` naming the split when the dataset has none."""
    splits = load_story_splits(cfg)
    if split not in splits:
        raise DataError(f"split {split!r}: the dataset has splits {', '.join(splits)}")
    return splits[split]


def load_split_windows(
    cfg: DatasetConfig, tokenizer: CaptionTokenizer, split: str, max_windows: int | None = None
) -> WindowArrays:
    """The first ``max_windows`` windows of ``split`` (:func:`load_split`), tokenised (numpy; no
    TensorFlow)."""
    return encode_windows(load_split(cfg, split), tokenizer, cfg, max_windows, split)

def _load_source(cfg: DatasetConfig) -> datasets.DatasetDict:
    if cfg.name == SYNTHETIC_DATASET:
        return _load_synthetic(cfg)
    if cfg.path:
        directory = Path(cfg.path).expanduser()
        if not directory.exists():
            raise DataError(f"dataset.path: {directory} does not exist")
        return load_local_dir(directory)
    if Path(cfg.name).expanduser().is_dir():
        return load_local_dir(Path(cfg.name).expanduser())
    return _load_hub(cfg.name)


def _load_synthetic(cfg: DatasetConfig) -> datasets.DatasetDict:
    directory = Path(cfg.path or DEFAULT_SYNTHETIC_DIR).expanduser()
    frame_size = synthetic_frame_size(cfg)
    wanted = synthetic_meta(cfg.synthetic_stories, cfg.synthetic_seed, frame_size)
    if not directory.exists():
        log.info(
            "generating the synthetic dataset (%d stories, seed %d) at %s",
            cfg.synthetic_stories,
            cfg.synthetic_seed,
            directory,
        )
        try:
            write_synthetic_dataset(directory, cfg.synthetic_stories, cfg.synthetic_seed, frame_size)
        except DataError:
            # another process wrote it meanwhile: fine when it holds what we want
            if read_synthetic_meta(directory) != wanted:
                raise
    else:
        found = read_synthetic_meta(directory)
        if found is not None and found != wanted:
            log.warning(
                "%s holds a synthetic dataset generated with %s; regenerating with %s",
                directory,
                found,
                wanted,
            )
            write_synthetic_dataset(
                directory, cfg.synthetic_stories, cfg.synthetic_seed, frame_size, overwrite=True
            )
    return load_local_dir(directory)


def load_local_dir(directory: str | Path) -> datasets.DatasetDict:
    """Load ``save_to_disk`` output or a folder of per-split parquet files as a DatasetDict.

    A single saved ``Dataset`` (not a dict) is returned as the ``train`` split.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    if (directory / "dataset_dict.json").is_file() or (directory / "state.json").is_file():
        try:
            loaded = datasets.load_from_disk(str(directory))
        except Exception as exc:  # noqa: BLE001 - corrupt / partial save_to_disk output
            raise DataError(
                f"{directory}: could not load save_to_disk output ({type(exc).__name__}: {exc})"
            ) from None
        if isinstance(loaded, datasets.Dataset):
            return datasets.DatasetDict({"train": loaded})
        return loaded
    data_files = find_parquet_files(directory)
    if not data_files:
        raise DataError(
            f"{directory}: no dataset found: expected save_to_disk output (dataset_dict.json) or "
            "parquet files named {split}-*.parquet (directly or under data/)"
        )
    try:
        loaded = datasets.load_dataset("parquet", data_files=data_files)
    except Exception as exc:  # noqa: BLE001 - unreadable parquet
        raise DataError(
            f"{directory}: could not read the parquet files ({type(exc).__name__}: {exc})"
        ) from None
    return loaded


def find_parquet_files(directory: str | Path) -> dict[str, list[str]]:
    """``{split: [files]}`` for ``{split}-*.parquet`` / ``{split}.parquet`` in ``directory``
    or ``directory/data`` (the first of the two that has any)."""
    directory = Path(directory)
    for base in (directory, directory / "data"):
        if not base.is_dir():
            continue
        found: dict[str, list[str]] = {}
        for path in sorted(base.glob("*.parquet")):
            split = path.name[: -len(".parquet")].split("-", 1)[0]
            if split.lower() in SPLIT_ALIASES:
                found.setdefault(split, []).append(str(path))
        if found:
            return found
    return {}


@contextmanager
def _hub_offline_mode() -> Iterator[None]:
    """Make ``datasets``/``huggingface_hub`` use their cache only (their offline flags are read
    at import, so an ``HF_HUB_OFFLINE`` set later, or a dead network, would otherwise mean
    a minute of retries before the same failure)."""
    import huggingface_hub.constants as hub_constants  # lazy: only the hub path needs the hub client

    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = True
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _load_hub(name: str) -> datasets.DatasetDict:
    # lazy: only the hub path needs the hub client's exception types
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = datasets.config.HF_HUB_OFFLINE or offline_env(("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")) or not hub_reachable()
    hint = (
        "download it where the hub is reachable, or point at a local copy with "
        "dataset.path: /dir (a folder with its parquet files, e.g. data/train-*.parquet, "
        "or save_to_disk output)"
    )
    try:
        if offline:
            with _hub_offline_mode():
                loaded = datasets.load_dataset(name)
        else:
            loaded = datasets.load_dataset(name)
    except (ConnectionError, LocalEntryNotFoundError, DatasetNotFoundError, FileNotFoundError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if offline:
            raise DataError(
                f"dataset {name!r} could not be reached (Hugging Face Hub offline or "
                f"unreachable) and is not in the local cache; {hint}"
            ) from None
        raise DataError(f"dataset {name!r} could not be loaded from the hub ({reason}); {hint}") from None
    if isinstance(loaded, datasets.Dataset):
        return datasets.DatasetDict({"train": loaded})
    return loaded


# --------------------------------------------------------------------------- schema


def resolve_schema(cfg: DatasetConfig, column_names: list[str]) -> str:
    """``storyreasoning`` or ``generic`` for these columns under ``cfg.schema``."""
    if cfg.schema != "auto":
        return cfg.schema
    return "storyreasoning" if is_storyreasoning(column_names) else "generic"


def adapt_split(split: datasets.Dataset, cfg: DatasetConfig, split_name: str = "") -> datasets.Dataset:
    """One source split in the generic layout, per the configured schema."""
    if resolve_schema(cfg, split.column_names) == "storyreasoning":
        return adapt_storyreasoning(split, split_name)
    return adapt_generic(split, cfg, split_name)


def _list_lengths(split: datasets.Dataset, column: str) -> list[int]:
    lengths = pc.list_value_length(split.data.column(column)).to_pylist()
    if split._indices is not None:  # a select()ed view: map back to its rows
        rows = split._indices.column(0).to_pylist()
        lengths = [lengths[i] for i in rows]
    return [n or 0 for n in lengths]


def adapt_generic(split: datasets.Dataset, cfg: DatasetConfig, split_name: str = "") -> datasets.Dataset:
    """Rename ``cfg.frames_key``/``captions_key``/``reason_key`` to the generic columns.

    Missing frames or captions column → :class:`DataError` naming it and the columns found.
    Rows whose frame and caption counts differ are skipped and counted in one warning.
    """
    columns = split.column_names
    for key, what in ((cfg.frames_key, "frames"), (cfg.captions_key, "captions")):
        if key not in columns:
            raise DataError(
                f"dataset {cfg.name}: {what} column {key!r} (dataset.{what}_key) not found"
                f"{' in ' + split_name if split_name else ''}; columns found: {', '.join(columns)}"
            )
    try:
        n_frames = _list_lengths(split, cfg.frames_key)
        n_captions = _list_lengths(split, cfg.captions_key)
    except Exception as exc:  # noqa: BLE001 - not list columns
        raise DataError(
            f"dataset {cfg.name}: columns {cfg.frames_key!r} and {cfg.captions_key!r} must be lists "
            f"(one image / caption per frame) ({type(exc).__name__}: {exc})"
        ) from None
    good = [i for i, (f, c) in enumerate(zip(n_frames, n_captions)) if f == c]
    if len(good) < len(split):
        log.warning(
            "dataset %s: skipped %d of %d stories%s whose number of frames and captions differ",
            cfg.name,
            len(split) - len(good),
            len(split),
            f" in {split_name}" if split_name else "",
        )
        split = split.select(good)

    features = story_features()
    if (
        (cfg.frames_key, cfg.captions_key, cfg.reason_key) == ("frames", "captions", "reason")
        and all(c in split.column_names for c in GENERIC_COLUMNS)
        and all(split.features[c] == features[c] for c in GENERIC_COLUMNS)
    ):
        return split.select_columns(list(GENERIC_COLUMNS))

    if isinstance(_feature_item(split.features[cfg.frames_key]), datasets.Image):
        split = split.cast_column(cfg.frames_key, datasets.Sequence(datasets.Image(decode=False)))
    has_reason = cfg.reason_key in split.column_names
    has_id = "story_id" in split.column_names
    prefix = split_name or "story"

    def convert(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        frames = batch[cfg.frames_key]
        return {
            "story_id": [
                str(batch["story_id"][j]) if has_id else f"{prefix}-{indices[j]}"
                for j in range(len(frames))
            ],
            "frames": [list(f) for f in frames],
            "captions": [[str(c) for c in caps] for caps in batch[cfg.captions_key]],
            "reason": [str(r or "") for r in batch[cfg.reason_key]] if has_reason else [""] * len(frames),
            "frame_count": [len(f) for f in frames],
        }

    try:
        return split.map(
            convert,
            batched=True,
            batch_size=64,
            with_indices=True,
            remove_columns=split.column_names,
            features=features,
            desc=None,
        )
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - frames that are not images, etc.
        raise DataError(
            f"dataset {cfg.name}: could not read {cfg.frames_key!r} as images and "
            f"{cfg.captions_key!r} as text ({type(exc).__name__}: {exc})"
        ) from None


def _feature_item(feature: Any) -> Any:
    return getattr(feature, "feature", None)


# --------------------------------------------------------------------------- carving


def hash_fraction(text: str) -> float:
    """A stable number in [0, 1) from ``text`` (sha256; not Python's salted ``hash()``)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def carve_split(
    train: datasets.Dataset, fraction: float, name: str = "validation"
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split ``train`` into (rest, carved): a story is carved iff
    ``hash_fraction(f"{name}:{story_id}") < fraction``. At least one story is carved when
    train has two or more (the one with the smallest hash), so tiny datasets still validate."""
    ids = [str(s) for s in train["story_id"]]
    scores = [hash_fraction(f"{name}:{sid}") for sid in ids]
    carved = [i for i, s in enumerate(scores) if s < fraction]
    if not carved and len(ids) >= 2:
        carved = [min(range(len(ids)), key=lambda i: scores[i])]
    carved_set = set(carved)
    rest = [i for i in range(len(ids)) if i not in carved_set]
    return train.select(rest), train.select(carved)

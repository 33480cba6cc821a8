"""storyedge.data: story datasets (synthetic, StoryReasoning, generic), windows and pipelines.

TensorFlow is not imported here: ``make_tf_dataset`` imports it when called.
"""

from storyedge.data.loading import carve_split, hash_fraction, load_local_dir, load_story_splits
from storyedge.data.pipeline import WindowArrays, encode_windows, make_tf_dataset, normalize_frames
from storyedge.data.storyreasoning import (
    adapt_storyreasoning,
    chain_of_thought_text,
    parse_story_segments,
    strip_tags,
)
from storyedge.data.floor import DataFloor, data_floor
from storyedge.data.oracle import (
    LearnabilityReport,
    learnability_report,
    next_caption_from_window,
    read_frame_state,
)
from storyedge.data.synthetic import generate_synthetic_dataset, story_features, write_synthetic_dataset
from storyedge.data.windows import (
    WindowStats,
    check_window_stats,
    count_windows,
    decode_frame,
    iter_raw_rows,
    iter_story_windows,
    window_starts,
)

__all__ = [
    "DataFloor",
    "LearnabilityReport",
    "WindowArrays",
    "WindowStats",
    "adapt_storyreasoning",
    "carve_split",
    "check_window_stats",
    "chain_of_thought_text",
    "count_windows",
    "data_floor",
    "decode_frame",
    "encode_windows",
    "generate_synthetic_dataset",
    "hash_fraction",
    "iter_raw_rows",
    "iter_story_windows",
    "learnability_report",
    "load_local_dir",
    "load_story_splits",
    "make_tf_dataset",
    "next_caption_from_window",
    "normalize_frames",
    "parse_story_segments",
    "read_frame_state",
    "story_features",
    "strip_tags",
    "window_starts",
    "write_synthetic_dataset",
]

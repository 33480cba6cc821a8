"""storyedge.model: the Keras 3 story model (encode / decode_step / teacher-forced call).

Importing this package imports TensorFlow / Keras. Export signatures live in
:mod:`storyedge.model.signatures`; the building blocks in :mod:`storyedge.model.layers`.
"""

from storyedge.model.story_model import (
    StoryModel,
    build_model,
    context_dim,
    count_params,
    dummy_inputs,
    reason_dim,
)

__all__ = ["StoryModel", "build_model", "context_dim", "count_params", "dummy_inputs", "reason_dim"]

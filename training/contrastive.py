"""The contrastive image-caption alignment loss (``training.contrastive_weight > 0``).

Per frame of a batch, the image encoder's global vector and the caption encoder's pooled vector
each go through a projection head owned by *training* (:class:`ContrastiveHeads`, not a part of
the :class:`~storyedge.model.story_model.StoryModel`: never saved in ``best/``, never exported;
checkpointed so that ``--resume`` continues it). The loss is the symmetric InfoNCE over cosine
similarities at temperature τ, the other frames of the batch (of the replica, under a
distribution strategy: the step runs per replica) being the negatives::

    S = normalize(P_img(image)) · normalize(P_txt(text))ᵀ / τ            [N, N]
    loss = ½ (CE(S, arange N) + CE(Sᵀ, arange N))                      (row means)

Validation also reports retrieval among the validation frames (:func:`retrieval_recall`):
image→caption and caption→image recall@1 and @5, where a retrieved caption (or the caption of a
retrieved image) whose *text* equals the true one counts as a hit (synthetic captions repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

#: The ks of the recall@k that validation reports.
RECALL_AT: tuple[int, ...] = (1, 5)
#: Directions of the recall keys: image→caption and caption→image.
RECALL_DIRECTIONS: tuple[str, ...] = ("i2t", "t2i")


def recall_keys() -> list[str]:
    """The history / TensorBoard names of the recall figures: ``val_i2t_r1``, ..."""
    return [f"val_{d}_r{k}" for d in RECALL_DIRECTIONS for k in RECALL_AT]


def info_nce(image_emb: Any, text_emb: Any, temperature: float) -> tf.Tensor:
    """Symmetric InfoNCE (float32 scalar) of matched rows ``image_emb[i]`` ↔ ``text_emb[i]``.

    Both [N, D], L2-normalised here (cosine similarity), logits divided by ``temperature``.
    All rows equal → log N; one-hot matched pairs → log(1 + (N−1)·e^(−1/τ)).
    """
    image = tf.math.l2_normalize(tf.cast(image_emb, tf.float32), axis=-1)
    text = tf.math.l2_normalize(tf.cast(text_emb, tf.float32), axis=-1)
    logits = tf.matmul(image, text, transpose_b=True) / temperature
    labels = tf.range(tf.shape(logits)[0])
    i2t = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    t2i = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.transpose(logits))
    return 0.5 * (tf.reduce_mean(i2t) + tf.reduce_mean(t2i))


class ContrastiveHeads(keras.layers.Layer):
    """The two projection heads of the loss: image vector → ``dim``, caption vector → ``dim``."""

    def __init__(self, dim: int, **kwargs: Any) -> None:
        kwargs.setdefault("name", "contrastive_heads")
        super().__init__(**kwargs)
        self.dim = dim
        self.image_proj = keras.layers.Dense(dim, name="image_proj")
        self.text_proj = keras.layers.Dense(dim, name="text_proj")

    def build_for(self, image_dim: int, text_dim: int) -> None:
        """Create the weights for image vectors of ``image_dim`` and caption vectors of ``text_dim``."""
        self.image_proj.build((None, image_dim))
        self.text_proj.build((None, text_dim))
        self.built = True

    def call(self, frame_image: Any, frame_text: Any) -> tuple[Any, Any]:
        """Project [N, Di] and [N, Dt] into the shared [N, dim] space (not normalised)."""
        return self.image_proj(frame_image), self.text_proj(frame_text)

    def get_config(self) -> dict[str, Any]:
        """Serialisable constructor arguments."""
        return {**super().get_config(), "dim": self.dim}


class ContrastiveLoss:
    """Heads + weight + temperature: what the train / eval steps need of the loss."""

    def __init__(self, image_dim: int, text_dim: int, dim: int, weight: float, temperature: float) -> None:
        self.heads = ContrastiveHeads(dim)
        self.heads.build_for(image_dim, text_dim)
        self.weight = float(weight)
        self.temperature = float(temperature)

    @property
    def trainable_variables(self) -> list[Any]:
        """The heads' variables (trained with the model's)."""
        return list(self.heads.trainable_variables)

    def embed(self, vectors: dict[str, Any], training: bool = False) -> tuple[Any, Any]:
        """L2-normalised projections (image, text) [N, dim] of ``{frame_image, frame_text}``."""
        image, text = self.heads(vectors["frame_image"], vectors["frame_text"], training=training)
        return (tf.math.l2_normalize(tf.cast(image, tf.float32), axis=-1),
                tf.math.l2_normalize(tf.cast(text, tf.float32), axis=-1))

    def __call__(self, vectors: dict[str, Any], training: bool = False) -> tf.Tensor:
        """The (unweighted) InfoNCE of one batch's frame vectors."""
        image, text = self.embed(vectors, training=training)
        return info_nce(image, text, self.temperature)


def contrastive_loss_for(cfg: Any) -> ContrastiveLoss | None:
    """The :class:`ContrastiveLoss` of ``cfg`` (a :class:`~storyedge.config.Config`); None when off."""
    t, m = cfg.training, cfg.model
    if t.contrastive_weight <= 0:
        return None
    return ContrastiveLoss(
        image_dim=m.image_feat_dim, text_dim=2 * m.text_hidden_dim, dim=m.multimodal_dim,
        weight=t.contrastive_weight, temperature=t.contrastive_temperature,
    )


def retrieval_recall(
    image_emb: np.ndarray, text_emb: np.ndarray, caption_keys: Sequence[Any], ks: Sequence[int] = RECALL_AT
) -> dict[str, float]:
    """Image→caption and caption→image recall@k among N frames (``val_i2t_r1``, ...).

    ``image_emb`` / ``text_emb`` [N, D] (row i: frame i), compared by dot product (pass
    normalised rows for cosine); ``caption_keys[i]`` identifies frame i's caption text. A query
    hits at k when one of its k most similar candidates has the query's caption text.
    """
    sims = np.asarray(image_emb, np.float64) @ np.asarray(text_emb, np.float64).T  # [image, caption]
    _, codes = np.unique(np.asarray([_key(c) for c in caption_keys], dtype=object), return_inverse=True)
    out: dict[str, float] = {}
    for direction, scores in zip(RECALL_DIRECTIONS, (sims, sims.T)):
        # stable order: among equal scores the lower index first
        ranked = np.argsort(-scores, axis=1, kind="stable")
        same = codes[ranked] == codes[:, None]  # [query, rank]: candidate's text = query's text
        for k in ks:
            out[f"val_{direction}_r{k}"] = float(same[:, :k].any(axis=1).mean()) if len(codes) else float("nan")
    return out


class AlignmentAccumulator:
    """Collects validation frames' embeddings over eval batches; :meth:`result` gives the
    validation InfoNCE (mean over batches of the real frames, as in training) and the recall
    among the distinct validation frames (overlapping windows repeat frames: kept once each)."""

    def __init__(self, temperature: float, pad_id: int) -> None:
        self.temperature = temperature
        self.pad_id = pad_id
        self.losses: list[float] = []
        self.frames: dict[bytes, tuple[np.ndarray, np.ndarray, bytes]] = {}

    def add(self, batch: dict[str, np.ndarray], out: dict[str, Any]) -> None:
        """One eval batch and its eval-step output (``image_emb`` / ``text_emb``)."""
        captions = np.asarray(batch["captions"])
        k = captions.shape[1]
        real = np.repeat(np.asarray(batch["target"])[:, 0] != self.pad_id, k)  # padding rows out
        image = np.asarray(out["image_emb"])[real]
        text = np.asarray(out["text_emb"])[real]
        if not len(image):
            return
        self.losses.append(float(info_nce(image, text, self.temperature)))
        frames = np.asarray(batch["frames"]).reshape(-1, *batch["frames"].shape[2:])[real]
        rows = captions.reshape(-1, captions.shape[-1])[real]
        for i in range(len(image)):
            caption = rows[i].tobytes()
            self.frames.setdefault(frames[i].tobytes() + caption, (image[i], text[i], caption))

    def result(self) -> dict[str, float]:
        """``{val_contrastive_loss, val_i2t_r1, val_i2t_r5, val_t2i_r1, val_t2i_r5}``."""
        if not self.frames:
            return {"val_contrastive_loss": float("nan"), **{key: float("nan") for key in recall_keys()}}
        image, text, captions = zip(*self.frames.values())
        return {
            "val_contrastive_loss": float(np.mean(self.losses)),
            **retrieval_recall(np.stack(image), np.stack(text), captions),
        }


def _key(caption: Any) -> Any:
    """A hashable, comparable key of one caption (a str, or a token-id row)."""
    return caption if isinstance(caption, str) else np.asarray(caption).tobytes()


__all__ = [
    "AlignmentAccumulator",
    "ContrastiveHeads",
    "ContrastiveLoss",
    "RECALL_AT",
    "contrastive_loss_for",
    "info_nce",
    "recall_keys",
    "retrieval_recall",
]

"""BERT-style tokenizer: ``bert-base-uncased`` when available, else a WordPiece built offline.

Both kinds are saved as a directory ``transformers.BertTokenizerFast.from_pretrained`` can load
(``tokenizer.json``, ``vocab.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``), so a
runtime without storyedge can decode what an exported model writes. Inside storyedge the
directory is read with the lightweight ``tokenizers`` library only (no ``transformers`` import).

Special ids follow BERT: ``[PAD]`` pads, ``[CLS]`` starts a caption (BOS), ``[SEP]`` ends it (EOS).

A trained WordPiece can be padded (:func:`pad_vocabulary`, ``tokenizer.pad_to_vocab_size``) with
``[unusedN]`` entries after its own, as BERT's vocabulary has them, so a model gets the seed's
V = 30522 without the pretrained tokenizer. The pre-tokenizer splits ``[`` and ``]`` off every
word, so no text ever encodes to an ``[unusedN]`` id; the ids of the trained entries do not change.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from storyedge.constants import PRETRAINED_TOKENIZER as PRETRAINED_NAME  # bench/ imports this name
from storyedge.constants import UNUSED_TOKEN, WORDPIECE_TOKENIZER
from storyedge.errors import UserError
from storyedge.hub import hub_reachable, offline_env

PAD, UNK, BOS, EOS, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS, MASK]
TOKENIZER_FILE = "tokenizer.json"


class StoryTokenizer:
    """Wraps a ``tokenizers.Tokenizer`` with caption framing and the special ids."""

    def __init__(self, tokenizer: Tokenizer, source: str, lowercase: bool = True) -> None:
        self._tok = tokenizer
        self.source = source
        self.lowercase = lowercase
        self.pad_id = self._require_id(PAD)
        self.unk_id = self._require_id(UNK)
        self.bos_id = self._require_id(BOS)
        self.eos_id = self._require_id(EOS)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    def _require_id(self, token: str) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise UserError(f"tokenizer ({self.source}): special token {token} is missing")
        return token_id

    @property
    def special_ids(self) -> dict[str, int]:
        """The ids a runtime needs: pad, unk, bos, eos, and the vocabulary size."""
        return {
            "pad_id": self.pad_id,
            "unk_id": self.unk_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "vocab_size": self.vocab_size,
        }

    def tokenize(self, text: str) -> list[int]:
        """Word-piece ids of ``text`` without special tokens."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_caption(self, text: str, max_len: int) -> list[int]:
        """``[BOS] tokens [EOS]`` padded with ``[PAD]`` to ``max_len``; long text is truncated
        so the result still ends with ``[EOS]``."""
        if max_len < 3:
            raise ValueError(f"max_len must be >= 3 to hold [BOS] x [EOS], got {max_len}")
        ids = [self.bos_id, *self.tokenize(text)[: max_len - 2], self.eos_id]
        return ids + [self.pad_id] * (max_len - len(ids))

    def encode_text(self, text: str, max_len: int) -> list[int]:
        """Plain token ids (no BOS/EOS) truncated and padded to ``max_len``."""
        ids = self.tokenize(text)[:max_len]
        return ids + [self.pad_id] * (max_len - len(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, stopping at the first ``[EOS]`` and skipping special tokens."""
        kept: list[int] = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == self.eos_id:
                break
            kept.append(token_id)
        return self._tok.decode(kept, skip_special_tokens=True)

    def fingerprint(self) -> str:
        """sha256 of the vocabulary: tells whether two tokenizers map text to the same ids."""
        vocab = sorted(self._tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
        return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Write a ``BertTokenizerFast``-loadable directory; returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(directory / TOKENIZER_FILE))
        vocab = sorted(self._tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
        (directory / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab))
        special = {
            "pad_token": PAD,
            "unk_token": UNK,
            "cls_token": BOS,
            "sep_token": EOS,
            "mask_token": MASK,
        }
        (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "model_max_length": 512,
            "storyedge_source": self.source,
            **special,
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "StoryTokenizer":
        """Load a directory written by :meth:`save` (or by ``save_pretrained``)."""
        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise UserError(f"{directory}: no tokenizer found ({TOKENIZER_FILE} missing)")
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        source = config.get("storyedge_source", str(directory))
        return cls(Tokenizer.from_file(str(path)), source, config.get("do_lower_case", True))


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, lowercase: bool = True
) -> StoryTokenizer:
    """Build a BERT-style WordPiece tokenizer from ``texts``, offline and deterministically.

    The vocabulary is: the special tokens, every character seen (plain and ``##``-continued, so
    any word made of seen characters is representable), then whole words by descending
    frequency (ties alphabetical) up to ``vocab_size``. ``tokenizers``' own WordPiece trainer
    is not used because its merges break ties by hash-map order, so the same text gave a
    different vocabulary in every process and fixed seeds could not reproduce a run.
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, clean_text=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = tokenizer.normalizer.normalize_str(text)
        counts.update(word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized))
    chars = sorted({char for word in counts for char in word})
    vocab = SPECIAL_TOKENS + chars + [f"##{char}" for char in chars]
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    vocab += words[: max(0, vocab_size - len(vocab))]
    tokenizer.model = models.WordPiece(
        vocab={token: index for index, token in enumerate(vocab)},
        unk_token=UNK,
        max_input_chars_per_word=100,
    )
    tokenizer.add_special_tokens(SPECIAL_TOKENS)  # never split, skipped by decode
    return StoryTokenizer(tokenizer, WORDPIECE_TOKENIZER, lowercase)


def pad_vocabulary(tokenizer: StoryTokenizer, vocab_size: int, what: str = "tokenizer.pad_to_vocab_size") -> StoryTokenizer:
    """The same WordPiece tokenizer with ``[unusedN]`` entries appended up to ``vocab_size``.

    Ids of the existing entries are unchanged (so is every encoding); ``vocab_size`` equal to the
    current size returns ``tokenizer`` itself; a smaller one is a :class:`UserError` naming ``what``
    (the setting that asked for it).
    """
    if vocab_size < tokenizer.vocab_size:
        raise UserError(
            f"{what} {vocab_size} is smaller than the trained WordPiece vocabulary ({tokenizer.vocab_size})"
        )
    if vocab_size == tokenizer.vocab_size:
        return tokenizer
    data = json.loads(tokenizer._tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    extra = 0
    while next_id < vocab_size:
        token = UNUSED_TOKEN.format(extra)
        extra += 1
        if token not in vocab:
            vocab[token] = next_id
            next_id += 1
    padded = StoryTokenizer(Tokenizer.from_str(json.dumps(data)), tokenizer.source, tokenizer.lowercase)
    if padded.vocab_size != vocab_size:
        raise RuntimeError(f"padded vocabulary has {padded.vocab_size} entries, wanted {vocab_size}")
    return padded


def load_pretrained(name: str = PRETRAINED_NAME) -> StoryTokenizer:
    """Load a pretrained BERT tokenizer from the HF cache, or the hub when reachable.

    Unreachable and uncached → :class:`UserError` saying how to provide it (fast: the hub's
    reachability is probed once instead of waiting through the client's retries).
    """
    from huggingface_hub import snapshot_download  # lazy: only the pretrained tokenizer needs the hub client

    patterns = [TOKENIZER_FILE, "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]
    try:
        local = snapshot_download(name, allow_patterns=patterns, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (any cache miss error)
        if offline_env() or not hub_reachable():
            raise UserError(
                f"tokenizer {name!r} is not in the Hugging Face cache and the hub is unreachable; "
                "run once online to cache it, or set tokenizer.name: wordpiece"
            ) from None
        local = snapshot_download(name, allow_patterns=patterns)
    if (Path(local) / TOKENIZER_FILE).is_file():
        return StoryTokenizer(Tokenizer.from_file(str(Path(local) / TOKENIZER_FILE)), name, True)
    from transformers import BertTokenizerFast  # lazy: slow to import; vocab.txt only: let transformers build it

    return StoryTokenizer(BertTokenizerFast.from_pretrained(local).backend_tokenizer, name, True)


def build_tokenizer(
    name: str,
    texts: Iterable[str],
    vocab_size: int,
    lowercase: bool = True,
    pad_to_vocab_size: int | None = None,
) -> StoryTokenizer:
    """The configured tokenizer: ``bert-base-uncased`` (pretrained) or ``wordpiece`` (trained, then
    padded with ``[unusedN]`` to ``pad_to_vocab_size`` when that is set)."""
    if name == PRETRAINED_NAME:
        if pad_to_vocab_size is not None:
            raise UserError(f"tokenizer.pad_to_vocab_size only pads a trained vocabulary (tokenizer.name: "
                            f"{WORDPIECE_TOKENIZER}), not {PRETRAINED_NAME}")
        return load_pretrained(name)
    if name == WORDPIECE_TOKENIZER:
        tokenizer = train_wordpiece(texts, vocab_size, lowercase)
        return tokenizer if pad_to_vocab_size is None else pad_vocabulary(tokenizer, pad_to_vocab_size)
    raise UserError(f"tokenizer.name: unknown tokenizer {name!r}")

"""``storyedge bench --config CFG --random-init``: bench the real configuration before (or without)
a trained model.

The model of ``CFG`` is built with random weights (seed ``training.seed``), exported through the
exporter's Python API into ``OUT/exports``, and benchmarked like any export. Latency of these
graphs depends on the shapes only (vocabulary size included), not on the weights or on which
string each token id stands for, so it is the edge latency of the real configuration. Parity
(exported vs TF reference) is checked as well, on windows of the embedded synthetic stories
(the configured dataset, e.g. StoryReasoning, need not be available): it measures conversion and
quantisation error of these graphs, although a random model's PPL itself means nothing.

Vocabulary: the tokenizer of ``CFG`` when it can be had offline (``bert-base-uncased`` from the
Hugging Face cache: V = 30522). Otherwise a WordPiece tokenizer is trained on the synthetic
stories' text (no download), and for a ``bert-base-uncased`` config (or with ``--vocab-size``)
its vocabulary is padded with never-produced ``[unusedN]`` entries, as BERT's own vocabulary
has, up to ``--vocab-size`` (default 30522), so the graphs have the real configuration's V. The
token→string mapping is then not BERT's; the shapes and the latency are the same. The written
config says ``tokenizer.name: wordpiece`` with the trained ``vocab_size`` and the padded
``pad_to_vocab_size``, so nothing claims to be BERT and training with it makes the same
tokenizer. A wordpiece config's own ``tokenizer.pad_to_vocab_size`` is used when
``--vocab-size`` is not given.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue as queue_mod
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from storyedge.config import SYNTHETIC_DATASET, Config
from storyedge.constants import BERT_VOCAB_SIZE, WORDPIECE_TOKENIZER
from storyedge.devices import import_tensorflow, set_tf_threads
from storyedge.errors import CheckFailed, UserError
from storyedge.export import export_model
from storyedge.export.progress import STAGE, STAGE_TEXT_WIDTH, STEP, Listener, ProgressEvent
from storyedge.quiet import quiet_tensorflow_import
from storyedge.tokenizer import PRETRAINED_NAME, StoryTokenizer, load_pretrained, pad_vocabulary, train_wordpiece

log = logging.getLogger(__name__)

#: Windows handed to the exporter for full-int8 calibration (after its validation windows).
CALIBRATION_WINDOWS = 32
#: Loggers the child process quiets to warnings.
NOISY_LOGGERS = ("absl", "tensorflow", "h5py", "datasets", "urllib3", "httpx", "tf2onnx")
#: Seconds the parent waits for a child message before checking that the child still lives.
POLL_SECONDS = 1.0
#: Seconds the parent waits for the child to exit after its last message.
JOIN_SECONDS = 60


def synthetic_data_config(config: Config, data_dir: Path, stories: int) -> Config:
    """``config`` with the embedded synthetic stories as its dataset (same k, S, L, R) at ``data_dir``."""
    return config.replace(
        **{
            "dataset.name": SYNTHETIC_DATASET,
            "dataset.path": str(data_dir),
            "dataset.schema": "auto",
            "dataset.synthetic_stories": stories,
            "bench.split": "validation",
        }
    )


def random_init_tokenizer(
    config: Config, texts: Callable[[], list[str]], vocab_size: int | None, echo: Callable[[str], Any]
) -> tuple[StoryTokenizer, str, dict[str, Any]]:
    """(tokenizer, how it was made, the ``tokenizer.*`` overrides that rebuild it) for a
    random-init model (see module doc). The overrides are empty for the cached pretrained one;
    for a WordPiece they name it, its trained size and the padded size, so the written config
    makes the same tokenizer again (``storyedge.tokenizer.build_tokenizer``)."""
    if config.tokenizer.name == PRETRAINED_NAME:
        try:
            tok = load_pretrained(PRETRAINED_NAME)
            if vocab_size is not None and vocab_size != tok.vocab_size:
                raise UserError(
                    f"--vocab-size {vocab_size}: the cached {PRETRAINED_NAME} has {tok.vocab_size} tokens "
                    "(--vocab-size only sizes the offline WordPiece fallback)"
                )
            return tok, f"{PRETRAINED_NAME} (Hugging Face cache)", {}
        except UserError as exc:
            if "--vocab-size" in str(exc):
                raise
            echo(f"{PRETRAINED_NAME} unavailable offline ({exc}); training a WordPiece on the synthetic stories")
        target = vocab_size or BERT_VOCAB_SIZE
    else:
        target = vocab_size or config.tokenizer.pad_to_vocab_size
    tok = train_wordpiece(texts(), config.tokenizer.vocab_size, config.tokenizer.lowercase)
    trained = tok.vocab_size
    # vocab_size = the trained size: training with it gives the same vocabulary again
    overrides: dict[str, Any] = {"tokenizer.name": WORDPIECE_TOKENIZER, "tokenizer.vocab_size": trained,
                                 "tokenizer.pad_to_vocab_size": target}
    if target is not None:
        tok = pad_vocabulary(tok, target, "--vocab-size")
        return tok, f"WordPiece trained on the synthetic stories ({trained} tokens) padded with [unused] to {target}", overrides
    return tok, f"WordPiece trained on the synthetic stories ({trained} tokens)", overrides


def random_init_export(
    config: Config,
    out_dir: Path,
    *,
    vocab_size: int | None = None,
    stories: int = 40,
    quantize: str | None = None,
    formats: list[str] | None = None,
    echo: Callable[[str], Any] = print,
    on_progress: Listener | None = None,
    vocab_shortlist: str | None = None,
) -> Path:
    """Build ``config``'s model with random weights, export it to ``out_dir``; returns ``out_dir``.

    ``on_progress``: the exporter's progress events (see :mod:`storyedge.export.progress`).
    """
    import_tensorflow()
    # lazy: keras and storyedge.model import TensorFlow; the data modules import datasets
    import keras

    from storyedge.data.loading import load_story_splits
    from storyedge.data.pipeline import encode_windows
    from storyedge.model.story_model import build_model, count_params
    from storyedge.training.prepare import tokenizer_texts

    out_dir = Path(out_dir)
    data_cfg = synthetic_data_config(config, out_dir.parent / "synthetic_data", stories)
    echo(f"random init: synthetic stories ({stories}) at {data_cfg.dataset.path}")
    splits = load_story_splits(data_cfg.dataset)

    def texts() -> list[str]:
        return list(tokenizer_texts(splits["train"]))

    tokenizer, how, tokenizer_keys = random_init_tokenizer(config, texts, vocab_size, echo)
    final = random_init_config(data_cfg, tokenizer_keys, quantize, formats)
    keras.utils.set_random_seed(final.training.seed)
    model = build_model(final, tokenizer.vocab_size, tokenizer.pad_id)
    params = count_params(model)
    echo(f"random init: tokenizer {how}; model V={tokenizer.vocab_size}, {params['total']:,} parameters "
         f"(decoder {params['decoder']:,})")
    source = {"random_init": True, "seed": final.training.seed, "tokenizer": how, "params": params}
    # Validation / int8 calibration windows: synthetic *train* stories (the model is random, so
    # train vs held-out means nothing; train has the most windows). Parity later uses validation.
    windows = encode_windows(splits["train"], tokenizer, final.dataset,
                             final.export.validation_windows + CALIBRATION_WINDOWS, "train")
    echo(f"exporting {', '.join(final.export.formats)} x {', '.join(final.export.quantize)} to {out_dir} ...")
    export_random_model(model, final, tokenizer, out_dir, source, echo, windows, on_progress, vocab_shortlist)
    return out_dir


def random_init_config(
    data_cfg: Config, tokenizer_keys: dict[str, Any], quantize: str | None, formats: list[str] | None
) -> Config:
    """The config the random model is built and exported with: the tokenizer actually used
    (``tokenizer_keys``: a WordPiece one says so, with its padding), the requested quantizations
    and formats."""
    final = data_cfg.replace(**tokenizer_keys) if tokenizer_keys else data_cfg
    if quantize:
        final = final.replace(**{"export.quantize": [q.strip() for q in quantize.split(",") if q.strip()]})
    if formats:
        final = final.replace(**{"export.formats": formats})
    return final


def export_random_model(
    model: Any, config: Config, tokenizer: StoryTokenizer, out_dir: Path, source: dict[str, Any],
    echo: Callable[[str], Any] = print,
    windows: Any = None,
    on_progress: Listener | None = None,
    vocab_shortlist: str | None = None,
) -> None:
    """Export through the exporter's Python API (``storyedge.export``)."""
    try:
        export_model(
            model,
            config,
            tokenizer,
            out_dir,
            formats=list(config.export.formats),
            quantize=list(config.export.quantize),
            batch=config.export.batch,
            overwrite=True,
            source=source,
            validation=windows,
            progress=False,
            on_progress=on_progress,
            vocab_shortlist=vocab_shortlist,
        )
    except CheckFailed as exc:
        # Files that failed the exporter's validation are in rejected/ and not in the manifest;
        # the ones that passed are still worth timing.
        echo(f"warning: {exc}")
        if not (Path(out_dir) / "manifest.json").is_file():
            raise


# ------------------------------------------------------------------- isolated (child process)


class ExportProgressView:
    """The child's export progress in this process: a bar on stderr (when it is a terminal)
    driven by the stage text and steps done / total, and one echoed line per written file."""

    def __init__(self, echo: Callable[[str], Any]) -> None:
        self.echo = echo
        self.bar: Any = None

    def show(self, event: ProgressEvent) -> None:
        """Reflect one event of the child's exporter."""
        if self.bar is None:
            self.bar = tqdm(total=event.total, unit="step", file=sys.stderr, disable=None, leave=False,
                            dynamic_ncols=True, desc="export")
        if event.kind == STAGE:
            self.bar.set_description_str(event.text[:STAGE_TEXT_WIDTH])
        elif event.kind == STEP:
            self.bar.update(event.done - self.bar.n)
            if event.path is not None:
                self.write(f"exported {event.path} ({event.seconds or 0.0:.1f} s) [{event.done}/{event.total}]")

    def write(self, text: str) -> None:
        """A line above the bar."""
        if self.bar is not None and not self.bar.disable:
            self.bar.clear()
        self.echo(text)
        if self.bar is not None and not self.bar.disable:
            self.bar.refresh()

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()


def random_init_export_isolated(
    config: Config, out_dir: Path, *, threads: int, echo: Callable[[str], Any] = print, **kwargs: Any
) -> Path:
    """:func:`random_init_export` in a spawned child process, its messages and export progress
    shown here (:class:`ExportProgressView`).

    Converting a seed-size model takes GBs of memory and initialises TensorFlow's runtime; in a
    child, neither pollutes the benchmark that follows in this process (its peak RSS, the RSS
    deltas of the backends, the TF reference's thread settings).
    """
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    # not a daemon: the exporter starts worker processes of its own (daemons may not); the
    # finally below ends it whatever happens here
    quiet = not logging.getLogger().isEnabledFor(logging.DEBUG)  # -v shows TensorFlow's import lines
    child = ctx.Process(target=_child, args=(messages, config, Path(out_dir), threads, quiet, kwargs))
    child.start()
    view = ExportProgressView(echo)
    try:
        while True:
            try:
                kind, payload = messages.get(timeout=POLL_SECONDS)
            except queue_mod.Empty:
                if not child.is_alive():
                    raise UserError(
                        f"--random-init: the export process died (exit code {child.exitcode}) without a result"
                    ) from None
                continue
            if kind == "echo":
                view.write(payload)
            elif kind == "progress":
                view.show(ProgressEvent(**payload))
            elif kind == "done":
                return Path(payload)
            else:
                raise _rebuild_error(*payload)
    finally:
        view.close()
        child.join(timeout=JOIN_SECONDS)
        if child.is_alive():
            child.terminate()


def _child(messages: Any, config: Config, out_dir: Path, threads: int, quiet: bool, kwargs: dict[str, Any]) -> None:
    if quiet:  # a spawned process imports TensorFlow afresh: its INFO lines would reach the user's terminal
        quiet_tensorflow_import()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        set_tf_threads(import_tensorflow(), threads)
        path = random_init_export(
            config, out_dir, echo=lambda text: messages.put(("echo", str(text))),
            on_progress=lambda event: messages.put(("progress", asdict(event))), **kwargs,
        )
        messages.put(("done", str(path)))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        messages.put(("error", (type(exc).__name__, str(exc), _kind(exc), traceback.format_exc())))


def _kind(exc: BaseException) -> str:
    return "user" if isinstance(exc, UserError) else "check" if isinstance(exc, CheckFailed) else "other"


def _rebuild_error(name: str, message: str, kind: str, trace: str) -> Exception:
    if kind == "user":
        return UserError(message)
    if kind == "check":
        return CheckFailed(message)
    return RuntimeError(f"--random-init export failed in its child process: {name}: {message}\n{trace}")

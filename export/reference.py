"""The first step of an export: tokenizer + TF reference written, validation data and the
reference's outputs on it, all gathered into the :class:`~storyedge.export.context.ExportContext`.

``reference/`` holds ``model.weights.h5`` and ``config.yaml`` (copied from the bundle when the
model came from one, else saved from the model) so the bench can rebuild the TF reference.
Validation windows come from the caller (windows of a split) or are synthetic random inputs of
the right shapes; full-int8 calibration windows follow the validation ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from storyedge.config import Config
from storyedge.export import validation as val
from storyedge.export.context import REFERENCE_DIR, ExportContext, signature_infos
from storyedge.export.plan import ExportPlan
from storyedge.export.progress import Progress
from storyedge.run_dir import CONFIG_FILE, TOKENIZER_DIR, WEIGHTS_FILE

if TYPE_CHECKING:  # pragma: no cover
    from storyedge.data.pipeline import WindowArrays
    from storyedge.model.story_model import StoryModel
    from storyedge.tokenizer import StoryTokenizer


def write_reference(
    stage: Path, model: "StoryModel", config: Config, tokenizer: "StoryTokenizer", reference_dir: str | Path | None
) -> None:
    """``tokenizer/`` and ``reference/{model.weights.h5, config.yaml}`` (copied from
    ``reference_dir`` where it has them, else written from ``model`` / ``config``)."""
    tokenizer.save(stage / TOKENIZER_DIR)
    ref_dir = stage / REFERENCE_DIR
    ref_dir.mkdir()
    src = Path(reference_dir) if reference_dir is not None else None
    if src is not None and (src / WEIGHTS_FILE).is_file():
        shutil.copy2(src / WEIGHTS_FILE, ref_dir / WEIGHTS_FILE)
    else:
        model.save_weights(str(ref_dir / WEIGHTS_FILE))
    if src is not None and (src / CONFIG_FILE).is_file():
        shutil.copy2(src / CONFIG_FILE, ref_dir / CONFIG_FILE)
    else:
        config.save(ref_dir / CONFIG_FILE)


def validation_sets(
    model: "StoryModel", config: Config, tokenizer: "StoryTokenizer", plan: ExportPlan,
    validation: "WindowArrays | None",
) -> tuple[val.ValidationSet, val.ValidationSet]:
    """(validation set, calibration set): from ``validation`` windows (calibration after the
    validation ones, wrapping around), or synthetic random inputs when there are none."""
    n_val, n_cal, batch = plan.validation_windows, plan.calibration_windows, plan.batch
    if validation is not None and len(validation) > 0:
        vset = val.from_windows(validation, config, batch, n_val)
        cal_start = n_val if len(validation) > n_val else 0
        cset = val.from_windows(validation, config, batch, min(n_cal, max(1, len(validation) - cal_start)), cal_start)
        return vset, cset
    special = tokenizer.special_ids
    vset = val.synthetic_set(config, model.vocab_size, special, batch, n_val, seed=0)
    cset = val.synthetic_set(config, model.vocab_size, special, batch, n_cal, seed=1)
    return vset, cset


def open_context(
    stage: Path,
    model: "StoryModel",
    config: Config,
    tokenizer: "StoryTokenizer",
    plan: ExportPlan,
    progress: Progress,
    *,
    validation: "WindowArrays | None",
    reference_dir: str | Path | None,
) -> ExportContext:
    """Write the reference and tokenizer, run the TF reference over the validation set (one
    progress step) and return the context the builders work in."""
    # lazy: the TF reference backend imports TensorFlow
    from storyedge.runtime.tf_reference import TFReferenceBackend

    progress.stage("reference + tokenizer")
    write_reference(stage, model, config, tokenizer, reference_dir)
    reference = TFReferenceBackend(model, plan.batch)
    vset, cset = validation_sets(model, config, tokenizer, plan, validation)
    progress.echo(
        f"validating on {vset.windows} window(s) of {vset.data}"
        + (f"; int8 calibration on {cset.windows}" if "int8" in plan.tflite_precisions else "")
    )
    ref_trace = val.run_trace(reference, vset)
    ref_states = val.reference_states(reference, ref_trace)
    progress.done()
    return ExportContext(
        stage=stage, model=model, config=config, tokenizer=tokenizer, plan=plan, progress=progress,
        signatures=signature_infos(model, plan.batch), reference=reference, vset=vset, cset=cset,
        ref_trace=ref_trace, ref_states=ref_states, story=reference.story if plan.story_graphs else None,
    )

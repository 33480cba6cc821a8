"""Calibration samples computed by a TF reference over many rows at once (export.calibration)
are the samples a reference of the export's batch gives batch by batch: same order, graphs,
steps and inputs, the values within float32 round-off of a different batch size."""

from __future__ import annotations

import numpy as np
import pytest

from storyedge.export import validation as val
from storyedge.export.calibration import reference_samples
from storyedge.export.story_build import story_calls


def _batch_by_batch(model, cset: val.ValidationSet, pad_id: int, batch: int) -> list:
    """What calibration computed before it batched: one reference of the export's batch, batch by batch."""
    from storyedge.runtime.tf_reference import TFReferenceBackend

    reference = TFReferenceBackend(model, batch)
    samples = []
    for inputs, target in zip(cset.batches, cset.targets):
        samples.append(("encoder", inputs))
        state = reference.encode(inputs)
        for t in range(target.shape[1] - 1):
            token = np.ascontiguousarray(target[:, t]).astype(np.int32)
            if np.all(token == pad_id):
                break
            samples.append(("decoder_step", {reference.decoder.token: token, **state}))
            _, state = reference.step(token, state)
    for inputs in cset.batches:
        samples += story_calls(reference, inputs, True) + story_calls(reference, inputs, False)
    return samples


@pytest.mark.parametrize(("batch", "count", "chunk_rows"), [(1, 5, 2), (2, 6, 4), (1, 3, None)])
def test_samples_over_many_rows_are_the_samples_batch_by_batch(export_env, batch: int, count: int,
                                                               chunk_rows: int | None) -> None:
    from storyedge.run_dir import load_bundle

    bundle = load_bundle(export_env.run_dir)
    special = bundle.tokenizer.special_ids
    cset = val.synthetic_set(bundle.config, bundle.model.vocab_size, special, batch, count, seed=3)
    pad = special["pad_id"]
    want = _batch_by_batch(bundle.model, cset, pad, batch)
    got = reference_samples(bundle.model, cset, pad, story=True, chunk_rows=chunk_rows)
    assert [(graph, sorted(feeds)) for graph, feeds in got] == [(graph, sorted(feeds)) for graph, feeds in want]
    assert sum(graph == "decoder_step" for graph, _ in got) > count  # teacher-forced steps of every window
    for (graph, feeds), (_, expected) in zip(got, want):
        for name, value in feeds.items():
            assert value.shape[0] == batch and value.flags.c_contiguous
            if value.dtype.kind == "f":
                np.testing.assert_allclose(value, expected[name], atol=2e-5, rtol=1e-4, err_msg=f"{graph} {name}")
            else:
                np.testing.assert_array_equal(value, expected[name], err_msg=f"{graph} {name}")

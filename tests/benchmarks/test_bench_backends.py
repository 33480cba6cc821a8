"""pytest-benchmark: decoder step and encoder per backend, at the quickstart and the seed size.

Backends: ``tf`` (the TF reference, ``tf.function``), ``tflite-fp32``, ``tflite-int8-dynamic``,
``onnx-fp32``, ``onnx-int8-dynamic``; batch 1, 2 threads. The models are random-init (latency
depends on the shapes, not the weights), built and exported once per session through
``storyedge.app.random_init`` (the quickstart size: the quickstart config with V = its
``tokenizer.vocab_size``; the seed size: ``storyreasoning.yaml``, V = 30522).

    pytest tests/benchmarks --benchmark-enable                       # quickstart size
    pytest tests/benchmarks --benchmark-enable -m seed_size          # seed size (slow export)
    pytest tests/benchmarks --benchmark-enable -m transformer        # + the Transformer decoder
    pytest tests/benchmarks --benchmark-enable -m "seed_size or transformer"  # all four, side by side
    pytest tests/benchmarks --benchmark-enable --benchmark-autosave  # then --benchmark-compare

Seed-size benchmarks run only when selected with ``-m seed_size`` (or with
``STORYEDGE_SEED_SIZE=1``); setup.cfg's ``--benchmark-disable`` makes CI run each benchmark
once as a smoke test. Groups are ``decoder_step-<size>`` / ``encoder-<size>``, so
``--benchmark-compare`` shows the backends side by side. ``STORYEDGE_BENCH_EXPORTS=DIR`` keeps
the exports in ``DIR/<size>-<key>`` and reuses them across sessions (the key hashes the config
and the model / exporter source, so a code change re-exports).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BACKENDS = ["tf", "tflite-fp32", "tflite-int8-dynamic", "onnx-fp32", "onnx-int8-dynamic"]
#: The Transformer decoder at each size (``-m transformer``; the seed one with ``seed_size`` too):
#: quickstart: 2 layers x 4 heads, ff 192, width 96; seed: 4 layers x 8 heads, ff 2048, width 512.
TRANSFORMER_QUICKSTART = {"model.decoder": "transformer", "model.decoder_layers": 2,
                          "model.decoder_heads": 4, "model.decoder_ff_dim": 192}
TRANSFORMER_SEED = {"model.decoder": "transformer", "model.decoder_layers": 4,
                    "model.decoder_heads": 8, "model.decoder_ff_dim": 2048}
SIZES = {
    "quickstart": {"config": "quickstart.yaml", "vocab_size": None, "overrides": {}},
    "seed": {"config": "storyreasoning.yaml", "vocab_size": 30522, "overrides": {}},
    "quickstart-transformer": {"config": "quickstart.yaml", "vocab_size": None, "overrides": TRANSFORMER_QUICKSTART},
    "seed-transformer": {"config": "storyreasoning.yaml", "vocab_size": 30522, "overrides": TRANSFORMER_SEED},
}
THREADS = 2


class _Cache:
    exports: dict[str, Path] = {}
    backends: dict[tuple[str, str], Any] = {}


@pytest.fixture(scope="session")
def export_for(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """size → export directory (random init, built once per session or reused from the cache dir)."""

    def get(size: str) -> Path:
        if size in _Cache.exports:
            return _Cache.exports[size]
        from storyedge.app.random_init import random_init_export
        from storyedge.config import load_config

        spec = SIZES[size]
        config = load_config(spec["config"]).replace(**{"export.quantize": ["none", "int8-dynamic"],
                                                        "export.formats": ["tflite", "onnx"], **spec["overrides"]})
        base = os.environ.get("STORYEDGE_BENCH_EXPORTS")
        root = Path(base) / f"{size}-{_code_key(config)}" if base else tmp_path_factory.mktemp(f"bench_{size}")
        out = root / "exports"
        if not (out / "manifest.json").is_file():
            vocab = spec["vocab_size"] or config.tokenizer.vocab_size
            random_init_export(config, out, vocab_size=vocab, stories=12, echo=lambda _: None)
        _Cache.exports[size] = out
        return out

    return get


def _code_key(config: Any) -> str:
    """Cache key of an export: the config and the model / export source code (a model change
    makes old reference weights unloadable, so a stale export must not be reused)."""
    import hashlib
    import importlib.util
    import json

    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for package in ("storyedge.model", "storyedge.export"):
        spec = importlib.util.find_spec(package)
        for directory in spec.submodule_search_locations or []:
            for source in sorted(Path(directory).glob("*.py")):
                digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def _backend(export_dir: Path, name: str) -> Any:
    key = (str(export_dir), name)
    if key in _Cache.backends:
        return _Cache.backends[key]
    from storyedge.runtime.export_dir import build_reference, load_backend, open_export

    export = open_export(export_dir)
    spec = None
    if name == "tf":
        from storyedge.devices import import_tensorflow
        from storyedge.devices import set_tf_threads

        set_tf_threads(import_tensorflow(), THREADS)
        backend = build_reference(export)
    else:
        # A precision whose encoder the exporter rejected still has its decoder step timed
        # (paired with the fp32 encoder: layout "decoder-only"; the encoder benchmark skips it).
        spec = next((s for s in export.specs if s.name in (name, f"{name}-decoder")), None)
        if spec is None:
            pytest.skip(f"{name} not in this export (rejected by export validation or not produced)")
        backend = load_backend(spec, THREADS, ["CPUExecutionProvider"] if spec.format == "onnx" else None)
    from storyedge.bench.inputs import synthetic_inputs

    backend.encoder_precision = "fp32" if spec is not None and spec.layout == "decoder-only" else None
    inputs = synthetic_inputs(export.manifest, seed=0)
    state = backend.encode(inputs)
    token = np.full((export.manifest.batch,), export.tokenizer.bos_id, np.int32)
    _Cache.backends[key] = (backend, inputs, state, token)
    return _Cache.backends[key]


def _assert_same_state_shapes(backend: Any, got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """Every tensor of the manifest-declared state (whatever the decoder calls it) keeps its shape
    and stays finite."""
    names = [t.name for t in backend.decoder.state] + [c.name for c in backend.decoder.carried]
    assert set(got) == set(expected) == set(names)
    for name in names:
        assert got[name].shape == expected[name].shape, name
        assert np.isfinite(got[name]).all(), name


def _size_params() -> list[Any]:
    return [
        pytest.param("quickstart", id="quickstart"),
        pytest.param("seed", id="seed", marks=pytest.mark.seed_size),
        pytest.param("quickstart-transformer", id="quickstart-transformer", marks=pytest.mark.transformer),
        pytest.param("seed-transformer", id="seed-transformer", marks=[pytest.mark.seed_size, pytest.mark.transformer]),
    ]


@pytest.fixture(params=_size_params())
def size(request: pytest.FixtureRequest) -> str:
    """The model size; "seed" is skipped unless selected (see conftest.py)."""
    return request.param


@pytest.mark.benchmark(group="decoder_step")
@pytest.mark.parametrize("name", BACKENDS)
def test_decoder_step(benchmark: Any, export_for: Any, size: str, name: str) -> None:
    backend, _, state, token = _backend(export_for(size), name)
    benchmark.group = f"decoder_step-{size}"
    benchmark.extra_info.update({"backend": name, "size": size, "threads": THREADS})
    if backend.encoder_precision:
        benchmark.extra_info["encoder"] = f"{backend.encoder_precision} (this precision's encoder was rejected)"
    logits, next_state = benchmark(backend.step, token, state)
    assert logits.shape[0] == token.shape[0] and np.isfinite(logits).all()
    _assert_same_state_shapes(backend, next_state, state)


@pytest.mark.benchmark(group="encoder")
@pytest.mark.parametrize("name", BACKENDS)
def test_encoder(benchmark: Any, export_for: Any, size: str, name: str) -> None:
    backend, inputs, state, _ = _backend(export_for(size), name)
    if backend.encoder_precision:
        pytest.skip(f"{name}: its encoder was rejected by export validation (decoder step timed only)")
    benchmark.group = f"encoder-{size}"
    benchmark.extra_info.update({"backend": name, "size": size, "threads": THREADS})
    out = benchmark(backend.encode, inputs)
    _assert_same_state_shapes(backend, out, state)

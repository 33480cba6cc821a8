"""Opt-in benchmarks: tests marked ``seed_size``, ``seed_trained``, ``ablation`` or ``transformer``
take minutes (and GBs), so they run only when their marker is selected with ``-m`` (``seed_size``
also with STORYEDGE_SEED_SIZE=1)."""

from __future__ import annotations

import os

import pytest

#: marker -> environment variable that also selects it (None: only ``-m``)
OPT_IN_MARKERS = {"seed_size": "STORYEDGE_SEED_SIZE", "seed_trained": None, "ablation": None, "transformer": None}


def marker_selected(config: pytest.Config, name: str) -> bool:
    """Whether the opt-in marker ``name`` was asked for on this run."""
    env = OPT_IN_MARKERS[name]
    return name in (config.getoption("markexpr") or "") or bool(env and os.environ.get(env) == "1")


@pytest.fixture(autouse=True)
def _skip_unselected_opt_in(request: pytest.FixtureRequest) -> None:
    for name, env in OPT_IN_MARKERS.items():
        if request.node.get_closest_marker(name) and not marker_selected(request.config, name):
            also = f" (or {env}=1)" if env else ""
            pytest.skip(f"{name} benchmarks run with -m {name}{also}")

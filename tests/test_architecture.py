"""The import contract (core ← stages ← app, no stage imports another) holds on the source
tree, and the check really fails when a violating import is planted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from architecture import SOURCE_DIRS, check_tree

ROOT = Path(__file__).resolve().parents[1]


def test_the_tree_keeps_the_import_contract() -> None:
    violations = check_tree(ROOT)
    assert not violations, "\n".join(map(str, violations))


def _copy_sources(tmp_path: Path) -> Path:
    for directory in ("storyedge", "training", "export", "bench"):
        shutil.copytree(ROOT / directory, tmp_path / directory, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize(
    ("file", "statement", "why"),
    [
        ("export/validation.py", "from storyedge.bench.metrics import Gates", "stage export may not import stage bench"),
        ("bench/parity.py", "    from storyedge.training.loss import perplexity", "stage bench may not import stage training"),
        ("storyedge/manifest.py", "from storyedge import export", "core core may not import the stage floor"),
        ("storyedge/runtime/backend.py", "import storyedge.app.cli", "core core may not import the app floor"),
        ("training/loop.py", "from storyedge.app.quickstart import quickstart", "stage training may not import the app floor"),
    ],
)
def test_a_planted_violation_fails_the_check(tmp_path: Path, file: str, statement: str, why: str) -> None:
    root = _copy_sources(tmp_path)
    assert check_tree(root) == []
    target = root / file
    body = "def planted() -> None:\n" + statement if statement.startswith("    ") else statement
    target.write_text(target.read_text() + "\n\n" + body + "\n")
    violations = check_tree(root)
    assert len(violations) == 1, violations
    assert violations[0].path == file and violations[0].why == why


def test_every_source_directory_exists() -> None:
    assert all((ROOT / d).is_dir() for d in SOURCE_DIRS)

"""The one atomic-directory helper (storyedge.atomic) and the training bundle written with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storyedge import atomic
from storyedge.atomic import atomic_directory, displaced


def _tree(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*") if p.is_file()}


def _old(target: Path) -> Path:
    target.mkdir()
    (target / "old.txt").write_text("old")
    (target / "sub").mkdir()
    (target / "sub" / "keep.txt").write_text("kept")
    return target


def test_success_builds_next_to_the_target_and_renames_it_in(tmp_path: Path) -> None:
    target = tmp_path / "parent" / "out"  # the parent is created
    with atomic_directory(target, replace=False) as stage:
        assert stage.parent == target.parent and stage.name == f"out.tmp-{os.getpid()}"
        assert stage.is_dir() and not any(stage.iterdir())
        assert not target.exists()  # nothing complete-looking while the block runs
        (stage / "a.txt").write_text("a")
        (stage / "d").mkdir()
        (stage / "d" / "b.txt").write_text("b")
    assert _tree(target) == {"a.txt": "a", "d/b.txt": "b"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["out"]


def test_replace_swaps_the_old_directory_out_and_removes_it(tmp_path: Path) -> None:
    target = _old(tmp_path / "out")
    with atomic_directory(target, replace=True) as stage:
        (stage / "new.txt").write_text("new")
        assert _tree(target) == {"old.txt": "old", "sub/keep.txt": "kept"}  # untouched until the end
    assert _tree(target) == {"new.txt": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_exception_inside_leaves_the_old_directory_and_no_temp_dir(tmp_path: Path, error: BaseException) -> None:
    target = _old(tmp_path / "out")
    with pytest.raises(type(error)):
        with atomic_directory(target, replace=True) as stage:
            (stage / "half.txt").write_text("half written")
            raise error
    assert _tree(target) == {"old.txt": "old", "sub/keep.txt": "kept"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_exception_without_an_old_directory_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "out", replace=False) as stage:
            (stage / "x").write_text("x")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_replace_false_refuses_a_non_empty_target(tmp_path: Path) -> None:
    target = _old(tmp_path / "out")
    with pytest.raises(FileExistsError, match="not empty"):
        with atomic_directory(target, replace=False) as stage:
            (stage / "new.txt").write_text("new")
    assert _tree(target) == {"old.txt": "old", "sub/keep.txt": "kept"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_false_refuses_with_the_callers_error_and_takes_an_empty_target(tmp_path: Path) -> None:
    class Taken(Exception):
        pass

    target = tmp_path / "out"
    with atomic_directory(target, replace=False, exists_error=lambda p: Taken(str(p))) as stage:
        target.mkdir()  # an empty directory that appeared meanwhile is replaced
        (stage / "a").write_text("a")
    assert _tree(target) == {"a": "a"}
    with pytest.raises(Taken):
        with atomic_directory(target, replace=False, exists_error=lambda p: Taken(str(p))):
            pass
    assert _tree(target) == {"a": "a"}


def test_a_crash_between_the_renames_leaves_the_old_directory_findable(tmp_path: Path, monkeypatch) -> None:
    """The process dies after the old directory was moved aside, before the new one is in."""
    target = _old(tmp_path / "out")
    real_replace = os.replace

    def dying_replace(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.startswith("out.tmp-"):
            raise KeyboardInterrupt  # not an OSError: nothing is put back, as after a kill
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target, replace=True) as stage:
            (stage / "new.txt").write_text("new")
    assert not target.exists()
    [old] = displaced(target)
    assert old.name == f"out.old-{os.getpid()}" and _tree(old) == {"old.txt": "old", "sub/keep.txt": "kept"}


def test_a_failed_final_rename_puts_the_old_directory_back(tmp_path: Path, monkeypatch) -> None:
    target = _old(tmp_path / "out")
    real_replace = os.replace

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.startswith("out.tmp-"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        with atomic_directory(target, replace=True) as stage:
            (stage / "new.txt").write_text("new")
    assert _tree(target) == {"old.txt": "old", "sub/keep.txt": "kept"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------------ the training bundle (best/)


class _FakeModel:
    """Stands in for the Keras model: save_bundle only calls save_weights."""

    def __init__(self, payload: str, fail: bool = False) -> None:
        self.payload, self.fail = payload, fail

    def save_weights(self, path: str) -> None:
        if self.fail:
            raise RuntimeError("disk full while saving weights")
        Path(path).write_text(self.payload)


@pytest.fixture(scope="module")
def bundle_parts():
    from storyedge.config import load_config
    from storyedge.tokenizer import train_wordpiece

    texts = ["a red circle moves left", "the blue square stays", "a green triangle moves up"] * 4
    return load_config("quickstart.yaml"), train_wordpiece(texts, 60)


def test_save_bundle_replaces_best_atomically(tmp_path: Path, bundle_parts) -> None:
    from storyedge.run_dir import BEST_DIR, WEIGHTS_FILE, resolve_bundle, save_bundle

    config, tokenizer = bundle_parts
    run = tmp_path / "run"
    best = save_bundle(run, _FakeModel("epoch 1"), config, tokenizer, {"epoch": 1})
    assert best == run / BEST_DIR and (best / WEIGHTS_FILE).read_text() == "epoch 1"
    save_bundle(run, _FakeModel("epoch 2"), config, tokenizer, {"epoch": 2})
    assert (best / WEIGHTS_FILE).read_text() == "epoch 2"
    with pytest.raises(RuntimeError, match="disk full"):
        save_bundle(run, _FakeModel("epoch 3", fail=True), config, tokenizer, {"epoch": 3})
    assert (best / WEIGHTS_FILE).read_text() == "epoch 2"  # the old bundle is untouched
    assert sorted(p.name for p in run.iterdir()) == [BEST_DIR]
    assert resolve_bundle(run) == best


def test_resolve_bundle_falls_back_to_the_displaced_best(tmp_path: Path, bundle_parts, monkeypatch) -> None:
    from storyedge.run_dir import BEST_DIR, WEIGHTS_FILE, resolve_bundle, save_bundle

    config, tokenizer = bundle_parts
    run = tmp_path / "run"
    save_bundle(run, _FakeModel("epoch 1"), config, tokenizer, {"epoch": 1})
    real_replace = os.replace

    def dying_replace(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.startswith(f"{BEST_DIR}.tmp-"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(run, _FakeModel("epoch 2"), config, tokenizer, {"epoch": 2})
    assert not (run / BEST_DIR).exists()
    found = resolve_bundle(run)
    assert found.name.startswith(f"{BEST_DIR}.old-") and (found / WEIGHTS_FILE).read_text() == "epoch 1"


def test_atomic_write_replaces_a_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    assert atomic.atomic_write(target, "new") == target and target.read_text() == "new"
    atomic.atomic_write(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_atomic_write_that_fails_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]

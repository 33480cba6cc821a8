"""Imports inside functions are kept for heavy optional runtimes only, each with its reason.

A function-level import must (a) load a heavy module — a heavy third-party package, or a
storyedge module that imports one at module level (found from the source tree) — and (b) say why
in a ``# lazy: ...`` comment on the import line or the line above. Everything else is imported
at module level, where it costs nothing and an import error shows up at once.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from architecture import SOURCE_DIRS

ROOT = Path(__file__).resolve().parents[1]
#: Third-party packages whose import is slow, or absent on a runtime-only install.
HEAVY = frozenset({
    "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert", "datasets", "pyarrow",
    "matplotlib", "transformers", "huggingface_hub", "onnxconverter_common", "h5py", "nbclient",
    "ai_edge_quantizer",
    "sacrebleu", "rouge_score", "nltk", "pycocoevalcap",
})


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] in ("training", "export", "bench"):
        parts = ("storyedge", *parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _sources() -> dict[str, Path]:
    return {_module_name(p): p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py")}


@cache
def _module_level_imports(module: str) -> tuple[str, ...]:
    """Modules a source module imports when it is imported (not under ``if``, not in functions)."""
    tree = ast.parse(_sources()[module].read_text())
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found.extend(f"{node.module}.{a.name}" for a in node.names)
    return tuple(found)


def is_heavy(module: str, _seen: frozenset[str] = frozenset()) -> bool:
    """Whether importing ``module`` imports a heavy package (through its parents' ``__init__`` too)."""
    if module.split(".")[0] in HEAVY:
        return True
    sources = _sources()
    parts = module.split(".")
    chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for name in chain:
        if name in sources and name not in _seen:
            seen = _seen | {name}
            if any(is_heavy(m, seen) for m in _module_level_imports(name) if m.split(".")[0] in HEAVY or m in sources):
                return True
    return False


def _import_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return []


def _function_imports(path: Path) -> list[tuple[int, int, int, list[str]]]:
    """(first line of its group, line, last line, modules) of every import inside a function; a
    group is a run of import statements next to each other in one block."""
    found: set[tuple[int, int, int, tuple[str, ...]]] = set()
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for block in ast.walk(fn):
            body = getattr(block, "body", None)
            if not isinstance(body, list):
                continue
            first = None
            for stmt in body:
                names = _import_names(stmt)
                if not names:
                    first = None
                    continue
                first = first or stmt.lineno
                found.add((first, stmt.lineno, stmt.end_lineno or stmt.lineno, tuple(names)))
    return sorted((a, b, c, list(d)) for a, b, c, d in found)


def _has_reason(lines: list[str], first: int, line: int, last: int) -> bool:
    """A ``# lazy:`` comment on the import's lines or on the line above its group."""
    own = lines[line - 1: last]
    above = lines[first - 2] if first > 1 else ""
    return any("# lazy:" in text for text in own) or "# lazy:" in above


def test_function_level_imports_are_heavy_and_say_why() -> None:
    problems: list[str] = []
    for module, path in sorted(_sources().items()):
        lines = path.read_text().splitlines()
        for first, lineno, last, names in _function_imports(path):
            where = f"{path.relative_to(ROOT)}:{lineno} {', '.join(names)}"
            if not any(is_heavy(n) for n in names):
                problems.append(f"{where}: cheap to import, import it at module level")
            elif not _has_reason(lines, first, lineno, last):
                problems.append(f"{where}: lazy import without a '# lazy: <reason>' comment")
    assert not problems, "\n".join(problems)


def test_heaviness_is_found_through_the_tree() -> None:
    assert is_heavy("storyedge.model.story_model")  # keras at module level
    assert is_heavy("storyedge.data.loading")  # datasets
    assert not is_heavy("storyedge.manifest")
    assert not is_heavy("storyedge.runtime")  # the TensorFlow-free runtime

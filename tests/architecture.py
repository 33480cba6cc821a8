"""The house's import contract, checked on the source tree (not on an installed package).

Floors, imports only downward: **core** (``storyedge/`` but ``storyedge/app``) ← **stages**
(``training/``, ``export/``, ``bench/``, installed as ``storyedge.training`` / ``.export`` /
``.bench`` through ``package_dir``) ← **app** (``storyedge/app``). A stage never imports another
stage; nothing imports the app. import-linter cannot check this: grimp walks the root package's
own directory, so it never sees the ``package_dir``-mapped stages. Every ``import`` statement
counts, wherever it is (module level, inside a function, under ``TYPE_CHECKING``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

#: source directory → (layer, unit); a unit is a stage's name, or the floor's name.
SOURCE_DIRS = {"storyedge/app": ("app", "app"), "training": ("stage", "training"),
               "export": ("stage", "export"), "bench": ("stage", "bench"), "storyedge": ("core", "core")}
STAGES = ("training", "export", "bench")
RANK = {"core": 0, "stage": 1, "app": 2}


@dataclass(frozen=True)
class Violation:
    """One import that goes up a floor or across stages."""

    path: str
    line: int
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.imported} ({self.why})"


def unit_of_module(name: str) -> tuple[str, str] | None:
    """(layer, unit) of an imported module name; None for anything outside storyedge."""
    parts = name.split(".")
    if parts[0] != "storyedge":
        return None
    if len(parts) > 1 and parts[1] == "app":
        return "app", "app"
    if len(parts) > 1 and parts[1] in STAGES:
        return "stage", parts[1]
    return "core", "core"


def unit_of_file(root: Path, path: Path) -> tuple[str, str] | None:
    """(layer, unit) of a source file by its directory (the most specific match wins)."""
    rel = path.relative_to(root).as_posix()
    for directory in sorted(SOURCE_DIRS, key=len, reverse=True):
        if rel.startswith(directory + "/"):
            return SOURCE_DIRS[directory]
    return None


def imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every absolute import; ``from storyedge import app`` names ``storyedge.app``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "storyedge":
                found.extend((node.lineno, f"storyedge.{alias.name}") for alias in node.names)
    return found


def check_tree(root: Path) -> list[Violation]:
    """Every import in ``root``'s source directories that breaks the contract."""
    violations: list[Violation] = []
    for directory in SOURCE_DIRS:
        for path in sorted((root / directory).rglob("*.py")):
            importer = unit_of_file(root, path)
            if importer is None:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, name in imported_names(tree):
                target = unit_of_module(name)
                why = _why(importer, target)
                if why:
                    violations.append(Violation(path.relative_to(root).as_posix(), line, name, why))
    return sorted(set(violations), key=lambda v: (v.path, v.line, v.imported))


def _why(importer: tuple[str, str], target: tuple[str, str] | None) -> str:
    if target is None or target[1] == importer[1]:
        return ""
    if RANK[target[0]] > RANK[importer[0]]:
        return f"{importer[0]} {importer[1]} may not import the {target[0]} floor"
    if importer[0] == target[0] == "stage":
        return f"stage {importer[1]} may not import stage {target[1]}"
    return ""

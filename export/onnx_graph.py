"""Small edits shared by the ONNX graph rewrites."""

from __future__ import annotations

from typing import Any


def drop_unread_initializers(graph: Any) -> None:
    """Remove the initializers no node of ``graph`` reads."""
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)

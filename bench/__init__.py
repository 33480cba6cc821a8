"""storyedge.bench: parity and latency of every backend of an export.

Written once against :class:`storyedge.runtime.Backend` (the runtime lives in core):
``inputs`` (eval windows, timing inputs), ``metrics`` / ``parity`` / ``latency`` (the
measurements), ``results`` (the typed report, ``report.json``), ``summary`` (the picks and the
user's budgets), ``report`` (tables, markdown, plots, compare) and ``runner`` (``run_bench``,
what ``storyedge bench`` calls). The command itself and the ``--random-init`` pipeline are in
:mod:`storyedge.app`.
"""

"""storyedge.export: the encoder and decoder step to TFLite / ONNX, quantized, validated.

Python API (TensorFlow is imported on first use, not by ``import storyedge.export``)::

    from storyedge.export import export_model, export_from_checkpoint
    manifest = export_from_checkpoint("runs/quickstart", "exports/quickstart", formats="all",
                                      quantize="none,int8-dynamic")
    manifest = export_model(model, config, tokenizer, "exports/x", formats=["tflite"],
                            quantize=["none", "int8"], validation=windows, source={...})

See :mod:`storyedge.export.exporter` for the layout and :mod:`storyedge.export.validation` for
the tolerances.
"""

from __future__ import annotations

from storyedge.export.exporter import export_from_checkpoint, export_model

__all__ = ["export_from_checkpoint", "export_model"]

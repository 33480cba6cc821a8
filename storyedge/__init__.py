"""storyedge: cross-modal attention fusion for visual story generation, taken to the edge.

Importing this package is cheap: TensorFlow is only imported by the modules that need it
(model, training, export, the TF bench backend), so the runtime-only bench path can run on a
machine without TensorFlow.
"""

__version__ = "0.1.0"

"""storyedge.bench: parity and latency of every backend of an export, and caption generation.

Modules: ``backends`` (the Backend interface, LiteRT and ONNX Runtime; TensorFlow-free),
``tf_backend`` (the TF reference), ``loading`` (export directory checks, backend creation),
``metrics`` / ``parity`` / ``latency`` / ``decoding`` (written once against Backend),
``report`` (tables, JSON, markdown, plots, compare), ``runner`` (``storyedge bench``),
``random_init`` (``--random-init``), ``cli`` / ``generate_cli`` (the commands). See README.md.
"""

"""TensorBoard scalars without the ``tensorboard`` package.

``tf.summary.scalar`` lives in the ``tensorboard`` pip package, which TensorFlow >= 2.20 no
longer installs. The on-disk format is only ``tf.summary.write`` of a float32 scalar tagged with
the scalars plugin's metadata, which core TensorFlow can do: the event files are the ones
``tf.summary.scalar`` writes and TensorBoard shows them as scalar charts.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars", content=b""),
    data_class=summary_pb2.DATA_CLASS_SCALAR,
)


class ScalarWriter:
    """Writes tagged scalars into an event file under ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self._writer = tf.summary.create_file_writer(str(directory))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write ``{tag: value}`` at ``step`` (float32 scalars TensorBoard charts)."""
        with self._writer.as_default():
            for tag, value in values.items():
                tf.summary.write(
                    tag, tf.constant(float(value), tf.float32), step=int(step),
                    metadata=_METADATA.SerializeToString(),
                )

    def flush(self) -> None:
        """Push buffered events to the file (TensorBoard shows them on its next poll)."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


def read_scalars(directory: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value)]`` from every event file under ``directory`` (for tests/tools)."""
    from tensorflow.core.util import event_pb2  # lazy: only reading events back needs TensorFlow's protos

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                out.setdefault(value.tag, []).append((int(event.step), number))
    return out

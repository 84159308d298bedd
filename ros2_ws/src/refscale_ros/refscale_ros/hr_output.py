"""Where the reconstructor's frames go (no rclpy import): report, Image publishers, an HR bag."""

from __future__ import annotations

from collections import Counter
import threading
from typing import Any

from refscale_ros.messages import rgb_image
from refscale_ros.reconstructor_config import ReconstructReport


class HrOutput:
    """Count each rebuilt / failed frame, publish it (rgb8 Image) and/or write it to a bag."""

    def __init__(self, report: ReconstructReport, pubs: dict[str, Any], output_bag: str,
                 provenance: dict[str, str], logger: Any) -> None:
        from refscale_model.bags import BagWriter

        self.report, self.pubs, self.log = report, pubs, logger
        self.writer = BagWriter(output_bag) if output_bag else None
        if self.writer is not None:
            self.writer.add_metadata('refscale_reconstruction', provenance)
        self._lock = threading.Lock()

    def emit(self, item: Any) -> None:
        """Take one `ReconstructedFrame` or `FrameFailure`."""
        from refscale_model.bags import msgs
        from refscale_model.pipeline import FrameFailure

        topic = item.camera_topic
        if isinstance(item, FrameFailure):
            self.report.failed.setdefault(topic, Counter())[item.kind] += 1
            self.log.warning(f'frame failed [{item.kind}]: {item.message}',
                             throttle_duration_sec=5.0)
            return
        self.report.rebuilt[topic] += 1
        if topic in self.pubs:
            self.pubs[topic].publish(rgb_image(item.rgb, stamp_ns=item.stamp_ns,
                                               frame_id=item.frame_id))
        if self.writer is not None:
            with self._lock:
                self.writer.write(topic, msgs.image_msg(item.rgb, item.stamp_ns, item.frame_id),
                                  item.log_time_ns, type_name=msgs.IMAGE)

    def copy_raw(self, raw: Any) -> None:
        """Copy a non-RefScale message of the source bag into the HR bag, as it is (CDR)."""
        if self.writer is not None:
            with self._lock:
                self.writer.add_topic(raw.topic, raw.type_name, msgdef=raw.schema.data.decode(),
                                      qos=raw.qos)
                self.writer.write_cdr(raw.topic, raw.data, raw.log_time_ns,
                                      publish_time_ns=raw.publish_time_ns)

    def count_failure(self, camera: str, kind: str) -> None:
        """Count a frame that failed outside the pipeline (an exception, an incomplete frame)."""
        self.report.failed.setdefault(camera, Counter())[kind] += 1

    def close(self) -> None:
        """Finish the HR bag (idempotent)."""
        if self.writer is not None:
            with self._lock:
                self.writer.close()

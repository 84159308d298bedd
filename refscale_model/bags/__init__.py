"""rosbag2-compatible MCAP bags: write, read (also truncated files), recover.

Bags are rosbag2 *directories* (`metadata.yaml` + `<name>_<i>.mcap`), profile `ros2`, schema
encoding `ros2msg`, message encoding `cdr`, zstd chunks; `ros2 bag`, Foxglove and `rosbags` open
them with standard message types only. Usage (a raw camera bag)::

    from refscale_model.io import rosimg
    from refscale_model.bags import BagWriter, msgs, read_messages, recover

    with BagWriter("drive1", split_max_bytes=512 << 20) as bag:
        bag.add_metadata("drive", {"vehicle": "car7"})
        bag.add_topic("/cam/front/image_raw", msgs.IMAGE)          # built-in standard definition
        bag.write("/cam/front/image_raw", msgs.image_msg(rgb, stamp_ns, "cam_front"), stamp_ns)
        bag.write("/gps/fix", msgs.navsatfix_msg(lat, lon, 40.0, stamp_ns), stamp_ns,
                  type_name=msgs.NAV_SAT_FIX)
        bag.write("/odom", msgs.odometry_msg(stamp_ns, (x, y, 0.0), yaw), stamp_ns,
                  type_name=msgs.ODOMETRY)
        bag.write("/cam/front/camera_info", msgs.camera_info_msg(stamp_ns, "cam_front", w, h, fx=900.0),
                  stamp_ns, type_name=msgs.CAMERA_INFO)

    for topic, log_time_ns, msg in read_messages("drive1"):   # or a single .mcap file
        rgb = rosimg.image_from_msg(msg) if topic == "/cam/front/image_raw" else None

    recover("drive1")    # after a crash: rewrite truncated files, rebuild metadata.yaml

`BagReader(path)` gives raw CDR messages (`raw_messages()`), `problems` (truncation notes), MCAP
`metadata` and `topics`. See docs/bag-format.md for the RefScale topics inside such a bag.
"""

from . import msgs
from .msgdefs import complete_definition
from .reader import (
    BagMessage,
    BagReader,
    BagSummary,
    RawMessage,
    TopicInfo,
    bag_files,
    metadata_of,
    read_messages,
    summarize,
    topics_of,
)
from .recover import RecoverError, RecoverReport, is_complete, recover
from .refscale_format import camera_topics
from .rosbag2_meta import qos_profiles_yaml
from .writer import BagWriteError, BagWriter

__all__ = [
    "BagMessage",
    "BagReader",
    "BagSummary",
    "BagWriteError",
    "BagWriter",
    "RawMessage",
    "RecoverError",
    "RecoverReport",
    "TopicInfo",
    "bag_files",
    "camera_topics",
    "complete_definition",
    "is_complete",
    "metadata_of",
    "msgs",
    "qos_profiles_yaml",
    "read_messages",
    "recover",
    "summarize",
    "topics_of",
]

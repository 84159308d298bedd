"""rosbag2 side files: `metadata.yaml` of a bag directory and the `offered_qos_profiles` string.

Why we write them ourselves: `ros2 bag info/play` and `rosbags` open a *directory* through its
metadata.yaml (version 8, the format ROS 2 Jazzy writes), and rosbag2's MCAP plugin expects every
channel to carry its publisher QoS as a YAML string. Both are tiny, so no ROS install is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

METADATA_VERSION = 8
_INFINITE = {"sec": 9223372036, "nsec": 854775807}  # rmw's "infinite" duration, as rosbag2 prints it


def qos_profiles_yaml(reliable: bool = True, depth: int = 0, transient_local: bool = False) -> str:
    """One offered QoS profile as rosbag2 (metadata version ≤ 8) stores it: YAML with rmw enum ints.

    Defaults match what `ros2 bag record` stores for an ordinary publisher: history UNKNOWN(3),
    reliable(1) or best-effort(2), volatile(2) or transient-local(1), liveliness automatic(1).
    """
    profile = {
        "history": 3 if depth == 0 else 1,
        "depth": depth,
        "reliability": 1 if reliable else 2,
        "durability": 1 if transient_local else 2,
        "deadline": dict(_INFINITE),
        "lifespan": dict(_INFINITE),
        "liveliness": 1,
        "liveliness_lease_duration": dict(_INFINITE),
        "avoid_ros_namespace_conventions": False,
    }
    return yaml.safe_dump([profile], sort_keys=False)


@dataclass
class TopicStats:
    """What metadata.yaml says about one topic."""

    name: str
    type: str
    offered_qos_profiles: str
    count: int = 0


@dataclass
class FileStats:
    """What metadata.yaml says about one split file."""

    path: str
    start_ns: int = 0
    end_ns: int = 0
    count: int = 0

    def add(self, log_time_ns: int) -> None:
        if self.count == 0 or log_time_ns < self.start_ns:
            self.start_ns = log_time_ns
        self.end_ns = max(self.end_ns, log_time_ns) if self.count else log_time_ns
        self.count += 1


@dataclass
class BagStats:
    """Counters a writer (or `recover`) keeps to render metadata.yaml."""

    topics: dict[str, TopicStats] = field(default_factory=dict)
    files: list[FileStats] = field(default_factory=list)
    custom_data: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        counted = [f for f in self.files if f.count]
        start = min((f.start_ns for f in counted), default=0)
        end = max((f.end_ns for f in counted), default=0)
        info = {
            "version": METADATA_VERSION,
            "storage_identifier": "mcap",
            "duration": {"nanoseconds": end - start},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(f.count for f in self.files),
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": t.name,
                        "type": t.type,
                        "serialization_format": "cdr",
                        "offered_qos_profiles": t.offered_qos_profiles,
                        "type_description_hash": "",
                    },
                    "message_count": t.count,
                }
                for t in self.topics.values()
            ],
            "compression_format": "",
            "compression_mode": "",
            "relative_file_paths": [f.path for f in self.files],
            "files": [
                {
                    "path": f.path,
                    "starting_time": {"nanoseconds_since_epoch": f.start_ns},
                    "duration": {"nanoseconds": f.end_ns - f.start_ns},
                    "message_count": f.count,
                }
                for f in self.files
            ],
            "custom_data": dict(self.custom_data),
            "ros_distro": os.environ.get("ROS_DISTRO", ""),
        }
        return yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False, width=1000)


def write_metadata(bag_dir: Path, stats: BagStats) -> None:
    """Atomically (re)write `bag_dir/metadata.yaml` so a crash never leaves half a file."""
    tmp = bag_dir / ".metadata.yaml.tmp"
    try:
        tmp.write_text(stats.render())
        os.replace(tmp, bag_dir / "metadata.yaml")
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def read_metadata(bag_dir: Path) -> dict | None:
    """The `rosbag2_bagfile_information` mapping of a bag directory, or None if absent/unreadable."""
    try:
        data = yaml.safe_load((bag_dir / "metadata.yaml").read_text())
        return data["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None

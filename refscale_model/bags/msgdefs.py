"""ROS 2 .msg interface definitions of the standard types our bags carry, and their `ros2msg` schemas.

Why constants: MCAP readers (Foxglove, `rosbags`, `mcap-ros2-support`) decode with the schema stored
in the file, so a writer must know each definition without a ROS install. The texts are the upstream
interface definitions (ROS 2 common_interfaces 5.x, as shipped in the sensor_msgs / nav_msgs / ...
wheels) with comments stripped. `complete_definition(type)` builds the concatenated form rosbag2
stores: the type's own text, then every dependency after a line of 80 "=" and `MSG: pkg/msg/Name`.
"""

from __future__ import annotations

import re

_PRIMITIVES = frozenset(
    "bool byte char float32 float64 int8 uint8 int16 uint16 int32 uint32 int64 uint64 string wstring".split()
)

DEFINITIONS: dict[str, str] = {
    "builtin_interfaces/msg/Time": """\
int32 sec
uint32 nanosec
""",
    "std_msgs/msg/Header": """\
builtin_interfaces/Time stamp
string frame_id
""",
    "std_msgs/msg/String": """\
string data
""",
    "sensor_msgs/msg/Image": """\
std_msgs/Header header
uint32 height
uint32 width
string encoding
uint8 is_bigendian
uint32 step
uint8[] data
""",
    "sensor_msgs/msg/CompressedImage": """\
std_msgs/Header header
string format
uint8[] data
""",
    "foxglove_msgs/msg/CompressedVideo": """\
builtin_interfaces/Time timestamp
string frame_id
uint8[] data
string format
""",
    "sensor_msgs/msg/CameraInfo": """\
std_msgs/Header header
uint32 height
uint32 width
string distortion_model
float64[] d
float64[9] k
float64[9] r
float64[12] p
uint32 binning_x
uint32 binning_y
RegionOfInterest roi
""",
    "sensor_msgs/msg/RegionOfInterest": """\
uint32 x_offset
uint32 y_offset
uint32 height
uint32 width
bool do_rectify
""",
    "sensor_msgs/msg/NavSatFix": """\
std_msgs/Header header
NavSatStatus status
float64 latitude
float64 longitude
float64 altitude
float64[9] position_covariance
uint8 COVARIANCE_TYPE_UNKNOWN=0
uint8 COVARIANCE_TYPE_APPROXIMATED=1
uint8 COVARIANCE_TYPE_DIAGONAL_KNOWN=2
uint8 COVARIANCE_TYPE_KNOWN=3
uint8 position_covariance_type
""",
    "sensor_msgs/msg/NavSatStatus": """\
int8 STATUS_UNKNOWN=-2
int8 STATUS_NO_FIX=-1
int8 STATUS_FIX=0
int8 STATUS_SBAS_FIX=1
int8 STATUS_GBAS_FIX=2
int8 status -2
uint16 SERVICE_UNKNOWN=0
uint16 SERVICE_GPS=1
uint16 SERVICE_GLONASS=2
uint16 SERVICE_COMPASS=4
uint16 SERVICE_GALILEO=8
uint16 service
""",
    "nav_msgs/msg/Odometry": """\
std_msgs/Header header
string child_frame_id
geometry_msgs/PoseWithCovariance pose
geometry_msgs/TwistWithCovariance twist
""",
    "geometry_msgs/msg/PoseWithCovariance": """\
Pose pose
float64[36] covariance
""",
    "geometry_msgs/msg/Pose": """\
Point position
Quaternion orientation
""",
    "geometry_msgs/msg/Point": """\
float64 x
float64 y
float64 z
""",
    "geometry_msgs/msg/Quaternion": """\
float64 x 0
float64 y 0
float64 z 0
float64 w 1
""",
    "geometry_msgs/msg/TwistWithCovariance": """\
Twist twist
float64[36] covariance
""",
    "geometry_msgs/msg/Twist": """\
Vector3 linear
Vector3 angular
""",
    "geometry_msgs/msg/Vector3": """\
float64 x
float64 y
float64 z
""",
    "diagnostic_msgs/msg/DiagnosticArray": """\
std_msgs/Header header
DiagnosticStatus[] status
""",
    "diagnostic_msgs/msg/DiagnosticStatus": """\
byte OK=0
byte WARN=1
byte ERROR=2
byte STALE=3
byte level
string name
string message
string hardware_id
KeyValue[] values
""",
    "diagnostic_msgs/msg/KeyValue": """\
string key
string value
""",
}
"""Own (non-concatenated) definition text per full type name `pkg/msg/Name`."""


def _field_types(pkg: str, text: str) -> list[str]:
    """Full names of the non-primitive field types of one definition, in order of appearance."""
    out: list[str] = []
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 2 or "=" in tokens[1]:
            continue  # constants (`TYPE NAME=VALUE`) have no nested type
        base = re.sub(r"\[.*\]$", "", tokens[0]).split("<=")[0]  # drop array and string bounds
        if base in _PRIMITIVES:
            continue
        if base == "Header":
            out.append("std_msgs/msg/Header")
        elif "/" in base:
            p, name = base.split("/")[0], base.split("/")[-1]
            out.append(f"{p}/msg/{name}")
        else:
            out.append(f"{pkg}/msg/{base}")
    return out


def dependencies(type_name: str) -> list[str]:
    """All nested types of `type_name`, depth first, each once."""
    seen: list[str] = []

    def visit(name: str) -> None:
        for dep in _field_types(name.split("/")[0], DEFINITIONS[name]):
            if dep not in seen:
                seen.append(dep)
                visit(dep)

    visit(type_name)
    return seen


def complete_definition(type_name: str) -> str:
    """The `ros2msg` schema text for `type_name` (raises KeyError for a type we do not carry)."""
    if type_name not in DEFINITIONS:
        raise KeyError(f"no built-in definition for {type_name!r}; known: {', '.join(sorted(DEFINITIONS))}")
    parts = [DEFINITIONS[type_name]]
    for dep in dependencies(type_name):
        parts.append("=" * 80 + f"\nMSG: {dep}\n" + DEFINITIONS[dep])
    return "".join(parts)

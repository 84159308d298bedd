"""The launch files, read as source: arguments, node names, executables and overrides must match the package.

`launch` / `launch_ros` have no PyPI wheels, so here the files are checked statically (ast, no fake
launch modules). They are started for real by test_ros_launch_testing.py (launch_testing), which
runs where launch_ros is importable (a ROS 2 install, e.g. the Docker image) and is skipped here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "ros2_ws" / "src" / "refscale_ros"
CASES = [
    ("record.launch.py", "recorder", "refscale_ros.recorder", "record.yaml", {"params_file", "output_dir", "cameras"}),
    ("reconstruct.launch.py", "reconstructor", "refscale_ros.reconstructor", "reconstruct.yaml", {"params_file"}),
]


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _const(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not assigned at module level")


@pytest.mark.parametrize("launch_file, executable, module, config, required_args", CASES)
def test_launch_file_matches_the_package(
    launch_file: str, executable: str, module: str, config: str, required_args: set[str]
) -> None:
    pytest.importorskip("rclpy", reason="the node modules import rclpy")
    import importlib

    mod = importlib.import_module(module)
    src = (REPO / "launch" / launch_file).read_text()
    tree = ast.parse(src)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    args = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert required_args <= args
    (node,) = _calls(tree, "Node")
    kw = {k.arg: k.value for k in node.keywords}
    assert ast.literal_eval(kw["executable"]) == executable
    assert ast.literal_eval(kw["name"]) == mod.NODE_NAME
    assert isinstance(kw["package"], ast.Name) and _const(tree, kw["package"].id) == "refscale_ros"
    overrides = set(_const(tree, "OVERRIDES"))
    declared = {name for name, _, _ in mod.PARAMETERS}
    assert overrides <= declared and overrides <= args  # every launch override is a real node parameter
    # the default params file is the installed config/<config>
    share_join = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "attr", "") == "join"]
    assert any(config in [getattr(a, "value", None) for a in c.args] for c in share_join)
    assert (PKG / "config" / config).is_file()


def test_launch_testing_module_is_present() -> None:
    """The real launch test exists (it is collected and skipped here: no launch_ros wheel)."""
    text = (REPO / "tests" / "test_ros_launch_testing.py").read_text()
    assert "@pytest.mark.launch_test" in text and "generate_test_description" in text

"""`refscale record --dry-run`: the configured onboard path measured on synthetic frames, with the
frames/s and drop rate to expect (no ROS graph, no recording)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from test_pipeline import tiny_weights

from refscale_model import load_weights
from refscale_model.backends.onboard_bench import expected_rate
from refscale_model.backends.onnx_export import export_onnx

cli = pytest.importorskip("refscale_ros.cli")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_expected_rate() -> None:
    assert expected_rate(5.0, 2, 10.0) == (5.0, 0.75)
    assert expected_rate(50.0, 2, 10.0) == (20.0, 0.0)


def test_dry_run_measures_the_configured_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    onnx = export_onnx(load_weights(weights), tmp_path / "tiny.onnx", model_id="tiny").path
    common = ["record", "--dry-run", "--size", "320x192", "--frames", "3",
              "-p", f"onnx_model:={onnx}", "-p", "providers:=['CPUExecutionProvider']",
              "-p", f"cache_dir:={tmp_path / 'cache'}", "-p", "lr_codec:=jpeg",
              "-p", "cameras:=['/a:Image:a', '/b:Image:b']"]
    args = parse([*common, "--rate", "1000"])
    assert args.func(args) == 1  # no 2-core machine keeps 2 × 1000 frames/s: drops
    out = capsys.readouterr().out
    assert "2 camera(s) at 320x192, 1000 Hz each, onnx:CPUExecutionProvider, LR jpeg, reference yes" in out
    fps = float(re.search(r"measured: ([\d.]+) frames/s", out).group(1))
    assert fps > 0 and "6/6 with reference, 0 errors" in out
    drop = float(re.search(r"(\d+) % of frames dropped", out).group(1))
    assert drop == pytest.approx(100 * expected_rate(fps, 2, 1000.0)[1], abs=1)
    args = parse([*common, "--rate", "0.001"])
    assert args.func(args) == 0 and " 0 % of frames dropped" in capsys.readouterr().out
    args = parse([*common, "-p", "lr_codec:=nope"])
    assert args.func(args) == 2


def test_dry_run_video_lr_with_gop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lr_gop` / `lr_encoder` reach the video LR encoder; a gop on a per-frame codec is refused."""
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    common = ["record", "--dry-run", "--size", "320x192", "--frames", "4", "--rate", "0.001",
              "-p", f"weights:={weights}", "-p", "cameras:=['/a:Image:a']"]
    args = parse([*common, "-p", "lr_codec:=h265", "-p", "lr_quality:=30", "-p", "lr_gop:=2",
                  "-p", "lr_encoder:=cpu"])
    assert args.func(args) == 0
    assert "LR h265 via libx265, gop 2" in capsys.readouterr().out
    args = parse([*common, "-p", "lr_codec:=jpeg", "-p", "lr_gop:=5"])
    assert args.func(args) == 2
    assert "gop is a video codec setting" in capsys.readouterr().err

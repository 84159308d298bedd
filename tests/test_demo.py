"""A shortened `make demo`: the same code path on a few small frames (real DDS, real bags, ONNX)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels: pip install -e '.[ros]'")

from refscale_ros.demo import DemoSettings, run_demo  # noqa: E402


def test_short_demo_end_to_end(tmp_path: Path) -> None:
    settings = DemoSettings(
        out_dir=tmp_path / "out", drive_dir=tmp_path / "drive", frames=12, size=(320, 192),
        figures=1, domain_id=150 + os.getpid() % 50, allow_untrained=True,
    )
    summary = run_demo(settings)
    assert settings.weights == "x2-lossy" and summary.lr_codec == "h265"  # make demo's setting
    assert summary.recorded >= 1
    assert summary.recorded + summary.dropped + sum(summary.errors.values()) <= settings.frames
    assert summary.rebuilt == summary.recorded and not summary.failures
    assert summary.psnr > 22.0
    assert 0 < summary.refscale_bytes_per_frame < summary.raw_bytes_per_frame / 3
    # every byte the rebuild reads: the frame record's share of the bag is in RefScale's bytes
    assert 0 < summary.record_bytes_per_frame < summary.refscale_bytes_per_frame
    assert summary.provider.startswith("onnx")
    text = (settings.out_dir / "summary.md").read_text()
    assert "rebuilt frames PSNR" in text
    assert (settings.out_dir / "frame_01.png").stat().st_size > 1000
    # against the field on the same frames: every full-resolution codec got a curve and an answer
    assert summary.field_frames >= 1 and set(summary.field_bytes) >= {"jpeg", "webp", "x265-intra"}
    assert "Against the field" in text and (settings.out_dir / "rd.png").stat().st_size > 1000
    # and against full-resolution H.265 over every recorded frame in order, at the recorder's GOP
    assert summary.video_codec == "h265" and summary.video_gop == 10
    assert "Against full-resolution H265 video on all" in text
    assert (settings.out_dir / "rd_video.png").stat().st_size > 1000


def test_demo_cli_defaults_are_the_demo_settings() -> None:
    """`make demo` (the CLI) and `DemoSettings` name the same measured operating point."""
    from refscale_ros.cli import DEMO_LR_CODEC, DEMO_LR_QUALITIES, DEMO_WEIGHTS, demo_lr_quality

    settings = DemoSettings()
    assert (settings.weights, settings.lr_codec) == (DEMO_WEIGHTS, DEMO_LR_CODEC)
    assert settings.lr_quality == demo_lr_quality(DEMO_LR_CODEC, None) == DEMO_LR_QUALITIES["h265"]
    assert demo_lr_quality("webp", None) == 70 and demo_lr_quality("png", 50) == -1
    assert demo_lr_quality("avif", None) == -1 and demo_lr_quality("h265", 24) == 24


def test_short_demo_with_the_lossless_lr(tmp_path: Path) -> None:
    """The default records x2-lossy through H.265 (above); the lossless x2 + PNG path still runs."""
    settings = DemoSettings(
        out_dir=tmp_path / "out", drive_dir=tmp_path / "drive", frames=8, size=(320, 192),
        figures=0, domain_id=150 + (os.getpid() + 7) % 50, allow_untrained=True,
        weights="x2", lr_codec="png", lr_quality=-1, field_frames=2,
    )
    summary = run_demo(settings)
    assert summary.recorded >= 1 and summary.rebuilt == summary.recorded and not summary.failures
    text = (settings.out_dir / "summary.md").read_text()
    assert summary.lr_codec == "png" and "(LR png + S_map + frame record)" in text

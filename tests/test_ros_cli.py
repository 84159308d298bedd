"""`refscale record` as a real subprocess on a real ROS 2 graph: SIGINT / SIGTERM mid-recording.

The command starts the recorder node class with config/record.yaml (+ `-p` overrides), exactly
what `ros2 launch refscale_ros record.launch.py` would start. A signal while frames are still
arriving must leave a finalised, rebuildable bag and exit 0.
"""

# ruff: noqa: F811 - the shared fixtures imported from test_ros_recorder are used as arguments

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels: pip install -e '.[ros]'")

from test_ros_recorder import (  # noqa: E402, F401 - fixtures are used by name
    CAM,
    CAM_ID,
    MIN_PSNR_DB,
    RECORD_YAML,
    Probe,
    build_drive,
    camera_status,
    node_status,
    probe,
    ros_domain,
    wait_for,
    x2_weights,
)

from refscale_model import load_weights  # noqa: E402
from refscale_model.bags import bag_files, is_complete, metadata_of  # noqa: E402
from refscale_model.metrics import psnr  # noqa: E402
from refscale_model.pipeline import ReconstructedFrame, Reconstructor  # noqa: E402
from refscale_model.refcache import ReferenceCache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLI = "import sys; from refscale_model.cli import main; sys.exit(main())"


def refscale(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


def env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_recording_leaves_a_valid_bag_and_exit_0(
    sig: signal.Signals, tmp_path: Path, shared_data: Path, x2_weights: Path, probe: Probe
) -> None:
    drive = build_drive(tmp_path / "drive", n=12, hz=5.0)
    diags = probe.diagnostics()
    out, report_json = tmp_path / "out", tmp_path / "report.json"
    cmd = refscale(
        "record",
        "--params", str(RECORD_YAML),
        "-p", f"cameras:=['{CAM}:Image:{CAM_ID}']",
        "-p", f"cache_dir:={drive.cache}",
        "-p", f"weights:={x2_weights}",
        "-p", f"output_dir:={out}",
        "-p", "bag_name:=rec",
        "-p", "diagnostics_period_s:=0.2",
        "--duration", "120",
        "--report", str(report_json),
    )  # fmt: skip
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(node_status(a) for a in diags) or proc.poll() is not None, 90, "recorder up")
        assert proc.poll() is None, proc.communicate()
        probe.play(drive.raw_bag, wait_for_subscribers=1)
        wait_for(lambda: any(int((node_status(a) or {}).get("frames", 0)) >= 3 for a in diags), 60, "3 frames")
        proc.send_signal(sig)  # mid-recording: the player is still publishing
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "stopped by: signal" in stdout and f"bag: {out / 'rec'}" in stdout

    bag = out / "rec"
    assert (bag / "metadata.yaml").is_file() and all(is_complete(f) for f in bag_files(bag))
    report = json.loads(report_json.read_text())
    cam = report["cameras"][CAM]
    assert 3 <= report["frames"] < len(drive.frames)  # stopped early, not at the end of the drive
    assert cam["received"] == cam["encoded"] + cam["dropped"] + cam["dropped_at_stop"]
    assert metadata_of(bag)["refscale"]["weights_sha256"]  # the real weights' identity
    with ReferenceCache.open(drive.cache, readonly=True) as cache:
        items = list(Reconstructor(load_weights(x2_weights), cache).run(bag))
    assert len(items) == report["frames"] and all(isinstance(i, ReconstructedFrame) for i in items)
    assert min(psnr(i.rgb, drive.frames[i.stamp_ns]) for i in items) > MIN_PSNR_DB


def test_record_with_bad_parameters_exits_2(tmp_path: Path) -> None:
    cmd = refscale("record", "--params", str(RECORD_YAML), "-p", "cameras:=front", "-p", f"output_dir:={tmp_path}")
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "camera entry 'front'" in res.stderr
    assert not any(tmp_path.iterdir())  # nothing was opened


_LIMITED = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv.pop(1)),) * 2); "
    "from refscale_model.cli import main; sys.exit(main())"
)


def test_disk_full_is_an_error_in_diagnostics_and_exit_1(
    tmp_path: Path, shared_data: Path, x2_weights: Path, probe: Probe
) -> None:
    """A bag that cannot be written (file-size limit, as a full disk) stops recording: ERROR, exit 1."""
    drive = build_drive(tmp_path / "drive", n=8, hz=5.0)
    diags = probe.diagnostics()
    cmd = [sys.executable, "-c", _LIMITED, str(100_000), "record", "--params", str(RECORD_YAML)]
    cmd += ["-p", f"cameras:=['{CAM}:Image:{CAM_ID}']", "-p", f"cache_dir:={drive.cache}"]
    cmd += ["-p", f"weights:={x2_weights}", "-p", f"output_dir:={tmp_path / 'out'}", "-p", "bag_name:=rec"]
    cmd += ["-p", "diagnostics_period_s:=0.2", "-p", "flush_interval_s:=0.2"]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(node_status(a) for a in diags) or proc.poll() is not None, 90, "recorder up")
        assert proc.poll() is None, proc.communicate()
        probe.play(drive.raw_bag, rate=2.0, wait_for_subscribers=1)
        errors = wait_for(lambda: [n for a in diags if (n := node_status(a)) and n["state"] == "error"], 60, "error")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "write failed" in errors[0]["message"]
    assert proc.returncode == 1 and "WRITE ERROR" in stdout, stdout + stderr
    with ReferenceCache.open(drive.cache, readonly=True) as cache:  # frames before the failure are readable
        items = list(Reconstructor(load_weights(x2_weights), cache).run(tmp_path / "out" / "rec"))
    assert any(isinstance(i, ReconstructedFrame) for i in items)


def test_sigkill_after_an_idle_spell_loses_no_frame(
    tmp_path: Path, shared_data: Path, x2_weights: Path, probe: Probe
) -> None:
    """A chunk is closed by the idle worker too: frames recorded before a quiet spell survive a SIGKILL."""
    drive = build_drive(tmp_path / "drive", n=6, hz=5.0)
    diags = probe.diagnostics()
    out = tmp_path / "out"
    cmd = refscale(
        "record", "--params", str(RECORD_YAML),
        "-p", f"cameras:=['{CAM}:Image:{CAM_ID}']", "-p", f"cache_dir:={drive.cache}",
        "-p", f"weights:={x2_weights}", "-p", f"output_dir:={out}", "-p", "bag_name:=rec",
        "-p", "diagnostics_period_s:=0.2", "-p", "flush_interval_s:=0.5", "--duration", "120",
    )  # fmt: skip
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(node_status(a) for a in diags) or proc.poll() is not None, 90, "recorder up")
        assert proc.poll() is None, proc.communicate()
        assert probe.play(drive.raw_bag, wait_for_subscribers=1).done.wait(60)
        n = len(drive.frames)

        def settled() -> int | None:  # every frame received and handled (encoded or dropped, counted)
            cams = [c for a in diags if (c := camera_status(a))]
            last = cams[-1] if cams else {}
            done = int(last.get("encoded", 0)) + int(last.get("dropped", 0))
            return int(last["encoded"]) if last and int(last["received"]) == n and done == n else None

        encoded = wait_for(settled, 90, "all frames handled")
        time.sleep(2.0)  # idle: nothing arrives, the queue is empty
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    with ReferenceCache.open(drive.cache, readonly=True) as cache:
        items = list(Reconstructor(load_weights(x2_weights), cache).run(out / "rec"))
    assert encoded >= 1 and len([i for i in items if isinstance(i, ReconstructedFrame)]) == encoded

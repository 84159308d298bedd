"""`refscale rd` end to end on two real pairs, and the BD-rate it reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from refscale_model.cli import main
from refscale_model.evaluation.bdrate import bd_rate, psnr_overlap, quality_at_rate, rd_hull

CURVE = [(0.1, 30.0), (0.2, 33.1), (0.4, 35.9), (0.8, 38.2)]


def test_bd_rate_identical_is_zero_and_half_rate_is_minus_fifty() -> None:
    assert bd_rate(CURVE, CURVE) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(CURVE, [(r / 2, q) for r, q in CURVE]) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(CURVE, [(r * 2, q) for r, q in CURVE]) == pytest.approx(100.0, abs=1e-9)
    # better quality at the same rate -> fewer bits; more points than the anchor are fine
    better = [(r, q + 1.0) for r, q in CURVE] + [(0.3, 35.6)]
    assert bd_rate(CURVE, better) < -5.0
    assert bd_rate(CURVE, [(r, q + 20) for r, q in CURVE]) is None  # no common PSNR range
    assert bd_rate(CURVE, CURVE[:1]) is None
    assert psnr_overlap(CURVE, [(r, q + 1.0) for r, q in CURVE]) == (31.0, 38.2)


def test_bd_psnr_is_the_mean_gain_where_bd_rate_is_undefined() -> None:
    from refscale_model.evaluation.bdrate import bd_psnr

    assert bd_psnr(CURVE, [(r, q + 20) for r, q in CURVE]) == pytest.approx(20.0)  # BD-rate: no common PSNR
    assert bd_psnr(CURVE, CURVE) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(CURVE, [(r * 10, q) for r, q in CURVE]) is None  # no common rate range
    assert bd_psnr(CURVE, [(r, q + 1) for r, q in CURVE], max_rate=0.3) == pytest.approx(1.0)


def test_quality_at_rate_and_hull() -> None:
    assert quality_at_rate(CURVE, 0.2) == pytest.approx(33.1)
    assert 33.1 < quality_at_rate(CURVE, 0.3) < 35.9
    assert quality_at_rate(CURVE, 0.05) is None and quality_at_rate(CURVE, 1.6) is None
    assert rd_hull([(0.1, 30), (0.2, 29), (0.3, 31)]) == [(0.1, 30), (0.3, 31)]


def test_rd_cli_on_two_pairs(shared_data: Path, tmp_path: Path) -> None:
    csv = shared_data / "satellite_spacenet7_monthly" / "pairs.csv"
    out = tmp_path / "rd"
    rc = main(["rd", "--pairs", str(csv), "--split", "val", "--limit", "2", "--jpeg", "40,90", "--webp", "40,90",
               "--avif", "40,85", "--crf", "26,38", "--lr-codecs", "png,jpeg,webp,avif,h265,h265-ref",
               "--video-crf", "30,42",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    result = json.loads((out / "rd.json").read_text())
    s = result["sets"]["satellite_spacenet7_monthly"]
    assert s["frames"] == 2
    keys = {"method", "codec", "quality", "bytes", "bpp", "psnr", "ssim", "enc_ms", "dec_ms"}
    curves: dict[str, list[dict]] = {}
    for p in s["points"]:
        assert keys <= set(p) and p["frames"] == 2
        assert p["bytes"] > 0 and p["bpp"] == pytest.approx(8 * p["bytes"] / (128 * 128), rel=1e-3)
        assert 10 < p["psnr"] < 60 and 0 < p["ssim"] <= 1
        curves.setdefault(f"{p['method']}+{p['codec']}", []).append(p)
    expected = {f"fullres+{a}" for a in ("jpeg", "webp", "avif", "x265-intra", "x265-ref")} | {
        f"{m}+{c}" for m in ("bicubic", "noref", "refscale")
        for c in ("png", "jpeg", "webp", "avif", "h265-intra", "h265-ref")}
    assert expected == set(curves) | set(s["skipped"])
    for name, pts in curves.items():
        assert len(pts) == (1 if name.endswith("+png") else 2), name
        if len(pts) == 2:  # higher quality -> more bytes, better PSNR (crf: the other way round)
            lo, hi = sorted(pts, key=lambda p: p["bytes"])
            assert hi["psnr"] > lo["psnr"], name
    # lossless LR: refscale's bytes include the S_map and the 48-byte allowance
    png = {p["method"]: p for p in s["points"] if p["codec"] == "png"}
    assert png["refscale"]["psnr"] > png["bicubic"]["psnr"]
    assert 0 <= png["refscale"]["referenced"] <= 2 and png["bicubic"]["referenced"] == 0
    summary = s["summary"]["curves"]
    assert summary["fullres+jpeg"]["bd_rate_vs_jpeg"] == pytest.approx(0.0, abs=1e-6)
    assert any(v["bd_rate_vs_jpeg"] is not None and not math.isnan(v["bd_rate_vs_jpeg"])
               for k, v in summary.items() if k.startswith("refscale+"))
    md = (out / "rd.md").read_text()
    assert "## satellite_spacenet7_monthly" in md and "| fullres+jpeg | 2 | +0.0 (" in md
    assert f"RefScale rebuilt {png['refscale']['referenced']} of them with their reference" in md
    assert "BD-rate vs full-res JPEG" in md and "PSNR@0.2" in md
    targets = {(r["curve"], r["against"]) for r in s["summary"]["targets"]}
    assert {("refscale+webp", "bicubic+webp"), ("refscale+webp", "noref+webp"), ("refscale+webp", "fullres+avif")} \
        <= targets and "| refscale+webp | noref+webp |" in md
    # a video LR codec on stills: each LR one IDR, as the recorder with --gop 1 (the targets compare it too)
    intra = [p for p in s["points"] if p["codec"] == "h265-intra" and p["method"] == "refscale"]
    assert sorted(p["quality"] for p in intra) == [30, 42] and ("refscale+h265-intra", "bicubic+h265-intra") in targets
    # the LR coded against the reference: pixel-aligned satellite tiles, so bicubic's LR is predicted from it
    by_crf = {(p["method"], p["codec"], p["quality"]): p for p in s["points"]}
    assert any(by_crf[("bicubic", "h265-ref", q)]["bytes"] < by_crf[("bicubic", "h265-intra", q)]["bytes"]
               for q in (30, 42))
    assert ("refscale+h265-ref", "bicubic+h265-ref") in targets
    png_file = out / "rd_satellite_spacenet7_monthly.png"
    assert png_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_file.stat().st_size > 10_000


def test_rd_cli_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rd", "--pairs", "x.csv", "--lr-codecs", "png,h266", "--out", str(tmp_path)]) == 2
    assert "valid choices: png, jpeg, webp, avif, h264, h265" in capsys.readouterr().err
    assert main(["rd", "--pairs", "x.csv", "--jpeg", "50,120", "--out", str(tmp_path)]) == 2
    assert "0–100" in capsys.readouterr().err
    assert main(["rd", "--out", str(tmp_path)]) == 2
    assert "either --pairs" in capsys.readouterr().err


def test_rd_cli_on_a_drive_bag(tmp_path: Path) -> None:
    """The bag mode: frames of a raw drive with the references the onboard encoder would pick."""
    from refscale_model.sample_drive import generate_sample_drive

    drive = generate_sample_drive(tmp_path / "drive", frames=12, size=(320, 192))
    cam = "/camera/front/image_raw"
    assert main(["cache", "build", "--bag", str(drive.drive_a), "--camera", cam, "--gps", "/gps/fix",
                 "--every", "3", "--out", str(tmp_path / "cache")]) == 0
    out = tmp_path / "rd"
    rc = main(["rd", "--bag", str(drive.drive_b), "--cache", str(tmp_path / "cache"), "--camera", cam,
               "--every", "4", "--limit", "2", "--jpeg", "50,90", "--lr-codecs", "jpeg", "--anchors", "jpeg",
               "--methods", "bicubic,refscale", "--out", str(out), "--no-progress"])
    assert rc == 0
    s = next(iter(json.loads((out / "rd.json").read_text())["sets"].values()))
    assert s["frames"] >= 1
    names = {f"{p['method']}+{p['codec']}" for p in s["points"]}
    assert {"fullres+jpeg", "bicubic+jpeg", "refscale+jpeg"} <= names


def test_a_gated_refscale_frame_pays_the_no_ref_metadata() -> None:
    """A frame the gate sent reference-free names no reference in its bag meta; one with a map does."""
    import numpy as np

    from refscale_model.evaluation.rd import _Lr
    from refscale_model.evaluation.rd_settings import META_BYTES

    lr = np.zeros((4, 4, 3), np.uint8)
    gated, referenced = _Lr(lr, 0, 0.0, lambda x: x), _Lr(lr, 0, 0.0, lambda x: x, np.ones((2, 2), np.uint8))
    assert gated.meta_bytes("refscale") == META_BYTES["noref"] < referenced.meta_bytes("refscale")
    assert referenced.meta_bytes("refscale") == META_BYTES["refscale"]
    assert gated.meta_bytes("bicubic") == META_BYTES["bicubic"]


def test_lossless_weights_through_a_lossy_lr_are_flagged() -> None:
    """`refscale rd`'s default `--weights x2` has no decoder side; scoring it through lossy LR codecs warns."""
    from refscale_model import load_model
    from refscale_model.evaluation.rd import RdConfig, lossless_weights_on_lossy_lr

    x2, lossy = load_model("x2"), load_model("x2-lossy")
    assert lossless_weights_on_lossy_lr(x2, RdConfig())
    assert not lossless_weights_on_lossy_lr(lossy, RdConfig())
    assert not lossless_weights_on_lossy_lr(x2, RdConfig(lr_codecs=("png",), video_codecs=()))
    assert not lossless_weights_on_lossy_lr(None, RdConfig())

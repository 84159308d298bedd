"""Video LR (H.264 / H.265) through real bags: frame-exact round trip, keyframes with parameter sets,
a second decoder (PyAV's own parser + decoder on the raw payloads), a recording killed mid-GOP,
a lost keyframe failing visibly, bad settings failing before anything is written.

Real webcam revisits (`build_world` of test_pipeline), the shipped x2 weights, real libx264/libx265.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_pair
from test_pipeline import CAM, POSITIONS, T0, World, crop, tiny_weights

from refscale_model import load_model
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import BagWriter, msgdefs, msgs, read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.bags.reader import topics_of
from refscale_model.codecs import CodecError, choose_encoder, open_stream_decoder, open_stream_encoder
from refscale_model.codecs.video import is_self_contained_keyframe, nal_types, video_info
from refscale_model.metrics import psnr
from refscale_model.pipeline import (
    FrameAssembler,
    FrameEncoder,
    FrameFailure,
    ModelInfo,
    ReconstructedFrame,
    Reconstructor,
)
from refscale_model.pipeline.encoder import LrSettings
from refscale_model.pipeline.jobs import encode_bag
from refscale_model.pipeline.pose import Pose
from refscale_model.refcache import ReferenceCache

N, GOP = 7, 3
CODECS = ("h264", "h265")


def _pose(i: int) -> tuple[float, float]:
    return POSITIONS[min(i, len(POSITIONS) - 1)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> World:
    """N consecutive real webcam frames as a raw bag (rgb8 + NavSatFix), references of the same scene."""
    root = tmp_path_factory.mktemp("world")
    refs = [crop(load_pair("webcam_tilde", i)[1]) for i in (0, 2)]
    frames = [crop(load_pair("webcam_tilde", i)[0]) for i in range(N)]
    with ReferenceCache.open(root / "cache", create=True) as cache:
        cache.add(refs[0], CAM, *POSITIONS[0], 0.0, 1, "route", "drive0")
        cache.add(refs[1], CAM, *POSITIONS[2], 0.0, 2, "route", "drive0")
    with BagWriter(root / "raw") as bag:
        bag.add_topic(CAM, msgs.IMAGE)
        for i, rgb in enumerate(frames):
            s = T0 + i * 100_000_000
            bag.write("/gps/fix", msgs.navsatfix_msg(*_pose(i), 1000.0, s), s, type_name=msgs.NAV_SAT_FIX)
            bag.write(CAM, msgs.image_msg(rgb, s, "cam_front"), s)
    return World(tiny_weights(root / "w" / "tiny.safetensors"), root / "cache", root / "raw", frames, refs)


@pytest.fixture(scope="module")
def x2():
    return load_model("x2")


@pytest.fixture(scope="module", params=CODECS)
def video_bag(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, world: World, x2):
    """(codec, bag) encoded by `encode_bag` from the raw world bag, crf 24, gop 3."""
    from refscale_model.backends.loader import Backend

    codec = request.param
    out = tmp_path_factory.mktemp(codec) / "bag"
    backend = Backend(TorchDownscaler(x2), ModelInfo.of(x2, "x2"), "torch:cpu")
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        report = encode_bag(world.raw_bag, out, backend, [CAM], cache=cache,
                            encoder_options={"lr_codec": codec, "lr_quality": 24, "lr_gop": GOP})
    assert report.stats.frames == N and not report.stats.errors
    assert report.stats.lr_encoder == choose_encoder(codec)
    return codec, out


def _lr_payloads(bag: Path) -> list[bytes]:
    return [bytes(m.data) for t, _, m in read_messages(bag) if t == fmt.lr_topic(CAM)]


def _model_lr(x2, world: World, meta: fmt.FrameMeta, i: int, smap: np.ndarray | None = None) -> np.ndarray:
    """The LR the onboard model made of frame i (reference warped as the bag's record says), conditioned
    on `smap` when given (the map the frame was coded with: S_map reuse may hand it an earlier one)."""
    from refscale_model.registration import warp_reference

    hr = torch.from_numpy(world.frames[i]).permute(2, 0, 1)[None].float() / 255.0
    ref = None
    if meta.has_smap:
        with ReferenceCache.open(world.cache, readonly=True) as cache:
            rgb = cache.get(int(meta.reference_id), meta.reference_sha256).load_rgb()
        ref = torch.from_numpy(warp_reference(rgb, meta.matrix, meta.size)).permute(2, 0, 1)[None].float() / 255.0
    choose = None if smap is None else (lambda _computed: torch.from_numpy(smap)[None, None])
    with torch.no_grad():
        return x2.downscale(hr, ref, choose).lr[0].permute(1, 2, 0).numpy()


def test_video_lr_round_trip_is_frame_exact(video_bag, world: World, x2) -> None:
    codec, bag = video_bag
    info = video_info(codec)
    # the LR topic is Foxglove's CompressedVideo with its definition embedded
    assert topics_of(bag)[fmt.lr_topic(CAM)] == msgs.COMPRESSED_VIDEO
    assert msgdefs.complete_definition(msgs.COMPRESSED_VIDEO).startswith("builtin_interfaces/Time timestamp\n")
    lr_msgs = [m for t, _, m in read_messages(bag) if t == fmt.lr_topic(CAM)]
    assert [m.format for m in lr_msgs] == [codec] * N
    assert [msgs.stamp_ns(m) for m in lr_msgs] == [T0 + i * 100_000_000 for i in range(N)]
    # a keyframe every GOP frames, each an Annex B IDR with its parameter sets; the others carry none
    for i, m in enumerate(lr_msgs):
        data = bytes(m.data)
        assert is_self_contained_keyframe(codec, data) == (i % GOP == 0), (i, nal_types(codec, data))
        if i % GOP:
            assert not set(nal_types(codec, data)) & info.parameter_set_nals
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        rec = Reconstructor(x2, cache)
        encoded = list(rec.frames(bag))
        rebuilt = list(rec.run(bag))
    assert [type(f).__name__ for f in encoded] == ["EncodedFrame"] * N
    assert all(isinstance(f, ReconstructedFrame) for f in rebuilt)
    for i, f in enumerate(encoded):
        assert f.meta.lr_codec == codec and f.meta.lr_quality == 24
        own_map = f.meta.has_smap and not f.meta.smap_from_stamp_ns  # coded maps declare format 8
        assert f.meta.format == (fmt.FORMAT_SMAP_CODED if own_map else fmt.record_format(f.meta))
        assert f.meta.lr_encoder == video_info(codec).cpu_encoder
        assert f.meta.source_type == "sensor_msgs/msg/Image"  # from the bag's camera record
        assert f.meta.lr_keyframe == (i % GOP == 0)
        assert f.meta.lr_prev_stamp_ns == (0 if i % GOP == 0 else T0 + (i - 1) * 100_000_000)
        # frame-exact: the i-th message rebuilds the i-th frame's LR, not a neighbour's
        want = _model_lr(x2, world, f.meta, i, f.smap)
        scores = [psnr(f.lr, _model_lr(x2, world, f.meta, j)) for j in {max(i - 1, 0), min(i + 1, N - 1)} - {i}]
        assert psnr(f.lr, want) > 33 and all(psnr(f.lr, want) > s + 3 for s in scores), (i, scores)
        assert psnr(rebuilt[i].rgb, world.frames[i]) > 26


def test_second_decoder_reads_the_stored_stream(video_bag) -> None:
    """The payloads concatenated are a valid Annex B stream for PyAV's parser and decoder (not ours)."""
    import av

    codec, bag = video_bag
    stream = b"".join(_lr_payloads(bag))
    ctx = av.CodecContext.create(video_info(codec).decoder, "r")
    pictures = []
    for packet in ctx.parse(stream) + ctx.parse(None):
        pictures += [p.to_ndarray(format="rgb24") for p in ctx.decode(packet)]
    pictures += [p.to_ndarray(format="rgb24") for p in ctx.decode(None)]
    ours = [f.lr for f in Reconstructor.__new__(Reconstructor).frames(bag)]
    assert len(pictures) == len(ours) == N
    for a, b in zip(pictures, ours, strict=True):
        assert np.array_equal(a, b)
    # a third-party reader (rosbags) deserialises the messages with the embedded CompressedVideo schema
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == fmt.lr_topic(CAM)]
        theirs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert [bytes(m.data) for m in theirs] == _lr_payloads(bag)
    assert {(m.format, m.frame_id, conns[0].msgtype) for m in theirs} == {(codec, "cam_front", msgs.COMPRESSED_VIDEO)}


def test_lost_keyframe_fails_its_gop_visibly(video_bag) -> None:
    """Drop the LR of frame 3 (a keyframe): frames 3–5 fail (3 incomplete, 4–5 corrupt_frame), 6 decodes."""
    _, bag = video_bag
    asm = FrameAssembler(meta_closes=True)
    out = []
    for topic, t, m in read_messages(bag):
        parts = fmt.split_topic(topic)
        if parts is None or (parts[1] == "lr" and msgs.stamp_ns(m) == T0 + 3 * 100_000_000):
            continue
        out += asm.add(parts[0], parts[1], m, t)
    out += asm.flush()
    kinds = {f.stamp_ns: (f.kind if isinstance(f, FrameFailure) else "ok") for f in out}
    assert [kinds[T0 + i * 100_000_000] for i in range(N)] == (
        ["ok"] * 3 + ["incomplete", "corrupt_frame", "corrupt_frame", "ok"])


@pytest.mark.parametrize("codec", CODECS)
def test_killed_recording_rebuilds_every_complete_gop(tmp_path: Path, world: World, x2, codec: str) -> None:
    """Record frame by frame (flushing each), kill the file in the middle of frame 5 (GOP 3–5 open)."""
    sizes = []
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        enc = FrameEncoder(BagWriter(tmp_path / "bag", chunk_size=1 << 12), TorchDownscaler(x2),
                           ModelInfo.of(x2, "x2"), cache=cache, flush_interval_s=0.0,
                           lr_codec=codec, lr_quality=28, lr_gop=GOP)
        for i in range(6):
            s = T0 + i * 100_000_000
            enc.encode(CAM, msgs.image_msg(world.frames[i], s, "cam_front"), s, Pose(*_pose(i), 0.0))
            enc.writer.flush()
            sizes.append(enc.writer.files[0].stat().st_size)
        mcap = enc.writer.files[0]
        killed = tmp_path / "killed.mcap"
        killed.write_bytes(mcap.read_bytes()[: (sizes[4] + sizes[5]) // 2])
        enc.close()
        rebuilt = list(Reconstructor(x2, cache).run(killed))
    ok = [f.stamp_ns for f in rebuilt if isinstance(f, ReconstructedFrame)]
    assert ok == [T0 + i * 100_000_000 for i in range(5)]  # GOP 0–2 complete, and 3–4 of the open one
    assert all(f.kind == "incomplete" for f in rebuilt if isinstance(f, FrameFailure))
    # a recording (or a split file) read from its second GOP on starts at a keyframe and decodes
    dec = open_stream_decoder(codec)
    payloads = _lr_payloads(tmp_path / "bag")
    with pytest.raises(CodecError, match="before any keyframe"):
        dec.decode(payloads[1])
    assert all(dec.decode(p).shape == (96, 128, 3) for p in payloads[GOP:])


@pytest.mark.parametrize("codec", CODECS)
def test_zero_delay_one_access_unit_per_frame(codec: str) -> None:
    """Every frame's packet comes out of its own encode call; odd sizes crop back; keyframe on request."""
    enc = open_stream_encoder(codec, crf=30, gop=4)
    dec = open_stream_decoder(codec)
    yy, xx = np.mgrid[0:37, 0:51]
    keys = []
    for i in range(9):
        rgb = np.stack([(xx * 5 + i * 7) % 256, (yy * 6) % 256, (xx + yy + i) % 256], -1).astype(np.uint8)
        if i == 6:
            enc.request_keyframe()
        coded = enc.encode(rgb)
        keys.append(coded.is_keyframe)
        out = dec.decode(coded, size=rgb.shape[:2])
        assert out.shape == rgb.shape and psnr(out, rgb) > 25
    assert keys == [True, False, False, False, True, False, True, False, False]


def test_h265_keyframes_carry_no_encoder_information() -> None:
    """libx265 writes a 2.3 kB SEI of its version and options with every keyframe that repeats the
    headers unless told not to: the recorder's stream and the scoreboard's x265 anchors leave it out."""
    from refscale_model.evaluation.anchors import x265_given_reference, x265_intra

    flat = np.full((360, 640, 3), 128, np.uint8)
    enc = open_stream_encoder("h265", crf=40, gop=2)
    units = [enc.encode(flat) for _ in range(4)]
    assert [u.is_keyframe for u in units] == [True, False, True, False]
    for unit in units:
        assert b"x265" not in unit.data and len(unit.data) < 400, len(unit.data)
    assert x265_intra(flat, 40).nbytes < 400
    assert x265_given_reference(flat, flat, 40).nbytes < 100


def test_bad_video_settings_fail_clearly(tmp_path: Path, world: World) -> None:
    for crf in (52, -1, 2.5, True):
        with pytest.raises(CodecError, match="crf must be an int 0–51"):
            LrSettings.checked("h264", crf, None)
    for gop in (0, -3):
        with pytest.raises(CodecError, match="gop .* must be an int >= 1"):
            LrSettings.checked("h265", None, None, gop)
    with pytest.raises(CodecError, match="gop is a video codec setting"):
        LrSettings.checked("jpeg", None, None, 10)
    with pytest.raises(CodecError, match="target_kbps must be a number > 0"):
        LrSettings.checked("h264", None, 0, 10)
    with pytest.raises(CodecError, match="encoder must be"):
        LrSettings.checked("h264", None, None, 10, encoder="libvpx")
    s = LrSettings.checked("h265", None, 800, None)
    assert (s.quality, s.gop, s.encoder) == (30, 10, choose_encoder("h265"))
    # the CLI refuses before loading weights or writing anything
    from refscale_model.cli import main

    out = tmp_path / "never"
    assert main(["encode-bag", str(world.raw_bag), "--camera", CAM, "--out", str(out),
                 "--lr-codec", "h264", "--lr-crf", "60"]) == 2
    assert main(["encode-bag", str(world.raw_bag), "--camera", CAM, "--out", str(out),
                 "--lr-codec", "h264", "--gop", "0"]) == 2
    assert not out.exists()
    shutil.rmtree(out, ignore_errors=True)


def test_rd_sequence_curves(world: World) -> None:
    """`refscale rd --bag` sequence curves: full-res and bicubic-LR h264 on the same frames, same crf sweep."""
    from refscale_model.evaluation import rd

    frames = [rd.RdFrame(f"f{i}", f, None) for i, f in enumerate(world.frames)]
    cfg = rd.RdConfig(qualities={"h264": [24, 36]}, methods=("bicubic",), video_codecs=("h264",), gop=GOP)
    points = rd.score_sequences(frames, None, None, cfg, progress=False)["points"]
    by = {(p["method"], p["quality"]): p for p in points}
    assert set(by) == {("fullres", 24), ("fullres", 36), ("bicubic", 24), ("bicubic", 36)}
    assert all(p["frames"] == N for p in points)
    for m in ("fullres", "bicubic"):
        assert by[(m, 24)]["bpp"] > by[(m, 36)]["bpp"] and by[(m, 24)]["psnr"] > by[(m, 36)]["psnr"]
    assert by[("bicubic", 24)]["bpp"] < by[("fullres", 24)]["bpp"]  # a quarter of the pixels
    summary = rd.summarise(points)["curves"]["bicubic+h264"]
    assert set(summary["vs_video"]) == {"h264"} and set(summary["psnr_at_seq_bpp"]) == {"0.02", "0.05", "0.1", "0.2"}

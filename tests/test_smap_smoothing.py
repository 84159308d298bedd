"""The stored S_map is median-smoothed and stored per 2×2 cells (`pipeline.smap_smoothing`): fewer bytes,
same conditioning on both sides. Real webcam revisits, the shipped x2 weights, real MCAP bags and the real
`Reconstructor`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_pair
from test_pipeline import CAM, encode_pan, webcam_pan

from refscale_model import load_model
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import BagWriter, read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.io.images import encode_smap_png
from refscale_model.io.smap_coding import SMAP_FORMAT, decode_smap
from refscale_model.metrics import psnr
from refscale_model.pipeline import FrameEncoder, ModelInfo, ReconstructedFrame, Reconstructor
from refscale_model.pipeline.smap_smoothing import (
    BLOCKS,
    SmapStorage,
    coarsen_smap,
    expand_smap,
    smooth_smap,
)
from refscale_model.refcache import ReferenceCache


def test_smoothing_keeps_gated_maps_and_refuses_other_windows(tmp_path: Path) -> None:
    zero = np.zeros((45, 80), np.uint8)
    assert not smooth_smap(zero).any()
    speckle = zero.copy()
    speckle[::7, ::9] = 5  # isolated cells: noise the median removes, leaving a gated (empty) map
    assert not smooth_smap(speckle).any() and speckle.any()
    assert smooth_smap(speckle, 1) is speckle
    for bad in (0, 2, 7):
        with pytest.raises(ValueError, match="median"):
            smooth_smap(zero, bad)
    with pytest.raises(ValueError, match="uint8"):
        smooth_smap(zero.astype(np.float32))
    with pytest.raises(ValueError, match="median"):
        FrameEncoder(BagWriter(tmp_path / "bag"), None, None, smap_median=4)  # type: ignore[arg-type]


def test_a_real_map_gets_cheaper(shared_data: Path) -> None:
    target, ref = load_pair("webcam_tilde", 0)
    model = load_model("x2")
    as_tensor = lambda img: torch.from_numpy(img).permute(2, 0, 1)[None]  # noqa: E731
    with torch.no_grad():
        enc = model.downscale(as_tensor(target), as_tensor(ref))
    raw = enc.smap[0, 0].numpy()
    assert raw.any(), "the revisit must pass the gate for this test to mean anything"
    smooth = smooth_smap(raw)
    assert len(encode_smap_png(smooth)) < 0.9 * len(encode_smap_png(raw))
    assert abs(float(smooth.mean()) - float(raw.mean())) < 0.5  # the same similarity, less noise


def test_blocks_store_rounded_means_and_expand_back_exactly() -> None:
    levels = np.random.default_rng(0).integers(0, 16, (45, 81)).astype(np.uint8)
    for block in BLOCKS:
        coarse = coarsen_smap(levels, block)
        assert coarse.shape == (-(-45 // block), -(-81 // block))
        full = expand_smap(coarse, block, levels.shape)
        assert full.shape == levels.shape
        np.testing.assert_array_equal(coarsen_smap(full, block), coarse)  # what is stored is what is used
    # a 2×2 group's value is its rounded mean; the edge column's groups average their 2 cells inside
    coarse = coarsen_smap(levels, 2)
    assert coarse[0, 0] == int(np.floor(levels[:2, :2].mean() + 0.5))
    assert coarse[0, 40] == int(np.floor(levels[:2, 80].mean() + 0.5))
    assert coarsen_smap(levels, 1) is levels
    with pytest.raises(ValueError, match="expected 23×41"):
        expand_smap(coarse[:, :40], 2, levels.shape)
    with pytest.raises(ValueError, match="block"):
        SmapStorage(3, 5)
    assert not SmapStorage().condition(np.zeros((45, 80), np.uint8)).any()  # a gated map stays gated


def _encode(root: Path, frames: list[np.ndarray], model, median: int, block: int = 1) -> Path:
    return encode_pan(root / f"median{median}_block{block}", root / "cache", frames, _RecordingDownscaler(model),
                      ModelInfo.of(model, "x2"), lr_codec="webp", lr_quality=70, smap_median=median,
                      smap_block=block)


def _drive(tmp_path: Path) -> tuple[list[np.ndarray], object]:
    """Three frames of a real webcam revisit panning by a pixel, a one-entry cache with its reference, x2."""
    return webcam_pan(tmp_path, 3), load_model("x2")


def test_the_bag_stores_the_smoothed_map_and_rebuilds(tmp_path: Path, shared_data: Path) -> None:
    frames, model = _drive(tmp_path)
    raw_bag, smooth_bag = _encode(tmp_path, frames, model, 1), _encode(tmp_path, frames, model, 3)

    def maps(bag: Path) -> list[bytes]:
        found = [m for t, _, m in read_messages(bag) if t == fmt.smap_topic(CAM)]
        assert {m.format for m in found} == {SMAP_FORMAT}
        return [bytes(m.data) for m in found]

    raw, smooth = maps(raw_bag), maps(smooth_bag)
    assert len(raw) == len(smooth) == len(frames)
    for r, s in zip(raw, smooth, strict=True):
        np.testing.assert_array_equal(decode_smap(s, SMAP_FORMAT), smooth_smap(decode_smap(r, SMAP_FORMAT)))
    assert sum(map(len, smooth)) < sum(map(len, raw))
    with ReferenceCache.open(tmp_path / "cache", readonly=True) as cache:
        rebuilt = list(Reconstructor(model, cache, batch_size=2).run(smooth_bag))
    assert [type(f) for f in rebuilt] == [ReconstructedFrame] * len(frames)


def test_the_bag_stores_the_map_per_block_and_rebuilds_what_the_encoder_used(tmp_path: Path, shared_data: Path) -> None:
    frames, model = _drive(tmp_path)
    cell_bag, block_bag = _encode(tmp_path, frames, model, 3, 1), _encode(tmp_path, frames, model, 3, 2)

    def maps(bag: Path) -> list[bytes]:
        return [bytes(m.data) for t, _, m in read_messages(bag) if t == fmt.smap_topic(CAM)]

    def metas(bag: Path) -> list[fmt.FrameMeta]:
        return [fmt.meta_from_msg(m) for t, _, m in read_messages(bag) if t == fmt.meta_topic(CAM)]

    cell, block = maps(cell_bag), maps(block_bag)
    assert len(cell) == len(block) == len(frames)
    assert sum(map(len, block)) < sum(map(len, cell))
    for m in metas(block_bag):
        assert (m.format, m.smap_block) == (fmt.FORMAT_SMAP_CODED, 2) and m.registration_corners
        assert m.smap_grid_shape == decode_smap(cell[0], SMAP_FORMAT).shape
    assert {m.smap_block for m in metas(cell_bag)} == {1}
    with ReferenceCache.open(tmp_path / "cache", readonly=True) as cache:
        recon = Reconstructor(model, cache, batch_size=2)
        stored = list(recon.frames(block_bag))
        rebuilt = list(recon.run(block_bag))
        rebuilt_cells = list(recon.run(cell_bag))
    assert [type(f) for f in rebuilt] == [ReconstructedFrame] * len(frames)
    quality = [np.mean([psnr(f, r.rgb) for f, r in zip(frames, out, strict=True)]) for out in (rebuilt, rebuilt_cells)]
    assert quality[0] > quality[1] - 0.3  # the coarser map costs (almost) nothing
    for frame, data in zip(stored, block, strict=True):
        coarse = decode_smap(data, SMAP_FORMAT)
        assert coarse.shape == tuple(-(-n // 2) for n in frame.smap.shape)
        np.testing.assert_array_equal(frame.smap, expand_smap(coarse, 2, frame.smap.shape))
        assert frame.stored_bytes > len(data)  # LR + the coarse map as stored
    # the encoder conditioned on exactly the map the decoder expands (the downscaler returns what it used)
    np.testing.assert_array_equal(np.stack([f.smap for f in stored]), np.stack(_USED[-len(frames):]))


_USED: list[np.ndarray] = []


class _RecordingDownscaler(TorchDownscaler):
    """The real PyTorch downscaler; keeps each S_map it conditioned on."""

    def downscale(self, hr, ref, choose_smap=None):  # noqa: ANN001, ANN201 - the Downscaler contract
        lr, smap = super().downscale(hr, ref, choose_smap)
        if smap is not None:
            _USED.append(smap.copy())
        return lr, smap


def test_png_maps_of_format_7_bags_rebuild_as_the_coded_maps(tmp_path: Path, shared_data: Path) -> None:
    """A bag written before the coded map (S_map as PNG, records of format 7) decodes to the same frames:
    the same bag's messages, with each map re-stored as PNG and each record declaring format 7."""
    from types import SimpleNamespace

    from refscale_model.bags import metadata_of
    from refscale_model.pipeline import EncodedFrame
    from refscale_model.pipeline.decoder import FrameAssembler

    frames, model = _drive(tmp_path)
    bag = _encode(tmp_path, frames, model, 3, 2)
    context = fmt.frame_contexts(metadata_of(bag))
    new, old = (FrameAssembler(meta_closes=True, context=context) for _ in range(2))
    out_new: list = []
    out_old: list = []
    for topic, log_time, msg in read_messages(bag):
        parts = fmt.split_topic(topic)
        if parts is None:
            continue
        camera, kind = parts
        out_new += new.add(camera, kind, msg, log_time)
        if kind == "smap":
            assert msg.format == SMAP_FORMAT
            png = encode_smap_png(decode_smap(bytes(msg.data), msg.format))
            msg = SimpleNamespace(header=msg.header, format="png", data=png)
        elif kind == "meta":
            meta = fmt.meta_from_msg(msg, context(camera))
            assert meta.format == fmt.FORMAT_SMAP_CODED
            meta.format = fmt.FORMAT_CORNERS
            msg = fmt.meta_msg(meta, {"stamp": msg.header.stamp, "frame_id": msg.header.frame_id}, "encoded")
        out_old += old.add(camera, kind, msg, log_time)
    assert len(out_new) == len(out_old) == len(frames)
    for a, b in zip(out_new, out_old, strict=True):
        assert isinstance(a, EncodedFrame) and isinstance(b, EncodedFrame)
        np.testing.assert_array_equal(a.smap, b.smap)
        np.testing.assert_array_equal(a.lr, b.lr)
        assert b.stored_bytes > a.stored_bytes  # the PNG costs more

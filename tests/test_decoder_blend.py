"""The decoder blend: the rebuild takes less learned restoring the cleaner the LR arrived.

Unit checks of the α table and its least-squares fit, the model's blend on a decoder with non-zero
weights, the car's measured LR PSNR through a real bag (image and video LR), and the shipped table
on a real night frame.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_lr_codec_bag import encode_world
from test_pipeline import CAM, World, build_world

from refscale_model import load_model
from refscale_model.bags import read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.codecs import get_codec
from refscale_model.config import RefScaleConfig
from refscale_model.metrics import psnr
from refscale_model.models.decoder_blend import DecoderBlend, recorded_lr_psnr
from refscale_model.models.refscale import RefScale
from refscale_model.pipeline import ReconstructedFrame, Reconstructor
from refscale_model.pipeline.decoder import lr_psnr_of
from refscale_model.refcache import ReferenceCache
from refscale_model.registration import warp_reference
from refscale_model.training.decoder_blend_fit import BlendSample, bare_inverse, fit_decoder_blend


def test_alpha_interpolates_between_knots_and_is_flat_beyond() -> None:
    blend = DecoderBlend(((28.0, 1.0), (36.0, 0.6), (60.0, 0.2)))
    assert blend.alpha(20.0) == 1.0 and blend.alpha(28.0) == 1.0
    assert blend.alpha(32.0) == pytest.approx(0.8)
    assert blend.alpha(48.0) == pytest.approx(0.4)
    assert blend.alpha(99.0) == blend.alpha(math.inf) == pytest.approx(0.2)
    assert blend.alpha(None) == blend.alpha(0.0) == 1.0  # not measured: the full decoder, as before
    assert blend.alphas([None, 32.0], 2) == [1.0, pytest.approx(0.8)]
    assert DecoderBlend.from_json(blend.to_json()) == blend
    with pytest.raises(ValueError, match="lr_psnr has 1 values"):
        blend.alphas([30.0], 2)


@pytest.mark.parametrize("knots", [(), ((30.0, 1.0), (30.0, 0.5)), ((30.0, 1.2),), ((30.0, -0.1),)])
def test_bad_tables_are_refused(knots: tuple) -> None:
    with pytest.raises(ValueError):
        DecoderBlend(knots)


def test_recorded_lr_psnr_keeps_zero_for_not_measured() -> None:
    assert recorded_lr_psnr(34.26) == 34.3
    assert recorded_lr_psnr(math.inf) == 99.0
    assert recorded_lr_psnr(0.01) > 0.0


def test_the_cars_integer_psnr_is_the_scoreboards() -> None:
    from refscale_model.metrics import uint8_psnr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (36, 64, 3), dtype=np.uint8)
    for b in (255 - a, np.clip(a.astype(int) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)):
        assert uint8_psnr(a, b) == pytest.approx(psnr(a, b), abs=1e-9)
    assert uint8_psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="shape"):
        uint8_psnr(a, a[:-1])


def test_fit_recovers_alpha_per_bin_and_is_monotone() -> None:
    # per bin: Σde/Σdd; the 33 dB bin (0.9) rises above the 31 dB one (0.7) and is pooled with it
    samples = ([BlendSample(25.0, 1.2, 1.0)] * 3 + [BlendSample(31.0, 0.7, 1.0)] * 3
               + [BlendSample(33.0, 0.9, 1.0)] * 3 + [BlendSample(99.0, 0.3, 1.0)] * 3 + [BlendSample(37.0, 0.5, 1.0)])
    fit = fit_decoder_blend(samples)
    xs = [x for x, _ in fit.blend.knots]
    alphas = [a for _, a in fit.blend.knots]
    assert xs == [25.0, 31.0, 33.0, 60.0]  # the one-sample 37 dB bin is left out; lossless sits at 60 dB
    assert alphas == pytest.approx([1.0, 0.8, 0.8, 0.3])  # clipped to 1, pooled, as fitted
    assert [a for _, _, a in fit.bins] == pytest.approx([1.2, 0.7, 0.9, 0.3])
    with pytest.raises(ValueError, match="no LR-PSNR bin"):
        fit_decoder_blend(samples[:2])


@pytest.fixture(scope="module")
def decoder_model() -> RefScale:
    """A small codec-aware model whose decoder networks do something (their last layers are not zero)."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(RefScaleConfig.preset("x2-lossy-noref"), hidden=8, decoder_blocks=1)
    model = RefScale(cfg).eval()
    with torch.no_grad():
        for net in (model.lr_restore, model.hr_refine):
            last = net.body[-1]
            last.weight.normal_(0.0, 0.02)
    return model


def test_model_blend_mixes_the_full_decoder_with_the_bare_inverse(decoder_model: RefScale) -> None:
    hr = torch.rand(2, 3, 32, 48)
    enc = decoder_model.downscale(hr)
    full = decoder_model.upscale(enc.lr, None, None, enc.size)
    with bare_inverse(decoder_model):
        bare = decoder_model.upscale(enc.lr, None, None, enc.size)
    assert (full - bare).abs().max() > 1e-3
    decoder_model.decoder_blend = DecoderBlend(((30.0, 1.0), (40.0, 0.0)))
    try:
        assert torch.equal(decoder_model.upscale(enc.lr, None, None, enc.size), full)  # not measured
        assert torch.equal(decoder_model.upscale(enc.lr, None, None, enc.size, lr_psnr=25.0), full)
        assert torch.allclose(decoder_model.upscale(enc.lr, None, None, enc.size, lr_psnr=math.inf), bare)
        half = decoder_model.upscale(enc.lr, None, None, enc.size, lr_psnr=[35.0, 40.0])
        unclamped = bare + 0.5 * (full - bare)
        assert torch.allclose(half[0], unclamped[0].clamp(0, 1), atol=1e-6)
        assert torch.allclose(half[1], bare[1], atol=1e-6)
    finally:
        decoder_model.decoder_blend = None


def test_shipped_codec_aware_weights_carry_their_tables() -> None:
    model = load_model("x2-lossy")
    assert model.decoder_blend is not None and model.fallback.decoder_blend is not None
    noref = load_model("x2-lossy-noref")
    assert noref.decoder_blend == model.fallback.decoder_blend
    assert load_model("x2").decoder_blend is None  # no decoder networks, nothing to blend


def _night_crop(shared_data: Path) -> np.ndarray:
    from refscale_model.training.data import read_rgb

    frame = read_rgb(shared_data / "road_robotcar_seasons" / "night_query" / "query3.jpg")
    return np.ascontiguousarray(frame[384:640, 384:640])


def test_shipped_table_helps_a_clean_lr_on_a_real_night_frame(shared_data: Path) -> None:
    """The case the blend exists for: a smooth night frame whose LR arrives nearly clean (AVIF q85)."""
    model = load_model("x2-lossy").fallback
    hr = _night_crop(shared_data)
    hr_t = torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255.0
    enc = model.downscale(hr_t)
    lr = enc.lr[0].permute(1, 2, 0).numpy()
    avif = get_codec("avif")
    decoded = avif.decode(avif.encode(np.ascontiguousarray(lr), 85))
    lr_t = torch.from_numpy(decoded).permute(2, 0, 1)[None]
    lr_psnr = recorded_lr_psnr(psnr(lr, decoded))

    def rebuilt(value: float | None) -> float:
        out = model.upscale(lr_t, None, None, enc.size, lr_psnr=value)
        return psnr((out[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8), hr)

    assert model.decoder_blend.alpha(lr_psnr) < 1.0
    assert rebuilt(lr_psnr) > rebuilt(None) + 0.1


# ---------------------------------------------------------------------------- through a real bag
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> World:
    return build_world(tmp_path_factory.mktemp("world"), n=2, encodings=("rgb8",))


@pytest.fixture(scope="module")
def lossy():
    return load_model("x2-lossy")


def _encode(world: World, model, out: Path, **lr) -> None:
    encode_world(world, model, out, "x2-lossy", **lr)


def _records(bag: Path) -> list[dict[str, str]]:
    return [{v.key: v.value for v in m.status[0].values} for t, _, m in read_messages(bag) if t == fmt.meta_topic(CAM)]


def test_the_car_records_its_lr_psnr_and_the_rebuild_uses_it(tmp_path: Path, world: World, lossy) -> None:
    bag = tmp_path / "bag"
    _encode(world, lossy, bag, lr_codec="avif", lr_quality=80)
    records = _records(bag)
    assert all(20.0 < float(r["lr_psnr"]) < 99.0 for r in records)
    with ReferenceCache.open(world.cache, readonly=True) as cache:
        items = list(Reconstructor(lossy, cache).run(bag))
    assert all(isinstance(i, ReconstructedFrame) for i in items)
    for i, item in enumerate(items):
        # the same frame in memory: downscale, the same codec, the measured LR PSNR, the inverse
        hr = torch.from_numpy(world.frames[i]).permute(2, 0, 1)[None].float() / 255.0
        m = item.meta
        warped = warp_reference(world.refs[0], m.matrix, m.size) if m.has_smap else None
        r = torch.from_numpy(warped).permute(2, 0, 1)[None].float() / 255.0 if warped is not None else None
        enc = lossy.downscale(hr, r)
        lr = enc.lr[0].permute(1, 2, 0).numpy()
        decoded = get_codec("avif").decode(get_codec("avif").encode(np.ascontiguousarray(lr), 80))
        assert lr_psnr_of(m) == m.lr_psnr  # (the bag's S_map is smoothed, so its LR differs a little)
        assert abs(m.lr_psnr - recorded_lr_psnr(psnr(lr, decoded))) <= 0.3
        out = lossy.upscale(torch.from_numpy(decoded).permute(2, 0, 1)[None], enc.smap if m.has_smap else None,
                            r if m.has_smap else None, enc.size, lr_psnr=m.lr_psnr)
        direct = psnr((out[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8), world.frames[i])
        assert abs(psnr(item.rgb, world.frames[i]) - direct) <= 0.1


def test_video_lr_psnr_is_measured_on_every_frame_and_png_records_none(tmp_path: Path, world: World,
                                                                       lossy) -> None:
    _encode(world, lossy, tmp_path / "video", lr_codec="h265", lr_quality=30, lr_gop=2)
    assert all(20.0 < float(r["lr_psnr"]) < 99.0 for r in _records(tmp_path / "video"))
    _encode(world, lossy, tmp_path / "png", lr_codec="png")
    records = _records(tmp_path / "png")
    assert records and all("lr_psnr" not in r for r in records)
    meta = fmt.FrameMeta.from_key_values({**records[0], "format": records[0]["format"]})
    assert lr_psnr_of(meta) == math.inf  # lossless: the table's last knot

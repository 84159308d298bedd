"""Codec-aware RefScale: the real codec in the training loop, the decoder side, and the shipped lossy weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from refscale_model.config import RefScaleConfig
from refscale_model.metrics import psnr
from refscale_model.models.refscale import RefScale, attach_noref_fallback
from refscale_model.training.codec_loop import CodecDraw, codec_straight_through, draw_codecs, roundtrip_rgb
from refscale_model.training.losses import compute_losses
from refscale_model.weights import load_model, load_weights, save_weights


def _smooth_lr(seed: int = 0, size: tuple[int, int] = (24, 32)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size[0] // 4, size[1] // 4, generator=gen)
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return torch.round(x * 255) / 255


@pytest.mark.parametrize("codec,quality", [("jpeg", 20), ("jpeg", 90), ("webp", 30)])
def test_codec_forward_is_the_real_decode(codec: str, quality: int) -> None:
    """What training feeds the decoder is byte for byte what OpenCV decodes from the stored file."""
    lr = _smooth_lr()
    draws = draw_codecs(np.random.default_rng(0), 2, [codec], (quality, quality))
    out = codec_straight_through(lr, draws)
    ext, flag = {"jpeg": (".jpg", cv2.IMWRITE_JPEG_QUALITY), "webp": (".webp", cv2.IMWRITE_WEBP_QUALITY)}[codec]
    for i in range(2):
        rgb = (lr[i].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [flag, quality])
        assert ok
        expected = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        got = (out[i].detach().permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        assert np.array_equal(got, expected)
    assert not torch.equal(out, lr), "a lossy codec must change the image"


def test_codec_forward_avif_is_what_the_recorder_stores() -> None:
    """AVIF in the training loop is the recorder's own codec object: same bytes, same decode."""
    from refscale_model.codecs import get_codec

    lr = _smooth_lr()
    out = codec_straight_through(lr, draws_of("avif", 30, 2))
    for i in range(2):
        rgb = (lr[i].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        expected = get_codec("avif").decode(get_codec("avif").encode(rgb, 30))
        got = (out[i].detach().permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        assert np.array_equal(got, expected)
    assert not torch.equal(out, lr)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_codec_forward_video_is_a_real_keyframe_decode(codec: str) -> None:
    """A video codec's samples are tiled into one keyframe; each comes back as PyAV decodes that stream."""
    from refscale_model.codecs.video import VideoStreamDecoder, VideoStreamEncoder
    from refscale_model.training.codec_loop import crf_for_quality

    lr = torch.cat([_smooth_lr(0), _smooth_lr(1)])  # 4 samples of 24×32
    draws = [CodecDraw(codec, 30)] * 3 + draws_of("jpeg", 30, 1)
    out = codec_straight_through(lr, draws)
    u8 = (lr.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    mosaic = np.full((48, 64, 3), 128, np.uint8)  # 2 × 2 cells of 24×32 (multiples of 8 already)
    for i in range(3):
        r, c = divmod(i, 2)
        mosaic[r * 24:(r + 1) * 24, c * 32:(c + 1) * 32] = u8[i]
    coded = VideoStreamEncoder(codec, crf=crf_for_quality(30), gop=1).encode(mosaic)
    assert coded.is_keyframe
    decoded = VideoStreamDecoder(codec).decode(coded, mosaic.shape[:2])
    got = (out.detach().permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    for i in range(3):
        r, c = divmod(i, 2)
        assert np.array_equal(got[i], decoded[r * 24:(r + 1) * 24, c * 32:(c + 1) * 32])
    assert np.array_equal(got[3], roundtrip_rgb(u8[3], "jpeg", 30)[0])
    assert crf_for_quality(20) == 43 and crf_for_quality(95) == 22
    assert not torch.equal(out, lr)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_codec_forward_video_predicted_frame_is_a_real_p_frame_decode(codec: str) -> None:
    """A predicted sample is the second frame of a real two-frame stream whose first frame shows the
    samples moved; the stored access unit is not a keyframe, and PyAV decodes the same pixels."""
    import av

    from refscale_model.codecs.video import VideoStreamEncoder, is_self_contained_keyframe
    from refscale_model.training.codec_loop import crf_for_quality, previous_frame

    lr = torch.cat([_smooth_lr(2, (32, 40)), _smooth_lr(3, (32, 40))])  # 4 samples of 32×40
    motions = [(1.5, -0.5, 0.02), (-2.0, 1.0, -0.01), (0.25, 0.75, 0.0), (0.0, 0.0, 0.03)]
    out = codec_straight_through(lr, [CodecDraw(codec, 40, m) for m in motions])
    u8 = (lr.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    first, second = (np.full((64, 80, 3), 128, np.uint8) for _ in range(2))
    for i, (img, motion) in enumerate(zip(u8, motions, strict=True)):
        r, c = divmod(i, 2)
        first[r * 32:(r + 1) * 32, c * 40:(c + 1) * 40] = previous_frame(img, motion)
        second[r * 32:(r + 1) * 32, c * 40:(c + 1) * 40] = img
    encoder = VideoStreamEncoder(codec, crf=crf_for_quality(40), gop=2)
    units = [encoder.encode(first).data, encoder.encode(second).data]
    assert is_self_contained_keyframe(codec, units[0]) and not is_self_contained_keyframe(codec, units[1])
    ctx = av.codec.CodecContext.create({"h264": "h264", "h265": "hevc"}[codec], "r")  # a second decoder
    pictures = [p for unit in units for p in ctx.decode(av.Packet(unit))] + list(ctx.decode(None))
    expected = pictures[1].to_ndarray(format="rgb24")
    got = (out.detach().permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    for i in range(4):
        r, c = divmod(i, 2)
        assert np.array_equal(got[i], expected[r * 32:(r + 1) * 32, c * 40:(c + 1) * 40])
    assert not np.array_equal(previous_frame(u8[0], motions[0]), u8[0])


def test_video_draws_are_mostly_predicted_frames() -> None:
    """9 in 10 frames of a GOP-10 stream are predicted; the training draw matches that share."""
    draws = draw_codecs(np.random.default_rng(4), 2000, ["h265", "jpeg"], (20, 95))
    video = [d for d in draws if d.codec == "h265"]
    share = sum(d.motion is not None for d in video) / len(video)
    assert 0.86 < share < 0.94
    assert all(d.motion is None for d in draws if d.codec == "jpeg")
    assert all(abs(d.motion[0]) <= 2 and abs(d.motion[2]) <= 0.03 for d in video if d.motion is not None)


def draws_of(codec: str, quality: int, n: int) -> list:
    return draw_codecs(np.random.default_rng(0), n, [codec], (quality, quality))


def test_codec_gradient_is_straight_through() -> None:
    lr = _smooth_lr().requires_grad_(True)
    weights = torch.randn_like(lr)
    out = codec_straight_through(lr, draw_codecs(np.random.default_rng(1), 2, ["jpeg", "webp"], (20, 95)))
    (out * weights).sum().backward()
    assert lr.grad is not None and torch.equal(lr.grad, weights)


def test_codec_draws_cover_the_range_and_reject_nonsense() -> None:
    draws = draw_codecs(np.random.default_rng(2), 400, ["jpeg", "webp"], (20, 95))
    qualities = [d.quality for d in draws]
    assert min(qualities) >= 20 and max(qualities) <= 95 and len(set(qualities)) > 40
    assert {d.codec for d in draws} == {"jpeg", "webp"}
    with pytest.raises(ValueError):
        draw_codecs(np.random.default_rng(0), 1, ["jpeg"], (0, 50))
    with pytest.raises(ValueError):
        roundtrip_rgb(np.zeros((8, 8, 3), np.uint8), "png", 50)


def test_codec_loss_trains_the_forward_through_the_codec() -> None:
    """The HR term rebuilds from the decoded LR, and its gradient still reaches the onboard forward."""
    torch.manual_seed(0)
    model = RefScale(RefScaleConfig.preset("x2-lossy-noref")).train()
    hr = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8), size=(32, 32), mode="bilinear")
    draws = draw_codecs(np.random.default_rng(3), 2, ["jpeg"], (20, 20))
    lossy = compute_losses(model, hr, None, codec_draws=draws)
    clean = compute_losses(model, hr, None)
    assert float(lossy.hr.detach()) > float(clean.hr.detach())  # the codec's error is seen by the HR term
    model.zero_grad()
    (lossy.hr).backward()
    first_block = model.stages[0][0]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in first_block.parameters())


def test_default_config_has_no_decoder_side() -> None:
    """Lossless models keep exactly their state dict (shipped files load strictly, run bit-identically)."""
    for name in ("x2", "x2-noref", "x4"):
        model = RefScale(RefScaleConfig.preset(name))
        assert model.lr_restore is None and model.hr_refine is None
        assert not any(k.startswith(("lr_restore.", "hr_refine.")) for k in model.state_dict())


def test_zero_initialised_decoder_leaves_the_inverse_unchanged() -> None:
    """A freshly attached decoder side starts from the lossless model's output (fine-tuning starts there)."""
    shipped = load_model("x2")
    config = dataclasses.replace(shipped.config, lr_restore_hidden=8, hr_refine_hidden=8)
    model = RefScale(config).eval()
    missing, unexpected = model.load_state_dict(shipped.state_dict(), strict=False)
    assert not unexpected and missing and all(".lr_restore." in f".{k}" or ".hr_refine." in f".{k}" for k in missing)
    torch.manual_seed(1)
    hr = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(48, 64), mode="bilinear")
    ref = (hr + 0.02 * torch.randn_like(hr)).clamp(0, 1)
    enc = shipped.downscale(hr, ref)
    assert torch.equal(model.downscale(hr, ref).lr, enc.lr)
    assert torch.equal(model.upscale(enc.lr, enc.smap, ref, enc.size), shipped.upscale(enc.lr, enc.smap, ref, enc.size))


@pytest.mark.parametrize("name", ["x2-lossy", "x2-lossy-noref"])
def test_added_decoder_stages_start_as_the_identity_and_then_train(name: str) -> None:
    """`decoder_blocks` grows trained weights: the old keys load unchanged, the output is bit-identical
    until the new stages learn, and their gradients are live (so fine-tuning can use them)."""
    shipped = load_model(name).eval()
    blocks = shipped.config.decoder_blocks
    config = dataclasses.replace(shipped.config, decoder_blocks=blocks + 2, noref_fallback=False, smap_gate=0.0)
    grown = RefScale(config).eval()
    state = {k: v for k, v in shipped.state_dict().items() if not k.startswith("fallback.")}
    missing, unexpected = grown.load_state_dict(state, strict=False)
    assert not unexpected and missing and all(".more." in k for k in missing)
    plain = RefScale(dataclasses.replace(config, decoder_blocks=blocks)).eval()
    plain.load_state_dict(state)
    torch.manual_seed(2)
    hr = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(48, 64), mode="bilinear")
    ref = (hr + 0.02 * torch.randn_like(hr)).clamp(0, 1) if config.use_reference else None
    enc = plain.downscale(hr, ref)
    assert torch.equal(grown.upscale(enc.lr, enc.smap, ref, enc.size), plain.upscale(enc.lr, enc.smap, ref, enc.size))
    grown.train()
    lr = enc.lr.float().div(255)
    out = grown.hr_refine(torch.nn.functional.interpolate(lr, size=hr.shape[-2:]), None, None)
    (out - hr).abs().mean().backward()
    last = grown.hr_refine.more[-1][-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="decoder_blocks"):
        dataclasses.replace(config, decoder_blocks=0)


def test_onboard_half_does_not_depend_on_the_decoder_side(tmp_path: Path) -> None:
    """The decoder side runs offboard only: changing it changes the rebuild, never the stored LR/S_map."""
    torch.manual_seed(2)
    model = attach_noref_fallback(
        RefScale(RefScaleConfig.preset("x2-lossy")), RefScale(RefScaleConfig.preset("x2-lossy-noref"))
    )
    hr = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(64, 64), mode="bilinear")
    ref = hr.clone()
    before = model.downscale(hr, ref)
    up_before = model.upscale(before.lr, before.smap, ref, before.size)
    with torch.no_grad():
        for net in (model.lr_restore, model.hr_refine, model.fallback.lr_restore, model.fallback.hr_refine):
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    after = model.downscale(hr, ref)
    assert torch.equal(before.lr, after.lr) and torch.equal(before.smap, after.smap)
    assert not torch.equal(up_before, model.upscale(after.lr, after.smap, ref, after.size))
    path = tmp_path / "m.safetensors"
    save_weights(model, path)
    again = load_weights(path)
    assert again.fallback is not None and again.fallback.hr_refine is not None
    assert torch.equal(again.upscale(after.lr, after.smap, ref, after.size),
                       model.upscale(after.lr, after.smap, ref, after.size))


def _code_and_rebuild(
    model: RefScale, target: np.ndarray, ref: np.ndarray, codec: str, quality: int
) -> tuple[int, float]:
    """(bytes of the codec's LR + stored S_map PNG, PSNR of the rebuilt frame) for one real frame."""
    from refscale_model.evaluation.pairs import to_tensor, to_uint8
    from refscale_model.io.images import encode_smap_png, stored_smap

    r = to_tensor(ref)
    enc = model.downscale(to_tensor(target), r)
    smap = stored_smap(enc.smap[0, 0].numpy())
    dec, nbytes = roundtrip_rgb(enc.lr[0].permute(1, 2, 0).numpy(), codec, quality)
    lr = torch.from_numpy(dec).permute(2, 0, 1)[None].contiguous()
    if smap is None:
        out = model.upscale(lr, None, None, enc.size)
    else:
        out = model.upscale(lr, enc.smap, r, enc.size)
        nbytes += len(encode_smap_png(smap))
    return nbytes, psnr(target, to_uint8(out))


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_shipped_lossy_weights_beat_lossless_ones_through_the_same_codec(shared_data: Path, codec: str) -> None:
    """On a real validation pair, x2-lossy beats shipped x2 at equal bytes of the same codec: x2's PSNR at
    q40/q60 against x2-lossy's curve (q20–q90) read at x2's byte count (monotone cubic in log-bytes)."""
    from refscale_model.evaluation.bdrate import quality_at_rate
    from refscale_model.evaluation.pairs import read_eval_pairs, reference_for_frame
    from refscale_model.registration import RegistrationConfig
    from refscale_model.training.data import read_rgb

    pair = read_eval_pairs(shared_data / "webcam_tilde" / "pairs.csv", "val")[0]
    target = read_rgb(pair.target)
    unregistered = RegistrationConfig(when_unregistered="none")
    ref, _ = reference_for_frame(target, read_rgb(pair.reference), False, unregistered)
    lossy = load_model("x2-lossy")
    curve = [_code_and_rebuild(lossy, target, ref, codec, q) for q in (20, 30, 40, 50, 60, 70, 90)]
    lossless = load_model("x2")
    for quality in (40, 60):
        nbytes, db = _code_and_rebuild(lossless, target, ref, codec, quality)
        at_same_bytes = quality_at_rate(curve, nbytes)
        assert at_same_bytes is not None, (codec, quality, nbytes, curve)
        assert at_same_bytes > db + 0.05, f"{codec} q{quality}: x2 {db:.2f} dB @ {nbytes} B; lossy {at_same_bytes:.2f}"

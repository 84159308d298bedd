"""The network: invertibility, shapes, padding, quantisation, similarity map, reference checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from refscale_model import RefScale, RefScaleConfig, load_model
from refscale_model.layers import HaarSqueeze, cosine_similarity_map, expand_similarity, similarity_map
from refscale_model.models.refscale import attach_noref_fallback
from refscale_model.quantise import lr_from_uint8, lr_to_uint8, quantise_lr, quantise_smap

TINY = {"hidden": 8, "encoder_channels": 8}


def perturbed(config: RefScaleConfig, seed: int = 0) -> RefScale:
    """A model whose zero-initialised parts are randomised, so invertibility is really exercised."""
    torch.manual_seed(seed)
    model = RefScale(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("scale,blocks", [(2, (3,)), (4, (2, 2))])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_flow_is_invertible(scale: int, blocks: tuple[int, ...], dtype: torch.dtype, tol: float) -> None:
    model = perturbed(RefScaleConfig(scale=scale, blocks=blocks, **TINY)).to(dtype)
    hr = torch.rand(2, 3, 32, 48, dtype=dtype)
    ref = torch.rand(2, 3, 32, 48, dtype=dtype)
    cond = model.condition(hr, ref)
    lr, z = model.forward_flow(hr, cond)
    assert lr.shape == (2, 3, 32 // scale, 48 // scale)
    assert z.shape == (2, 3 * scale * scale - 3, 32 // scale, 48 // scale)
    rebuilt = model.inverse_flow(lr, z, cond)
    assert (rebuilt - hr).abs().max().item() < tol


def test_haar_squeeze_is_orthogonal_up_to_scale_and_ll_is_the_mean() -> None:
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    squeeze = HaarSqueeze(3)
    y = squeeze(x)
    assert torch.allclose(y[:, :3], torch.nn.functional.avg_pool2d(x, 2))
    assert torch.allclose(squeeze.inverse(y), x, atol=1e-12)


@pytest.mark.parametrize("scale,blocks,pool", [(2, (2,), 1), (2, (2,), 4), (4, (1, 1), 1), (4, (1, 1), 3)])
@pytest.mark.parametrize("size", [(1080, 1920), (375, 1242), (61, 97)])
def test_downscale_upscale_shapes_on_any_frame_size(
    scale: int, blocks: tuple[int, ...], pool: int, size: tuple[int, int]
) -> None:
    model = perturbed(RefScaleConfig(scale=scale, blocks=blocks, smap_pool=pool, **TINY))
    if size[0] > 500:  # keep the 1080p case cheap: one image, no reference pass twice
        hr = torch.rand(1, 3, *size)
    else:
        hr = torch.rand(2, 3, *size)
    enc = model.downscale(hr, hr)
    ph, pw = model.padded_size(size)
    assert enc.lr.dtype == torch.uint8 and enc.lr.shape == (hr.shape[0], 3, ph // scale, pw // scale)
    assert enc.smap is not None and enc.smap.dtype == torch.uint8
    assert (ph, pw) == (-(-size[0] // 4) * 4, -(-size[1] // 4) * 4)  # pooling adds no frame padding
    cells = 4 * pool  # S_map before pooling: HR/4 for both tiny configs (smap_factor 2)
    assert enc.smap.shape[-2:] == (-(-ph // cells), -(-pw // cells)) == model.config.smap_grid((ph, pw))
    assert enc.size == size
    out = model.upscale(enc.lr, enc.smap, hr, enc.size)
    assert out.shape == hr.shape and out.min() >= 0 and out.max() <= 1


def test_no_reference_mode_equals_zero_similarity() -> None:
    model = perturbed(RefScaleConfig(**TINY))
    hr = torch.rand(1, 3, 32, 32)
    enc = model.downscale(hr, None)
    assert enc.smap is None
    cond_none = model.condition_from_smap(None, None, hr)
    cond_zero = model.condition_from_smap(hr, torch.zeros(1, 1, 8, 8), hr)
    assert torch.equal(cond_none.per_stage[0], cond_zero.per_stage[0])
    out = model.upscale(enc.lr, None, None, enc.size)
    assert out.shape == hr.shape


def test_mismatched_reference_is_a_clear_error() -> None:
    model = RefScale(RefScaleConfig(**TINY)).eval()
    with pytest.raises(ValueError, match="does not match"):
        model.downscale(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))
    enc = model.downscale(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="does not match"):
        model.upscale(enc.lr, enc.smap, torch.rand(1, 3, 40, 32), enc.size)
    with pytest.raises(ValueError, match="both the reference and the S_map"):
        model.upscale(enc.lr, enc.smap, None, enc.size)


def test_quantisation_round_trip_and_straight_through_gradient() -> None:
    lr = torch.rand(1, 3, 8, 8, requires_grad=True)
    q = quantise_lr(lr)
    assert torch.allclose(q * 255, torch.round(q * 255), atol=1e-4)
    q.sum().backward()
    assert torch.allclose(lr.grad, torch.ones_like(lr))
    u8 = lr_to_uint8(lr.detach())
    assert torch.equal(lr_to_uint8(lr_from_uint8(u8)), u8)
    assert (lr_from_uint8(u8) - lr.detach()).abs().max() <= 0.5 / 255 + 1e-7
    s = torch.rand(1, 1, 4, 4)
    levels = quantise_smap(s, 16, training=False)
    assert torch.equal(levels, torch.round(levels)) and levels.max() <= 15
    noisy = quantise_smap(s, 16, training=True)
    assert (noisy - s * 15).abs().max() <= 0.5


def test_similarity_map_is_one_for_identical_and_low_for_unrelated() -> None:
    torch.manual_seed(0)
    model = RefScale(RefScaleConfig(**TINY)).eval()
    hr = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        g = model.encoder.bottleneck(model.encoder.features(hr))
        assert torch.allclose(cosine_similarity_map(g, g), torch.ones(1, 1, 16, 16), atol=1e-5)
    same = model.downscale(hr, hr).smap
    assert int(same.min()) == model.config.smap_levels - 1
    a = torch.randn(1, 32, 16, 16)
    b = torch.randn(1, 32, 16, 16)
    assert cosine_similarity_map(a, b).mean().item() < 0.15


def test_pooled_similarity_averages_cells_and_partial_edge_cells() -> None:
    """S_map stored on a coarser grid is the mean of the per-pixel cosines each cell covers."""
    torch.manual_seed(1)
    a, b = torch.randn(1, 8, 10, 13), torch.randn(1, 8, 10, 13)
    fine = cosine_similarity_map(a, b)
    pooled = similarity_map(a, b, pool=4)
    assert pooled.shape == (1, 1, 3, 4)
    assert torch.allclose(pooled[0, 0, 0, 0], fine[0, 0, :4, :4].mean())
    assert torch.allclose(pooled[0, 0, 2, 3], fine[0, 0, 8:, 12:].mean())  # a 2×1 edge cell
    assert torch.equal(similarity_map(a, b, pool=1), fine)
    wide = expand_similarity(pooled, (10, 13), 4)
    assert wide.shape == (1, 1, 10, 13)
    flat = torch.full((1, 1, 3, 4), 0.25)
    assert torch.allclose(expand_similarity(flat, (10, 13), 4), torch.full((1, 1, 10, 13), 0.25))


def test_gate_zeroes_only_the_maps_of_dissimilar_samples() -> None:
    torch.manual_seed(2)
    a = torch.randn(2, 8, 8, 8)
    b = torch.cat([a[:1], torch.randn(1, 8, 8, 8)])  # sample 0: identical (mean 1), sample 1: unrelated
    ungated = similarity_map(a, b, pool=2)
    gated = similarity_map(a, b, pool=2, gate=0.5)
    assert torch.equal(gated[0], ungated[0]) and not gated[1].any() and ungated[1].any()
    assert torch.equal(similarity_map(a, b, pool=2, gate=0.0), ungated)


def test_a_gated_frame_encodes_exactly_as_without_reference(webcam_pair: tuple[np.ndarray, np.ndarray]) -> None:
    """S_map = 0 is the no-reference condition, so a gated map need not be stored at all.

    Uses the shipped encoder: an untrained one finds any two natural images similar."""
    model = load_model("x2")
    model.config = dataclasses.replace(model.config, smap_gate=0.95)
    hr, ref = (torch.from_numpy(x[:128, :192]).permute(2, 0, 1)[None].contiguous() for x in webcam_pair)
    gated = model.downscale(hr, ref)
    assert gated.smap is not None and not gated.smap.any()
    assert torch.equal(gated.lr, model.downscale(hr, None).lr)
    assert torch.equal(gated.lr, load_model("x2-noref").downscale(hr).lr)  # coded by the attached no-ref INN
    assert model.downscale(hr, hr).smap.min() > 0  # the reference itself passes any gate below 1


def test_fallback_codes_and_rebuilds_only_the_gated_samples(webcam_pair: tuple[np.ndarray, np.ndarray]) -> None:
    """In one batch a gated frame goes through the no-ref INN both ways; a matched one is untouched."""
    model, noref = load_model("x2"), load_model("x2-noref")
    model.config = dataclasses.replace(model.config, smap_gate=0.95)
    hr, ref = (torch.from_numpy(x[:128, :192]).permute(2, 0, 1)[None].contiguous() for x in webcam_pair)
    frames, refs = torch.cat([hr, hr]), torch.cat([hr, ref])  # sample 0: its own reference, 1: gated
    enc = model.downscale(frames, refs)
    assert enc.smap is not None and enc.smap[0].min() > 0 and not enc.smap[1].any()
    alone = dataclasses.replace(model.config, noref_fallback=False)
    without = RefScale(alone).eval()
    without.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fallback.")})
    assert torch.equal(enc.lr[0], without.downscale(hr, hr).lr[0])
    assert torch.equal(enc.lr[1], noref.downscale(hr).lr[0])
    out = model.upscale(enc.lr, enc.smap, refs, enc.size)
    assert torch.equal(out[0], without.upscale(enc.lr[:1], enc.smap[:1], hr, enc.size)[0])
    assert torch.equal(out[1], noref.upscale(enc.lr[1:], None, None, enc.size)[0])


def test_attach_noref_fallback_checks_the_pair() -> None:
    model = perturbed(RefScaleConfig(**TINY))
    noref = perturbed(RefScaleConfig(**TINY).fallback_config(), seed=1)
    combined = attach_noref_fallback(model, noref)
    assert combined.config.noref_fallback and combined.fallback is not None
    x = torch.rand(1, 3, 32, 48)
    assert torch.equal(combined.downscale(x).lr, noref.downscale(x).lr)
    assert not torch.equal(combined.downscale(x).lr, model.downscale(x).lr)
    with pytest.raises(ValueError, match="no-reference form"):
        attach_noref_fallback(model, RefScale(dataclasses.replace(noref.config, hidden=noref.config.hidden + 1)))
    with pytest.raises(ValueError, match="without a fallback"):
        attach_noref_fallback(combined, noref)
    with pytest.raises(ValueError, match="noref_fallback"):
        RefScaleConfig(use_reference=False, noref_fallback=True)


@pytest.mark.parametrize("gate", [-0.1, 1.0])
def test_config_rejects_a_gate_outside_0_1(gate: float) -> None:
    with pytest.raises(ValueError, match="smap_gate"):
        RefScaleConfig(smap_gate=gate)


def test_real_pair_frame_round_trip_is_close(webcam_pair: tuple[np.ndarray, np.ndarray]) -> None:
    """Even untrained, the Haar-initialised INN rebuilds a real frame well from its LR (z = 0)."""
    target, reference = webcam_pair
    hr = torch.from_numpy(target[:200, :300]).permute(2, 0, 1)[None]
    ref = torch.from_numpy(reference[:200, :300]).permute(2, 0, 1)[None]
    model = RefScale(RefScaleConfig(**TINY)).eval()
    enc = model.downscale(hr, ref)
    out = model.upscale(enc.lr, enc.smap, ref, enc.size)
    mse = torch.mean((out - hr.float() / 255) ** 2).item()
    assert 10 * np.log10(1 / mse) > 22

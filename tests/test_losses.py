"""Loss terms are finite and a few optimisation steps on a real revisit pair lower them."""

from __future__ import annotations

import numpy as np
import torch

from refscale_model import RefScale, RefScaleConfig
from refscale_model.training.losses import compute_losses, gaussian_blur, lr_guidance_targets


def test_guidance_targets_blur_removes_detail() -> None:
    hr = torch.rand(1, 3, 64, 64)
    bic, blur = lr_guidance_targets(hr, 2, 1.2)
    assert bic.shape == blur.shape == (1, 3, 32, 32)
    assert blur.std() < bic.std()
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat, atol=1e-6)


def test_losses_finite_and_decrease_on_real_pair(webcam_pair: tuple[np.ndarray, np.ndarray]) -> None:
    torch.manual_seed(0)
    target, reference = webcam_pair
    window = (slice(320, 448), slice(256, 384))  # a textured part of the scene (houses, trees)
    hr = torch.from_numpy(target[window]).permute(2, 0, 1)[None].float() / 255
    ref = torch.from_numpy(reference[window]).permute(2, 0, 1)[None].float() / 255
    model = RefScale(RefScaleConfig(hidden=16, encoder_channels=8)).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    first = None
    for _ in range(30):
        terms = compute_losses(model, hr, ref)
        values = terms.as_floats()
        assert all(np.isfinite(v) for v in values.values())
        first = first or values
        opt.zero_grad()
        terms.total.backward()
        opt.step()
    last = compute_losses(model, hr, ref).as_floats()
    assert last["total"] < 0.9 * first["total"]
    assert last["hr"] < first["hr"]

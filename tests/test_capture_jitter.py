"""Capture-condition jitter (night, glare, saturated colour) of training targets and their references."""

from __future__ import annotations

import numpy as np

from refscale_model.training.capture import capture_jitter


def test_same_condition_for_target_and_reference(webcam_pair: tuple[np.ndarray, np.ndarray]) -> None:
    target, _ = webcam_pair
    crop = np.ascontiguousarray(target[:96, :96])
    a, b = capture_jitter((crop, crop.copy()), np.random.default_rng(5))
    assert a.dtype == np.uint8 and a.shape == crop.shape
    assert np.array_equal(a, b)  # one drawn condition, applied alike
    assert not np.array_equal(a, crop)
    again = capture_jitter((crop,), np.random.default_rng(5))[0]
    assert np.array_equal(again, a)  # drawn from the given generator only


def test_conditions_cover_dark_and_clipped_frames() -> None:
    ramp = np.repeat(np.linspace(0, 230, 128).astype(np.uint8)[None, :, None], 64, axis=0)
    image = np.concatenate((ramp, ramp[:, ::-1], ramp // 2), axis=2)  # no channel clipped yet
    rng = np.random.default_rng(0)
    outs = [capture_jitter((image,), rng)[0] for _ in range(30)]
    assert min(float(o.mean()) for o in outs) < 0.5 * image.mean()  # night frames
    assert max(float((o == 255).any(axis=2).mean()) for o in outs) > 0.1  # glare / lamps clipped

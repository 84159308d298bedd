"""Registration on real revisit images: known homographies, unrelated pairs, deterministic warps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import load_pair

from refscale_model.registration import (
    CORNER_UNIT,
    Registration,
    RegistrationConfig,
    align_reference,
    corner_error,
    corners_from_text,
    corners_text,
    matrix_corners,
    matrix_from_bytes,
    matrix_from_corners,
    matrix_to_bytes,
    prepare_features,
    quantise_matrix,
    register,
    resize_matrix,
    round_matrix,
    warp_reference,
)


def _random_homography(size_hw: tuple[int, int], seed: int, amount: float = 0.06) -> np.ndarray:
    """A perspective distortion that moves each corner by up to `amount` of the image size."""
    h, w = size_hw
    rng = np.random.default_rng(seed)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = (src + rng.uniform(-amount, amount, (4, 2)) * [w, h]).astype(np.float32)
    return cv2.getPerspectiveTransform(src, dst).astype(np.float64)


def _gradient_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Normalised correlation of gradient magnitudes: robust to season/illumination changes."""

    def grad(rgb: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))

    x, y = grad(a)[mask], grad(b)[mask]
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


@pytest.mark.parametrize(
    ("set_name", "seed"),
    [
        ("rail_nordland_1080p", 0),
        ("rail_nordland_1080p", 4),
        ("road_robotcar_seasons", 1),
        ("walk_gardenspoint_sfu", 2),
    ],
)
def test_known_homography_recovered(shared_data: Path, set_name: str, seed: int) -> None:
    _, ref = load_pair(set_name, 0)
    truth = _random_homography(ref.shape[:2], seed)
    frame = cv2.warpPerspective(ref, truth, (ref.shape[1], ref.shape[0]))
    reg = register(frame, ref)
    assert reg.method == "orb"
    assert reg.confidence >= RegistrationConfig().min_confidence
    assert reg.matrix.dtype == np.float64 and reg.matrix.shape == (3, 3)
    assert corner_error(reg.matrix, truth, ref.shape[:2]) < 2.0


def test_homography_between_different_sizes(shared_data: Path) -> None:
    """Reference stored at 640×360, frame at 960×540 (as in walk_gardenspoint_sfu)."""
    _, ref_full = load_pair("walk_gardenspoint_sfu", 0)
    ref = cv2.resize(ref_full, (640, 360), interpolation=cv2.INTER_AREA)
    truth = _random_homography((540, 960), 3, amount=0.04) @ resize_matrix((360, 640), (540, 960))
    frame = cv2.warpPerspective(ref, truth, (960, 540))
    reg = register(frame, ref)
    assert reg.method == "orb"
    assert corner_error(reg.matrix, truth, (360, 640)) < 2.0


@pytest.mark.parametrize(
    ("frame_set", "ref_set"),
    [
        ("rail_nordland_1080p", "road_robotcar_seasons"),
        ("walk_gardenspoint_sfu", "webcam_tilde"),
        ("satellite_rrssrd", "walk_gardenspoint_sfu"),
        ("road_robotcar_seasons", "rail_nordland_1080p"),
    ],
)
def test_unrelated_reference_low_confidence(shared_data: Path, frame_set: str, ref_set: str) -> None:
    frame, _ = load_pair(frame_set, 0)
    _, ref = load_pair(ref_set, 0)
    config = RegistrationConfig(fallback="none")
    reg = register(frame, ref, config)
    assert reg.confidence < config.min_confidence
    warped, applied = align_reference(frame, ref, config)
    assert warped is None and applied.method == "none"


def test_identity_fallback_keeps_reference(shared_data: Path) -> None:
    frame, _ = load_pair("walk_gardenspoint_sfu", 0)
    _, ref = load_pair("webcam_tilde", 0)  # other size and unrelated
    warped, applied = align_reference(frame, ref, RegistrationConfig(fallback="identity"))
    assert applied.method == "identity"
    assert warped is not None and warped.shape == frame.shape
    fit = resize_matrix(ref.shape[:2], frame.shape[:2])  # stored like any applied matrix: corners at 1/8 px
    np.testing.assert_array_equal(applied.matrix, quantise_matrix(fit, frame.shape[:2]))
    assert corner_error(applied.matrix, fit, frame.shape[:2]) <= 1 / CORNER_UNIT


def test_real_misaligned_pair_gets_better_aligned(shared_data: Path) -> None:
    """Nordland winter vs summer, same frame index but shifted: warping must raise gradient NCC."""
    frame, ref = load_pair("rail_nordland_1080p", 3)
    warped, reg = align_reference(frame, ref)
    assert reg.method in ("orb", "phase") and reg.confidence >= RegistrationConfig().min_confidence
    covered = warp_reference(np.full_like(ref, 255), reg.matrix, frame.shape[:2])[..., 0] == 255
    assert covered.mean() > 0.5
    before = _gradient_ncc(frame, ref, covered)
    after = _gradient_ncc(frame, warped, covered)
    assert after > before + 0.1


def test_phase_correlation_recovers_shift(shared_data: Path) -> None:
    _, ref = load_pair("walk_gardenspoint_sfu", 0)
    truth = np.array([[1.0, 0.0, 12.0], [0.0, 1.0, -7.0], [0.0, 0.0, 1.0]])
    frame = cv2.warpPerspective(ref, truth, (ref.shape[1], ref.shape[0]), borderMode=cv2.BORDER_REFLECT)
    reg = register(frame, ref, RegistrationConfig(estimators=("phase",)))
    assert reg.method == "phase" and reg.confidence > 0.5
    assert corner_error(reg.matrix, truth, ref.shape[:2]) < 1.0


def test_register_is_deterministic_and_prepared_reference_matches(shared_data: Path) -> None:
    frame, ref = load_pair("rail_nordland_1080p", 3)
    a = register(frame, ref)
    b = register(frame, prepare_features(ref))
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert a.confidence == b.confidence and a.method == b.method
    with pytest.raises(ValueError, match="work_width"):
        register(frame, prepare_features(ref, RegistrationConfig(work_width=320)))
    warped, reg = align_reference(frame, ref, prepared=prepare_features(ref))
    # the applied matrix is the estimate as a frame record stores it (its corners at 1/8 px), and the warp
    # uses exactly it
    np.testing.assert_array_equal(reg.matrix, quantise_matrix(a.matrix, frame.shape[:2]))
    assert corner_error(reg.matrix, a.matrix, frame.shape[:2]) <= 1 / CORNER_UNIT
    assert warped is not None and warped.tobytes() == warp_reference(ref, reg.matrix, frame.shape[:2]).tobytes()


def test_warp_is_bit_exact_across_calls_and_threads(shared_data: Path) -> None:
    """Offboard must reproduce the onboard warp byte for byte from (reference, stored matrix)."""
    frame, ref = load_pair("rail_nordland_1080p", 3)
    reg = register(frame, ref)
    stored = matrix_from_bytes(matrix_to_bytes(reg.matrix))
    np.testing.assert_array_equal(stored, reg.matrix)
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        one = warp_reference(ref, reg.matrix, frame.shape[:2])
        cv2.setNumThreads(4)
        many = warp_reference(ref.copy(), stored, frame.shape[:2])
        again = warp_reference(ref, stored, frame.shape[:2])
    finally:
        cv2.setNumThreads(threads)
    assert one.tobytes() == many.tobytes() == again.tobytes()
    assert one.dtype == np.uint8 and one.shape == frame.shape


def test_identity_warp_returns_reference_copy() -> None:
    ref = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = warp_reference(ref, np.eye(3), (48, 64))
    np.testing.assert_array_equal(out, ref)
    assert out is not ref


def test_validation_errors() -> None:
    with pytest.raises(ValueError):
        RegistrationConfig(fallback="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RegistrationConfig(estimators=("sift",))
    with pytest.raises(ValueError):
        matrix_from_bytes(b"\0" * 71)
    with pytest.raises(ValueError):
        warp_reference(np.zeros((4, 4, 3), np.uint8), np.eye(2), (4, 4))


def test_blank_images_give_zero_confidence() -> None:
    blank = np.full((120, 160, 3), 128, np.uint8)
    reg = register(blank, blank.copy())
    assert isinstance(reg, Registration)
    assert reg.confidence < RegistrationConfig().min_confidence


def test_corners_store_a_homography_in_eight_integers() -> None:
    """What a format-7 record stores: the frame's corners in the reference at 1/8 px. Corners give back a
    matrix with the same corners (so quantising twice changes nothing), within 1/8 px of the estimate,
    and the identity is all zeros; a matrix corners cannot hold (singular, a corner at infinity) is None."""
    size = (720, 1280)
    for seed in range(20):
        m = _random_homography(size, seed, 0.08)
        corners = matrix_corners(m, size)
        assert corners is not None and corners.shape == (4, 2)
        q = matrix_from_corners(corners, size)
        assert q is not None and corner_error(q, m, size) <= 1 / CORNER_UNIT
        np.testing.assert_array_equal(matrix_corners(q, size), corners)
        np.testing.assert_array_equal(quantise_matrix(q, size), q)
        np.testing.assert_array_equal(corners_from_text(corners_text(corners)), corners)
    assert not matrix_corners(np.eye(3), size).any()
    np.testing.assert_array_equal(matrix_from_corners(np.zeros(8), size), np.eye(3))
    assert matrix_corners(np.zeros((3, 3)), size) is None
    top_right_at_infinity = np.linalg.inv(np.array([[1.0, 0, 0], [0, 1, 0], [-1 / 1279, 0, 1]]))
    assert matrix_corners(top_right_at_infinity, size) is None
    np.testing.assert_array_equal(quantise_matrix(np.zeros((3, 3)), size), round_matrix(np.zeros((3, 3))))
    with pytest.raises(ValueError, match="8 values"):
        corners_from_text("1,2,3")
    with pytest.raises(ValueError, match="8 integers"):
        corners_from_text("1,2,3,4,5,6,7,x")

"""Homography registration of a reference image onto the current frame.

Why: RefScale compares frame and reference pixel by pixel, but a real revisit is never pixel
aligned (other lane, speed, pose). We estimate a homography reference -> frame on small grey
images (ORB + RANSAC + KLT refinement; phase correlation when features fail), and warp the full-resolution
reference with it. The 3×3 matrix travels with every encoded frame so the offboard side warps the
identical reference identically (`warp_reference` is deterministic given reference and matrix).
"""

from __future__ import annotations

import struct
from dataclasses import InitVar, dataclass
from typing import Literal

import cv2
import numpy as np

WhenUnregistered = Literal["identity", "none"]

_INTERP = cv2.INTER_LINEAR
_BORDER = cv2.BORDER_CONSTANT
_MIN_TEXTURE_STD = 2.0


@dataclass(frozen=True)
class RegistrationConfig:
    """Tuning of `register` / `align_reference`.

    work_width: images are downscaled to this width (never upscaled) before estimation; 480 keeps
        1080p registration well inside a 30 Hz budget on one core.
    min_confidence: below this, `align_reference` applies `when_unregistered`.
    when_unregistered: "identity" uses the unwarped reference, "none" drops the reference
        (no-reference mode). `fallback=` is still accepted as the old name of this keyword.
    estimators: "orb" (features + RANSAC + KLT refinement, full homography) and/or "phase" (phase
        correlation, translation only; tried when ORB is missing or below min_confidence).
    """

    work_width: int = 640
    min_confidence: float = 0.35
    when_unregistered: WhenUnregistered = "identity"
    orb_features: int = 500
    fast_threshold: int = 12
    ratio: float = 0.85
    ransac_px: float = 2.5
    min_inliers: int = 15
    good_inliers: int = 45
    max_scale: float = 3.0
    refine_iterations: int = 1
    estimators: tuple[str, ...] = ("orb", "phase")
    phase_min_response: float = 0.08
    phase_span: float = 0.3
    fallback: InitVar[WhenUnregistered | None] = None  # the old name of `when_unregistered`

    def __post_init__(self, fallback: WhenUnregistered | None) -> None:
        if fallback is not None:
            object.__setattr__(self, "when_unregistered", fallback)
        if self.when_unregistered not in ("identity", "none"):
            raise ValueError(f"when_unregistered must be 'identity' or 'none', got {self.when_unregistered!r}")
        unknown = set(self.estimators) - {"orb", "phase"}
        if unknown:
            raise ValueError(f"unknown estimators {sorted(unknown)}; use 'orb' and/or 'phase'")
        if self.work_width < 32:
            raise ValueError("work_width must be >= 32")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError("min_confidence must be in [0, 1]")


@dataclass(frozen=True)
class Registration:
    """Result of `register`.

    matrix maps reference pixel coordinates to frame pixel coordinates at full resolution
    (float64 3×3, normalised so matrix[2, 2] == 1); confidence is in [0, 1]; method names the
    estimator that produced it ("orb", "phase", "identity", "none").
    """

    matrix: np.ndarray
    confidence: float
    method: str

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.matrix, np.eye(3)))


@dataclass(frozen=True)
class PreparedReference:
    """Working-resolution grey image and ORB features of a reference.

    Why: consecutive frames usually share one reference (keyframes are metres apart), so the
    onboard node computes these once per reference instead of once per frame.
    """

    size_hw: tuple[int, int]
    work_width: int
    scale: float
    grey: np.ndarray
    keypoints: np.ndarray
    descriptors: np.ndarray | None


def identity_registration(method: str = "none") -> Registration:
    return Registration(np.eye(3, dtype=np.float64), 0.0, method)


def _work_grey(rgb: np.ndarray, work_width: int) -> tuple[np.ndarray, float]:
    """Grey image at working width and the scale full -> working."""
    if rgb.ndim == 3:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        grey = rgb
    h, w = grey.shape
    if w <= work_width:
        return np.ascontiguousarray(grey), 1.0
    scale = work_width / w
    size = (work_width, max(1, round(h * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA), scale


def _orb(config: RegistrationConfig) -> cv2.ORB:
    return cv2.ORB_create(
        nfeatures=config.orb_features,
        scaleFactor=1.2,
        nlevels=6,
        edgeThreshold=19,
        patchSize=19,
        fastThreshold=config.fast_threshold,
    )


def _features(grey: np.ndarray, config: RegistrationConfig) -> tuple[np.ndarray, np.ndarray | None]:
    kps, desc = _orb(config).detectAndCompute(grey, None)
    pts = np.array([kp.pt for kp in kps], dtype=np.float32).reshape(-1, 2)
    return pts, desc


def prepare_features(ref_rgb: np.ndarray, config: RegistrationConfig | None = None) -> PreparedReference:
    """Precompute what `register` needs from a reference (reuse it across frames)."""
    config = config or RegistrationConfig()
    grey, scale = _work_grey(ref_rgb, config.work_width)
    pts, desc = _features(grey, config)
    size_hw = (int(ref_rgb.shape[0]), int(ref_rgb.shape[1]))
    return PreparedReference(size_hw, config.work_width, scale, grey, pts, desc)


def _to_full(h_work: np.ndarray, ref_scale: float, frame_scale: float) -> np.ndarray:
    """Lift a working-resolution homography to full resolution (ref full -> frame full).

    Pixel centres: a working pixel covers 1/scale full pixels, so we map through centre
    coordinates (x + 0.5) to keep the lift exact for INTER_AREA downscaling.
    """

    def centre_scale(s: float) -> np.ndarray:
        # full -> work in pixel-centre convention: u = s * (x + 0.5) - 0.5
        return np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5], [0.0, 0.0, 1.0]])

    full = np.linalg.inv(centre_scale(frame_scale)) @ h_work @ centre_scale(ref_scale)
    return full / full[2, 2]


def _plausible(h: np.ndarray, ref_hw: tuple[int, int], config: RegistrationConfig) -> bool:
    """Reject degenerate homographies: flipped, strongly scaled or non-convex reference outline."""
    if not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return False
    rh, rw = ref_hw
    corners = np.array([[0, 0], [rw, 0], [rw, rh], [0, rh]], dtype=np.float64)
    ones = np.ones((4, 1))
    proj = np.hstack([corners, ones]) @ h.T
    if np.any(proj[:, 2] <= 0):
        return False
    quad = proj[:, :2] / proj[:, 2:3]
    edges = np.roll(quad, -1, axis=0) - quad
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not np.all(cross > 0):  # convex and not mirrored (image y axis points down)
        return False
    area = 0.5 * abs(np.sum(quad[:, 0] * np.roll(quad[:, 1], -1) - np.roll(quad[:, 0], -1) * quad[:, 1]))
    ratio = area / float(rw * rh)
    return 1.0 / config.max_scale**2 <= ratio <= config.max_scale**2


def _coverage(points: np.ndarray, shape_hw: tuple[int, int], cells: int = 4) -> float:
    """Fraction of a cells×cells grid of the frame that holds at least one inlier."""
    if len(points) == 0:
        return 0.0
    h, w = shape_hw
    gx = np.clip((points[:, 0] / w * cells).astype(int), 0, cells - 1)
    gy = np.clip((points[:, 1] / h * cells).astype(int), 0, cells - 1)
    return len(set(zip(gx.tolist(), gy.tolist(), strict=True))) / float(cells * cells)


def _orb_homography(
    frame: PreparedReference, ref: PreparedReference, config: RegistrationConfig
) -> tuple[np.ndarray, float] | None:
    """ORB + ratio test + RANSAC, then KLT refinement: (H_work ref->frame, confidence)."""
    frame_grey, f_pts, f_desc = frame.grey, frame.keypoints, frame.descriptors
    if f_desc is None or ref.descriptors is None or len(f_pts) < config.min_inliers:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(ref.descriptors, f_desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < config.ratio * p[1].distance]
    if len(good) < config.min_inliers:
        return None
    src = ref.keypoints[[m.queryIdx for m in good]]
    dst = f_pts[[m.trainIdx for m in good]]
    h, mask = cv2.findHomography(src, dst, cv2.USAC_ACCURATE, config.ransac_px, maxIters=2000, confidence=0.999)
    if h is None or mask is None:
        return None
    inl = mask.ravel().astype(bool)
    n = int(inl.sum())
    if n < config.min_inliers:
        return None
    for _ in range(config.refine_iterations):
        h = _refine_klt(frame_grey, ref.grey, h, f_pts, config)
    count = (n - config.min_inliers) / float(config.good_inliers - config.min_inliers)
    cover = _coverage(dst[inl], frame_grey.shape)
    conf = float(np.clip(count, 0.0, 1.0) * min(1.0, 0.25 + cover))
    return h, conf


def _refine_klt(
    frame_grey: np.ndarray, ref_grey: np.ndarray, h: np.ndarray, pts: np.ndarray, config: RegistrationConfig
) -> np.ndarray:
    """Sub-pixel refinement: track the inlier corners from the frame into the pre-warped reference.

    Why: ORB keypoints on coarse pyramid levels are quantised to ~1 working pixel, which is several
    pixels at full resolution; Lucas-Kanade on the residual misalignment recovers the sub-pixel
    part. All frame corners are tracked (not only descriptor matches) for coverage; the refined
    estimate is kept only if a good share of the tracked points supports it.
    """
    fh, fw = frame_grey.shape
    warped = cv2.warpPerspective(ref_grey, h, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    p0 = np.ascontiguousarray(pts, dtype=np.float32).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 10, 0.03)
    p1, status, _err = cv2.calcOpticalFlowPyrLK(
        frame_grey, warped, p0, None, winSize=(11, 11), maxLevel=1, criteria=criteria
    )
    if p1 is None:
        return h
    ok = status.ravel().astype(bool) & (np.linalg.norm((p1 - p0).reshape(-1, 2), axis=1) < 2.0 * config.ransac_px)
    if int(ok.sum()) < config.min_inliers:
        return h
    ref_pts = cv2.perspectiveTransform(p1[ok], np.linalg.inv(h)).reshape(-1, 2)
    h2, mask = cv2.findHomography(
        ref_pts, p0[ok].reshape(-1, 2), cv2.USAC_ACCURATE, 1.0, maxIters=1000, confidence=0.999
    )
    if h2 is None or mask is None or int(mask.sum()) < max(config.min_inliers, 0.3 * int(ok.sum())):
        return h
    return h2


def register(
    frame_rgb: np.ndarray | PreparedReference,
    ref_rgb: np.ndarray | PreparedReference,
    config: RegistrationConfig | None = None,
) -> Registration:
    """Estimate the homography that maps reference pixels onto frame pixels.

    Either image may be a `PreparedReference` (see `prepare_features`) to skip its feature
    extraction: a reference is prepared once for all the frames it serves, a frame once for all the
    candidate references it is registered against (`pipeline.reference_choice`). Never raises on bad
    content: an unusable pair returns identity with confidence 0.
    """
    config = config or RegistrationConfig()
    ref = ref_rgb if isinstance(ref_rgb, PreparedReference) else prepare_features(ref_rgb, config)
    frame = frame_rgb if isinstance(frame_rgb, PreparedReference) else prepare_features(frame_rgb, config)
    for name, prepared in (("reference", ref), ("frame", frame)):
        if prepared.work_width != config.work_width:
            raise ValueError(f"{name} prepared at work_width {prepared.work_width}, config has {config.work_width}")
    best: Registration = identity_registration()
    orb = _orb_homography(frame, ref, config) if "orb" in config.estimators else None
    if orb is not None:
        full = _to_full(orb[0], ref.scale, frame.scale)
        if _plausible(full, ref.size_hw, config):
            best = Registration(full, orb[1], "orb")
    if "phase" in config.estimators and best.confidence < config.min_confidence:
        best = _try_dense(frame.grey, frame.scale, ref, config, best)
    return best


def _hann(shape_hw: tuple[int, int]) -> np.ndarray:
    return cv2.createHanningWindow((shape_hw[1], shape_hw[0]), cv2.CV_32F)


def _try_dense(
    frame_grey: np.ndarray,
    frame_scale: float,
    ref: PreparedReference,
    config: RegistrationConfig,
    best: Registration,
) -> Registration:
    """Translation-only fallback by phase correlation when features fail.

    Why: cross-season or low-texture pairs (snow, night, satellite vs aerial) defeat ORB, but the
    dominant misalignment of a revisit is often a shift. The reference is resized to the frame's
    working size; the peak response of the normalised cross-power spectrum is the evidence
    (unrelated images stay near 0.05, real revisits reach 0.15-0.45).
    """
    fh, fw = frame_grey.shape
    ref_grey = cv2.resize(ref.grey, (fw, fh), interpolation=cv2.INTER_AREA)
    f = frame_grey.astype(np.float32)
    r = ref_grey.astype(np.float32)
    if min(float(f.std()), float(r.std())) < _MIN_TEXTURE_STD:
        return best  # flat images make the cross-power spectrum meaningless (peak of 1 anywhere)
    (dx, dy), response = cv2.phaseCorrelate(r, f, _hann(f.shape))
    conf = float(np.clip((response - config.phase_min_response) / config.phase_span, 0.0, 1.0))
    if not np.isfinite(conf) or conf <= best.confidence:
        return best
    rh, rw = ref.grey.shape
    shift = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
    full = _to_full(shift @ resize_matrix((rh, rw), (fh, fw)), ref.scale, frame_scale)
    if not _plausible(full, ref.size_hw, config):
        return best
    return Registration(full, conf, "phase")


def warp_reference(ref_rgb: np.ndarray, matrix: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Warp the reference onto a frame of size `size_hw` with `matrix` (ref -> frame).

    Deterministic: fixed bilinear interpolation and a constant black border, and OpenCV's uint8
    warp is fixed-point per output pixel, so thread count does not change the result. Pixels with
    no reference content are 0.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"matrix must be 3×3, got {m.shape}")
    h, w = int(size_hw[0]), int(size_hw[1])
    if np.array_equal(m, np.eye(3)) and ref_rgb.shape[:2] == (h, w):
        return ref_rgb.copy()
    return cv2.warpPerspective(ref_rgb, m, (w, h), flags=_INTERP, borderMode=_BORDER, borderValue=0)


def align_reference(
    frame: np.ndarray,
    ref: np.ndarray | None,
    config: RegistrationConfig | None = None,
    *,
    prepared: PreparedReference | None = None,
) -> tuple[np.ndarray | None, Registration]:
    """Register and warp `ref` onto `frame`, applying the `when_unregistered` policy.

    Returns (warped reference or None, registration actually applied). With confidence below
    `min_confidence`, when_unregistered "identity" returns the unwarped reference (resized to the frame if
    its size differs) with an identity/scale matrix; "none" returns None (no-reference mode).
    Pass `prepared=prepare_features(ref, config)`, cached per reference, to save its feature
    extraction on every frame.
    """
    config = config or RegistrationConfig()
    if ref is None:
        return None, identity_registration()
    if prepared is not None and prepared.size_hw != tuple(ref.shape[:2]):
        raise ValueError(f"prepared reference is {prepared.size_hw}, reference is {ref.shape[:2]}")
    size_hw = (int(frame.shape[0]), int(frame.shape[1]))
    reg = register(frame, prepared if prepared is not None else ref, config)
    return apply_registration(ref, reg, size_hw, config)


def apply_registration(
    ref: np.ndarray, reg: Registration, size_hw: tuple[int, int], config: RegistrationConfig | None = None
) -> tuple[np.ndarray | None, Registration]:
    """`align_reference`'s second half: warp `ref` by `reg`, or apply `when_unregistered` below
    `min_confidence` (for a registration already estimated, e.g. while choosing among references)."""
    config = config or RegistrationConfig()
    if reg.confidence >= config.min_confidence:
        reg = Registration(quantise_matrix(reg.matrix, size_hw), reg.confidence, reg.method)
        return warp_reference(ref, reg.matrix, size_hw), reg
    if config.when_unregistered == "none":
        return None, Registration(np.eye(3, dtype=np.float64), reg.confidence, "none")
    fit = quantise_matrix(resize_matrix(ref.shape[:2], size_hw), size_hw)
    return warp_reference(ref, fit, size_hw), Registration(fit, reg.confidence, "identity")


MATRIX_DECIMALS = (6, 6, 3, 6, 6, 3, 9, 9, 6)
"""Decimals kept of each applied matrix value (row-major): what a bag's frame record stores. Each moves a
pixel of a 4K frame by under 0.01 px (the warp itself interpolates at 1/32 px): 1e-6 of the linear part,
1/1000 px of the shift, 1e-9 of the perspective terms."""


def matrix_text(matrix: np.ndarray) -> str:
    """The matrix as the frame record writes it: `MATRIX_DECIMALS` per value, trailing zeros dropped."""
    m = np.asarray(matrix, dtype=np.float64).reshape(9)
    return ",".join(_decimal(float(v), d) for v, d in zip(m, MATRIX_DECIMALS, strict=True))


def _decimal(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def round_matrix(matrix: np.ndarray) -> np.ndarray:
    """The matrix read back from `matrix_text`: the encoder warps with exactly what its record stores."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.array([float(v) for v in matrix_text(m).split(",")], dtype=np.float64).reshape(m.shape)


CORNER_UNIT = 8
"""A frame record stores its registration as where the frame's four corners sample the reference, in
1/`CORNER_UNIT` px (`matrix_corners`): 8 small integers instead of 9 decimals, 40 instead of 64 B per frame
on disk. The registration itself is good to 0.3–1 px; 1/8 px at the corners moves the warped reference by
at most 1/16 px there (less inside), and the encoder warps with exactly the matrix the corners give back."""


def _frame_corners(size_hw: tuple[int, int]) -> np.ndarray:
    h, w = int(size_hw[0]), int(size_hw[1])
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)


def matrix_corners(matrix: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray | None:
    """(4, 2) int64: from each corner of a `size_hw` frame (top-left, top-right, bottom-right,
    bottom-left) to the reference point `matrix` (ref -> frame) warps there, in 1/`CORNER_UNIT` px.

    None where corners cannot hold the matrix: singular, a corner at infinity, or corners that do not
    give back a matrix with the same corners (the record then keeps the decimals of `matrix_text`)."""
    held = _corners_held(matrix, size_hw)
    return None if held is None else held[0]


def exact_corners(matrix: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray | None:
    """`matrix_corners` when they give back exactly `matrix` (a `quantise_matrix` result), else None:
    what a frame record may store instead of the matrix."""
    held = _corners_held(matrix, size_hw)
    return held[0] if held is not None and np.array_equal(held[1], matrix) else None


def _corners_held(matrix: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(corners, the matrix they give back) when corners can hold `matrix`, else None: one pass for
    `matrix_corners` and `quantise_matrix`."""
    corners = _rounded_corners(matrix, size_hw)
    if corners is None:
        return None
    back = matrix_from_corners(corners, size_hw)
    if back is None or not np.array_equal(_rounded_corners(back, size_hw), corners):
        return None
    return corners, back


def _rounded_corners(matrix: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray | None:
    """`matrix_corners` without the round-trip check."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)) or min(size_hw) < 2:
        return None
    try:
        inverse = np.linalg.inv(m)
    except np.linalg.LinAlgError:
        return None
    p = _frame_corners(size_hw)
    q = np.c_[p, np.ones(4)] @ inverse.T
    with np.errstate(all="ignore"):
        steps = (q[:, :2] / q[:, 2:] - p) * CORNER_UNIT
    if not np.all(np.isfinite(steps)) or np.abs(steps).max() > 2**30:
        return None
    return np.rint(steps).astype(np.int64)


def matrix_from_corners(corners: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray | None:
    """The matrix (ref -> frame) whose corners are `corners` (`matrix_corners`); identity for all zeros;
    None for corners no homography has (three in a line). Rounded to `matrix_text`'s decimals, so every
    machine parses the same float64 values from the same record."""
    c = np.asarray(corners, dtype=np.int64).reshape(4, 2)
    if not c.any():
        return np.eye(3, dtype=np.float64)
    p = _frame_corners(size_hw)
    q = p + c / CORNER_UNIT  # multiples of 1/8 below 2**20: exact in float32
    m = cv2.getPerspectiveTransform(q.astype(np.float32), p.astype(np.float32)).astype(np.float64)
    if not np.all(np.isfinite(m)) or abs(np.linalg.det(m)) < 1e-12 or m[2, 2] == 0:
        return None
    return round_matrix(m / m[2, 2])


def corners_text(corners: np.ndarray) -> str:
    """`matrix_corners` as a record writes them: 8 integers (x, y per corner)."""
    return ",".join(str(int(v)) for v in np.asarray(corners).reshape(8))


def corners_from_text(text: str) -> np.ndarray:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"registration_corners must be 8 integers, got {text!r}") from None
    if len(values) != 8:
        raise ValueError(f"registration_corners needs 8 values, got {len(values)}")
    return np.array(values, dtype=np.int64).reshape(4, 2)


def quantise_matrix(matrix: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """The matrix a frame of `size_hw` is warped with and its record stores: rebuilt from its corners at
    1/`CORNER_UNIT` px, or `round_matrix` where corners cannot hold it."""
    held = _corners_held(matrix, size_hw)
    return round_matrix(matrix) if held is None else held[1]


def resize_matrix(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Matrix that stretches an image of src_hw onto dst_hw (identity when equal), centre convention."""
    if tuple(src_hw) == tuple(dst_hw):
        return np.eye(3, dtype=np.float64)
    sx = dst_hw[1] / src_hw[1]
    sy = dst_hw[0] / src_hw[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def matrix_to_bytes(matrix: np.ndarray) -> bytes:
    """72-byte little-endian float64 serialisation (exact round trip) for storing per frame."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"matrix must be 3×3, got {m.shape}")
    return struct.pack("<9d", *m.ravel().tolist())


def matrix_from_bytes(data: bytes) -> np.ndarray:
    if len(data) != 72:
        raise ValueError(f"expected 72 bytes, got {len(data)}")
    return np.array(struct.unpack("<9d", data), dtype=np.float64).reshape(3, 3)


def corner_error(h_est: np.ndarray, h_true: np.ndarray, size_hw: tuple[int, int]) -> float:
    """Max distance (px) between the image corners mapped by two homographies (evaluation helper)."""
    h, w = size_hw
    c = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], dtype=np.float64)
    a = c @ np.asarray(h_est, dtype=np.float64).T
    b = c @ np.asarray(h_true, dtype=np.float64).T
    return float(np.max(np.linalg.norm(a[:, :2] / a[:, 2:] - b[:, :2] / b[:, 2:], axis=1)))

"""Bjøntegaard delta rate and PSNR-at-rate from rate–distortion points (own implementation).

BD-rate (VCEG-M33, with the piecewise cubic interpolation of later JVET practice): fit log-rate
as a monotone piecewise cubic (PCHIP, Fritsch–Carlson) of PSNR for both curves, average the
difference of log-rates over the PSNR range both curves cover, and report exp(mean) − 1 in %.
Negative: the test curve needs fewer bits for the same quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]
"""(rate, quality): bits per pixel (> 0) and PSNR in dB."""


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson derivatives: the interpolant is monotone wherever the data are."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        return np.full(n, delta[0])
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    for k, (hk, hn, dk, dn) in ((0, (h[0], h[1], delta[0], delta[1])), (n - 1, (h[-1], h[-2], delta[-1], delta[-2]))):
        e = ((2 * hk + hn) * dk - hk * dn) / (hk + hn)  # one-sided three-point end slope, kept monotone
        if np.sign(e) != np.sign(dk):
            e = 0.0
        elif np.sign(dk) != np.sign(dn) and abs(e) > abs(3 * dk):
            e = 3 * dk
        d[k] = e
    return d


def pchip_eval(x: np.ndarray, y: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Evaluate the PCHIP interpolant of (x, y) (x strictly increasing) at xs inside [x0, xn]."""
    d = pchip_slopes(x, y)
    i = np.clip(np.searchsorted(x, xs, side="right") - 1, 0, len(x) - 2)
    h = x[i + 1] - x[i]
    t = (xs - x[i]) / h
    h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
    h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
    return h00 * y[i] + h10 * h * d[i] + h01 * y[i + 1] + h11 * h * d[i + 1]


def rd_hull(points: Sequence[Point]) -> list[Point]:
    """Points sorted by rate that improve quality over every cheaper point (a noisy curve made monotone)."""
    out: list[Point] = []
    for rate, q in sorted((float(r), float(q)) for r, q in points if r > 0 and math.isfinite(q)):
        if not out or q > out[-1][1]:
            out.append((rate, q))
    return out


def psnr_overlap(anchor: Sequence[Point], test: Sequence[Point]) -> tuple[float, float] | None:
    """The PSNR range both curves cover (what a BD-rate averages over); None when they share none."""
    a, b = rd_hull(anchor), rd_hull(test)
    if len(a) < 2 or len(b) < 2:
        return None
    lo, hi = max(a[0][1], b[0][1]), min(a[-1][1], b[-1][1])
    return (lo, hi) if hi > lo else None


def bd_rate(anchor: Sequence[Point], test: Sequence[Point], samples: int = 1001,
            max_psnr: float | None = None) -> float | None:
    """BD-rate of `test` against `anchor` in percent; None when the curves share no PSNR range.
    `max_psnr` caps the range averaged over (e.g. the anchor's PSNR at 0.1 bpp: "below 0.1 bpp").

    Read it with `psnr_overlap`: over a range of a few tenths of a dB it says little."""
    overlap = psnr_overlap(anchor, test)
    if overlap is None:
        return None
    a, b = rd_hull(anchor), rd_hull(test)
    lo, hi = overlap
    if max_psnr is not None:
        hi = min(hi, max_psnr)
        if hi <= lo:
            return None
    qs = np.linspace(lo, hi, samples)
    curves = []
    for pts in (a, b):
        q = np.array([p[1] for p in pts])
        log_r = np.log(np.array([p[0] for p in pts]))
        curves.append(pchip_eval(q, log_r, qs))
    diff = curves[1] - curves[0]
    mean = float(np.sum((diff[1:] + diff[:-1]) / 2) / (samples - 1))  # trapezoid on a uniform grid
    return (math.exp(mean) - 1.0) * 100.0


def bd_psnr(anchor: Sequence[Point], test: Sequence[Point], samples: int = 1001,
            max_rate: float | None = None) -> float | None:
    """BD-PSNR of `test` against `anchor` in dB (mean PSNR gain over the log-rate range both cover,
    capped at `max_rate` bpp); None without a common rate range. Where one curve lies wholly above the
    other in PSNR the BD-rate is undefined, but this still says by how much."""
    a, b = rd_hull(anchor), rd_hull(test)
    if len(a) < 2 or len(b) < 2:
        return None
    lo = math.log(max(a[0][0], b[0][0]))
    hi = math.log(min(a[-1][0], b[-1][0], max_rate if max_rate is not None else math.inf))
    if hi <= lo:
        return None
    xs = np.linspace(lo, hi, samples)
    curves = [pchip_eval(np.log(np.array([p[0] for p in pts])), np.array([p[1] for p in pts]), xs) for pts in (a, b)]
    diff = curves[1] - curves[0]
    return float(np.sum((diff[1:] + diff[:-1]) / 2) / (samples - 1))


def quality_at_rate(points: Sequence[Point], rate: float) -> float | None:
    """PSNR of the curve at `rate` (PCHIP in log-rate); None outside the rates the curve covers."""
    pts = rd_hull(points)
    if not pts or not pts[0][0] <= rate <= pts[-1][0]:
        return None
    if len(pts) == 1:
        return pts[0][1]
    log_r = np.log(np.array([p[0] for p in pts]))
    return float(pchip_eval(log_r, np.array([p[1] for p in pts]), np.array([math.log(rate)]))[0])

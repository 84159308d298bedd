"""Which cached reference should a frame be coded against? Every entry near the fix, scored.

For frames of a raw drive bag, every reference-cache entry within `--radius` metres of the frame's
GPS pose is tried: its registration confidence, whether the gate keeps it, and the rebuilt PSNR and
bytes (LR + S_map + metadata) through one lossy LR codec point, against the no-reference coding of
the same frame. The summary compares three policies on the same frames: the entry nearest by GPS,
the recorder's choice (the most confident registration among the `--candidates` nearest,
`pipeline.reference_choice`) and an oracle that knows the rebuilt PSNR.

    python benchmarks/bench_reference_choice.py --bag drive_b --cache cache_1m \
        --camera /camera/front/image_raw --every 8 --limit 12 [--weights x2-lossy] [--webp 35]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from refscale_model.codecs import get_codec
from refscale_model.evaluation.rd import model_lr
from refscale_model.geo import haversine_m
from refscale_model.pipeline.reference_choice import DEFAULT_CANDIDATES, ReferenceLoader, choose_reference
from refscale_model.refcache.store import ReferenceCache
from refscale_model.registration import RegistrationConfig, apply_registration, register
from refscale_model.weights import load_model


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def _frames(bag: Path, camera: str, every: int, limit: int, pseudo_latlon):
    """(index, rgb, pose) of every `every`-th camera frame that has a pose, at most `limit`."""
    from refscale_model.io import rosimg
    from refscale_model.pipeline.raw import iter_posed_frames

    given = 0
    for index, _stamp, msg, pose in iter_posed_frames(bag, camera, every, pseudo_latlon):
        if pose is None:
            continue
        yield index, rosimg.image_from_msg(msg), pose
        given += 1
        if given >= limit:
            return


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bag", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--camera", required=True)
    p.add_argument("--camera-id", default=None)
    p.add_argument("--every", type=int, default=8)
    p.add_argument("--limit", type=int, default=12)
    p.add_argument("--radius", type=float, default=4.0, help="metres around the fix to try (4)")
    p.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES)
    p.add_argument("--weights", default="x2-lossy")
    p.add_argument("--codec", default="webp")
    p.add_argument("--quality", type=int, default=35)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.weights).eval()
    codec, reg_config = get_codec(args.codec), RegistrationConfig()

    def coded(frame: np.ndarray, lr) -> tuple[float, int]:
        """Rebuilt PSNR and all bytes of `frame` coded as `lr` through the LR codec."""
        data = codec.encode(lr.lr, args.quality)
        return _psnr(frame, lr.rebuild(codec.decode(data))), len(data) + lr.side_bytes + lr.meta_bytes("refscale")

    print(f"| frame | entry | GPS m | confidence | gated | ΔPSNR dB | Δbytes |  (vs no reference, {args.codec} "
          f"q{args.quality})\n|---|---|---|---|---|---|---|")
    totals = {"nearest": [0.0, 0], "choice": [0.0, 0], "oracle": [0.0, 0]}
    with ReferenceCache.open(args.cache, readonly=True) as cache:
        load = ReferenceLoader(reg_config, size=32)  # every entry near a frame stays decoded
        for index, frame, pose in _frames(args.bag, args.camera, args.every, args.limit, cache.pseudo_latlon):
            entries = cache.near(args.camera_id or args.camera, pose.lat, pose.lon, pose.heading_deg, args.radius)
            if not entries:
                continue
            base_psnr, base_bytes = coded(frame, model_lr(model, frame, None))
            scored = {}
            for entry in entries:
                ref_rgb, prepared = load(entry)
                reg = register(frame, prepared, reg_config)
                warped, _ = apply_registration(ref_rgb, reg, frame.shape[:2], reg_config)
                lr = model_lr(model, frame, warped)
                psnr, nbytes = coded(frame, lr)
                scored[entry.id] = (psnr - base_psnr, nbytes - base_bytes)
                dist = haversine_m(pose.lat, pose.lon, entry.lat, entry.lon)
                gated = "yes" if lr.smap is None else "no"
                print(f"| {index} | {entry.id} | {dist:.2f} | {reg.confidence:.2f} | {gated} "
                      f"| {scored[entry.id][0]:+.3f} | {scored[entry.id][1]:+d} |")
            chosen = choose_reference(frame, entries[: args.candidates], load, reg_config)
            assert chosen is not None
            picks = {"nearest": entries[0].id, "choice": chosen.entry.id,
                     "oracle": max(scored, key=lambda i: scored[i][0])}
            for policy, entry_id in picks.items():
                totals[policy][0] += scored[entry_id][0]
                totals[policy][1] += scored[entry_id][1]
    print("\n| policy | ΣΔPSNR dB | ΣΔbytes |\n|---|---|---|")
    for policy, (gain, extra) in totals.items():
        name = f"choice ({args.candidates} nearest)" if policy == "choice" else policy
        print(f"| {name} | {gain:+.3f} | {extra:+d} |")


if __name__ == "__main__":
    main()

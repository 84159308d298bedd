"""`refscale rd`: rate–distortion scoreboard (bits per HR pixel vs PSNR/SSIM) of LR codecs × methods."""

from __future__ import annotations

import argparse
from pathlib import Path


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The scoreboard's options (shared by `refscale rd` and benchmarks/rate_distortion.py)."""
    src = p.add_argument_group("frames (either pairs or a bag)")
    src.add_argument("--pairs", type=Path, nargs="+", default=None, help="one or more sets' pairs.csv")
    src.add_argument("--split", choices=["all", "val", "train"], default="all")
    src.add_argument("--limit", type=int, default=None, help="at most N frames per set")
    src.add_argument("--bag", type=Path, default=None, help="raw drive bag (.mcap or rosbag2 dir)")
    src.add_argument("--cache", type=Path, default=None, help="reference cache of an earlier drive (with --bag)")
    src.add_argument("--camera", default=None, help="camera topic of --bag")
    src.add_argument("--camera-id", default=None, help="camera id in the cache (default: the topic)")
    src.add_argument("--every", type=int, default=1, help="take every N-th camera frame of --bag")
    src.add_argument("--reference-candidates", type=int, default=None, metavar="N",
                     help="with --bag: the frame's reference is the most confident registration among the N cache "
                          "entries nearest its pose (default: the recorder's, 4; 1 = the nearest)")
    p.add_argument("--weights", default="x2", help="RefScale weights: x2 | x4 | PATH.safetensors | skip")
    p.add_argument("--noref-weights", default=None, help="no-reference INN (default: <weights>-noref; 'skip')")
    q = p.add_argument_group("rate points")
    for codec, default in (("jpeg", "30,50,70,90"), ("webp", "30,50,70,90"), ("avif", "30,50,70,85")):
        q.add_argument(f"--{codec}", type=_ints, default=_ints(default), metavar="Q,..", help=f"qualities ({default})")
    q.add_argument("--crf", type=_ints, default=_ints("22,28,34,40"), metavar="CRF,..", help="x265 crf (22,28,34,40)")
    q.add_argument("--video-crf", type=_ints, default=_ints("22,27,32,37"), metavar="CRF,..",
                   help="crf sweep of the sequence curves, full-res and LR alike (22,27,32,37)")
    q.add_argument("--video-codecs", default="h264,h265",
                   help="with --bag: code the frames in order as video, full-res and each method's LR ('' : none)")
    q.add_argument("--gop", type=int, default=10, help="keyframe interval of the sequence curves (10)")
    q.add_argument("--smap-reuse", type=float, default=2.0, metavar="LEVELS",
                   help="sequence curves: RefScale reuses the GOP's stored S_map within this mean level "
                        "difference, as the recorder does with a video LR (2.0; 0 = a map every frame)")
    q.add_argument("--smap-median", type=int, default=3, choices=(1, 3, 5),
                   help="RefScale's S_map is median-smoothed over this many cells before it is used and stored, "
                        "as the recorder does (3; 1 = off)")
    q.add_argument("--smap-block", type=int, default=2, choices=(1, 2, 3, 4),
                   help="RefScale's S_map is stored (and counted) as one value per N×N cells, as the recorder "
                        "does (2; 1 = every cell)")
    q.add_argument("--lr-codecs", default="png,jpeg,webp,avif",
                   help="LR codecs of the rescaling methods: png, jpeg, webp, avif; h264 / h265 code each frame's "
                        "LR as one IDR with the recorder's video settings, a stream of its own like the x265-intra "
                        "anchor (curve <method>+h265-intra, crf from --video-crf); h265-ref codes it intra or as a "
                        "P-frame after the reference's picture, whichever costs less (curve <method>+h265-ref)")
    q.add_argument("--methods", default="bicubic,noref,refscale", help="rescaling methods")
    q.add_argument("--anchors", default="jpeg,webp,avif,x265-intra,x265-ref", help="full-resolution anchors")
    p.add_argument("--out", type=Path, required=True, help="folder for rd.json, rd.md, rd_<set>.png")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared machine more threads oversubscribe and run slower)")
    p.add_argument("--no-progress", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rd", help="rate–distortion scoreboard: LR codecs × methods vs full-res anchors")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from refscale_model.evaluation import rd

    torch.set_num_threads(max(1, args.threads))
    result = rd.run_scoreboard(
        pairs=args.pairs, split=args.split, limit=args.limit, bag=args.bag, cache=args.cache, camera=args.camera,
        camera_id=args.camera_id, every=args.every, weights=args.weights, noref_weights=args.noref_weights,
        **({} if args.reference_candidates is None else {"reference_candidates": args.reference_candidates}),
        config=rd.RdConfig(
            qualities={"jpeg": args.jpeg, "webp": args.webp, "avif": args.avif, "x265": args.crf,
                       "h264": args.video_crf, "h265": args.video_crf},
            lr_codecs=_names(args.lr_codecs), methods=_names(args.methods), anchors=_names(args.anchors),
            video_codecs=_names(args.video_codecs), gop=args.gop, smap_reuse=args.smap_reuse,
            smap_median=args.smap_median, smap_block=args.smap_block,
        ),
        out=args.out, progress=not args.no_progress,
    )
    print((args.out / "rd.md").read_text())
    return 0 if result["sets"] else 1


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())

"""`refscale encode-bag`, `refscale reconstruct`, `refscale bag recover|info`: RefScale bags on the command line."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("encode-bag", help="compress the camera topics of a raw ROS 2 bag into a RefScale bag")
    e.add_argument("raw_bag", type=Path, help="raw bag: rosbag2 directory or .mcap file")
    e.add_argument("--camera", action="append", required=True, metavar="TOPIC", help="camera topic (repeatable)")
    e.add_argument("--cache", type=Path, default=None, help="reference cache directory (none: no-reference mode)")
    e.add_argument("--weights", default="x2", help="x2, x4, x2-noref, x4-noref or a .safetensors path")
    e.add_argument("--onnx", type=Path, default=None, help="run the downscaler with this ONNX model (runtime)")
    e.add_argument("--out", type=Path, required=True, help="output bag directory (must not exist)")
    e.add_argument("--camera-id", action="append", default=[], metavar="TOPIC=ID", help="cache camera id of a topic")
    e.add_argument("--drop", action="append", default=[], metavar="TOPIC", help="do not pass this topic through")
    e.add_argument("--split-size", type=float, default=None, metavar="MB", help="start a new file after MB")
    e.add_argument("--split-duration", type=float, default=None, metavar="S", help="start a new file after S seconds")
    e.add_argument("--lr-codec", default="png", metavar="{png,jpeg,webp,avif,h264,h265,h265-ref}",
                   help="LR codec: png (lossless, default), jpeg, webp, avif, or video: h264, h265 "
                        "(foxglove_msgs/CompressedVideo); h265-ref: each frame alone, as an HEVC IDR or as a P-frame "
                        "predicted from its reference, whichever costs less (needs the reference to decode)")
    e.add_argument("--lr-quality", type=int, default=None, metavar="Q",
                   help="LR codec quality 0-100 (default: the codec's own; the start value with --target-kbps); "
                        "for h264/h265 the crf (same as --lr-crf)")
    e.add_argument("--lr-crf", type=int, default=None, metavar="CRF",
                   help="h264/h265: constant rate factor 0-51, lower is better (default 28 / 30)")
    e.add_argument("--gop", type=int, default=None, metavar="N",
                   help="h264/h265: a keyframe (IDR + parameter sets) every N frames (default 10 = 1 s at 10 Hz)")
    e.add_argument("--lr-encoder", default="auto", metavar="{auto,cpu,gpu,ENCODER}",
                   help="h264/h265 encoder: auto (NVENC when it works, else libx264/libx265), cpu, gpu or a name")
    e.add_argument("--smap-reuse", type=float, default=None, metavar="LEVELS",
                   help="h264/h265: a frame reuses the S_map stored earlier in its GOP while its own differs by at "
                        "most this many levels on average (default 2.0; 0 = a map with every frame)")
    e.add_argument("--smap-median", type=int, default=None, choices=(1, 3, 5),
                   help="median window (cells) of the stored S_map before the network uses it (default 3; 1 = off)")
    e.add_argument("--smap-block", type=int, default=None, choices=(1, 2, 3, 4),
                   help="store the S_map as one value per N×N cells; the network uses it repeated back "
                        "(default 2; 1 = every cell)")
    e.add_argument("--reference-candidates", type=int, default=None, metavar="N",
                   help="register each frame against the N cache references nearest its pose and use the most "
                        "confident (default 4; 1 = the nearest)")
    e.add_argument("--target-kbps", type=float, default=None, metavar="K",
                   help="per-camera LR + S_map budget in kbit/s: the quality adapts to hold it (lossy codecs); "
                        "h264/h265: the encoder's VBV caps the LR stream at 90 %% of it")
    e.add_argument("--device", default="cpu", help="torch device for the PyTorch downscaler")
    e.add_argument("--allow-untrained", action="store_true", help="use a fresh model when preset weights are missing")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=run_encode_bag)

    r = sub.add_parser("reconstruct", help="rebuild full-resolution frames from a RefScale bag")
    r.add_argument("bag", type=Path, help="RefScale bag (directory or .mcap; a truncated one is read up to its end)")
    r.add_argument("--cache", type=Path, default=None, help="reference cache directory (same content as onboard)")
    r.add_argument("--out", type=Path, required=True, help="output bag directory, or PNG folder with --format png")
    r.add_argument("--format", choices=("bag", "png"), default="bag")
    r.add_argument(
        "--image-format",
        choices=("raw", "png"),
        default="raw",
        help="bag output: sensor_msgs/Image rgb8 (raw) or CompressedImage png",
    )
    r.add_argument("--weights", default=None, help="weights (default: the model id recorded in the bag)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--batch", type=int, default=4, help="frames per inverse pass")
    r.add_argument("--seed", type=int, default=None, help="sample z with this seed (default z = 0)")
    r.add_argument("--verify-against", type=Path, default=None, metavar="RAW_BAG", help="print PSNR/SSIM per frame")
    r.add_argument("--force", action="store_true", help="go on although the bag names other weights")
    r.add_argument("--overwrite", action="store_true", help="--format png: replace PNG files already in --out")
    r.add_argument("--allow-untrained", action="store_true")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=run_reconstruct)

    b = sub.add_parser("bag", help="bag tools: recover a truncated bag, info")
    cmds = b.add_subparsers(dest="bag_command", required=True)
    rc = cmds.add_parser("recover", help="rewrite truncated .mcap files (killed recording) into valid ones")
    rc.add_argument("path", type=Path)
    rc.add_argument("--no-backup", action="store_true", help="do not keep the originals as *.mcap.truncated")
    rc.set_defaults(func=run_recover)
    i = cmds.add_parser("info", help="files, topics, counts, RefScale metadata, truncation")
    i.add_argument("path", type=Path)
    i.add_argument("--cost", action="store_true",
                   help="also each topic's share of the compressed chunks, in bytes and per message: what "
                        "storing or uploading it costs (a finished bag; `bag recover` a killed one first)")
    i.set_defaults(func=run_info)


def _progress(total: int | None, enabled: bool, desc: str, unit: str = "msg") -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _message_total(path: Path) -> int | None:
    """Message count from the MCAP summaries (None for a truncated bag: the bar then just counts)."""
    from mcap.reader import make_reader

    from refscale_model.bags import bag_files, is_complete

    total = 0
    for f in bag_files(path):
        if not is_complete(f):
            return None
        with open(f, "rb") as fh:
            stats = make_reader(fh).get_summary().statistics
        if stats is None:
            return None
        total += stats.message_count
    return total


def _open_cache(path: Path | None) -> Any:
    from refscale_model.refcache import ReferenceCache

    return ReferenceCache.open(path, readonly=True) if path is not None else None


def run_encode_bag(args: argparse.Namespace) -> int:
    from refscale_model.backends.loader import BackendError, load_downscaler
    from refscale_model.bags import BagWriteError
    from refscale_model.codecs import CodecError
    from refscale_model.pipeline.encoder import LrSettings
    from refscale_model.pipeline.jobs import encode_bag

    try:
        if args.lr_crf is not None and args.lr_quality is not None and args.lr_crf != args.lr_quality:
            raise CodecError("give --lr-crf or --lr-quality, not both (for h264/h265 they are the same setting)")
        if args.lr_crf is not None and args.lr_codec not in ("h264", "h265", "h265-ref"):
            raise CodecError(f"--lr-crf is for the codecs h264/h265/h265-ref; {args.lr_codec!r} takes --lr-quality")
        quality = args.lr_crf if args.lr_crf is not None else args.lr_quality
        lr = LrSettings.checked(args.lr_codec, quality, args.target_kbps, args.gop, args.lr_encoder)
        if args.smap_reuse is not None and not args.smap_reuse >= 0:
            raise CodecError(f"--smap-reuse must be >= 0 levels, got {args.smap_reuse}")
    except CodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.reference_candidates is not None and args.reference_candidates < 1:
        print(f"error: --reference-candidates must be >= 1, got {args.reference_candidates}", file=sys.stderr)
        return 2
    try:
        backend = load_downscaler(
            args.weights, onnx_model=args.onnx, device=args.device, allow_untrained=args.allow_untrained,
            verify_weights=True,
        )
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = _open_cache(args.cache)
    bar = _progress(_message_total(args.raw_bag), not args.no_progress, "encode-bag")
    try:
        report = encode_bag(
            args.raw_bag, args.out, backend, args.camera, cache=cache,
            camera_ids=dict(item.split("=", 1) for item in args.camera_id), drop=args.drop,
            split_max_bytes=int(args.split_size * 1e6) if args.split_size else None,
            split_max_duration_s=args.split_duration, progress=bar.update,
            encoder_options={"lr_codec": lr.codec, "lr_quality": lr.quality, "target_kbps": lr.target_kbps,
                             **({"lr_gop": lr.gop, "lr_encoder": lr.encoder} if lr.video else {}),
                             **({"smap_reuse": args.smap_reuse} if args.smap_reuse is not None else {}),
                             **({"reference_candidates": args.reference_candidates}
                                if args.reference_candidates is not None else {}),
                             **({"smap_median": args.smap_median} if args.smap_median is not None else {}),
                             **({"smap_block": args.smap_block} if args.smap_block is not None else {})},
        )
    except BagWriteError as exc:
        print(f"error: {exc}; frames written before it are readable (`refscale bag recover {args.out}`)",
              file=sys.stderr)
        return 1
    finally:
        bar.close()
        if cache is not None:
            cache.close()
    _print_encode_report(report, args)
    return 0 if report.stats.frames and not report.stats.errors else 1


def _print_encode_report(report: Any, args: argparse.Namespace) -> None:
    from refscale_model.codecs import is_video_codec

    s = report.stats
    for problem in report.read_problems:
        print(f"warning: {problem}")
    for topic in report.missing_cameras:
        print(f"warning: camera topic {topic} not found in {args.raw_bag}")
    for line in report.frame_errors[:20]:
        print(f"frame error: {line}")
    print(f"frames: {s.frames}  (errors: {sum(s.errors.values())} {dict(s.errors) or ''})")
    print(f"frames without reference: {s.frames_without_reference}")
    if s.lr_codec == "h265-ref":
        print(f"LR predicted from the reference: {s.lr_predicted} of {s.frames} frames (the others intra)")
    print(f"passed through: {s.passthrough} messages")
    print(f"camera payload: {s.bytes_in:,} B in -> {s.bytes_out:,} B out (LR+S_map), ratio {s.compression_ratio:.2f}")
    knob = "crf" if s.lr_encoder else "q"
    quality = ", ".join(f"{t} {knob}{q}" for t, q in sorted(s.lr_quality.items()) if q >= 0)
    gop = f", gop {args.gop or 10}" if is_video_codec(s.lr_codec) else ", each frame intra or from its reference"
    print(f"LR codec: {s.lr_codec}" + (f" via {s.lr_encoder}{gop}" if s.lr_encoder else "")
          + (f" ({quality})" if quality else "")
          + (f", budget {s.target_kbps:g} kbit/s per camera" if s.target_kbps else ""))
    ratio = report.bytes_in / max(1, report.bytes_out)
    print(f"bag on disk: {report.bytes_in:,} B in -> {report.bytes_out:,} B out, ratio {ratio:.2f}")
    print(f"mean encode time: {1e3 * s.encode_s / max(1, s.frames):.1f} ms/frame")
    print(f"wrote {args.out}")


def run_reconstruct(args: argparse.Namespace) -> int:
    from refscale_model import load_model
    from refscale_model.bags import metadata_of
    from refscale_model.bags import refscale_format as fmt
    from refscale_model.pipeline import Reconstructor
    from refscale_model.pipeline.jobs import reconstruct_bag
    from refscale_model.weights import WeightsError

    if problem := _out_problem(args):
        print(f"refscale reconstruct: error: {problem}", file=sys.stderr)
        return 2
    bag_meta = metadata_of(args.bag).get(fmt.METADATA_NAME, {})
    weights = args.weights or bag_meta.get("model_id")
    if not weights:
        print(f"error: {args.bag} names no model; pass --weights", file=sys.stderr)
        return 2
    try:
        model = load_model(weights, allow_untrained=args.allow_untrained)
    except (FileNotFoundError, WeightsError) as exc:
        sha = bag_meta.get("weights_sha256") or "(untrained)"
        print(f"error: weights {weights!r} not found ({exc}); the bag was encoded with weights sha256 {sha}: "
              "pass --weights PATH", file=sys.stderr)
        return 2
    cache = _open_cache(args.cache)
    z = "zero" if args.seed is None else args.seed
    rec = Reconstructor(model, cache, device=args.device, batch_size=args.batch, z=z)
    problem = rec.check_bag(args.bag)
    if problem and not args.force:
        print(f"error: {problem} (use --force to try anyway)", file=sys.stderr)
        return 2
    bar = _progress(None, not args.no_progress, "reconstruct", unit="frame")

    def on_frame(_item: Any, note: str) -> None:
        bar.update(1)
        if note:
            bar.write(note, file=sys.stderr if note.startswith("frame failed") else sys.stdout)

    provenance = {"source_bag": str(args.bag), "weights": str(weights), "z": "zero" if z == "zero" else f"seed {z}"}
    done = [0]

    def counting(item: Any, note: str) -> None:
        done[0] += 0 if note.startswith("frame failed") else 1
        on_frame(item, note)

    try:
        report = reconstruct_bag(
            args.bag, args.out, rec, output=args.format, image_format=args.image_format, provenance=provenance,
            verify_against=args.verify_against, on_frame=counting, overwrite=args.overwrite,
        )
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            raise
        bar.close()
        print(f"refscale reconstruct: error: {exc.strerror} writing {args.out}; the {done[0]} frames written before "
              "it are complete (no partial file left)", file=sys.stderr)
        return 1
    finally:
        bar.close()
        if cache is not None:
            cache.close()
    for line in report.read_problems:
        print(f"warning: {line}")
    for topic in sorted(set(report.rebuilt) | set(report.failed)):
        line = f"{topic}: {report.rebuilt[topic]} frames rebuilt"
        if report.failed[topic]:
            line += f", failed {sum(report.failed[topic].values())} {dict(report.failed[topic])}"
        if report.scores[topic]:
            ps, ss = zip(*report.scores[topic], strict=True)
            line += f", mean PSNR {sum(ps) / len(ps):.2f} dB, mean SSIM {sum(ss) / len(ss):.4f}"
        print(line)
    print(f"wrote {args.out}")
    return 0 if report.ok else 1


def _out_problem(args: argparse.Namespace) -> str | None:
    """Why `reconstruct --out` cannot be used (checked before any work), or None."""
    out: Path = args.out
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            return f"--out {out}: {parent} is a file, not a directory"
    if out.exists() and not out.is_dir():
        return f"--out {out} exists and is not a directory"
    if args.format == "bag" and out.exists():
        return f"--out {out} already exists; choose a new directory for the output bag"
    if args.format == "png" and not args.overwrite and out.is_dir() and any(out.glob("*/*.png")):
        return f"--out {out} already holds PNG frames; not overwriting them (pass --overwrite to replace them)"
    return None


def run_recover(args: argparse.Namespace) -> int:
    """Exit 0: every file valid now; 1: a file could not be recovered (its original kept); 2: no bag there."""
    from refscale_model.bags import recover

    try:
        report = recover(args.path, keep_backup=not args.no_backup)
    except OSError as exc:  # not a bag, unreadable directory, ...
        print(f"refscale bag recover: error: {exc.strerror or exc}: {args.path}", file=sys.stderr)
        return 2
    for f in report.rewritten:
        print(f"recovered: {f}")
    for f in report.already_valid:
        print(f"valid:     {f}")
    for p in report.problems:
        print(f"note: {p}")
    print(f"messages kept in recovered files: {report.messages_kept}; bytes dropped: {report.bytes_dropped:,}")
    if report.metadata_rewritten:
        print(f"rewrote {args.path / 'metadata.yaml'}")
    for e in report.errors:
        print(f"refscale bag recover: error: {e}", file=sys.stderr)
    return 0 if report.ok else 1


def run_info(args: argparse.Namespace) -> int:
    """Exit 0: bag reads cleanly; 1: problems found (listed); 2: no bag there / unreadable."""
    from refscale_model.bags import is_complete, summarize

    try:
        s = summarize(args.path)
    except OSError as exc:
        print(f"refscale bag info: error: {exc.strerror or exc}: {args.path}", file=sys.stderr)
        return 2
    print(f"bag: {args.path}")
    for f in s.files:
        damaged = any(p.startswith(f"{f.name}:") for p in s.problems)
        state = "TRUNCATED" if not is_complete(f) else "DAMAGED" if damaged else "ok"
        print(f"  file: {f.name}  {f.stat().st_size:,} B  {state}")
    print(f"duration: {(s.end_ns - s.start_ns) / 1e9:.3f} s  start: {s.start_ns}  size: {s.bytes_on_disk:,} B")
    for topic, t in sorted(s.topics.items()):
        print(f"  {topic}  [{t.type_name}]  {t.count} msgs")
    for name, data in s.metadata.items():
        print(f"metadata {name}:")
        for k, v in data.items():
            print(f"  {k}: {v if len(v) < 200 else v[:200] + '…'}")
    if args.cost:
        _print_costs(args.path, s.topics)
    for p in s.problems:
        print(f"problem: {p}")
    return 0 if not s.problems else 1


def _print_costs(path: Path, topics: dict[str, Any]) -> None:
    """Per topic: its messages' share of the compressed chunks (`bags.accounting.topic_disk_bytes`)."""
    from refscale_model.bags.accounting import topic_disk_bytes

    try:
        cost = topic_disk_bytes(path)
    except Exception as exc:  # noqa: BLE001 - a damaged chunk: say so, the listing above stands
        print(f"on disk: not measured ({type(exc).__name__}: {exc})")
        return
    print("on disk (share of the compressed chunks):")
    for topic, t in sorted(topics.items()):
        share = cost.get(topic, 0)
        per = f"  {share / t.count:,.1f} B/msg" if t.count else ""
        print(f"  {topic}  {share:,} B{per}")

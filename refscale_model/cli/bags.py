"""`refscale encode-bag`, `refscale reconstruct`, `refscale bag recover|info`: RefScale bags on the command line."""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
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
    i.set_defaults(func=run_info)


def _progress(total: int | None, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="msg", file=sys.stderr, dynamic_ncols=True)


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


def _bytes_on_disk(path: Path) -> int:
    from refscale_model.bags import bag_files

    return sum(f.stat().st_size for f in bag_files(path))


def _load_model(weights: str, allow_untrained: bool) -> Any:
    from refscale_model import load_model

    return load_model(weights, allow_untrained=allow_untrained)


def run_encode_bag(args: argparse.Namespace) -> int:
    from refscale_model.backends.loader import BackendError, load_downscaler
    from refscale_model.bags import BagReader, BagWriteError, BagWriter, msgs
    from refscale_model.pipeline import FrameEncoder, FrameError

    try:
        backend = load_downscaler(
            args.weights,
            onnx_model=args.onnx,
            device=args.device,
            allow_untrained=args.allow_untrained,
            verify_weights=True,
        )
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    downscaler, info = backend.downscaler, backend.info
    cache = None
    if args.cache is not None:
        from refscale_model.refcache.store import ReferenceCache

        cache = ReferenceCache.open(args.cache, readonly=True)
    cameras = set(args.camera)
    camera_ids = dict(item.split("=", 1) for item in args.camera_id)
    drop = set(args.drop)
    writer = BagWriter(
        args.out,
        split_max_bytes=int(args.split_size * 1e6) if args.split_size else None,
        split_max_duration_s=args.split_duration,
    )
    encoder = FrameEncoder(writer, downscaler, info, cache=cache, camera_names=camera_ids, flush_interval_s=None)
    reader = BagReader(args.raw_bag)
    bar = _progress(_message_total(args.raw_bag), not args.no_progress, "encode-bag")
    errors: list[str] = []
    seen_cameras: Counter[str] = Counter()
    try:
        for raw in reader.raw_messages():
            bar.update(1)
            if raw.topic in cameras:
                seen_cameras[raw.topic] += 1
                try:
                    encoder.encode(raw.topic, reader.decode(raw), raw.log_time_ns)
                except FrameError as exc:
                    errors.append(str(exc))
                continue
            if raw.topic in drop:
                continue
            if raw.type_name in (msgs.NAV_SAT_FIX, msgs.ODOMETRY):
                encoder.update_pose(raw.type_name, reader.decode(raw), raw.log_time_ns)
            encoder.passthrough(
                raw.topic, raw.type_name, raw.data, raw.log_time_ns, msgdef=raw.schema.data.decode(), qos=raw.qos
            )
        encoder.close()
    except BagWriteError as exc:
        bar.close()
        print(
            f"error: {exc}; frames written before it are readable (`refscale bag recover {args.out}`)", file=sys.stderr
        )
        return 1
    finally:
        bar.close()
        if cache is not None:
            cache.close()
    s = encoder.stats
    for problem in reader.problems:
        print(f"warning: {problem}")
    for topic in sorted(cameras - set(seen_cameras)):
        print(f"warning: camera topic {topic} not found in {args.raw_bag}")
    for line in errors[:20]:
        print(f"frame error: {line}")
    bytes_in, bytes_out = _bytes_on_disk(args.raw_bag), _bytes_on_disk(args.out)
    print(f"frames: {s.frames}  (errors: {sum(s.errors.values())} {dict(s.errors) or ''})")
    print(f"frames without reference: {s.frames_without_reference}")
    print(f"passed through: {s.passthrough} messages")
    print(
        f"camera payload: {s.bytes_in:,} B in -> {s.bytes_out:,} B out (LR+S_map PNG), ratio {s.compression_ratio:.2f}"
    )
    print(f"bag on disk: {bytes_in:,} B in -> {bytes_out:,} B out, ratio {bytes_in / max(1, bytes_out):.2f}")
    print(f"mean encode time: {1e3 * s.encode_s / max(1, s.frames):.1f} ms/frame")
    print(f"wrote {args.out}")
    return 0 if s.frames and not s.errors else 1


class _RawFrames:
    """Look up raw camera frames by (topic, stamp) while streaming the raw bag once, in order."""

    def __init__(self, path: Path, topics: set[str]) -> None:
        from refscale_model.pipeline import iter_camera_frames

        self._it = iter_camera_frames(path, topics)
        self._buf: dict[tuple[str, int], Any] = {}

    def get(self, topic: str, stamp: int) -> Any:
        key = (topic, stamp)
        while key not in self._buf:
            try:
                t, s, _log, rgb = next(self._it)
            except StopIteration:
                return None
            self._buf[(t, s)] = rgb
        rgb = self._buf.pop(key)
        for k in [k for k in self._buf if k[0] == topic and k[1] < stamp]:
            del self._buf[k]
        return rgb


def _safe_name(topic: str) -> str:
    return topic.strip("/").replace("/", "__") or "root"


def run_reconstruct(args: argparse.Namespace) -> int:
    from refscale_model.bags import BagWriter, RawMessage, metadata_of, msgs
    from refscale_model.bags import refscale_format as fmt
    from refscale_model.io.images import encode_png
    from refscale_model.metrics import psnr, ssim
    from refscale_model.pipeline import FrameFailure, Reconstructor

    bag_meta = metadata_of(args.bag).get(fmt.METADATA_NAME, {})
    weights = args.weights or bag_meta.get("model_id")
    if not weights:
        print(f"error: {args.bag} names no model; pass --weights", file=sys.stderr)
        return 2
    from refscale_model.weights import WeightsError

    try:
        model = _load_model(weights, args.allow_untrained)
    except (FileNotFoundError, WeightsError) as exc:
        sha = bag_meta.get("weights_sha256") or "(untrained)"
        print(
            f"error: weights {weights!r} not found ({exc}); the bag was encoded with weights sha256 {sha}: "
            "pass --weights PATH",
            file=sys.stderr,
        )
        return 2
    cache = None
    if args.cache is not None:
        from refscale_model.refcache.store import ReferenceCache

        cache = ReferenceCache.open(args.cache, readonly=True)
    rec = Reconstructor(
        model, cache, device=args.device, batch_size=args.batch, z="zero" if args.seed is None else args.seed
    )
    problem = rec.check_bag(args.bag)
    if problem and not args.force:
        print(f"error: {problem} (use --force to try anyway)", file=sys.stderr)
        return 2

    writer = None
    if args.format == "bag":
        writer = BagWriter(args.out)
        writer.add_metadata(
            "refscale_reconstruction",
            {
                "source_bag": str(args.bag),
                "weights": str(weights),
                "z": "zero" if args.seed is None else f"seed {args.seed}",
            },
        )
    else:
        args.out.mkdir(parents=True, exist_ok=True)

    def other(raw: RawMessage) -> None:
        if writer is not None:
            writer.add_topic(raw.topic, raw.type_name, msgdef=raw.schema.data.decode(), qos=raw.qos)
            writer.write_cdr(raw.topic, raw.data, raw.log_time_ns, publish_time_ns=raw.publish_time_ns)

    raw_frames = None
    if args.verify_against is not None:
        raw_frames = _RawFrames(args.verify_against, _camera_topics(args.bag))
    done: Counter[str] = Counter()
    failed: dict[str, Counter[str]] = defaultdict(Counter)
    scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
    bar = _progress(None, not args.no_progress, "reconstruct")
    bar.unit = "frame"
    try:
        for item in rec.run(args.bag, other):
            bar.update(1)
            if isinstance(item, FrameFailure):
                failed[item.camera_topic][item.kind] += 1
                bar.write(f"frame failed [{item.kind}]: {item.message}", file=sys.stderr)
                continue
            done[item.camera_topic] += 1
            if writer is not None:
                header = msgs.header(item.stamp_ns, item.frame_id)
                if args.image_format == "png":
                    m = {"header": header, "format": "png", "data": encode_png(item.rgb)}
                    writer.write(item.camera_topic, m, item.log_time_ns, type_name=msgs.COMPRESSED_IMAGE)
                else:
                    writer.write(
                        item.camera_topic,
                        msgs.image_msg(item.rgb, item.stamp_ns, item.frame_id),
                        item.log_time_ns,
                        type_name=msgs.IMAGE,
                    )
            else:
                folder = args.out / _safe_name(item.camera_topic)
                folder.mkdir(exist_ok=True)
                (folder / f"{item.stamp_ns}.png").write_bytes(encode_png(item.rgb))
            if raw_frames is not None:
                original = raw_frames.get(item.camera_topic, item.stamp_ns)
                if original is None or original.shape != item.rgb.shape:
                    bar.write(f"verify: {item.camera_topic} @ {item.stamp_ns}: no matching raw frame")
                else:
                    p, s = psnr(item.rgb, original), ssim(item.rgb, original)
                    scores[item.camera_topic].append((p, s))
                    bar.write(f"verify: {item.camera_topic} @ {item.stamp_ns}: PSNR {p:.2f} dB  SSIM {s:.4f}")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if cache is not None:
            cache.close()
    for problem_line in rec.reader.problems if rec.reader else []:
        print(f"warning: {problem_line}")
    topics = sorted(set(done) | set(failed))
    for topic in topics:
        line = f"{topic}: {done[topic]} frames rebuilt"
        if failed[topic]:
            line += f", failed {sum(failed[topic].values())} {dict(failed[topic])}"
        if scores[topic]:
            ps = [p for p, _ in scores[topic]]
            ss = [s for _, s in scores[topic]]
            line += f", mean PSNR {sum(ps) / len(ps):.2f} dB, mean SSIM {sum(ss) / len(ss):.4f}"
        print(line)
    print(f"wrote {args.out}")
    return 0 if topics and not any(failed.values()) else 1


def _camera_topics(bag: Path) -> set[str]:
    from refscale_model.bags import refscale_format as fmt
    from refscale_model.bags import topics_of

    topics = topics_of(bag)
    return {parts[0] for t in topics if (parts := fmt.split_topic(t)) and parts[1] == "meta"}


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
    for p in s.problems:
        print(f"problem: {p}")
    return 0 if not s.problems else 1

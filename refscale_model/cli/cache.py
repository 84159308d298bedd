"""`refscale cache`: build, extend, inspect and verify a reference cache directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from refscale_model.refcache.distribution import CheckBagReport


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="reference cache: build, add images, info, verify, export, merge, check-bag")
    cmds = p.add_subparsers(dest="cache_command", required=True)

    b = cmds.add_parser("build", help="keyframes every N metres of a raw ROS 2 bag -> cache")
    b.add_argument("--bag", type=Path, required=True, help="raw bag: a .mcap file or a rosbag2 directory")
    b.add_argument("--camera", required=True, help="image topic (sensor_msgs/Image or CompressedImage)")
    pos = b.add_mutually_exclusive_group(required=True)
    pos.add_argument("--gps", help="sensor_msgs/NavSatFix topic")
    pos.add_argument("--odom", help="nav_msgs/Odometry topic (x/y stored as pseudo lat/lon)")
    b.add_argument("--every", type=float, default=None, metavar="METERS",
                   help="keyframe spacing (default 2; denser references pay, docs/reference-cache.md)")
    b.add_argument("--out", type=Path, required=True, help="cache directory (created if missing)")
    _common_ids(b)
    b.add_argument("--max-pose-gap", type=float, default=2.5, metavar="S", help="skip frames this far from a pose")
    b.set_defaults(func=run_build)

    a = cmds.add_parser("add-images", help="import an image folder with a pose CSV")
    a.add_argument("dir", type=Path, help="image folder (CSV `file` paths are relative to it)")
    a.add_argument("--poses", type=Path, required=True, help="CSV: file, lat, lon | x, y, [heading_deg, stamp_ns]")
    a.add_argument("--out", type=Path, required=True, help="cache directory (created if missing)")
    _common_ids(a)
    a.set_defaults(func=run_add_images)

    i = cmds.add_parser("info", help="entries, cameras, routes, extent of a cache")
    i.add_argument("dir", type=Path)
    i.set_defaults(func=run_info)

    v = cmds.add_parser("verify", help="rehash every image; report missing / corrupt entries (exit 1)")
    v.add_argument("dir", type=Path)
    v.add_argument("--no-decode", action="store_true", help="only rehash, do not decode the PNGs")
    v.add_argument("--remove-orphans", action="store_true", help="delete image files no entry names")
    v.set_defaults(func=run_verify)

    r = cmds.add_parser("prepare", help="store every entry's registration features beside its image (caches built "
                        "before `build` did it): the car then decodes only the reference it uses")
    r.add_argument("dir", type=Path)
    r.set_defaults(func=run_prepare)

    x = cmds.add_parser("export", help="cut a car-sized cache (ids kept) from a master cache")
    x.add_argument("master", type=Path, help="master cache directory")
    where = x.add_mutually_exclusive_group(required=True)
    where.add_argument("--bbox", help="MINLAT,MINLON,MAXLAT,MAXLON")
    where.add_argument("--route", type=Path, metavar="BAG", help="entries near the NavSatFix track of this bag")
    where.add_argument("--near-track", type=Path, metavar="CSV", help="entries near a CSV track (lat, lon columns)")
    x.add_argument("--radius", type=float, default=50.0, metavar="M", help="distance to the track (default 50 m)")
    x.add_argument("--out", type=Path, required=True, help="car cache directory (created)")
    x.set_defaults(func=run_export)

    m = cmds.add_parser("merge", help="fold a car cache into the master (dedupe by hash; never overwrite)")
    m.add_argument("src", type=Path, help="car cache directory")
    m.add_argument("--into", type=Path, required=True, metavar="MASTER", help="master cache directory")
    m.set_defaults(func=run_merge)

    c = cmds.add_parser("check-bag", help="every reference a RefScale bag needs, and whether the cache has it")
    c.add_argument("bag", type=Path)
    c.add_argument("--cache", type=Path, required=True)
    c.set_defaults(func=run_check_bag)


def _common_ids(p: argparse.ArgumentParser) -> None:
    p.add_argument("--route", default="default", help="route id stored with every entry")
    p.add_argument("--drive", default=None, help="drive id (default: bag / CSV name)")
    p.add_argument("--camera-id", default=None, help="camera id for lookups (default: the topic, or 'camera')")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_report(report: object) -> None:
    for key, value in vars(report).items():
        if key == "notes":
            for note in value[:20]:
                print(f"note: {note}")
        else:
            print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")


def run_build(args: argparse.Namespace) -> int:
    from refscale_model.refcache import ReferenceCache, build_from_bag
    from refscale_model.refcache.importers import DEFAULT_EVERY_M

    with ReferenceCache.open(args.out, create=True) as cache:
        report = build_from_bag(
            cache,
            args.bag,
            args.camera,
            gps_topic=args.gps,
            odom_topic=args.odom,
            every_m=DEFAULT_EVERY_M if args.every is None else args.every,
            route=args.route,
            drive=args.drive,
            camera=args.camera_id,
            max_pose_gap_s=args.max_pose_gap,
            progress=not args.no_progress,
        )
        _print_report(report)
        print(f"entries in cache: {len(cache)}")
    return 0 if report.poses else 1


def run_add_images(args: argparse.Namespace) -> int:
    from refscale_model.refcache import ReferenceCache, add_images

    with ReferenceCache.open(args.out, create=True) as cache:
        report = add_images(
            cache,
            args.dir,
            args.poses,
            camera=args.camera_id or "camera",
            route=args.route,
            drive=args.drive,
            progress=not args.no_progress,
        )
        _print_report(report)
        print(f"entries in cache: {len(cache)}")
    return 1 if report.bad_images or report.degenerate else 0


def run_info(args: argparse.Namespace) -> int:
    from refscale_model.refcache import ReferenceCache

    with ReferenceCache.open(args.dir, readonly=True) as cache:
        info = cache.info()
    print(f"cache:          {info.path}")
    print(f"schema:         {info.schema_version} (journal {info.journal_mode})")
    print(f"entries:        {info.entries} ({info.images} images, {info.image_bytes / 1e6:.1f} MB)")
    print(f"drives:         {info.drives}")
    print(f"cameras:        {_counts(info.cameras)}")
    print(f"routes:         {_counts(info.routes)}")
    if info.lat_range and info.lon_range:
        print(f"lat range:      {info.lat_range[0]:.7f} .. {info.lat_range[1]:.7f}")
        print(f"lon range:      {info.lon_range[0]:.7f} .. {info.lon_range[1]:.7f}")
    if info.stamp_range_ns:
        print(f"stamps (ns):    {info.stamp_range_ns[0]} .. {info.stamp_range_ns[1]}")
    print(f"odom origin:    {info.odom_origin[0]}, {info.odom_origin[1]}")
    return 0


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items()) or "-"


def run_verify(args: argparse.Namespace) -> int:
    from refscale_model.refcache import ReferenceCache

    with ReferenceCache.open(args.dir, readonly=not args.remove_orphans) as cache:
        report = cache.verify(decode=not args.no_decode, progress=sys.stderr.isatty())
        removed = cache.remove_orphans() if args.remove_orphans else []
    print(f"entries: {report.entries}, image files checked: {report.files_checked}")
    for rid, sha in report.missing:
        print(f"MISSING  id={rid} sha256={sha}")
    for rid, sha, actual in report.corrupt:
        print(f"CORRUPT  id={rid} sha256={sha} file hashes to {actual}")
    for rid, sha, why in report.bad_image:
        print(f"BAD      id={rid} sha256={sha}: {why}")
    for err in report.index_errors:
        print(f"INDEX    {err}")
    for path in report.orphans:
        print(f"{'REMOVED' if path in removed else 'ORPHAN '}  {path} (no entry names it)")
    print("OK" if report.ok else "FAILED")
    return 0 if report.ok else 1


def run_prepare(args: argparse.Namespace) -> int:
    from refscale_model.refcache import ReferenceCache
    from refscale_model.refcache.errors import ReferenceMismatchError, ReferenceMissingError
    from refscale_model.refcache.prepared import prepare_reference

    done = failed = 0
    with ReferenceCache.open(args.dir) as cache:
        for entry in cache.entries():
            try:
                prepare_reference(entry)
                done += 1
            except (ReferenceMissingError, ReferenceMismatchError) as exc:
                print(f"SKIPPED  {exc}")
                failed += 1
    print(f"entries with stored features: {done}, skipped: {failed}")
    return 0 if not failed else 1


def run_export(args: argparse.Namespace) -> int:
    from refscale_model.refcache import ReferenceCache
    from refscale_model.refcache import distribution as dist

    bbox = track = None
    if args.bbox:
        parts = [float(v) for v in args.bbox.split(",")]
        if len(parts) != 4:
            raise ValueError(f"--bbox {args.bbox!r}: need MINLAT,MINLON,MAXLAT,MAXLON")
        bbox = (parts[0], parts[1], parts[2], parts[3])
    elif args.route:
        track = dist.track_from_bag(args.route)
    else:
        track = dist.track_from_csv(args.near_track)
    with ReferenceCache.open(args.master, readonly=True) as master:
        refs = dist.select_entries(master, bbox=bbox, track=track, radius_m=args.radius)
        report = dist.export_cache(master, args.out, refs)
    for line in report.skipped_bad:
        print(f"SKIPPED  {line}")
    print(f"selected: {report.selected}, copied: {report.copied}, images in {args.out}: {report.images}")
    return 0 if not report.skipped_bad else 1


def run_merge(args: argparse.Namespace) -> int:
    from refscale_model.refcache import ReferenceCache
    from refscale_model.refcache import distribution as dist

    with ReferenceCache.open(args.src, readonly=True) as src, ReferenceCache.open(args.into) as master:
        report = dist.merge_cache(src, master)
    for old, new in report.renumbered:
        print(f"RENUMBERED  source id {old} -> master id {new} (frames naming it resolve by sha256)")
    for line in report.conflicts:
        print(f"CONFLICT  {line}")
    for line in report.bad_source:
        print(f"BAD       {line}")
    print(f"entries: {report.seen}, added: {report.added}, duplicates: {report.duplicates}, "
          f"conflicts: {len(report.conflicts)}, bad: {len(report.bad_source)}")
    return 0 if report.ok else 1


def print_check(r: CheckBagReport) -> None:
    """The lines `cache check-bag` and `fleet reconstruct` print for a `CheckBagReport`."""
    for need in r.needed:
        flag = "OK      " if need.status == "ok" else f"{need.status.upper():8s}"
        line = f"{flag} id={need.id} sha256={need.sha256} frames={need.frames}"
        print(line + (f": {need.detail}" if need.detail else ""))
    for p in r.problems:
        print(f"problem: {p}")
    print(f"{r.bag}: {r.frames} frames, {len(r.needed)} references, "
          f"{len(r.bad)} missing/mismatched, {r.frames_without_reference} frames without reference")


def run_check_bag(args: argparse.Namespace) -> int:
    from refscale_model.refcache import ReferenceCache
    from refscale_model.refcache.distribution import check_bag

    with ReferenceCache.open(args.cache, readonly=True) as cache:
        report = check_bag(args.bag, cache)
    print_check(report)
    return 0 if report.ok else 1

"""`refscale fleet reconstruct`: many RefScale bags rebuilt on a Ray cluster, resumable, exactly once."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="offboard fleet jobs on Ray (needs the [fleet] extra)")
    cmds = p.add_subparsers(dest="fleet_command", required=True)
    r = cmds.add_parser("reconstruct", help="rebuild many bags (paths or fsspec URIs) on Ray, resumable")
    r.add_argument("inputs", nargs="+", metavar="BAG_OR_DIR", help="RefScale bags, or folders of bags")
    r.add_argument("--cache", default=None, help="reference cache directory (path or URI)")
    r.add_argument("--out", required=True, help="output folder (path or URI): one bag / PNG folder per input")
    r.add_argument("--format", choices=("bag", "png"), default="bag")
    r.add_argument("--image-format", choices=("raw", "png"), default="raw", help="bag output: Image rgb8 or PNG")
    r.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    r.add_argument("--workers", type=int, default=None, help="actors (default: one per GPU, else per CPU)")
    r.add_argument("--weights", default=None, help="weights (default: the model id recorded in each bag)")
    r.add_argument("--device", default=None, help="torch device (default: cuda on GPU actors, else cpu)")
    r.add_argument("--batch", type=int, default=4, help="frames per inverse pass")
    r.add_argument("--seed", type=int, default=None, help="sample z with this seed (default z = 0)")
    r.add_argument("--manifest", default=None, help="manifest SQLite file (default: OUT/fleet-manifest.sqlite)")
    r.add_argument("--retry-failed", action="store_true", help="also redo bags recorded with frame failures")
    r.add_argument("--max-retries", type=int, default=3, help="restarts of a killed worker / retries of its bag")
    r.add_argument("--force", action="store_true", help="go on although a bag names other weights")
    r.add_argument("--allow-untrained", action="store_true")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=run_reconstruct)


def run_reconstruct(args: argparse.Namespace) -> int:
    try:
        import fsspec  # noqa: F401
        import ray  # noqa: F401
    except ImportError:
        from refscale_model.fleet.runner import INSTALL_HINT

        print(f"refscale fleet: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from refscale_model.fleet import fleet_reconstruct

    report = fleet_reconstruct(
        args.inputs, args.out, args.cache, output=args.format, image_format=args.image_format, weights=args.weights,
        workers=args.workers, address=args.address, device=args.device, batch_size=args.batch, seed=args.seed,
        manifest_path=args.manifest, allow_untrained=args.allow_untrained, force=args.force,
        retry_failed=args.retry_failed, max_retries=args.max_retries, progress=not args.no_progress,
    )
    failed_frames = sum(report.frame_failures.values())
    print(f"bags: {report.total} total, {len(report.done)} rebuilt, {len(report.skipped)} skipped (done before), "
          f"{len(report.failed)} failed")
    print(f"frames: {report.frames} rebuilt, {failed_frames} failed; {report.frames_per_s:.2f} frames/s "
          f"on {report.workers} {report.resource} worker(s) in {report.seconds:.1f} s")
    if report.reference_problems:
        print(f"bags with missing/mismatched references: {len(report.reference_problems)}")
    return 0 if report.ok else 1

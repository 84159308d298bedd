"""The fleet driver: many RefScale bags in, rebuilt bags or PNG folders out, spread over a Ray cluster.

Ray core actors, not Ray Data: the unit of work is a whole bag whose output (a bag written in
order, or a PNG folder) must appear exactly once, so each task is "rebuild this bag, rename the
result into place"; a pool of long-lived `BagWorker` actors keeps its model and cache loaded.
The driver alone writes the manifest (see `manifest`), after each output is in place.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from refscale_model.fleet import storage
from refscale_model.fleet.manifest import Manifest
from refscale_model.fleet.worker import BagWorker

MANIFEST_NAME = "fleet-manifest.sqlite"
INSTALL_HINT = "Ray is not installed: pip install 'refscale-model[fleet]' (or: pip install ray fsspec)"


class RayMissingError(RuntimeError):
    pass


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError(INSTALL_HINT) from exc
    return ray


@dataclass
class Job:
    input: str
    sha256: str
    name: str


@dataclass
class FleetReport:
    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    frame_failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    reference_problems: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    startup_s: float = 0.0
    """Of `seconds`: until every actor had loaded its cache (Ray start, worker processes, imports)."""
    workers: int = 0
    resource: str = "CPU"

    @property
    def ok(self) -> bool:
        return not self.failed and not any(self.frame_failures.values())

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_frames_per_s(self) -> float:
        """Frames/s once the workers were up (without Ray and actor start-up)."""
        busy = self.seconds - self.startup_s
        return self.frames / busy if busy > 0 else 0.0


class _Progress:
    """Frames done, counted by the workers (fire-and-forget calls) and read by the driver."""

    def __init__(self) -> None:
        self.frames = 0

    def add(self, n: int) -> None:
        self.frames += n

    def total(self) -> int:
        return self.frames


def plan_jobs(inputs: list[str], manifest: Manifest, *, retry_failed: bool = False) -> tuple[list[Job], list[str]]:
    """(jobs to run, inputs skipped as already done); output names are bag stems, made unique."""
    uris = storage.expand_inputs(inputs)
    stems: dict[str, int] = defaultdict(int)
    for u in uris:
        stems[storage.bag_stem(u)] += 1
    jobs, skipped = [], []
    for u in uris:
        sha = storage.sha256_of(u)
        if manifest.is_done(u, sha, clean_only=retry_failed):
            skipped.append(u)
            continue
        stem = storage.bag_stem(u)
        jobs.append(Job(u, sha, stem if stems[stem] == 1 else f"{stem}-{sha[:8]}"))
    return jobs, skipped


def check_references(jobs: list[Job], cache_uri: str | None) -> dict[str, list[str]]:
    """Per input, the references it needs that the cache lacks or holds with other content (local only)."""
    if cache_uri is None or not storage.is_local(cache_uri):
        return {}
    from refscale_model.refcache import ReferenceCache
    from refscale_model.refcache.distribution import check_bag

    problems: dict[str, list[str]] = {}
    with ReferenceCache.open(storage.local_path(cache_uri), readonly=True) as cache:
        for job in jobs:
            if not storage.is_local(job.input):
                continue
            report = check_bag(storage.local_path(job.input), cache)
            bad = [f"{n.status} id={n.id} sha256={n.sha256} ({n.frames} frames){': ' + n.detail if n.detail else ''}"
                   for n in report.bad]
            if bad:
                problems[job.input] = bad
    return problems


def fleet_reconstruct(
    inputs: list[str],
    out: str,
    cache: str | None,
    *,
    output: str = "bag",
    image_format: str = "raw",
    weights: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    device: str | None = None,
    batch_size: int = 4,
    seed: int | None = None,
    manifest_path: str | None = None,
    allow_untrained: bool = False,
    force: bool = False,
    retry_failed: bool = False,
    max_retries: int = 3,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FleetReport:
    """Rebuild every bag of `inputs` into `out` on Ray; finished inputs (per the manifest) are skipped.

    Uses the Ray session already initialised in this process, else connects to `address`, else
    starts a local one (`workers` CPUs). Actors ask for a GPU each when the cluster has GPUs.
    """
    ray = import_ray()
    if manifest_path is None:
        if not storage.is_local(out):
            raise ValueError(f"--out {out} is remote: pass --manifest PATH (a local SQLite file)")
        manifest_path = str(storage.local_path(out) / MANIFEST_NAME)
    report = FleetReport()
    t0 = time.perf_counter()
    with Manifest(manifest_path) as manifest:
        for p in storage.remove_stale_temps(out):
            log(f"removed unfinished output of an earlier run: {p}")
        jobs, report.skipped = plan_jobs(inputs, manifest, retry_failed=retry_failed)
        report.total = len(jobs) + len(report.skipped)
        for u in report.skipped:
            log(f"skip (already in manifest): {u}")
        report.reference_problems = check_references(jobs, cache)
        for u, lines in report.reference_problems.items():
            for line in lines:
                log(f"reference problem: {u}: {line}")
        if not jobs:
            report.seconds = time.perf_counter() - t0
            return report
        started = False
        t_ray = time.perf_counter()
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=workers, **kw)
            started = True
        ray_start = time.perf_counter() - t_ray
        try:
            _run(ray, jobs, out, cache, manifest, report, output=output, image_format=image_format, weights=weights,
                 workers=workers, device=device, batch_size=batch_size, seed=seed, allow_untrained=allow_untrained,
                 force=force, max_retries=max_retries, progress=progress, log=log)
        finally:
            if started:
                ray.shutdown()
        report.startup_s += ray_start
        storage.remove_stale_temps(out)  # left by attempts killed and retried during this run
    report.seconds = time.perf_counter() - t0
    return report


def _run(ray: Any, jobs: list[Job], out: str, cache: str | None, manifest: Manifest, report: FleetReport, *,
         output: str, image_format: str, weights: str | None, workers: int | None, device: str | None,
         batch_size: int, seed: int | None, allow_untrained: bool, force: bool, max_retries: int, progress: bool,
         log: Callable[[str], None]) -> None:
    from tqdm import tqdm

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    report.resource = "GPU" if gpus else "CPU"
    n = max(1, min(len(jobs), workers or (gpus or int(resources.get("CPU", 1)))))
    report.workers = n
    opts: dict[str, Any] = {"max_restarts": max_retries, "max_task_retries": max_retries}
    opts.update({"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1})
    counter = ray.remote(num_cpus=0)(_Progress).remote()
    actor_cls = ray.remote(**opts)(BagWorker)

    def new_actor() -> Any:
        return actor_cls.remote(cache, weights=weights, device=device or ("cuda" if gpus else "cpu"),
                                batch_size=batch_size, z="zero" if seed is None else seed,
                                allow_untrained=allow_untrained, force=force, progress=counter)

    t_start = time.perf_counter()
    idle = [new_actor() for _ in range(n)]
    ray.get([a.pid.remote() for a in idle])
    report.startup_s = time.perf_counter() - t_start
    todo = list(reversed(jobs))
    running: dict[Any, tuple[Any, Job]] = {}
    bar = tqdm(total=report.total, initial=len(report.skipped), disable=not progress, desc="fleet", unit="bag",
               file=sys.stderr, dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        while todo or running:
            while todo and idle:
                job, actor = todo.pop(), idle.pop()
                spec = {"input": job.input, "sha256": job.sha256, "name": job.name, "out": out, "format": output,
                        "image_format": image_format}
                running[actor.run.remote(spec)] = (actor, job)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            frames_seen = ray.get(counter.total.remote())
            bar.set_postfix_str(f"{frames_seen / max(1e-9, time.perf_counter() - t0):.1f} frames/s")
            for ref in ready:
                actor, job = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    _failed(manifest, report, job, f"worker lost past {max_retries} retries: {exc}", log)
                    idle.append(new_actor())
                    continue
                except ray.exceptions.RayTaskError as exc:
                    _failed(manifest, report, job, f"{type(exc.cause).__name__}: {exc.cause}", log)
                    idle.append(actor)
                    continue
                idle.append(actor)
                if "error" in result:
                    _failed(manifest, report, job, result["error"], log)
                    continue
                manifest.record_done(job.input, job.sha256, result["output"], result["frames"], result["failures"],
                                     result["seconds"])
                report.done.append(job.input)
                report.frames += result["frames"]
                report.frame_failures[job.input] = len(result["failures"])
                for line in result["read_problems"]:
                    log(f"warning: {job.input}: {line}")
                if result["failures"]:
                    log(f"{job.input}: {len(result['failures'])} frames failed (listed in {manifest.path})")
                bar.update(1)
    finally:
        bar.close()
        for actor, _job in running.values():
            ray.kill(actor)


def _failed(manifest: Manifest, report: FleetReport, job: Job, error: str, log: Callable[[str], None]) -> None:
    manifest.record_attempt(job.input, job.sha256, error)
    report.failed[job.input] = error
    log(f"FAILED {job.input}: {error}")

"""What runs on a Ray worker: a `BagWorker` holds loaded models and the cache and rebuilds whole bags.

Plain Python (no Ray import here): `runner` wraps it with `ray.remote`, and it runs in-process too.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from refscale_model.fleet import storage


class BagWorker:
    """Rebuilds bags one at a time; the model of each weights id is loaded once per worker."""

    def __init__(
        self,
        cache_uri: str | None,
        *,
        weights: str | None = None,
        device: str = "cpu",
        batch_size: int = 4,
        z: str | int = "zero",
        allow_untrained: bool = False,
        force: bool = False,
        progress: Any = None,
    ) -> None:
        from refscale_model.refcache import ReferenceCache

        self._tmp = Path(tempfile.mkdtemp(prefix="refscale-fleet-"))
        self.cache = None
        if cache_uri is not None:
            # the Reconstructor finds a reference by hash when a `cache merge` renumbered it
            self.cache = ReferenceCache.open(storage.stage_folder(cache_uri, self._tmp), readonly=True)
        self.weights, self.device, self.batch_size, self.z = weights, device, batch_size, z
        self.allow_untrained, self.force = allow_untrained, force
        self.progress = progress
        self._models: dict[str, Any] = {}

    def pid(self) -> int:
        import os

        return os.getpid()

    def _model(self, weights: str) -> Any:
        if weights not in self._models:
            from refscale_model import load_model

            self._models[weights] = load_model(weights, allow_untrained=self.allow_untrained)
        return self._models[weights]

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Rebuild `job["input"]` into `job["out"]/job["name"]`; returns counts, frame failures, output URI.

        A bag-level problem (no model, other weights) comes back as `error`; an exception (or this
        process dying) leaves only a temporary output, never a finished-looking one.
        """
        from refscale_model.bags import metadata_of
        from refscale_model.bags import refscale_format as fmt
        from refscale_model.pipeline.decoder import FrameFailure, Reconstructor
        from refscale_model.pipeline.jobs import reconstruct_bag

        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix="job-", dir=self._tmp))
        written: Path | None = None
        try:
            bag = storage.stage_input(job["input"], tmp)
            weights = self.weights or metadata_of(bag).get(fmt.METADATA_NAME, {}).get("model_id")
            if not weights:
                return {"error": f"{job['input']} names no model; pass --weights"}
            rec = Reconstructor(self._model(weights), self.cache, device=self.device, batch_size=self.batch_size,
                                z=self.z)
            problem = rec.check_bag(bag)
            if problem and not self.force:
                return {"error": f"{problem} (use --force to try anyway)"}
            failures: list[tuple[str, int, str, str]] = []
            pending = [0]

            def on_frame(item: Any, _note: str) -> None:
                if isinstance(item, FrameFailure):
                    failures.append((item.camera_topic, item.stamp_ns, item.kind, item.message))
                pending[0] += 1
                if self.progress is not None and pending[0] >= 4:
                    self.progress.add.remote(pending[0])
                    pending[0] = 0

            written = storage.temp_output(job["out"], job["name"], tmp)
            provenance = {"source_bag": job["input"], "source_sha256": job["sha256"], "weights": str(weights),
                          "z": "zero" if self.z == "zero" else f"seed {self.z}"}
            report = reconstruct_bag(bag, written, rec, output=job["format"], image_format=job["image_format"],
                                     provenance=provenance, on_frame=on_frame)
            if self.progress is not None and pending[0]:
                self.progress.add.remote(pending[0])
            output = storage.publish(written, job["out"], job["name"])
            written = None
            return {
                "output": output,
                "frames": sum(report.rebuilt.values()),
                "failures": failures,
                "read_problems": list(report.read_problems),
                "seconds": time.perf_counter() - t0,
            }
        finally:
            if written is not None:
                shutil.rmtree(written, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)

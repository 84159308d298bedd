"""`EncoderPipeline`: `FrameEncoder`'s stages overlapped on threads, results in submission order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from refscale_model.bags import msgs
from refscale_model.pipeline.encoder import FrameEncoder
from refscale_model.pipeline.encoding import EncodeJob, FrameError, FrameResult
from refscale_model.pipeline.pose import Pose

Done = Callable[[FrameResult | BaseException, np.ndarray | None], None]
"""Called once per submitted frame, in submission order: (result or the exception, the LR or None)."""


class EncoderPipeline:
    """`FrameEncoder.encode` with its stages overlapped: while the network runs on frame t (the
    reference's features, computed or reused, then the per-frame graphs), frame t+1 is decoded,
    looked up and registered and frame t-1 is coded and written. One thread per stage, so results
    stay in submission order; OpenCV and onnxruntime release the GIL, so the stages really run
    side by side.

    Bounded: `submit` blocks while `depth` frames wait for the first stage (the caller's own queue
    then drops frames, as without the pipeline). Frame errors are counted in `encoder.stats` as
    `encode` counts them and handed to `done`. Use either this or `encoder.encode`, not both at once.
    """

    def __init__(self, encoder: FrameEncoder, depth: int = 1) -> None:
        import queue

        self.encoder = encoder
        self._queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=max(1, depth)), queue.Queue(1), queue.Queue(1)]
        self._pending = 0
        self._idle = threading.Condition()
        stages = ((self._queues[0], self._queues[1], encoder._prepare, "prepare"),
                  (self._queues[1], self._queues[2], encoder._infer, "network"))
        self._threads = [threading.Thread(target=self._stage, args=s, name=f"refscale-{s[3]}", daemon=True)
                         for s in stages]
        self._threads.append(threading.Thread(target=self._writer, name="refscale-write", daemon=True))
        for t in self._threads:
            t.start()

    def submit(
        self, topic: str, msg: Any, log_time_ns: int | None = None, pose: Pose | None = None, done: Done | None = None
    ) -> None:
        """Queue one camera message (blocks while the pipeline is full)."""
        enc = self.encoder
        log_time = time.time_ns() if log_time_ns is None else int(log_time_ns)
        with enc._lock:
            if enc._closed:
                raise RuntimeError("FrameEncoder is closed")
            if pose is None:  # the pose at submission time, as `encode` would look it up
                pose = enc.poses.pose(msgs.stamp_or(msg, log_time))
        with self._idle:
            self._pending += 1
        self._queues[0].put((EncodeJob(topic, msg, log_time, pose), None, done))

    def pending(self) -> int:
        """Frames submitted and not finished yet."""
        with self._idle:
            return self._pending

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted frame is finished (False on timeout)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Finish what was submitted and stop the stage threads (the encoder stays open)."""
        self.flush(timeout)
        self._queues[0].put(None)
        for t in self._threads:
            t.join(timeout=5.0)

    @staticmethod
    def _stage(inbox: Any, outbox: Any, work: Callable[[EncodeJob], EncodeJob], name: str) -> None:
        while True:
            item = inbox.get()
            if item is None:
                outbox.put(None)
                return
            job, error, done = item
            if error is None:
                try:
                    job = work(job)
                except BaseException as exc:  # noqa: BLE001 - delivered to the caller, in order
                    error = exc
            outbox.put((job, error, done))

    def _writer(self) -> None:
        enc = self.encoder
        while True:
            item = self._queues[2].get()
            if item is None:
                return
            job, error, done = item
            result: FrameResult | BaseException
            with enc._lock:
                try:
                    if error is not None:
                        raise error
                    result = enc._finish(job)
                except FrameError as exc:
                    enc.stats.errors[exc.kind] += 1
                    result = exc
                except OSError as exc:
                    enc.stats.errors["write"] += 1
                    result = exc
                except BaseException as exc:  # noqa: BLE001
                    result = exc
            if done is not None:
                try:
                    done(result, job.lr if not isinstance(result, BaseException) else None)
                except Exception:  # noqa: BLE001 - a callback bug must not stop the pipeline
                    import logging

                    logging.getLogger(__name__).exception("EncoderPipeline: done callback failed")
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

"""
The recorder's state machine (no rclpy import): idle -> recording -> draining -> idle.

Callbacks only queue (`on_frame`, `on_other`); one worker thread encodes in arrival order into
the open bag, one frame after another, or, with the parameter `pipeline_stages` true, through an
`EncoderPipeline` (decode + reference + registration of frame t+1, the network on frame t and the
coding + write of frame t-1 side by side on their own threads; results in order through `_done`).
Serial is the default: on the project's shared 2-core machine the overlap measured 8-20 % slower
than serial (benchmarks/bench_onboard.py --variants serial new). In serial mode, frames of
several cameras queued together go through one `FrameEncoder.encode_frames`; with
`batch_cameras` auto (default) the network runs them as one batch on a GPU provider (one run
for all of them, same bag) and one by one on the CPU, where batches measured no faster.
`stop()` unsubscribes, drains
the queue for at most `shutdown_drain_s`, finishes the frames in the pipeline, counts what is
left as dropped and finalises the bag (metadata.yaml). The node supplies the ROS side as
callables: `subscribe`, `unsubscribe`, `now_ns` and, for the LR preview, `on_lr`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
import threading
import time
from typing import Any

import numpy as np
from refscale_model.bags import msgs
from refscale_ros.frame_queue import FrameQueue
from refscale_ros.open_bag import open_bag, OpenBag
from refscale_ros.recorder_config import batch_network
from refscale_ros.recorder_stats import RecorderStats, RecordingState


class Recording:
    """Start / stop recordings and run the encoder worker (see the module docstring)."""

    def __init__(self, *, encoder_args: dict[str, Any], params: dict[str, Any], queue: FrameQueue,
                 stats: RecorderStats, logger: Any, now_ns: Callable[[], int],
                 subscribe: Callable[[], None], unsubscribe: Callable[[], None],
                 on_lr: Callable[[str, Any, np.ndarray], None] | None = None) -> None:
        self.encoder_args = dict(encoder_args)
        self.params, self.queue, self.stats, self.log = params, queue, stats, logger
        self.now_ns, self._subscribe, self._unsubscribe, self._on_lr = (
            now_ns, subscribe, unsubscribe, on_lr)
        self.bags: list[Path] = []
        self.write_error = ''
        self.accepting = False
        self.bag: OpenBag | None = None
        self.closed = False
        self._rec_lock = threading.Lock()       # held by the worker while it writes
        self._state_lock = threading.RLock()    # start / stop / close
        self._quit = threading.Event()
        self._together = batch_network(params) is not False  # a bad `batch_cameras` fails here
        """Take the frames of several cameras queued together at once (`batch_cameras` not off)."""
        self._worker = threading.Thread(target=self._work, name='refscale-encoder', daemon=True)
        self._worker.start()

    def state(self) -> RecordingState:
        """What the diagnostics report about the recording now."""
        bag = self.bag
        if bag is None:
            return RecordingState(False, failed=self.write_error)
        return RecordingState(True, str(bag.path), int(bag.writer.bytes_written), bag.failed)

    # -- control ----------------------------------------------------------------------------
    def start(self) -> Path:
        """Open a new bag and subscribe; returns the bag directory (idempotent while recording)."""
        with self._state_lock:
            if self.closed:
                raise RuntimeError('recorder is closed')
            if self.bag is not None:
                return self.bag.path
            self.bag = open_bag(self.params, self.encoder_args)
            path = self.bag.path
            self.queue.clear()
            self.accepting = True
            self._subscribe()
            self.log.info(f'recording to {path}')
            return path

    def stop(self) -> Path | None:
        """Unsubscribe, drain the queue (at most `shutdown_drain_s`), count the rest, finalise."""
        with self._state_lock:
            bag = self.bag
            if bag is None:
                return None
            self.accepting = False
            self._unsubscribe()
            deadline = time.monotonic() + max(0.0, float(self.params['shutdown_drain_s']))
            while self.queue.depth() and time.monotonic() < deadline and self._worker.is_alive():
                time.sleep(0.01)
            with self._rec_lock:
                if bag.pipeline is not None:  # frames in the pipeline are finished, not dropped
                    bag.pipeline.close(timeout=max(1.0, deadline - time.monotonic()))
                left = self.queue.clear()
                for topic, n in left.items():
                    if topic in self.stats.counters:
                        self.stats.counters[topic].dropped_at_stop += n
                self.bag = None
            self._finalise(bag, left)
            return bag.path

    def close(self) -> None:
        """Stop recording, then the worker (idempotent)."""
        with self._state_lock:
            if self.closed:
                return
            self.stop()
            self.closed = True
            self._quit.set()
        self._worker.join(timeout=5.0)

    def abort(self) -> None:
        """Stop the worker of a node that failed to start."""
        self.closed = True
        self._quit.set()

    def _finalise(self, bag: OpenBag, left: Counter[str]) -> None:
        from refscale_model.bags import BagWriteError

        s = bag.encoder.stats
        self.stats.add_finished(s)
        dropped = sum(c.dropped for c in self.stats.counters.values()) + sum(
            v for k, v in left.items() if k != 'other')
        try:
            bag.writer.set_custom_data('refscale.recorder.dropped_frames', str(dropped))
            errors = str(sum(s.errors.values()))
            bag.writer.set_custom_data('refscale.recorder.frame_errors', errors)
            bag.encoder.close()
        except BagWriteError as exc:
            bag.failed = bag.failed or str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken writer must not hide the report
            bag.failed = bag.failed or f'closing the bag failed: {exc}'
        self.stats.totals['bytes_on_disk'] += sum(f.stat().st_size for f in bag.writer.files
                                                  if f.exists())
        self.bags.append(bag.path)
        if bag.failed:
            self.write_error = bag.failed
            self.log.error(f'{bag.path}: {bag.failed}')
        self.log.info(f'finished {bag.path}: {s.frames} frames, {sum(left.values())} queued '
                      'entries not encoded at stop')

    # -- callbacks (never block) ------------------------------------------------------------
    def on_frame(self, topic: str, msg: Any) -> None:
        """Queue a camera frame (the oldest is dropped, and counted, when the queue is full)."""
        if not self.accepting:
            return
        c = self.stats.counters[topic]
        c.received += 1
        c.missed_upstream += self.stats.gaps[topic].add(msgs.stamp_or(msg, 0))
        if not self.queue.put_frame(topic, (self.now_ns(), msg)):
            c.dropped += 1

    def on_other(self, topic: str, type_name: str, msg: Any) -> None:
        """Queue a GPS / odometry / passthrough message."""
        if self.accepting:
            self.queue.put_other((topic, type_name, self.now_ns(), msg))

    # -- the worker -------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._quit.is_set():
            bag = self.bag
            together = self._together and (bag is None or bag.pipeline is None)
            got = self.queue.get_batch(0.1, len(self.stats.counters) if together else 1)
            with self._rec_lock:
                bag = self.bag
                if not got:  # idle: close the open chunk, so a kill now loses nothing
                    self._flush_idle(bag)
                    continue
                if bag is None or bag.failed:
                    for key, _ in got:
                        if key != 'other':  # every frame ends in one counter
                            self.stats.counters[key].errors['not_recording'] += 1
                    continue
                try:
                    if len(got) > 1:
                        self._process_together(bag, got)
                    else:
                        self._process(bag, *got[0])
                except Exception as exc:  # noqa: BLE001 - a bug must not kill the recording
                    for key, _ in got:
                        if key != 'other':
                            self.stats.counters[key].errors['internal'] += 1
                    self.stats.last_error = f'internal: {exc!r}'
                    self.log.error(f'worker: {exc!r}')

    def _process_together(self, bag: OpenBag, frames: list[tuple[str, Any]]) -> None:
        """Frames of several cameras queued together: one `encode_frames` (the network batched)."""
        items = [(key, msg, t_ns, bag.encoder.poses.pose(t_ns)) for key, (t_ns, msg) in frames]
        results = bag.encoder.encode_frames(items)
        for (key, (t_ns, msg)), res in zip(frames, results, strict=True):
            if isinstance(res, BaseException):
                self._done(bag, key, t_ns, msg, res, None)
            else:
                self._done(bag, key, t_ns, msg, *res)

    def _flush_idle(self, bag: OpenBag | None) -> None:
        from refscale_model.bags import BagWriteError

        if bag is None or bag.failed:
            return
        try:
            bag.encoder.flush_if_due()
        except BagWriteError as exc:
            bag.failed = self.write_error = str(exc)
            self.accepting = False
            self.log.error(f'recording stopped: cannot write {bag.path}: {exc}')

    def _process(self, bag: OpenBag, key: str, item: Any) -> None:
        from refscale_model.bags import BagWriteError
        from refscale_model.pipeline import FrameError

        try:
            if key == 'other':
                topic, type_name, t_ns, msg = item
                bag.encoder.passthrough(topic, type_name, msg, t_ns)
                return
            t_ns, msg = item
            pose = bag.encoder.poses.pose(t_ns)
            if bag.pipeline is not None:
                bag.pipeline.submit(key, msg, t_ns, pose,
                                    lambda res, lr: self._done(bag, key, t_ns, msg, res, lr))
                return
            res, lr = bag.encoder.encode_frame(key, msg, t_ns, pose=pose)
        except (FrameError, BagWriteError) as exc:
            self._done(bag, key, item[0], item[1], exc, None)
            return
        self._done(bag, key, t_ns, msg, res, lr)

    def _done(self, bag: OpenBag, key: str, t_ns: int, msg: Any, res: Any,
              lr: np.ndarray | None) -> None:
        """One frame finished (in arrival order): counters, latency, the LR preview."""
        from refscale_model.bags import BagWriteError
        from refscale_model.pipeline import FrameError

        if isinstance(res, FrameError):
            self.stats.counters[key].errors[res.kind] += 1
            self.stats.last_error = str(res)
            self.log.warning(f'frame skipped [{res.kind}]: {res}', throttle_duration_sec=5.0)
            return
        if isinstance(res, BagWriteError):
            self.stats.counters[key].errors['write'] += 1
            bag.failed = str(res)
            self.write_error = str(res)
            self.accepting = False
            self.log.error(f'recording stopped: cannot write {bag.path}: {res}')
            return
        if isinstance(res, BaseException):
            self.stats.counters[key].errors['internal'] += 1
            self.stats.last_error = f'internal: {res!r}'
            self.log.error(f'worker: {res!r}')
            return
        c = self.stats.counters[key]
        c.encoded += 1
        c.without_reference += not res.has_reference
        c.lr_bytes += res.lr_bytes + res.smap_bytes
        c.lr_quality, c.kbps, c.lr_psnr = res.lr_quality, res.kbps, res.lr_psnr
        c.lr_predicted += res.lr_predicted
        latency = (self.now_ns() - t_ns) / 1e6
        c.latency_ms.append(latency)
        c.latency_sum_ms += latency
        if lr is not None and self._on_lr is not None:
            self._on_lr(key, msg, lr)

"""The recording state machine with a stand-in downscaler: start, drain, finalise, restart."""

import logging
import time

import numpy as np
from refscale_model.backends.base import ModelInfo
from refscale_model.bags import msgs, read_messages
from refscale_ros.frame_queue import FrameQueue
from refscale_ros.recorder_stats import RecorderStats
from refscale_ros.recording import Recording

CAM = '/cam/image_raw'
PARAMS = {'output_dir': '', 'bag_prefix': 'rec', 'bag_name': 'rec', 'split_size_mb': 0.0,
          'split_duration_s': 0.0, 'flush_interval_s': 0.0, 'shutdown_drain_s': 5.0}


class HalfSize:
    """Downscaler stand-in: every other pixel, no S_map."""

    def downscale(self, hr, ref):
        return np.ascontiguousarray(hr[::2, ::2]), None


def _recording(tmp_path, calls):
    queue = FrameQueue([CAM], max_frames=8)
    stats = RecorderStats([CAM], queue, 'fake')
    info = ModelInfo('fake', '', 2, 4, False)
    clock = iter(range(1, 10**6))
    rec = Recording(
        encoder_args={'downscaler': HalfSize(), 'info': info, 'provider': 'fake', 'cache': None,
                      'camera_names': {CAM: 'front'}},
        params={**PARAMS, 'output_dir': str(tmp_path)}, queue=queue, stats=stats,
        logger=logging.getLogger('test'), now_ns=lambda: next(clock) * 1_000_000,
        subscribe=lambda: calls.append('sub'), unsubscribe=lambda: calls.append('unsub'))
    return rec, stats


def test_start_record_stop_and_start_again(tmp_path):
    calls = []
    rec, stats = _recording(tmp_path, calls)
    try:
        rec.on_frame(CAM, 'ignored: not recording yet')
        first = rec.start()
        assert rec.start() == first and calls == ['sub'] and rec.state().recording
        rgb = np.zeros((32, 48, 3), np.uint8)
        for i in range(3):
            rec.on_frame(CAM, msgs.image_msg(rgb, 1_000 + i, 'cam'))
        deadline = time.monotonic() + 30
        while stats.counters[CAM].encoded < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rec.stop() == first and rec.stop() is None and calls == ['sub', 'unsub']
        assert (first / 'metadata.yaml').is_file()
        assert sum(1 for t, _, _ in read_messages(first) if t.endswith('/meta')) == 3
        second = rec.start()
        assert second.name == 'rec_2' and not rec.state().failed
    finally:
        rec.close()
    assert rec.bags == [first, second] and stats.report(rec.bags, 'x', '').frames == 3
    assert stats.counters[CAM].received == 3

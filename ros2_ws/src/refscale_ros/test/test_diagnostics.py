"""The diagnostic_updater stand-in and the recorder's counters / report (no ROS graph)."""

from pathlib import Path

from refscale_ros.diagnostics import ERROR, OK, Status, WARN
from refscale_ros.frame_queue import FrameQueue
from refscale_ros.recorder_stats import RecorderStats, RecordingState


def test_status_builder_like_diagnostic_status_wrapper():
    s = Status('node')
    s.summary('WARN', 'slow')
    s.add('fps', 2.0)
    s.add('frames', 3)
    assert (s.level, s.message, s.values) == (WARN, 'slow', {'fps': '2.000', 'frames': '3'})
    msg = s.to_msg()
    assert msg.name == 'node' and msg.level == bytes([WARN])
    assert [(kv.key, kv.value) for kv in msg.values] == [('fps', '2.000'), ('frames', '3')]


def _status(task):
    s = Status('x')
    task(s)
    return s


def test_drops_make_the_camera_and_the_node_warn():
    q = FrameQueue(['/c'], max_frames=1)
    stats = RecorderStats(['/c'], q, 'torch:cpu')
    state = RecordingState(True, 'bag', 10)
    node = _status(stats.node_task(lambda: state))
    cam = _status(stats.camera_task('/c'))
    assert (node.level, node.message, cam.level) == (OK, 'recording', OK)
    stats.counters['/c'].received += 2
    stats.counters['/c'].dropped += 1
    node = _status(stats.node_task(lambda: state))
    cam = _status(stats.camera_task('/c'))
    assert node.level == WARN and 'drops' in node.message and node.values['dropped'] == '1'
    assert cam.level == WARN and cam.message.startswith('encoder behind')
    failed = _status(stats.node_task(lambda: RecordingState(False, failed='disk full')))
    assert failed.level == ERROR and failed.values['state'] == 'error'


def test_report_counts_every_camera():
    stats = RecorderStats(['/c'], FrameQueue(['/c'], 2), 'onnx:CPU')
    c = stats.counters['/c']
    c.received, c.encoded, c.dropped, c.dropped_at_stop = 5, 3, 1, 1
    c.errors['unsupported_encoding'] += 1
    report = stats.report([Path('bag')], 'signal', '')
    assert report.ok and report.dropped == 2 and report.received == 5
    assert report.errors == {'unsupported_encoding': 1}
    assert 'stopped by: signal' in report.summary()
    assert not stats.report([], 'signal', 'disk full').ok

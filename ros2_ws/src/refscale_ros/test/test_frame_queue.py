"""FrameQueue: bounded per camera, drops (and counts) the oldest, serves in arrival order."""

from refscale_ros.frame_queue import FrameQueue


def test_full_queue_drops_the_oldest_and_counts_it():
    q = FrameQueue(['/a', '/b'], max_frames=2)
    assert [q.put_frame('/a', i) for i in range(4)] == [True, True, False, False]
    q.put_other('gps')
    q.put_frame('/b', 'b0')
    assert q.dropped == {'/a': 2} and q.depth('/a') == 2 and q.depth() == 4
    assert [q.get(0.1) for _ in range(4)] == [('/a', 2), ('/a', 3), ('other', 'gps'), ('/b', 'b0')]
    assert q.get(0.01) is None


def test_clear_reports_what_was_left():
    q = FrameQueue(['/a'], max_frames=3, max_other=1)
    q.put_frame('/a', 1)
    q.put_other('x')
    assert not q.put_other('y') and q.dropped['other'] == 1
    assert q.clear() == {'/a': 1, 'other': 1} and q.depth() == 0


def test_get_batch_takes_one_frame_per_camera_until_another_message():
    q = FrameQueue(['/a', '/b', '/c'], max_frames=4)
    q.put_frame('/a', 'a0')
    q.put_frame('/b', 'b0')
    q.put_frame('/a', 'a1')  # the same camera again: the next batch
    q.put_frame('/c', 'c0')
    q.put_other('gps')
    q.put_frame('/b', 'b1')
    assert q.get_batch(0.1, 3) == [('/a', 'a0'), ('/b', 'b0')]
    assert q.get_batch(0.1, 3) == [('/a', 'a1'), ('/c', 'c0')]
    assert q.get_batch(0.1, 3) == [('other', 'gps')]  # a GPS fix may place the frames after it
    assert q.get_batch(0.1, 1) == [('/b', 'b1')]
    assert q.get_batch(0.01, 3) == []

"""StampGapDetector on steady, jittered and gapped stamp sequences."""

from refscale_ros.stamp_gaps import StampGapDetector

MS = 1_000_000


def test_steady_rate_with_jitter_has_no_gaps():
    d = StampGapDetector()
    for i in range(50):
        assert d.add(i * 100 * MS + (7 * MS if i % 3 == 0 else 0)) == 0
    assert d.missing == 0 and d.gaps == 0 and abs(d.period_ns - 100 * MS) <= 7 * MS


def test_gaps_count_the_missing_frames():
    d = StampGapDetector()
    stamps = [i * 100 * MS for i in range(10)] + [1300 * MS, 1400 * MS, 2000 * MS, 2100 * MS]
    found = [d.add(s) for s in stamps]
    assert found[10] == 3 and found[12] == 5  # 10..12 and 15..19 missing
    assert d.missing == 8 and d.gaps == 2 and d.period_ns == 100 * MS


def test_repeats_and_clock_jumps_back_are_not_gaps():
    d = StampGapDetector()
    for s in [0, 100, 200, 300, 300, 100, 200, 300, 400]:
        assert d.add(s * MS) == 0

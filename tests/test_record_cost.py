"""The frame record costs what the scoreboard charges for it.

`refscale rd` counts a fixed number of metadata bytes per frame (`rd_settings.META_BYTES`). These
tests encode real frames through the real `FrameEncoder` into a real bag, with ten frames to a chunk
as the recorder writes them at 10 frames/s with its 1 s chunks, and measure what the frame records
add to the compressed chunks: it must stay within the allowance, or the scoreboard flatters us.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_pipeline import CAM, encode_pan, webcam_pan

from refscale_model import load_model
from refscale_model.backends.base import ModelInfo
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.bags import read_messages
from refscale_model.bags import refscale_format as fmt
from refscale_model.bags.accounting import topic_disk_bytes
from refscale_model.evaluation.rd_settings import META_BYTES
from refscale_model.registration import quantise_matrix

FRAMES = 10


@pytest.fixture(scope="module")
def pan(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("record_cost")
    return root, webcam_pan(root, FRAMES)


def _encode(root: Path, frames: list[np.ndarray], name: str, with_cache: bool) -> Path:
    model = load_model("x2-lossy")
    cache = root / "cache" if with_cache else root / "empty_cache"
    if not with_cache and not cache.exists():
        from refscale_model.refcache import ReferenceCache

        ReferenceCache.open(cache, create=True).close()
    return encode_pan(root / name, cache, frames, TorchDownscaler(model), ModelInfo.of(model, "x2-lossy"),
                      lr_codec="h265", lr_quality=30, flush_interval_s=None)


def _records(bag: Path) -> list[fmt.FrameMeta]:
    return [fmt.meta_from_msg(m) for _, _, m in read_messages(bag, [fmt.meta_topic(CAM)])]


def test_referenced_frame_records_cost_at_most_the_scoreboard_allowance(pan) -> None:
    root, frames = pan
    bag = _encode(root, frames, "referenced", with_cache=True)
    records = _records(bag)
    assert len(records) == FRAMES and all(r.has_smap for r in records)
    cost = topic_disk_bytes(bag)
    per_frame = cost[fmt.meta_topic(CAM)] / FRAMES
    print(f"referenced frame record: {per_frame:.0f} B on disk")
    assert 0 < per_frame <= META_BYTES["refscale"], per_frame
    # the shares are what compression left of each topic: within the payload plus record framing
    lr_payload = sum(len(m.data) for _, _, m in read_messages(bag, [fmt.lr_topic(CAM)]))
    assert 0 < cost[fmt.lr_topic(CAM)] <= lr_payload + 40 * FRAMES
    assert sum(cost.values()) <= sum(f.stat().st_size for f in bag.glob("*.mcap"))


def test_bag_info_prints_each_topics_share_on_disk(pan, capsys: pytest.CaptureFixture[str]) -> None:
    """`refscale bag info --cost` shows what each topic costs to store or upload, by the same measure."""
    from refscale_model.cli import main

    root, _ = pan
    bag = root / "referenced"
    if not bag.exists():
        pytest.skip("needs the referenced bag of the first test")
    assert main(["bag", "info", str(bag), "--cost"]) == 0
    out = capsys.readouterr().out
    meta = fmt.meta_topic(CAM)
    share = topic_disk_bytes(bag)[meta]
    assert "on disk (share of the compressed chunks):" in out
    assert f"  {meta}  {share:,} B  {share / FRAMES:,.1f} B/msg" in out


def test_records_without_reference_cost_at_most_the_noref_allowance(pan) -> None:
    root, frames = pan
    bag = _encode(root, frames, "noref", with_cache=False)
    records = _records(bag)
    assert len(records) == FRAMES and not any(r.has_smap for r in records)
    per_frame = topic_disk_bytes(bag)[fmt.meta_topic(CAM)] / FRAMES
    print(f"frame record without reference: {per_frame:.0f} B on disk")
    assert 0 < per_frame <= META_BYTES["noref"], per_frame


def test_short_record_reads_back_every_field(pan) -> None:
    """Default-valued fields are left out and the matrix is short; the record still reads back whole,
    and the stored matrix is exactly the one the encoder warped with."""
    root, _ = pan
    bag = root / "referenced"
    if not bag.exists():
        pytest.skip("needs the referenced bag of the first test")
    for _, _, msg in read_messages(bag, [fmt.meta_topic(CAM)]):
        keys = {kv.key for kv in msg.status[0].values}
        meta = fmt.meta_from_msg(msg)
        assert "smap_from_stamp_ns" not in keys or meta.smap_from_stamp_ns
        assert "no_reference_reason" not in keys and meta.no_reference_reason == ""
        own_map = meta.has_smap and not meta.smap_from_stamp_ns  # a coded map of its own: format 8
        assert meta.format == (fmt.FORMAT_SMAP_CODED if own_map else fmt.FORMAT_CORNERS)
        assert meta.registration_corners and "registration_matrix" not in keys
        np.testing.assert_array_equal(quantise_matrix(meta.matrix, meta.size), meta.matrix)
        again = fmt.FrameMeta.from_key_values({kv["key"]: kv["value"] for kv in meta.to_key_values()})
        assert again == meta


def test_full_records_of_older_bags_still_read() -> None:
    """A record with every key written out (as before) reads as the same frame as the short one."""
    meta = fmt.FrameMeta(source_topic=CAM, source_type="sensor_msgs/msg/Image", source_encoding="rgb8",
                         height=192, width=256, scale=2, model_id="x2-lossy", weights_sha256="ab" * 32,
                         smap_levels=16, reference_id="3", reference_sha256="cd" * 32,
                         registration_matrix="0.9817734174982159,0.09320489298218705,35.1604604645535,"
                                             "-0.001396289402664609,1.0103136018962584,5.597789990637083,"
                                             "-5.0356569754271335e-06,0.00011201702981002228,1.0",
                         registration_confidence=0.5625, registration_method="orb", has_smap=True)
    full = {f: fmt._text(v) for f, v in vars(meta).items() if f != "extra"}
    read = fmt.FrameMeta.from_key_values(full)
    assert read == meta and read.matrix[0, 2] == 35.1604604645535
    short = fmt.FrameMeta.from_key_values({kv["key"]: kv["value"] for kv in meta.to_key_values()})
    assert short.reference_sha256 == meta.reference_sha256 and short.lr_keyframe and short.smap_block == 1
    assert len(meta.to_key_values()) < len(full)


def test_short_records_name_weights_and_references_by_prefix(pan, tmp_path: Path) -> None:
    """A short record keeps 12 / 16 hex digits of the hashes: the cache and the hash check accept such a
    prefix of the right content, refuse another's, and never take a prefix too short to mean anything."""
    from refscale_model.refcache import ReferenceCache, ReferenceMismatchError
    from refscale_model.utils import hash_names

    root, _ = pan
    with ReferenceCache.open(root / "cache", readonly=True) as cache:
        ref = next(cache.entries())
        assert cache.get(ref.id, ref.sha256[:16]).sha256 == ref.sha256
        assert [r.id for r in cache.by_sha256(ref.sha256[:16])] == [ref.id]
        with pytest.raises(ReferenceMismatchError):
            cache.get(ref.id, ("0" if ref.sha256[0] != "0" else "1") + ref.sha256[1:16])
        assert cache.by_sha256(ref.sha256[:8]) == []  # too short to name anything
    assert hash_names(ref.sha256[:12], ref.sha256) and not hash_names(ref.sha256[:11], ref.sha256)
    assert not hash_names("", ref.sha256)


def test_corner_records_are_refused_by_format_6_readers_and_read_by_this_one() -> None:
    """A format-7 record stores the matrix as corners: it reads back as the same matrix, and a reader that
    knows only format 6 must refuse it by name, not take the identity for the matrix it cannot see."""
    matrix = np.array([[1.08806, 0.022507, -34.646], [-0.002688, 1.101141, -31.436], [-3.65e-07, 7.6745e-05, 1.0]])
    stored = fmt.registration_fields(matrix, (720, 1280))
    assert set(stored) == {"registration_corners"}
    meta = fmt.FrameMeta(source_topic=CAM, source_type="sensor_msgs/msg/Image", source_encoding="rgb8",
                         height=720, width=1280, scale=2, model_id="x2-lossy", weights_sha256="ab" * 32,
                         smap_levels=16, reference_id="3", reference_sha256="cd" * 32, has_smap=True, **stored)
    meta.format = fmt.record_format(meta)
    assert meta.format == fmt.FORMAT_CORNERS
    values = {kv["key"]: kv["value"] for kv in meta.to_key_values()}
    assert "registration_matrix" not in values
    read = fmt.FrameMeta.from_key_values(values, fmt.frame_context(CAM))
    np.testing.assert_array_equal(read.matrix, quantise_matrix(matrix, (720, 1280)))
    format_6_readers = tuple(f for f in fmt.READABLE_FORMATS if f != fmt.FORMAT_CORNERS)
    assert values["format"] not in format_6_readers
    # a matrix corners cannot hold keeps its decimals (format 6), the identity is the default
    top_right_at_infinity = np.linalg.inv(np.array([[1.0, 0, 0], [0, 1, 0], [-1 / 1279, 0, 1]]))
    assert set(fmt.registration_fields(top_right_at_infinity, (720, 1280))) == {"registration_matrix"}
    assert fmt.registration_fields(np.eye(3), (720, 1280)) == {}
    bad = dict(values, registration_corners="1,2,3")
    with pytest.raises(ValueError, match="8 values"):
        _ = fmt.FrameMeta.from_key_values(bad, fmt.frame_context(CAM)).matrix

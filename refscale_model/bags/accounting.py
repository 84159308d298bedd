"""What each topic of a bag costs on disk: the bytes its messages add to the compressed chunks.

Why: a RefScale frame is rebuilt from its LR, its S_map and its frame record, and the record is
a self-describing DiagnosticArray whose cost depends on what it shares a chunk with (zstd finds
the keys it repeats). Payload lengths miss that; file sizes mix every topic together. Here each
chunk is compressed again as the writer did, with and without one topic's message records, and
the difference is that topic's share. (Chunk and index framing are not attributed to any topic.)
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import zstandard
from mcap.records import Channel, Chunk
from mcap.stream_reader import StreamReader

from .reader import bag_files

_CHANNEL, _MESSAGE = 0x04, 0x05


def topic_disk_bytes(path: str | Path) -> dict[str, int]:
    """Per topic: bytes its messages add to the bag's compressed chunks (all split files).

    Reads a finished bag (the summary-less tail of a killed recording is for `recover` first)."""
    cost: Counter[str] = Counter()
    for mcap_file in bag_files(path):
        channels: dict[int, str] = {}
        with open(mcap_file, "rb") as fh:
            for record in StreamReader(fh, skip_magic=False, emit_chunks=True).records:
                if isinstance(record, Channel):
                    channels[record.id] = record.topic
                elif isinstance(record, Chunk):
                    cost.update(_chunk_costs(record, channels))
    return dict(cost)


def _chunk_costs(chunk: Chunk, channels: dict[int, str]) -> Counter[str]:
    data = _decompress(chunk)
    records = list(_records(data, channels))
    compress = _compressor(chunk.compression)
    whole = len(compress(data))
    out: Counter[str] = Counter()
    for topic in {t for t, _ in records if t is not None}:
        rest = b"".join(raw for t, raw in records if t != topic)
        out[topic] += whole - len(compress(rest))
    return out


def _records(data: bytes, channels: dict[int, str]) -> Iterator[tuple[str | None, bytes]]:
    """(topic of a message record or None, the record's bytes), learning channels on the way."""
    pos = 0
    while pos + 9 <= len(data):
        opcode = data[pos]
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        end = pos + 9 + length
        body = data[pos + 9 : end]
        topic = None
        if opcode == _CHANNEL and len(body) >= 8:
            (channel_id,) = struct.unpack_from("<H", body, 0)
            (size,) = struct.unpack_from("<I", body, 4)
            channels[channel_id] = body[8 : 8 + size].decode("utf-8", "replace")
        elif opcode == _MESSAGE and len(body) >= 2:
            topic = channels.get(struct.unpack_from("<H", body, 0)[0], "?")
        yield topic, data[pos:end]
        pos = end


def _decompress(chunk: Chunk) -> bytes:
    if chunk.compression == "zstd":
        return zstandard.ZstdDecompressor().decompress(chunk.data, max_output_size=chunk.uncompressed_size)
    if chunk.compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(chunk.data)
    return bytes(chunk.data)


def _compressor(compression: str):  # noqa: ANN202 - bytes -> bytes
    """The writer's own compression (mcap's Writer: `zstandard.compress` at its default level)."""
    if compression == "zstd":
        return zstandard.compress
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.compress
    return bytes


__all__ = ["topic_disk_bytes"]

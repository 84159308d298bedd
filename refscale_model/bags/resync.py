"""Scan an MCAP file record by record and resynchronise after damage instead of stopping.

Why: a flipped length field or a cut record used to end the read, dropping every intact chunk after
it. Here each record is checked (known opcode, length inside the file, body that parses to exactly
its length; for chunks decompression and CRC) and, when one fails, the scanner searches forward for
the next offset where a record passes the same checks plus a chaining check (a chunk whose CRC
matches, or a record followed by another plausible record / the end of the file). Everything
skipped is reported in `problems` with its byte range. Record bodies are parsed by the `mcap`
library's own `*.read` functions; only the framing (where a record starts, how long it is) is ours.
"""

from __future__ import annotations

import io
import mmap
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import (
    Attachment,
    AttachmentIndex,
    Channel,
    Chunk,
    ChunkIndex,
    DataEnd,
    Footer,
    Header,
    Message,
    MessageIndex,
    Metadata,
    MetadataIndex,
    Schema,
    Statistics,
    SummaryOffset,
)

MAGIC = b"\x89MCAP0\r\n"
_PREFIX = 9  # opcode byte + uint64 length
_MAX_BACK = 1 << 20  # how far before a failed record a resync looks (a record before it may have had a bad length)
_READERS: dict[int, Any] = {
    Opcode.ATTACHMENT: Attachment.read,
    Opcode.ATTACHMENT_INDEX: AttachmentIndex.read,
    Opcode.CHANNEL: Channel.read,
    Opcode.CHUNK: Chunk.read,
    Opcode.CHUNK_INDEX: ChunkIndex.read,
    Opcode.DATA_END: DataEnd.read,
    Opcode.FOOTER: Footer.read,
    Opcode.HEADER: Header.read,
    Opcode.METADATA: Metadata.read,
    Opcode.METADATA_INDEX: MetadataIndex.read,
    Opcode.SCHEMA: Schema.read,
    Opcode.STATISTICS: Statistics.read,
    Opcode.SUMMARY_OFFSET: SummaryOffset.read,
    Opcode.MESSAGE_INDEX: MessageIndex.read,
}
_CHUNK_RECORDS = {Opcode.SCHEMA: Schema.read, Opcode.CHANNEL: Channel.read}
# A record start: a known opcode followed by a length below 4 GiB (its four high bytes are zero).
_CANDIDATE = re.compile(rb"[\x01-\x0f][\x00-\xff]{4}\x00\x00\x00\x00", re.DOTALL)
_PARSE_ERRORS = (Exception,)  # a damaged body can raise anything the parsers raise (struct, EOF, Unicode, ...)


class _Bad(Exception):
    """A record that does not pass the checks at this offset."""


@dataclass
class ScanItem:
    """One accepted record; for a chunk `inner` holds its decoded schema/channel/message records."""

    offset: int
    end: int
    record: Any
    inner: list[Any] | None = None
    checked: bool = True
    """False for a record whose length nothing confirmed: a skipped user record, or a body shorter than its
    length field (MCAP lets records grow, so it is read, but a damaged length looks the same)."""


@dataclass
class ChunkResult:
    records: list[Any]
    ok: bool
    note: str = ""


@dataclass
class Scanner:
    """Yield the records of one MCAP file (bytes or mmap), skipping damage; see `problems`."""

    data: Any
    name: str = "file"
    validate_crcs: bool = True
    problems: list[str] = field(default_factory=list)
    chunks_read: int = 0
    hints: list[ChunkIndex] = field(default_factory=list)  # the summary's chunk indexes, if it was readable

    def records(self) -> Iterator[ScanItem]:
        size = len(self.data)
        pos = 0
        if bytes(self.data[:8]) == MAGIC:
            pos = 8
        else:
            self.problems.append(f"{self.name}: no MCAP magic at the start; scanning for records")
        back = pos  # where a resync may start: a record without a checksum may have had a wrong length
        while pos < size:
            if pos + _PREFIX > size and bytes(self.data[pos:]) == MAGIC[: size - pos]:
                break
            try:
                item = self._parse_at(pos, resync=False)
            except _Bad as exc:
                nxt = self._find_next(max(back, pos - _MAX_BACK) + 1, skip=pos)
                if nxt is None:
                    self._ends_early(pos, str(exc))
                    return
                if nxt.offset >= pos:
                    what = f"bytes {pos}..{nxt.offset} skipped ({exc})"
                else:  # the record before `pos` had a wrong length field
                    what = f"record before byte {pos} has a wrong length ({exc} at byte {pos})"
                self.problems.append(
                    f"{self.name}: {what}; reading resumed at the next valid record, byte {nxt.offset}"
                )
                item = nxt
            yield item
            if isinstance(item.record, Footer):
                return
            if item.checked:  # an unconfirmed length may have carried us past the next real record
                back = item.end - 1 if isinstance(item.record, Chunk) else item.offset
            pos = item.end
        self._ends_early(pos, "no footer: the recording did not finish")

    # -- one record ------------------------------------------------------------------------------
    def _parse_at(self, pos: int, *, resync: bool) -> ScanItem:
        size = len(self.data)
        if pos + _PREFIX > size:
            raise _Bad("record header is cut")
        opcode = self.data[pos]
        (length,) = struct.unpack_from("<Q", self.data, pos + 1)
        if opcode == Opcode.CHUNK:
            return self._parse_chunk(pos, length, resync=resync)
        if opcode == Opcode.MESSAGE:
            reader = None
        else:
            reader = _READERS.get(opcode)
            if reader is None:
                if resync or not 0x80 <= opcode <= 0xFF:  # 0x80-0xFF: user opcodes, skippable by length
                    raise _Bad(f"unknown opcode 0x{opcode:02x}")
        start, end = pos + _PREFIX, pos + _PREFIX + length
        if end > size:
            raise _Bad(f"record 0x{opcode:02x} claims {length} bytes, past the end of the file")
        body = bytes(self.data[start:end])
        if reader is None and opcode != Opcode.MESSAGE:
            return ScanItem(pos, end, None, checked=False)
        rec, used = _parse_body(opcode, body)
        if used > length or (resync and used != length):
            raise _Bad(f"record 0x{opcode:02x} body does not match its length")
        if isinstance(rec, Footer) and bytes(self.data[end : end + 8]) != MAGIC:
            raise _Bad("footer without the closing magic")
        if resync and not isinstance(rec, Footer) and not self._plausible_next(end):
            raise _Bad("record not followed by another record")
        return ScanItem(pos, end, rec, checked=used == length)

    def _parse_chunk(self, pos: int, length: int, *, resync: bool) -> ScanItem:
        size = len(self.data)
        start = pos + _PREFIX
        fits = start + length <= size
        tries: list[tuple[Chunk, int, str]] = []
        # (a) as written: the chunk's own fields, records length from the chunk body
        try:
            head = _chunk_head(self.data, start)
        except _Bad:
            head = None
        if head is not None:
            fields, rec_off, rec_len = head
            if rec_off + rec_len <= size:
                chunk = _chunk(fields, bytes(self.data[rec_off : rec_off + rec_len]))
                outer_ok = fits and rec_off + rec_len == start + length
                tries.append((chunk, rec_off + rec_len, "" if outer_ok else "chunk length field damaged"))
            # (b) the inner records length is damaged but the outer length is right
            if fits and rec_off <= start + length and rec_off + rec_len != start + length:
                chunk = _chunk(fields, bytes(self.data[rec_off : start + length]))
                tries.append((chunk, start + length, "chunk records-length field damaged"))
        if not tries:
            raise _Bad("chunk header is damaged" if fits else f"chunk claims {length} bytes, past the end of the file")
        for chunk, end, note in tries:
            result = self._open_chunk(chunk)
            if result.ok:
                self.chunks_read += 1
                if note:
                    self.problems.append(f"{self.name}: chunk at byte {pos}: {note}; its CRC matches, chunk kept")
                return ScanItem(pos, end, chunk, result.records)
        if resync:
            raise _Bad("chunk does not check out")
        chunk, end, note = tries[0]
        if note:  # neither length is consistent and nothing validates: not a chunk we can place
            raise _Bad(f"chunk at byte {pos} is damaged ({note})")
        result = self._open_chunk(chunk, salvage=True)
        self.chunks_read += 1
        self.problems.append(f"{self.name}: chunk {self.chunks_read - 1} at byte {pos} is damaged ({result.note})")
        return ScanItem(pos, end, chunk, result.records)

    def _open_chunk(self, chunk: Chunk, salvage: bool = False) -> ChunkResult:
        """Decompress, check the CRC and split a chunk; with `salvage`, keep what decodes before damage."""
        note = ""
        try:
            if chunk.compression == "zstd":
                raw = zstandard.ZstdDecompressor().decompress(chunk.data, max_output_size=chunk.uncompressed_size)
            elif chunk.compression == "":
                raw = chunk.data
            else:
                raise _Bad(f"compression {chunk.compression!r} not supported")
        except Exception as exc:  # noqa: BLE001 - zstd raises its own error type for damaged frames
            if not salvage:
                return ChunkResult([], False, f"cannot decompress: {exc}")
            raw = _zstd_prefix(chunk.data) if chunk.compression == "zstd" else b""
            note = f"cannot decompress ({exc}); {len(raw)} bytes decoded before the damage"
        crc_ok = not self.validate_crcs or chunk.uncompressed_crc == 0 or zlib.crc32(raw) == chunk.uncompressed_crc
        records, clean = _split_chunk(raw)
        if crc_ok and clean and not note:
            return ChunkResult(records, True)
        if not salvage:
            return ChunkResult([], False, "CRC mismatch" if not crc_ok else "inner records damaged")
        if not note:
            note = "CRC mismatch" if not crc_ok else "inner records damaged"
            note += "; records that still parse were kept" if records else "; nothing readable"
        n = sum(isinstance(r, Message) for r in records)
        return ChunkResult(records, False, f"{note}; {n} messages kept")

    # -- resync ----------------------------------------------------------------------------------
    def _find_next(self, pos: int, skip: int = -1) -> ScanItem | None:
        size = len(self.data)
        hints = sorted((h for h in self.hints if h.chunk_start_offset >= pos), key=lambda h: h.chunk_start_offset)
        for m in _CANDIDATE.finditer(self.data, pos):
            c = m.start()
            while hints and hints[0].chunk_start_offset <= c:
                found = self._try_indexed(hints.pop(0), skip)
                if found is not None:
                    return found
            if c == skip:
                continue
            if c + _PREFIX > size:
                break
            found = self._try(c)
            if found is not None:
                return found
        for h in hints:
            found = self._try_indexed(h, skip)
            if found is not None:
                return found
        return None

    def _try_indexed(self, index: ChunkIndex, skip: int) -> ScanItem | None:
        """A chunk where the summary's chunk index puts it, even if its own header bytes are damaged."""
        start = index.chunk_start_offset
        if start != skip:
            found = self._try(start)
            if found is not None:
                return found
        rec_off = start + _PREFIX + 32 + len(index.compression.encode()) + 8
        end = rec_off + index.compressed_size
        if end > len(self.data) or end != start + index.chunk_length:
            return None
        fields = (index.message_start_time, index.message_end_time, index.uncompressed_size, 0, index.compression)
        (crc,) = struct.unpack_from("<I", self.data, start + _PREFIX + 24)
        for c in (crc, 0):  # the stored CRC if it still matches, else decompression and record framing decide
            chunk = _chunk((*fields[:3], c, fields[4]), bytes(self.data[rec_off:end]))
            result = self._open_chunk(chunk)
            if result.ok and (c or _decompressed_size_ok(chunk)):
                self.chunks_read += 1
                self.problems.append(f"{self.name}: chunk at byte {start} has a damaged header; read via the index")
                return ScanItem(start, end, chunk, result.records)
        return None

    def _try(self, c: int) -> ScanItem | None:
        opcode = self.data[c]
        if opcode not in _READERS and opcode != Opcode.MESSAGE:
            return None
        try:
            return self._parse_at(c, resync=True)
        except _Bad:
            return None
        except _PARSE_ERRORS:
            return None

    def _plausible_next(self, end: int) -> bool:
        size = len(self.data)
        if end == size or bytes(self.data[end:]) == MAGIC:
            return True
        if end + _PREFIX > size:
            return False
        opcode = self.data[end]
        (length,) = struct.unpack_from("<Q", self.data, end + 1)
        return (opcode in _READERS or opcode == Opcode.MESSAGE) and end + _PREFIX + length <= size

    def _ends_early(self, pos: int, why: str) -> None:
        size = len(self.data)
        self.problems.append(
            f"{self.name}: file ends early ({why}) after {self.chunks_read} complete chunks; "
            f"bytes {pos}..{size} unreadable, {size} bytes on disk. "
            "Messages of complete chunks were read; run `refscale bag recover`."
        )


def _parse_body(opcode: int, body: bytes) -> tuple[Any, int]:
    stream = ReadDataStream(io.BytesIO(body))
    try:
        if opcode == Opcode.MESSAGE:
            rec = Message.read(stream, len(body))
        else:
            rec = _READERS[opcode](stream)
    except _PARSE_ERRORS as exc:
        raise _Bad(f"record 0x{opcode:02x} does not parse ({type(exc).__name__})") from None
    return rec, stream.count


def _decompressed_size_ok(chunk: Chunk) -> bool:
    try:
        raw = zstandard.ZstdDecompressor().decompress(chunk.data, max_output_size=chunk.uncompressed_size)
    except Exception:  # noqa: BLE001
        return chunk.compression == "" and len(chunk.data) == chunk.uncompressed_size
    return len(raw) == chunk.uncompressed_size


def _chunk(fields: tuple[int, int, int, int, str], data: bytes) -> Chunk:
    t0, t1, usize, crc, compression = fields
    return Chunk(
        compression=compression,
        data=data,
        message_end_time=t1,
        message_start_time=t0,
        uncompressed_crc=crc,
        uncompressed_size=usize,
    )


def _chunk_head(data: Any, start: int) -> tuple[tuple[int, int, int, int, str], int, int]:
    """The fixed fields of a chunk body at `start`, the records' offset and their length."""
    size = len(data)
    if start + 32 > size:
        raise _Bad("chunk header is cut")
    t0, t1, usize, crc, clen = struct.unpack_from("<QQQII", data, start)
    off = start + 32
    if clen > 64 or off + clen + 8 > size:
        raise _Bad("chunk compression field damaged")
    try:
        compression = bytes(data[off : off + clen]).decode()
    except UnicodeDecodeError:
        raise _Bad("chunk compression field damaged") from None
    (rec_len,) = struct.unpack_from("<Q", data, off + clen)
    return (t0, t1, usize, crc, compression), off + clen + 8, rec_len


def _split_chunk(raw: bytes) -> tuple[list[Any], bool]:
    """The schema/channel/message records of decompressed chunk data; False if they do not tile it."""
    out: list[Any] = []
    pos, size = 0, len(raw)
    view = memoryview(raw)
    clean = True
    while pos < size:
        if pos + _PREFIX > size:
            return out, False
        opcode = raw[pos]
        (length,) = struct.unpack_from("<Q", raw, pos + 1)
        end = pos + _PREFIX + length
        if end > size:
            return out, False
        body = bytes(view[pos + _PREFIX : end])
        if opcode == Opcode.MESSAGE or opcode in _CHUNK_RECORDS:
            try:
                rec, used = _parse_body(opcode, body)
            except _Bad:  # framing still holds: skip this one record, keep the ones after it
                clean = False
            else:
                clean = clean and used == length
                out.append(rec)
        elif opcode not in _READERS and opcode < 0x80:
            return out, False
        pos = end
    return out, clean


def _zstd_prefix(data: bytes, piece: int = 4096) -> bytes:
    """What a damaged zstd frame decodes to before the damage (its earlier blocks)."""
    obj = zstandard.ZstdDecompressor().decompressobj()
    out: list[bytes] = []
    for i in range(0, len(data), piece):
        try:
            out.append(obj.decompress(data[i : i + piece]))
        except zstandard.ZstdError:
            break
    return b"".join(out)


def read_summary(path: Path) -> Any:
    """The file's MCAP summary (schemas, channels, chunk indexes), or None when it is missing or unreadable."""
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as fh:
            fh.seek(-8, 2)
            if fh.read(8) != MAGIC:
                return None
            fh.seek(0)
            return make_reader(fh).get_summary()
    except Exception:  # noqa: BLE001 - a damaged summary is simply no help
        return None


def open_mapped(path: Path) -> Any:
    """The file's bytes, memory-mapped (b'' for an empty file)."""
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            return b""
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


__all__ = ["Scanner", "ScanItem", "read_summary", "open_mapped", "MAGIC"]

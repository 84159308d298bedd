"""Lossless coding of a stored S_map: a context-adaptive range coder, or PNG when that is smaller.

A stored map is small (23×40 levels at 720p, 4×4 on a 128×128 satellite tile) and smooth. PNG spends
57 B on its chunk headers alone and codes each level without looking at its neighbours: 85 B for a
4×4 tile map whose 16 levels fit in 8 B, and ~270 B for a 720p drive map whose neighbour-conditioned
entropy is ~160 B. So each map is coded both ways and the smaller is stored; the S_map message's
`format` says which (`"png"`, or `SMAP_FORMAT`).

The coded form (`SMAP_FORMAT`): one version byte, the rows and columns as LEB128 varints, the alphabet
size K (the largest level + 1) as one byte K − 1, then a range-coded stream of the levels in raster
order. Each level is coded with an adaptive frequency table chosen by its causal neighbours (left `l`
and top `t`; at the edges the one that exists): the context is ((l + t + 1) // 2, min(|l − t|, 2)). A
table starts at 1 per symbol, adds 8 per coded symbol (chosen on training maps) and halves when its
total reaches 2^16. Integer arithmetic only, so every machine decodes the same map. The range coder is
the carry-less byte-wise scheme of Subbotin (1999); trailing zero bytes are not stored (the decoder
reads zeros past the end).
"""

from __future__ import annotations

import numpy as np

from refscale_model.io.images import decode_png, encode_smap_png

SMAP_FORMAT = "refscale-smap"
"""`sensor_msgs/CompressedImage.format` of a map in the coded form (not an image format: viewers show
the LR and the frame record, not such a map)."""
PNG_FORMAT = "png"
_PNG_FRAMING = 57
"""Bytes of a PNG's signature and IHDR, IDAT and IEND chunk framing: no PNG is this small."""
VERSION = 1

_TOP = 1 << 24
_BOTTOM = 1 << 16
_MASK = (1 << 32) - 1
_MAX_TOTAL = _BOTTOM
"""A context's count total stays below the coder's 2^16 resolution (counts are halved to fit)."""
_INCREMENT = 8
_MAX_SIDE = 1 << 16
_MAX_CELLS = 1 << 22
"""Largest map coded or decoded (an 8K frame's map has ~0.5 M cells): a corrupt or hostile header cannot
make the decoder run for hours."""


class SmapCodingError(ValueError):
    """Bytes that are not a coded S_map of this version (truncated, corrupt or foreign)."""


def _context(above: list[int] | None, row: list[int], x: int) -> int:
    """The context id of cell x of `row` (`above`: the previous row, None on the first): 3 × the
    rounded mean of the left and top neighbours + their clipped difference (module docstring)."""
    if x:
        left = row[x - 1]
        top = above[x] if above is not None else left
    elif above is not None:
        left = top = above[0]
    else:
        left = top = 0
    return 3 * ((left + top + 1) >> 1) + min(abs(left - top), 2)


class _Model:
    """Adaptive symbol counts per context, the same on both sides."""

    def __init__(self, alphabet: int) -> None:
        self.alphabet = alphabet
        self.tables: list[list[int] | None] = [None] * (3 * alphabet)
        self.totals = [0] * (3 * alphabet)

    def table(self, context: int) -> list[int]:
        found = self.tables[context]
        if found is None:
            found = self.tables[context] = [1] * self.alphabet
            self.totals[context] = self.alphabet
        return found

    def update(self, context: int, counts: list[int], symbol: int) -> None:
        counts[symbol] += _INCREMENT
        total = self.totals[context] + _INCREMENT
        if total >= _MAX_TOTAL:
            counts[:] = [(c + 1) // 2 for c in counts]
            total = sum(counts)
        self.totals[context] = total


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 21:
            raise SmapCodingError("coded S_map header is truncated or corrupt")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def encode_coded(levels: np.ndarray) -> bytes:
    """Grey uint8 H×W levels -> the coded form (see the module docstring)."""
    if levels.dtype != np.uint8 or levels.ndim != 2 or 0 in levels.shape:
        raise ValueError(f"an S_map is a non-empty grey uint8 H×W, got {levels.dtype} {levels.shape}")
    rows, cols = levels.shape
    if max(rows, cols) >= _MAX_SIDE or rows * cols > _MAX_CELLS:
        raise ValueError(f"S_map of {rows}×{cols} cells is too large to code")
    alphabet = int(levels.max()) + 1
    model = _Model(alphabet)
    out = bytearray()
    low, span = 0, _MASK
    above: list[int] | None = None
    for row in levels.tolist():
        for x, symbol in enumerate(row):
            context = _context(above, row, x)
            counts = model.table(context)
            span //= model.totals[context]
            low += sum(counts[:symbol]) * span
            span *= counts[symbol]
            before = low
            low, span, shifts = _renormalise(low, span)
            out += ((before << (8 * shifts)) >> 32).to_bytes(shifts, "big")  # its top `shifts` bytes
            model.update(context, counts, symbol)
        above = row
    out += low.to_bytes(4, "big")
    header = bytes([VERSION]) + _varint(rows) + _varint(cols) + bytes([alphabet - 1])
    return header + bytes(out).rstrip(b"\0")


def _renormalise(low: int, span: int) -> tuple[int, int, int]:
    """Shift whole bytes out of the coder's window until the span is wide again (the carry-less rule), on
    either side: (low, span, bytes shifted). The encoder writes those top bytes of its `low`, the decoder
    reads as many into its code."""
    shifts = 0
    while True:
        if (low ^ (low + span)) >= _TOP:
            if span >= _BOTTOM:
                return low, span, shifts
            span = -low & (_BOTTOM - 1)
        low, span = (low << 8) & _MASK, (span << 8) & _MASK
        shifts += 1


def decode_coded(data: bytes) -> np.ndarray:
    """The coded form -> grey uint8 H×W levels; a SmapCodingError for bytes that are not one."""
    if not data or data[0] != VERSION:
        raise SmapCodingError(f"not a coded S_map of version {VERSION}")
    rows, pos = _read_varint(data, 1)
    cols, pos = _read_varint(data, pos)
    if pos >= len(data) or not 0 < rows < _MAX_SIDE or not 0 < cols < _MAX_SIDE or rows * cols > _MAX_CELLS:
        raise SmapCodingError("coded S_map header is truncated, corrupt or names an impossible size")
    alphabet = data[pos] + 1
    stream = data[pos + 1:]
    model = _Model(alphabet)
    next_byte = 0

    def read() -> int:
        nonlocal next_byte
        value = stream[next_byte] if next_byte < len(stream) else 0
        next_byte += 1
        return value

    code = 0
    for _ in range(4):
        code = (code << 8) | read()
    low, span = 0, _MASK
    decoded: list[list[int]] = []
    above: list[int] | None = None
    for _ in range(rows):
        row = [0] * cols
        for x in range(cols):
            context = _context(above, row, x)
            counts = model.table(context)
            span //= model.totals[context]
            target = ((code - low) & _MASK) // span
            symbol, start = 0, 0
            while symbol < alphabet - 1 and start + counts[symbol] <= target:
                start += counts[symbol]
                symbol += 1
            if start + counts[symbol] <= target:
                raise SmapCodingError("coded S_map stream is corrupt")
            low += start * span
            span *= counts[symbol]
            low, span, shifts = _renormalise(low, span)
            for _ in range(shifts):
                code = ((code << 8) | read()) & _MASK
            row[x] = symbol
            model.update(context, counts, symbol)
        decoded.append(row)
        above = row
    return np.array(decoded, np.uint8)


def encode_smap(levels: np.ndarray) -> tuple[str, bytes]:
    """(format, bytes) of the smaller lossless form of a stored map: `SMAP_FORMAT` or PNG."""
    coded = encode_coded(levels)
    if len(coded) <= _PNG_FRAMING:  # no PNG can be smaller: skip coding it (per frame on the car)
        return SMAP_FORMAT, coded
    png = encode_smap_png(levels)
    return (SMAP_FORMAT, coded) if len(coded) <= len(png) else (PNG_FORMAT, png)


def decode_smap(data: bytes, format_name: str) -> np.ndarray:
    """A stored map's levels from its message `format` and bytes: PNG as every map was written before
    2026-12-04 (also when a message names no format)."""
    if format_name == SMAP_FORMAT:
        return decode_coded(data)
    if format_name in (PNG_FORMAT, ""):
        levels = decode_png(data)
        if levels.ndim != 2:
            raise ValueError(f"S_map PNG is not grey (shape {levels.shape})")
        return levels
    raise ValueError(f"unsupported S_map format {format_name!r} (known: {PNG_FORMAT!r}, {SMAP_FORMAT!r})")


__all__ = ["PNG_FORMAT", "SMAP_FORMAT", "SmapCodingError", "decode_coded", "decode_smap", "encode_coded",
           "encode_smap"]

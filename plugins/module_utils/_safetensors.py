# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read, check and write safetensors files without torch, streaming tensor bytes.

Layout: 8-byte little-endian header length N, N bytes of JSON header
(``{"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [begin, end]}}``),
then the tensor data; offsets are relative to the end of the header.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator, Optional

# Bits per element of every dtype the safetensors format defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "C64": 64,
}
MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit
ALIGNMENT = 8
DEFAULT_CHUNK = 8 * 1024 * 1024


class SafetensorsError(Exception):
    """A safetensors file is unreadable or inconsistent; the message names the file."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor entry; ``begin``/``end`` are absolute byte offsets in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class Header:
    """A parsed, validated safetensors header."""

    path: str
    data_start: int
    file_size: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]


def tensor_nbytes(dtype: str, shape: Iterable[int]) -> int:
    """Byte size of a tensor of ``dtype`` and ``shape``; ValueError if not whole bytes."""
    numel = 1
    for dim in shape:
        numel *= dim
    bits = DTYPE_BITS[dtype] * numel
    if bits % 8:
        raise ValueError("%d elements of %s do not fill whole bytes" % (numel, dtype))
    return bits // 8


def _entry(path: str, name: str, raw: object, data_start: int) -> TensorInfo:
    where = "%s: tensor %r" % (path, name)
    if not isinstance(raw, dict):
        raise SafetensorsError("%s: header entry is not an object" % where)
    dtype, shape, offsets = raw.get("dtype"), raw.get("shape"), raw.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise SafetensorsError("%s: unknown dtype %r" % (where, dtype))
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise SafetensorsError("%s: shape %r is not a list of non-negative integers" % (where, shape))
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise SafetensorsError("%s: data_offsets %r are not [begin, end] with 0 <= begin <= end" % (where, offsets))
    try:
        expected = tensor_nbytes(dtype, shape)
    except ValueError as exc:
        raise SafetensorsError("%s: %s" % (where, exc)) from None
    if offsets[1] - offsets[0] != expected:
        raise SafetensorsError("%s: data_offsets %r span %d bytes but shape %r x %s needs %d"
                               % (where, offsets, offsets[1] - offsets[0], shape, dtype, expected))
    return TensorInfo(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])


def read_header(path: str) -> Header:
    """Parse and validate the header of ``path``: sane length, valid JSON, known dtypes,
    byte spans matching shapes, offsets contiguous from 0 up to the end of the file."""
    try:
        with open(path, "rb") as fp:
            file_size = os.fstat(fp.fileno()).st_size
            prefix = fp.read(8)
            if len(prefix) < 8:
                raise SafetensorsError("%s: file is %d bytes, too short for a safetensors header" % (path, file_size))
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES or 8 + length > file_size:
                raise SafetensorsError("%s: header length %d is impossible for a file of %d bytes (truncated or not safetensors)"
                                       % (path, length, file_size))
            raw = fp.read(length)
    except OSError as exc:
        raise SafetensorsError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SafetensorsError("%s: header is not valid JSON: %s" % (path, exc)) from None
    if not isinstance(doc, dict):
        raise SafetensorsError("%s: header is not a JSON object" % path)
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise SafetensorsError("%s: __metadata__ is not an object" % path)
    data_start = 8 + length
    tensors = {name: _entry(path, name, value, data_start) for name, value in doc.items()}
    _check_contiguous(path, tensors.values(), data_start, file_size)
    return Header(path, data_start, file_size, tensors, metadata)


def _check_contiguous(path: str, tensors: Iterable[TensorInfo], data_start: int, file_size: int) -> None:
    cursor = data_start
    for info in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if info.begin != cursor:
            raise SafetensorsError("%s: tensor %r starts at data offset %d, expected %d (gap or overlap)"
                                   % (path, info.name, info.begin - data_start, cursor - data_start))
        cursor = info.end
    if cursor != file_size:
        raise SafetensorsError("%s: tensor data ends at byte %d but the file has %d bytes (%s)"
                               % (path, cursor, file_size, "truncated" if cursor > file_size else "trailing bytes"))


def build_header(tensors: list[tuple[str, str, tuple[int, ...]]], metadata: Optional[dict[str, str]] = None) -> bytes:
    """Length prefix plus JSON header for ``(name, dtype, shape)`` tensors laid out in order,
    padded with spaces to an 8-byte boundary like the reference writer."""
    doc: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, dtype, shape in tensors:
        size = tensor_nbytes(dtype, shape)
        doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    body += b" " * (-len(body) % ALIGNMENT)
    return struct.pack("<Q", len(body)) + body


def iter_range(fp: BinaryIO, begin: int, length: int, chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    """Yield the ``length`` bytes at ``begin`` of ``fp`` in chunks of at most ``chunk_size``."""
    fp.seek(begin)
    remaining = length
    while remaining:
        chunk = fp.read(min(chunk_size, remaining))
        if not chunk:
            raise SafetensorsError("%s: unexpected end of file at byte %d" % (getattr(fp, "name", "?"), begin + length - remaining))
        remaining -= len(chunk)
        yield chunk


def copy_range(src: BinaryIO, begin: int, length: int, dst: BinaryIO, chunk_size: int = DEFAULT_CHUNK) -> None:
    """Copy ``length`` bytes at ``begin`` of ``src`` to ``dst`` in bounded chunks."""
    for chunk in iter_range(src, begin, length, chunk_size):
        dst.write(chunk)


def sha256_range(path: str, begin: int, length: int, chunk_size: int = DEFAULT_CHUNK) -> str:
    """Hex sha256 of ``length`` bytes at ``begin`` of ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        for chunk in iter_range(fp, begin, length, chunk_size):
            digest.update(chunk)
    return digest.hexdigest()

"""Unit tests for plugins/module_utils/_safetensors.py against an independent writer/reader."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "unit"))

from weights_helpers import Spec, parse_safetensors, tensor_bytes, write_safetensors  # noqa: E402

from ansible_collections.ascend_ops.vllm.plugins.module_utils._safetensors import (  # noqa: E402
    SafetensorsError,
    build_header,
    copy_range,
    read_header,
    sha256_range,
    tensor_nbytes,
)

SPECS = [Spec("a", "BF16", (3, 5), 1), Spec("b", "F32", (7,), 2), Spec("c", "I8", (2, 3, 4), 3), Spec("d", "F32", (0, 4), 4)]


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    path = tmp_path / "s.safetensors"
    write_safetensors(path, SPECS)
    return path


def test_read_header_matches_independent_parse(shard: Path) -> None:
    length, raw = parse_safetensors(shard)
    header = read_header(str(shard))
    assert header.data_start == 8 + length
    assert header.metadata == {"format": "pt"}
    assert sorted(header.tensors) == ["a", "b", "c", "d"]
    for spec in SPECS:
        info = header.tensors[spec.name]
        assert (info.dtype, info.shape) == (spec.dtype, spec.shape)
        assert info.begin - header.data_start == raw[spec.name]["data_offsets"][0]
        with open(shard, "rb") as fp:
            fp.seek(info.begin)
            assert fp.read(info.nbytes) == tensor_bytes(shard, spec.name)


@pytest.mark.parametrize("dtype,shape,expected", [("BF16", (4, 3), 24), ("F32", (5,), 20), ("I8", (2, 2), 4),
                                                  ("F64", (), 8), ("F4", (4,), 2), ("BF16", (0, 9), 0)])
def test_tensor_nbytes(dtype: str, shape: tuple[int, ...], expected: int) -> None:
    assert tensor_nbytes(dtype, shape) == expected


def test_tensor_nbytes_rejects_partial_bytes() -> None:
    with pytest.raises(ValueError, match="whole bytes"):
        tensor_nbytes("F4", (3,))


def test_build_header_is_aligned_and_parses(tmp_path: Path) -> None:
    header = build_header([("x.weight", "BF16", (3, 3)), ("y", "I8", (5,))])
    (length,) = struct.unpack("<Q", header[:8])
    assert length == len(header) - 8 and length % 8 == 0
    body = header[8:]
    assert body.rstrip(b" ") == body.rstrip()  # padding is spaces only
    doc = json.loads(body)
    assert doc["__metadata__"] == {"format": "pt"}
    assert doc["x.weight"] == {"dtype": "BF16", "shape": [3, 3], "data_offsets": [0, 18]}
    assert doc["y"] == {"dtype": "I8", "shape": [5], "data_offsets": [18, 23]}
    path = tmp_path / "built.safetensors"
    path.write_bytes(header + bytes(23))
    assert read_header(str(path)).tensors["y"].nbytes == 5


def _rewrite(path: Path, mutate) -> None:
    """Rewrite the header of ``path`` through ``mutate(dict)``, keeping the data bytes."""
    length, doc = parse_safetensors(path)
    data = path.read_bytes()[8 + length:]
    mutate(doc)
    body = json.dumps(doc).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)


def _set(name: str, field: str, value) -> object:
    return lambda doc: doc[name].__setitem__(field, value)


@pytest.mark.parametrize("corrupt,message", [
    (lambda p: p.write_bytes(p.read_bytes()[:-3]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes() + b"xx"), "trailing bytes"),
    (lambda p: p.write_bytes(p.read_bytes()[:5]), "too short"),
    (lambda p: p.write_bytes(struct.pack("<Q", 10 ** 9) + p.read_bytes()[8:]), "header length 1000000000 is impossible"),
    (lambda p: p.write_bytes(p.read_bytes()[:8] + b"x" + p.read_bytes()[9:]), "not valid JSON"),
    (lambda p: _rewrite(p, _set("b", "dtype", "F12")), "tensor 'b': unknown dtype 'F12'"),
    (lambda p: _rewrite(p, _set("a", "shape", [3, 6])), "tensor 'a': data_offsets .* span 30 bytes but shape"),
    (lambda p: _rewrite(p, _set("a", "shape", [3, -5])), "tensor 'a': shape"),
    (lambda p: _rewrite(p, _set("b", "data_offsets", [31, 59])), "tensor 'b' starts at data offset 31, expected 30"),
    (lambda p: _rewrite(p, _set("b", "data_offsets", [29, 57])), "tensor 'b' starts at data offset 29, expected 30"),
    (lambda p: _rewrite(p, _set("c", "data_offsets", [60])), "tensor 'c': data_offsets"),
    (lambda p: _rewrite(p, lambda d: d.__setitem__("__metadata__", [1])), "__metadata__ is not an object"),
])
def test_read_header_rejects_corruption(shard: Path, corrupt, message: str) -> None:
    corrupt(shard)
    with pytest.raises(SafetensorsError, match=message) as err:
        read_header(str(shard))
    assert str(shard) in str(err.value)


def test_read_header_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SafetensorsError, match="cannot read"):
        read_header(str(tmp_path / "absent.safetensors"))


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_copy_and_hash_ranges_in_chunks(tmp_path: Path, chunk: int) -> None:
    data = bytes(range(256)) * 100
    path = tmp_path / "blob"
    path.write_bytes(data)
    out = io.BytesIO()
    with open(path, "rb") as src:
        copy_range(src, 1000, 20000, out, chunk)
    assert out.getvalue() == data[1000:21000]
    assert sha256_range(str(path), 1000, 20000, chunk) == hashlib.sha256(data[1000:21000]).hexdigest()


def test_copy_range_past_end_fails(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 100)
    with pytest.raises(SafetensorsError, match="unexpected end of file at byte 100"):
        sha256_range(str(path), 50, 100, 16)

"""Tests for _weights_dist: the doubling tree, and the HTTP mirror download against a real loopback server."""

from __future__ import annotations

import http.server
import math
import threading
from pathlib import Path
from typing import Iterator

import pytest

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights_dist import (
    FetchError,
    Mirror,
    doubling_rounds,
    fetch_checkpoint,
    hub_argv,
    hub_env,
    tree_bytes,
)


@pytest.mark.parametrize("holders,needers", [(1, 1), (1, 4), (1, 7), (2, 5), (3, 0), (1, 16)])
def test_doubling_rounds(holders: int, needers: int) -> None:
    have = ["h%d" % i for i in range(holders)]
    need = ["n%d" % i for i in range(needers)]
    rounds = doubling_rounds(have, need)
    assert len(rounds) == (math.ceil(math.log2((holders + needers) / holders)) if needers else 0)
    served = []
    for pairs in rounds:
        sources = [pair["src"] for pair in pairs]
        assert len(sources) == len(set(sources)), "a host serves at most one receiver per round"
        assert all(src in have for src in sources), "only hosts holding the weights serve"
        have += [pair["dst"] for pair in pairs]
        served += [pair["dst"] for pair in pairs]
    assert sorted(served) == sorted(need)


def test_doubling_rounds_needs_a_holder() -> None:
    with pytest.raises(ValueError, match="no host holds"):
        doubling_rounds([], ["a"])
    assert doubling_rounds(["a", "a"], ["b", "c", "d"]) == [
        [{"src": "a", "dst": "b"}],
        [{"src": "a", "dst": "c"}, {"src": "b", "dst": "d"}],
    ]


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with optional Range support; records every request line and Authorization header."""

    ranges = True
    log: list[tuple[str, str, str]] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def send_head(self):
        Handler.log.append((self.command, self.path, self.headers.get("Authorization", "")))
        spec = self.headers.get("Range")
        if not (self.ranges and spec and spec.startswith("bytes=")):
            return super().send_head()
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        start = int(spec[6:].split("-")[0])
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.end_headers()
        import io
        return io.BytesIO(data[start:])


@pytest.fixture
def mirror_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from weights_helpers import make_checkpoint
    root = tmp_path / "mirror"
    make_checkpoint(root / "ck", filler_shards=2, filler_bytes=65536)
    (root / "ck" / "tokenizer.json").write_text("{}")
    Handler.log = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Handler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root / "ck", "http://127.0.0.1:%d/ck" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _gets(name: str) -> int:
    return sum(1 for method, path, _auth in Handler.log if method == "GET" and path.endswith("/" + name))


def test_fetch_all_then_nothing(mirror_dir: tuple[Path, str], tmp_path: Path) -> None:
    src, url = mirror_dir
    dest = tmp_path / "dest"
    result = fetch_checkpoint(Mirror(url, token="s3cret"), str(dest), "model.safetensors.index.json",
                              ["config.json"], ["tokenizer.json", "absent.json"])
    names = sorted(p.name for p in src.iterdir())
    assert sorted(p.name for p in dest.iterdir()) == names
    assert all((dest / n).read_bytes() == (src / n).read_bytes() for n in names)
    assert result.skipped_optional == ["absent.json"]
    assert result.expected_bytes == result.bytes_fetched == sum((src / n).stat().st_size for n in names)
    assert result.fetched[-1] == "model.safetensors.index.json", "the index comes last"
    assert {auth for _method, _path, auth in Handler.log} == {"Bearer s3cret"}
    assert all(_gets(n) == 1 for n in names if n.endswith(".safetensors"))
    again = fetch_checkpoint(Mirror(url), str(dest), "model.safetensors.index.json", ["config.json"], [])
    assert again.fetched == [] and again.bytes_fetched == 0
    assert all(_gets(n) == 1 for n in names if n.endswith(".safetensors"))
    assert tree_bytes(str(dest)) == (sum((src / n).stat().st_size for n in names), len(names))


@pytest.mark.parametrize("ranges", [True, False])
def test_fetch_resumes_a_part_file(mirror_dir: tuple[Path, str], tmp_path: Path, ranges: bool) -> None:
    src, url = mirror_dir
    shard = "model-00002-of-00004.safetensors"
    full = (src / shard).read_bytes()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / (shard + ".part")).write_bytes(full[:1000])
    Handler.ranges = ranges
    try:
        result = fetch_checkpoint(Mirror(url), str(dest), "model.safetensors.index.json", ["config.json"], [])
    finally:
        Handler.ranges = True
    assert (dest / shard).read_bytes() == full
    assert not (dest / (shard + ".part")).exists()
    total = sum((src / n).stat().st_size for n in result.fetched)
    assert result.bytes_fetched == (total - 1000 if ranges else total)


def test_fetch_check_mode_writes_nothing(mirror_dir: tuple[Path, str], tmp_path: Path) -> None:
    url = mirror_dir[1]
    dest = tmp_path / "dest"
    result = fetch_checkpoint(Mirror(url), str(dest), "model.safetensors.index.json", ["config.json"], [], check_mode=True)
    assert len(result.fetched) == 6 and result.bytes_fetched == 0 and not dest.exists()
    assert all(method != "GET" or path.endswith("index.json") for method, path, _auth in Handler.log)


@pytest.mark.parametrize("files,index,match", [
    (["missing.json"], "model.safetensors.index.json", "missing.json is missing on the mirror"),
    (["config.json"], "nope.index.json", "the mirror has no index"),
])
def test_fetch_errors_name_the_url(mirror_dir: tuple[Path, str], tmp_path: Path, files, index, match) -> None:
    url = mirror_dir[1]
    with pytest.raises(FetchError, match=match):
        fetch_checkpoint(Mirror(url), str(tmp_path / "d"), index, files, [])


@pytest.mark.parametrize("source,expected", [
    ("modelscope", ["ms", "download", "--model", "org/m", "--local_dir", "/d"]),
    ("huggingface", ["ms", "download", "org/m", "--local-dir", "/d"]),
])
def test_hub_argv_and_env(source: str, expected: list[str]) -> None:
    assert hub_argv(source, "ms", "org/m", "/d") == expected
    assert hub_argv(source, "ms", "org/m", "/d", "v1")[-2:] == ["--revision", "v1"]
    assert list(hub_env(source, "tok").values()) == ["tok"] and hub_env(source, None) == {}

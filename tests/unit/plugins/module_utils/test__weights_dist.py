"""Tests for _weights_dist: the doubling tree, and the HTTP mirror download against a real loopback server."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(REPO / "tests" / "unit"))

from weights_helpers import QuietHandler, make_checkpoint, serve_directory  # noqa: E402

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights_dist import (  # noqa: E402
    FetchError,
    MarkedCopy,
    Mirror,
    PullError,
    clear_markers,
    doubling_rounds,
    fetch_checkpoint,
    hub_argv,
    hub_env,
    marker_file,
    pull_checkpoint,
    read_marker,
    rsync_argv,
    tree_bytes,
    write_marker,
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


class Handler(QuietHandler):
    """Static files with optional Range support; records every request line and Authorization header."""

    ranges = True
    log: list[tuple[str, str, str]] = []

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
        return io.BytesIO(data[start:])


@pytest.fixture
def mirror_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "mirror"
    make_checkpoint(root / "ck", filler_shards=2, filler_bytes=65536)
    (root / "ck" / "tokenizer.json").write_text("{}")
    Handler.log = []
    with serve_directory(root, Handler) as base:
        yield root / "ck", base + "ck"


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


# In-cluster copies: weights_pull's logic against a local rsync (no ssh), the source filled while it runs.

RUN_MARKER = ".ascend-ops-weights-20260101T000000000000-src"


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def _wait_for(path: Path, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.02)
    return False


def test_markers(tmp_path: Path) -> None:
    assert read_marker(str(tmp_path), RUN_MARKER) is None
    write_marker(str(tmp_path), RUN_MARKER)
    assert read_marker(str(tmp_path), RUN_MARKER) == ""
    write_marker(str(tmp_path), RUN_MARKER, error="HTTP 404\non x")
    assert read_marker(str(tmp_path), RUN_MARKER) == "HTTP 404 on x"
    (tmp_path / "keep.json").write_text("{}")
    assert clear_markers(str(tmp_path)) == [marker_file(RUN_MARKER)]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]
    with pytest.raises(ValueError, match="must be a plain file name"):
        marker_file("../x")


class Failed(Exception):
    """What the fake module's fail_json raises: the result it was given."""


class FakeModule:
    def fail_json(self, **result) -> None:
        raise Failed(result)


def test_marked_copy_fails_or_marks_ok_after_the_check(tmp_path: Path) -> None:
    """The marker protocol weights_fetch, weights_hub and weights_pull share."""
    with pytest.raises(Failed, match="done_marker: completion marker '../x' must be a plain file name"):
        MarkedCopy(FakeModule(), str(tmp_path), "../x")
    dest = tmp_path / "dest"
    copy = MarkedCopy(FakeModule(), str(dest), RUN_MARKER)
    copy.start()
    assert dest.is_dir()
    write_marker(str(dest), ".ascend-ops-weights-19990101T000000000000-src")  # an earlier run's
    copy.start()
    assert list(dest.iterdir()) == []
    with pytest.raises(Failed) as failed:  # nothing there yet: the check fails, the marker says why
        copy.finish(None, lambda exc: "into %s: %s" % (dest, exc), lambda exc: "short: %s" % exc, cmd=["x"])
    assert failed.value.args[0]["msg"].startswith("into %s: " % dest) and failed.value.args[0]["cmd"] == ["x"]
    assert read_marker(str(dest), RUN_MARKER).startswith("short: ")
    with pytest.raises(Failed, match="^{'msg': 'HTTP 404'}$"):
        copy.fail("HTTP 404")
    assert read_marker(str(dest), RUN_MARKER) == "HTTP 404"
    made = make_checkpoint(dest, filler_shards=1)
    assert copy.finish(made.index_path.name, str)["shard_count"] == 3
    assert read_marker(str(dest), RUN_MARKER) == ""
    unmarked = MarkedCopy(FakeModule(), str(tmp_path / "other"), None)
    with pytest.raises(Failed):
        unmarked.fail("no marker")
    assert not (tmp_path / "other").exists()


def test_rsync_argv_keeps_the_index_for_the_final_pass() -> None:
    follow = rsync_argv("rsync", "ssh -i k", "root@h:./", "/d/", "model.safetensors.index.json", RUN_MARKER, False)
    final = rsync_argv("rsync", "ssh -i k", "root@h:./", "/d/", "model.safetensors.index.json", RUN_MARKER, True)
    assert follow.index("--include=/" + marker_file(RUN_MARKER)) < follow.index("--exclude=.*"), "first match wins"
    assert "--exclude=/model.safetensors.index.json" in follow and "--exclude=/model.safetensors.index.json" not in final
    assert not any(marker_file(RUN_MARKER) in arg for arg in final)
    assert follow[-2:] == final[-2:] == ["root@h:./", "/d/"]


@pytest.mark.skipif(not shutil.which("rsync"), reason="rsync not installed")
def test_pull_follows_a_source_being_filled(tmp_path: Path) -> None:
    """The receiver takes each shard while the source is still downloading the next one; the index and the
    source's marker come last; the copy is identical and holds no partial, temp or marker file."""
    made = make_checkpoint(tmp_path / "made", filler_shards=3, filler_bytes=65536)
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    (src / ".cache").mkdir()
    (src / ".cache" / "junk").write_text("hub client state")
    shards = sorted(p.name for p in made.path.iterdir() if p.name.endswith(".safetensors"))
    seen_early: list[str] = []

    def download() -> None:
        shutil.copy(made.path / "config.json", src / "config.json")
        for name in shards:
            (src / (name + ".part")).write_bytes((made.path / name).read_bytes()[:100])  # in progress
            shutil.copy(made.path / name, src / (name + ".part"))
            (src / (name + ".part")).rename(src / name)
            if name == shards[0] and _wait_for(dest / name):
                seen_early.append(name)  # the receiver has it while the source is not finished
        shutil.copy(made.index_path, src / made.index_path.name)
        write_marker(str(src), RUN_MARKER)

    thread = threading.Thread(target=download)
    thread.start()
    try:
        result = pull_checkpoint("rsync", None, str(src) + "/", "src", str(dest), made.index_path.name,
                                 RUN_MARKER, interval=0.05, stall_timeout=30)
    finally:
        thread.join()
    assert seen_early == [shards[0]]
    assert _files(dest) == _files(made.path)
    assert [p.name for p in dest.iterdir() if p.name.startswith(".") or p.name.endswith(".part")] == []
    assert result.files[-1] == made.index_path.name, "the index comes last"
    assert result.bytes_pulled == sum(len(b) for b in _files(made.path).values())
    again = pull_checkpoint("rsync", None, str(src) + "/", "src", str(dest), made.index_path.name, None)
    assert again.files == [] and again.passes == 1


@pytest.mark.skipif(not shutil.which("rsync"), reason="rsync not installed")
def test_pull_stops_when_the_source_fails_or_stalls(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    (src / "config.json").write_text("{}")
    with pytest.raises(PullError, match="no new file from src .* for 0 s"):
        pull_checkpoint("rsync", None, str(src) + "/", "src", str(dest), "model.safetensors.index.json",
                        RUN_MARKER, interval=0.05, stall_timeout=0)
    write_marker(str(src), RUN_MARKER, error="weights_fetch into /x: HTTP 404 on model-00002")
    with pytest.raises(PullError, match="source src reports its copy failed: weights_fetch into /x: HTTP 404"):
        pull_checkpoint("rsync", None, str(src) + "/", "src", str(dest), "model.safetensors.index.json",
                        RUN_MARKER, interval=0.05, stall_timeout=30)


def test_pull_refused_fails_at_once(tmp_path: Path) -> None:
    calls = []

    def refused(argv, **_kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 255, "", "root@10.0.0.1: Permission denied (publickey).\n")

    with pytest.raises(PullError, match=r"pull from node0 \(root@10.0.0.1:./\) refused.*Permission denied"):
        pull_checkpoint("rsync", "ssh", "root@10.0.0.1:./", "node0", str(tmp_path / "d"), "i.json", RUN_MARKER,
                        interval=0, run=refused)
    assert len(calls) == 1

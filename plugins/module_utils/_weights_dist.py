# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Getting a checkpoint onto every host (standard library and ansible.module_utils.urls).

- ``doubling_rounds``: the in-cluster copy schedule. Round k: every host that holds the weights
  serves one host that does not, so N hosts are served in ceil(log2(N / holders)) rounds and the
  hub link is crossed once.
- ``fetch_checkpoint``: a plain HTTP(S) mirror: the index first, then every shard it names and a list
  of side files; each file goes to ``<name>.part`` (resumed with Range when the server allows it)
  and is renamed once its size matches Content-Length. Files already complete are not fetched.
- ``tree_bytes``: bytes under a directory, partial files included (progress reports).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional

from ansible.module_utils import urls

CHUNK = 1024 * 1024


class FetchError(Exception):
    """A download problem; the message names the URL and what was seen."""


def doubling_rounds(holders: list[str], needers: list[str]) -> list[list[dict[str, str]]]:
    """Rounds of {"src", "dst"} pairs: each holder serves at most one needer per round."""
    if not holders and needers:
        raise ValueError("no host holds the weights, cannot serve %s" % ", ".join(needers))
    have = list(dict.fromkeys(holders))
    waiting = [host for host in needers if host not in have]
    rounds = []
    while waiting:
        pairs = [{"src": src, "dst": dst} for src, dst in zip(have, waiting)]
        rounds.append(pairs)
        have += [pair["dst"] for pair in pairs]
        waiting = waiting[len(pairs):]
    return rounds


def tree_bytes(path: str) -> tuple[int, int]:
    """(bytes, files) of regular files under ``path``; 0, 0 when it does not exist."""
    total = count = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
                count += 1
            except FileNotFoundError:
                continue  # a temp file renamed while we walk
    return total, count


@dataclass
class FetchResult:
    """What ``fetch_checkpoint`` did (or would do in check mode)."""

    fetched: list[str] = field(default_factory=list)
    skipped_optional: list[str] = field(default_factory=list)
    bytes_fetched: int = 0
    expected_bytes: int = 0
    files: int = 0


class Mirror:
    """One HTTP mirror directory; ``token`` goes into an Authorization header only."""

    def __init__(self, base_url: str, token: Optional[str] = None, timeout: float = 60.0) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.headers = {"Authorization": "Bearer %s" % token} if token else {}
        self.timeout = timeout

    def url(self, name: str) -> str:
        return urllib.parse.urljoin(self.base_url, urllib.parse.quote(name))

    def _open(self, name: str, method: str = "GET", offset: int = 0):
        headers = dict(self.headers)
        if offset:
            headers["Range"] = "bytes=%d-" % offset
        try:
            # bytes exactly as served (sizes are checked); no netrc: the token is the only credential sent
            return urls.open_url(self.url(name), headers=headers, method=method, timeout=self.timeout,
                                 decompress=False, use_netrc=False)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise FetchError("%s %s answered HTTP %d %s" % (method, self.url(name), exc.code, exc.reason)) from None
        except (OSError, urls.ConnectionError) as exc:
            raise FetchError("%s %s failed: %s" % (method, self.url(name), getattr(exc, "reason", exc))) from None

    def size(self, name: str) -> Optional[int]:
        """Content-Length from a HEAD request; None when the file is absent (404)."""
        try:
            with self._open(name, "HEAD") as resp:
                length = resp.headers.get("Content-Length")
        except FetchError as exc:
            if " HTTP 404 " in str(exc):
                return None
            raise
        if length is None or not length.isdigit():
            raise FetchError("HEAD %s gave no Content-Length; the mirror must serve plain files" % self.url(name))
        return int(length)

    def read(self, name: str) -> bytes:
        with self._open(name) as resp:
            return resp.read()

    def download(self, name: str, dest: str, size: int) -> int:
        """Fetch ``name`` into ``dest`` via ``dest.part``; returns the bytes transferred."""
        part = dest + ".part"
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if have > size:
            os.unlink(part)
            have = 0
        moved = 0
        if have < size:
            with self._open(name, offset=have) as resp:
                mode = "ab" if have and resp.status == 206 else "wb"  # 200: the server ignored Range
                with open(part, mode) as out:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        moved += len(block)
                    out.flush()
                    os.fsync(out.fileno())
        got = os.path.getsize(part)
        if got != size:
            raise FetchError("%s: received %d bytes, Content-Length said %d; rerun to resume" % (self.url(name), got, size))
        os.replace(part, dest)
        return moved


def shard_names(index_text: bytes, origin: str) -> list[str]:
    """Sorted shard file names of an index's weight_map."""
    try:
        weight_map = json.loads(index_text).get("weight_map")
    except (ValueError, AttributeError):
        weight_map = None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise FetchError("index %s has no weight_map of tensor -> shard file names" % origin)
    names = sorted(set(weight_map.values()))
    for name in names:
        if name != os.path.basename(name) or name.startswith("."):
            raise FetchError("index %s names shard %r outside its directory" % (origin, name))
    return names


def _local_size(path: str) -> Optional[int]:
    return os.path.getsize(path) if os.path.isfile(path) else None


def fetch_checkpoint(mirror: Mirror, dest: str, index_name: str, files: list[str], optional_files: list[str],
                     check_mode: bool = False) -> FetchResult:
    """Make ``dest`` hold the mirror's side files, every shard the index names, then the index."""
    result = FetchResult()
    plan: list[tuple[str, int]] = []
    index_size = mirror.size(index_name)
    if index_size is None:
        raise FetchError("the mirror has no index: HEAD %s answered 404; check the URL and index name"
                         % mirror.url(index_name))
    index_path = os.path.join(dest, index_name)
    if _local_size(index_path) == index_size:
        with open(index_path, "rb") as fp:
            index_text = fp.read()
    else:
        index_text = mirror.read(index_name)
    names = shard_names(index_text, mirror.url(index_name))
    wanted = [(name, True) for name in files] + [(name, False) for name in optional_files]
    wanted += [(name, True) for name in names]
    for name, required in wanted:
        size = mirror.size(name)
        if size is None:
            if required:
                raise FetchError("%s is missing on the mirror (HTTP 404)" % mirror.url(name))
            result.skipped_optional.append(name)
            continue
        plan.append((name, size))
    plan.append((index_name, index_size))  # last: a complete index means the download finished
    for name, size in plan:
        result.expected_bytes += size
        result.files += 1
        if _local_size(os.path.join(dest, name)) == size:
            continue
        result.fetched.append(name)
        if not check_mode:
            os.makedirs(dest, exist_ok=True)
            result.bytes_fetched += mirror.download(name, os.path.join(dest, name), size)
    return result


HUB_TOKEN_ENV = {"modelscope": "MODELSCOPE_API_TOKEN", "huggingface": "HF_TOKEN"}


def hub_argv(source: str, executable: str, repo_id: str, dest: str, revision: Optional[str] = None) -> list[str]:
    """argv of the hub client: ``modelscope download --model ID --local_dir DIR`` or
    ``hf download ID --local-dir DIR`` (``huggingface-cli`` takes the same words)."""
    if source == "modelscope":
        argv = [executable, "download", "--model", repo_id, "--local_dir", dest]
    elif source == "huggingface":
        argv = [executable, "download", repo_id, "--local-dir", dest]
    else:
        raise ValueError("hub source must be modelscope or huggingface, got %r" % source)
    return argv + (["--revision", revision] if revision else [])


def hub_env(source: str, token: Optional[str]) -> dict[str, str]:
    """Environment for the hub client: the token only ever travels here, never in argv."""
    return {HUB_TOKEN_ENV[source]: token} if token else {}

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
- ``pull_checkpoint``: the in-cluster copy. A receiver pulls with rsync from its source while the
  source is still being filled (a download or another pull), file by file as each one completes there,
  and finishes once the source has written its completion marker; so the copies run behind the one
  download instead of after it.
- Completion markers: a host that serves others writes ``<marker>.done`` (``ok`` or ``failed: <why>``)
  into the checkpoint directory when its copy is complete and checked. The name carries the run and the
  host, so a marker left by an earlier run never counts; hidden files are never copied on.
  ``MarkedCopy`` is that protocol for the modules that fill a directory (weights_fetch, weights_hub,
  weights_pull).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ansible.module_utils import urls

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights import WeightsError, verify_weights

CHUNK = 1024 * 1024
MARKER_PREFIX = ".ascend-ops-weights-"
MARKER_SUFFIX = ".done"


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
        # One TLS context for every request (open_url would build one per request, ~40 ms each: 2 per file).
        # No netrc: the token is the only credential sent.
        self.request = urls.Request(use_netrc=False, context=urls.make_context())

    def url(self, name: str) -> str:
        return urllib.parse.urljoin(self.base_url, urllib.parse.quote(name))

    def _open(self, name: str, method: str = "GET", offset: int = 0):
        headers = dict(self.headers)
        if offset:
            headers["Range"] = "bytes=%d-" % offset
        try:
            # bytes exactly as served (sizes are checked)
            return self.request.open(method, self.url(name), headers=headers, timeout=self.timeout, decompress=False)
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


class PullError(Exception):
    """An in-cluster copy problem; the message names the source and what was seen."""


def marker_file(marker: str) -> str:
    """File name of the completion marker ``marker`` (a hidden name chosen by the role)."""
    if not marker.startswith(MARKER_PREFIX) or "/" in marker:
        raise ValueError("completion marker %r must be a plain file name starting with %s" % (marker, MARKER_PREFIX))
    return marker + MARKER_SUFFIX


def clear_markers(path: str) -> list[str]:
    """Remove every completion marker (of any run) from ``path``; returns the names removed."""
    removed = []
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return removed
    for name in names:
        if name.startswith(MARKER_PREFIX) and name.endswith(MARKER_SUFFIX):
            try:
                os.unlink(os.path.join(path, name))
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


def write_marker(path: str, marker: str, error: Optional[str] = None) -> None:
    """Write ``<marker>.done`` atomically: ``ok`` or ``failed: <error>`` (one line)."""
    os.makedirs(path, exist_ok=True)
    final = os.path.join(path, marker_file(marker))
    tmp = final + ".tmp"
    text = "ok\n" if error is None else "failed: %s\n" % " ".join(str(error).split())
    with open(tmp, "w", encoding="utf-8") as fp:
        fp.write(text)
        fp.flush()
        os.fsync(fp.fileno())
    os.replace(tmp, final)


def read_marker(path: str, marker: str) -> Optional[str]:
    """None while ``<marker>.done`` is absent; '' when it says ok; the reason when it says failed."""
    try:
        with open(os.path.join(path, marker_file(marker)), encoding="utf-8") as fp:
            text = fp.read().strip()
    except FileNotFoundError:
        return None
    if text == "ok":
        return ""
    return text[len("failed:"):].strip() if text.startswith("failed:") else "unreadable marker %r" % text


def check_marker_option(module: Any, option: str, marker: Optional[str]) -> None:
    """Fail ``module`` (an AnsibleModule) with ``<option>: <why>`` when ``marker`` is set but no valid marker name."""
    if marker:
        try:
            marker_file(marker)
        except ValueError as exc:
            module.fail_json(msg="%s: %s" % (option, exc))


class MarkedCopy:
    """The completion marker of a module that fills the checkpoint directory ``path`` while other hosts may be
    copying from it (weights_fetch, weights_hub, weights_pull). ``marker`` None: no marker is written.

    ``start`` before the copy, then either ``fail`` (writes ``failed: <why>`` so the hosts behind this one stop
    at once, then fails the module) or ``finish`` (checks the copy as weights_verify does, headers only, then
    writes ``ok``)."""

    def __init__(self, module: Any, path: str, marker: Optional[str], option: str = "done_marker") -> None:
        check_marker_option(module, option, marker)
        self.module = module
        self.path = path
        self.marker = marker

    def start(self) -> None:
        """The directory exists from the start, so hosts copying from this one can connect at once; no marker
        of an earlier run is left in it."""
        os.makedirs(self.path, exist_ok=True)
        clear_markers(self.path)

    def fail(self, msg: str, marker_error: Optional[str] = None, **result: Any) -> None:
        """Mark the copy failed (with ``marker_error``, default ``msg``) and fail the module with ``msg``."""
        if self.marker:
            write_marker(self.path, self.marker, error=msg if marker_error is None else marker_error)
        self.module.fail_json(msg=msg, **result)

    def finish(self, index_name: Optional[str], describe: Callable[[Exception], str],
               describe_marker: Optional[Callable[[Exception], str]] = None, **result: Any) -> dict:
        """Check the copy; when it is incomplete ``fail`` with ``describe(exc)`` (the marker with
        ``describe_marker(exc)``, default the same) and ``result``; else mark it ok. Returns verify_weights'."""
        try:
            verified = verify_weights(self.path, index_name)
        except (WeightsError, OSError) as exc:
            self.fail(describe(exc), describe_marker(exc) if describe_marker else None, **result)
        if self.marker:
            write_marker(self.path, self.marker)
        return verified


@dataclass
class PullResult:
    """What ``pull_checkpoint`` did."""

    files: list[str] = field(default_factory=list)
    bytes_pulled: int = 0
    passes: int = 0
    seconds: float = 0.0


_FATAL = ("Permission denied", "Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
          "has been disabled on this server", "is not allowed")


def rsync_argv(rsync: str, rsh: Optional[str], source: str, dest: str, index_name: str,
               source_marker: Optional[str], final: bool) -> list[str]:
    """One rsync pass. Hidden files (temp files, markers, hub client caches) and ``*.part`` /
    ``*.incomplete`` downloads are never taken. Before the final pass the index is left out (a
    complete index means a complete copy, here as after a download) and the source's marker is taken
    so the receiver sees when the source is done. Partial files go to a hidden partial dir, so a file
    under its own name is always whole and an interrupted copy resumes."""
    argv = [rsync, "--recursive", "--links", "--times", "--perms", "--partial-dir=.rsync-partial",
            "--out-format=%l %n"]
    if rsh:
        argv += ["--rsh", rsh]
    if not final and source_marker:
        argv.append("--include=/" + marker_file(source_marker))
    argv += ["--exclude=.*", "--exclude=*.part", "--exclude=*.incomplete"]
    if not final:
        argv.append("--exclude=/" + index_name)
    return argv + [source, dest.rstrip("/") + "/"]


def _transferred(stdout: str) -> list[tuple[str, int]]:
    """(name, size) of the files an ``--out-format='%l %n'`` pass printed (directories left out)."""
    result = []
    for line in stdout.splitlines():
        size, _sep, name = line.strip().partition(" ")
        if name and not name.endswith("/") and size.isdigit():
            result.append((name, int(size)))
    return result


def pull_checkpoint(rsync: str, rsh: Optional[str], source: str, source_name: str, dest: str,
                    index_name: str, source_marker: Optional[str], interval: float = 2.0,
                    stall_timeout: float = 1800.0, max_errors: int = 30,
                    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> PullResult:
    """Make ``dest`` a copy of ``source`` (an rsync source such as ``root@10.0.0.1:./``).

    ``source_marker`` None: the source already holds a complete, checked copy, one pass is enough.
    Otherwise pass after pass (``interval`` apart) takes every file complete at the source until its
    marker says done, then a final pass takes the rest and the index. Fails when the source reports a
    failure, when no new file arrived for ``stall_timeout`` seconds, at once when ssh refuses the key or
    the host key, or rrsync the options, else after ``max_errors`` rsync failures in a row."""
    started = clock()
    result = PullResult()
    os.makedirs(dest, exist_ok=True)
    last_new = clock()
    errors: list[str] = []

    def one_pass(final: bool) -> bool:
        argv = rsync_argv(rsync, rsh, source, dest, index_name, source_marker, final)
        proc = run(argv, capture_output=True, text=True, check=False)
        result.passes += 1
        got = [(name, size) for name, size in _transferred(proc.stdout) if not name.startswith(MARKER_PREFIX)]
        result.files += [name for name, _size in got]
        result.bytes_pulled += sum(size for _name, size in got)
        # 24: a file vanished while listed (a temp file renamed at the source): the next pass takes it.
        if proc.returncode in (0, 24):
            errors.clear()
        else:
            errors.append("rsync exited %d: %s" % (proc.returncode, " ".join(proc.stderr.split())[-400:]))
            if any(text in proc.stderr for text in _FATAL):
                raise PullError("pull from %s (%s) refused, %s; rerun the playbook so the keys and the "
                                "pinned host key are set up again" % (source_name, source, errors[-1]))
        return bool(got)

    while source_marker:
        if one_pass(final=False):
            last_new = clock()
        status = read_marker(dest, source_marker)
        if status is not None:
            os.unlink(os.path.join(dest, marker_file(source_marker)))
            if status:
                raise PullError("source %s reports its copy failed: %s; fix that and rerun the playbook (this copy "
                                "keeps the files it has and resumes)" % (source_name, status))
            break
        if len(errors) >= max_errors:
            raise PullError("%d pulls from %s (%s) failed in a row, last: %s"
                            % (len(errors), source_name, source, errors[-1]))
        if clock() - last_new > stall_timeout:
            raise PullError("no new file from %s (%s) for %d s and it has not finished; check the download or copy "
                            "on %s, then rerun (the copy resumes)" % (source_name, source, stall_timeout, source_name))
        sleep(interval)
    errors.clear()
    for _attempt in range(3):
        one_pass(final=True)
        if not errors:
            break
        sleep(interval)
    if errors:
        raise PullError("final pull from %s (%s) failed: %s" % (source_name, source, errors[-1]))
    result.seconds = round(clock() - started, 1)
    return result

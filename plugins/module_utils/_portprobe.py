# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TCP port probes of the port_probe module: is a port free, who holds it, can a peer reach it,
and a short-lived listener that answers for ports nothing listens on yet. Stdlib only."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ansible_collections.ascend_ops.vllm.plugins.module_utils._netcheck import parse_proc_net_tcp, unit_of_cgroup

PROC = "/proc"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def can_bind(port: int, address: str = "0.0.0.0") -> bool:
    """True when a listener could bind ``address:port`` now (SO_REUSEADDR, as servers set it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _listen_inodes(port: int, proc: str = PROC) -> set:
    inodes: set = set()
    for table in ("tcp", "tcp6"):
        inodes.update(parse_proc_net_tcp(_read(f"{proc}/net/{table}")).get(port, []))
    return inodes


def _fd_links(fd_dir: str) -> List[str]:
    """Targets of a process's fds; fds that close meanwhile (or are not ours to read) are skipped."""
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return []
    links = []
    for name in names:
        try:
            links.append(os.readlink(f"{fd_dir}/{name}"))
        except OSError:
            continue
    return links


def owner_of(port: int, proc: str = PROC) -> Optional[Dict[str, Any]]:
    """The process listening on ``port``: {pid, process, unit}; None when no owner is visible."""
    inodes = _listen_inodes(port, proc)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in sorted((int(p) for p in os.listdir(proc) if p.isdigit())):
        if wanted.intersection(_fd_links(f"{proc}/{pid}/fd")):
            return {"pid": pid, "process": _read(f"{proc}/{pid}/comm").strip(),
                    "unit": unit_of_cgroup(_read(f"{proc}/{pid}/cgroup"))}
    return {"pid": None, "process": None, "unit": None}


def port_state(port: int, allowed_units: Sequence[str], proc: str = PROC) -> Dict[str, Any]:
    """Free, or held by an allowed unit (``allowed_units``: regexes on the unit name), or taken."""
    if can_bind(port):
        return {"port": port, "free": True, "allowed": True, "pid": None, "process": None, "unit": None}
    owner = owner_of(port, proc) or {"pid": None, "process": None, "unit": None}
    allowed = bool(owner["unit"]) and any(re.fullmatch(p, owner["unit"]) for p in allowed_units)
    return dict(owner, port=port, free=False, allowed=allowed)


def connect(address: str, port: int, timeout: float) -> Dict[str, Any]:
    """One TCP connect: ok, or the error (refused, timed out, unreachable)."""
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            pass
        ok, error = True, None
    except socket.timeout:
        ok, error = False, f"timed out after {timeout:g}s (filtered by a firewall?)"
    except OSError as exc:
        ok, error = False, exc.strerror or str(exc)
    return {"address": address, "port": port, "ok": ok, "error": error,
            "ms": round((time.monotonic() - started) * 1000, 3)}


def connect_all(targets: Sequence[Tuple[str, int]], timeout: float, parallel: int = 16) -> List[Dict[str, Any]]:
    """Connect to every (address, port), in parallel; results in the order of ``targets``."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets)))) as pool:
        return list(pool.map(lambda t: connect(t[0], t[1], timeout), targets))


def start_time(pid: int, proc: str = PROC) -> Optional[int]:
    """Field 22 of /proc/PID/stat (clock ticks since boot): tells a PID from a reused one."""
    stat = _read(f"{proc}/{pid}/stat")
    if not stat:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, started: int, proc: str = PROC) -> bool:
    """``pid`` is still the process started at ``started`` and not a zombie."""
    stat = _read(f"{proc}/{pid}/stat")
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z" and start_time(pid, proc) == started


def _serve(socks: List[socket.socket], deadline: float) -> None:
    """Accept and close every connection until ``deadline`` (monotonic)."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    while (left := deadline - time.monotonic()) > 0:
        for key, _events in selector.select(timeout=min(left, 1.0)):
            try:
                conn, _peer = key.fileobj.accept()
                conn.close()
            except OSError:
                pass


def start_listener(ports: Sequence[int], seconds: float, address: str = "0.0.0.0") -> Dict[str, Any]:
    """Bind every free port of ``ports`` and serve them from a detached process for ``seconds`` at most.

    Returns {pid, start_time, bound, skipped}; pid is None when nothing was bound. The process exits
    by itself at the deadline; stop_listener() ends it earlier.
    """
    socks, bound, skipped = [], [], []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
            sock.listen(64)
        except OSError:
            sock.close()
            skipped.append(port)
            continue
        socks.append(sock)
        bound.append(port)
    if not socks:
        return {"pid": None, "start_time": None, "bound": bound, "skipped": skipped}
    deadline = time.monotonic() + seconds
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.write(write_end, str(os.getpid()).encode())
        os.close(write_end)
        try:
            _serve(socks, deadline)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as pipe:
        pid = int(pipe.read().decode())
    for sock in socks:
        sock.close()
    return {"pid": pid, "start_time": start_time(pid), "bound": bound, "skipped": skipped}


def stop_listener(pid: int, started: Optional[int], wait: float = 5.0, proc: str = PROC) -> bool:
    """End the listener ``pid`` if it is still the process started at ``started``; True when it was running."""
    if started is None or not _alive(pid, started, proc):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while _alive(pid, started, proc) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid, started, proc):
        os.kill(pid, signal.SIGKILL)
    return True

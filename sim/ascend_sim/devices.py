"""Per-NPU exclusive locks: which NPUs a running sim rank holds, and by whom."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

DEFAULT_LOCK_DIR = "/run/ascend-sim"


class DeviceBusy(Exception):
    """An NPU is held by another process."""


def lock_dir() -> Path:
    """Directory of the lock files (env VLLM_SIM_LOCK_DIR)."""
    return Path(os.environ.get("VLLM_SIM_LOCK_DIR", DEFAULT_LOCK_DIR))


def _lock_file(directory: Path, npu: int) -> Path:
    return directory / f"npu{npu}.lock"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def acquire(npus: list[int], directory: Path | None = None) -> list[int]:
    """Take exclusive locks on npus for this process's lifetime; return the fds.

    Raises DeviceBusy naming the NPU and holder PID; locks taken so far are released.
    """
    directory = directory or lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    fds: list[int] = []
    for npu in npus:
        path = _lock_file(directory, npu)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            for held in fds:
                os.close(held)
            holder = _read_pid(path)
            raise DeviceBusy(f"NPU {npu} is already in use by process {holder} (lock {path}); "
                             "stop that process or choose other devices with ASCEND_RT_VISIBLE_DEVICES") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        fds.append(fd)
    return fds


def holders(count: int, directory: Path | None = None) -> dict[int, int]:
    """Map NPU id -> PID of the process holding it, for NPUs 0..count-1."""
    directory = directory or lock_dir()
    out: dict[int, int] = {}
    for npu in range(count):
        path = _lock_file(directory, npu)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            out[npu] = _read_pid(path) or 0
        finally:
            os.close(fd)
    return out

"""vLLM-style log lines on stdout: ``INFO 08-12 10:00:00 [api_server.py] message``."""

from __future__ import annotations

import sys
import time


def log(level: str, where: str, message: str) -> None:
    """Print one log line and flush (journald reads it line by line)."""
    stamp = time.strftime("%m-%d %H:%M:%S")
    sys.stdout.write(f"{level} {stamp} [{where}] {message}\n")
    sys.stdout.flush()


def access(client: str, method: str, target: str, status: int, reason: str) -> None:
    """Uvicorn-style access line."""
    sys.stdout.write(f'INFO:     {client} - "{method} {target} HTTP/1.1" {status} {reason}\n')
    sys.stdout.flush()

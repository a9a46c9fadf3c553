"""Data-parallel join: a TCP coordinator and the per-process client.

Wire protocol: newline-delimited JSON over TCP.
  client -> coordinator  {"op": "join", "ranks": [..], "dp_size": N, "host": h, "port": p, "pid": n}
  coordinator -> clients {"op": "status", "joined": k, "dp_size": N}   (pushed on every change)
  coordinator -> client  {"op": "error", "message": "..."}            (join refused; connection closed)
A client keeps its connection open; when it closes, its ranks leave the group.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

from ascend_sim.log import log

WHERE = "core.py"


def _encode(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg) + "\n").encode()


class Coordinator:
    """Tracks which DP ranks have joined; pushes the joined count to every member."""

    def __init__(self, dp_size: int) -> None:
        self.dp_size = dp_size
        self.members: dict[asyncio.StreamWriter, list[int]] = {}
        self.owner: dict[int, str] = {}

    def _joined(self) -> int:
        return len(self.owner)

    async def _broadcast(self) -> None:
        msg = _encode({"op": "status", "joined": self._joined(), "dp_size": self.dp_size})
        for writer in list(self.members):
            try:
                writer.write(msg)
                await writer.drain()
            except ConnectionError:
                pass

    def _refusal(self, msg: dict[str, Any], who: str) -> str | None:
        if msg.get("op") != "join":
            return f"expected a join message from {who}, got {msg!r}"
        if msg.get("dp_size") != self.dp_size:
            return (f"conflicting data parallel size: {who} has --data-parallel-size {msg.get('dp_size')}, "
                    f"the DP master has {self.dp_size}")
        for rank in msg.get("ranks", []):
            if not 0 <= rank < self.dp_size:
                return f"DP rank {rank} from {who} is outside 0..{self.dp_size - 1}"
            if rank in self.owner:
                return f"DP rank {rank} from {who} is already taken by {self.owner[rank]}"
        return None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one member connection."""
        try:
            msg = json.loads(await reader.readline() or b"{}")
        except (json.JSONDecodeError, ConnectionError):
            writer.close()
            return
        who = f"{msg.get('host')}:{msg.get('port')} (pid {msg.get('pid')})"
        refusal = self._refusal(msg, who)
        if refusal:
            log("ERROR", WHERE, f"DP coordinator refused join: {refusal}")
            writer.write(_encode({"op": "error", "message": refusal}))
            await writer.drain()
            writer.close()
            return
        ranks = list(msg["ranks"])
        self.members[writer] = ranks
        self.owner.update({r: who for r in ranks})
        log("INFO", WHERE, f"DP ranks {ranks} joined from {who}; {self._joined()}/{self.dp_size} ranks present")
        await self._broadcast()
        try:
            while await reader.readline():
                pass
        except ConnectionError:
            pass
        self.members.pop(writer, None)
        for rank in ranks:
            self.owner.pop(rank, None)
        log("WARNING", WHERE, f"DP ranks {ranks} from {who} left; {self._joined()}/{self.dp_size} ranks present")
        writer.close()
        await self._broadcast()


class Client:
    """Joins the coordinator with this process's ranks and follows the joined count."""

    def __init__(self, address: str, port: int, ranks: list[int], dp_size: int, identity: dict[str, Any],
                 on_fatal: Callable[[str], None]) -> None:
        self.address, self.port, self.ranks, self.dp_size = address, port, ranks, dp_size
        self.identity, self.on_fatal = identity, on_fatal
        self.connected = False
        self.joined = 0

    @property
    def complete(self) -> bool:
        """True while connected and all dp_size ranks are present."""
        return self.connected and self.joined >= self.dp_size

    async def run(self) -> None:
        """Connect, join and follow; reconnect forever when the coordinator is away."""
        last_note = 0.0
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.address, self.port)
            except OSError as err:
                if time.monotonic() - last_note > 5:
                    log("INFO", WHERE, f"Waiting for DP coordinator at {self.address}:{self.port} "
                        f"({err.strerror or err}); retrying")
                    last_note = time.monotonic()
                await asyncio.sleep(0.3)
                continue
            await self._session(reader, writer)
            last_note = time.monotonic()
            await asyncio.sleep(0.3)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_encode({"op": "join", "ranks": self.ranks, "dp_size": self.dp_size, **self.identity}))
        await writer.drain()
        self.connected = True
        log("INFO", WHERE, f"Joined DP coordinator {self.address}:{self.port} with ranks {self.ranks}")
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if msg.get("op") == "error":
                    self.on_fatal(f"RuntimeError: DP coordinator {self.address}:{self.port} refused ranks "
                                  f"{self.ranks}: {msg['message']}")
                    return
                self.joined = int(msg.get("joined", 0))
        except (ConnectionError, json.JSONDecodeError):
            pass
        finally:
            was_complete = self.complete
            self.connected, self.joined = False, 0
            writer.close()
        log("ERROR" if was_complete else "WARNING", WHERE,
            f"Lost connection to DP coordinator {self.address}:{self.port}; DP group broken, health is 503")

"""``vllm serve``: validation, NPU claiming, DP join, KV listeners and the HTTP server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ascend_sim import devices, dp, httpd, kv, state
from ascend_sim.log import log
from ascend_sim.openai_api import Engine, EngineConfig

WHERE = "api_server.py"
DEFAULT_DP_ADDRESS = "127.0.0.1"
DEFAULT_DP_RPC_PORT = 29550
KV_ROLES = ("kv_producer", "kv_consumer", "kv_both")


class ConfigError(Exception):
    """A startup failure; the message is what vLLM would print."""


@dataclass
class Plan:
    """Everything derived from argv and env before anything is bound."""

    args: argparse.Namespace
    local_ranks: list[int]
    npus: list[int]
    max_model_len: int
    host_coordinator: bool
    dp_address: str
    dp_port: int
    kv_role: str | None = None
    kv_ports: list[int] = field(default_factory=list)
    engine_id: str = ""


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"ValueError: environment variable {name}={raw!r} is not a number") from None


def _model_config(model: str) -> dict[str, Any]:
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError(f"ValueError: Invalid repository ID or local directory specified: '{model}'. "
                          f"{path / 'config.json'} does not exist; point MODEL at a downloaded checkpoint directory")
    try:
        return json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"ValueError: {path / 'config.json'} is not valid JSON: {err}") from None


def _max_model_len(args: argparse.Namespace, cfg: dict[str, Any]) -> int:
    derived = int(cfg.get("max_position_embeddings") or 8192)
    if args.max_model_len is None:
        return derived
    if args.max_model_len > derived and os.environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") != "1":
        raise ConfigError(f"ValueError: User-specified max_model_len ({args.max_model_len}) is greater than the "
                          f"derived max_model_len (max_position_embeddings={derived} in model's config.json). "
                          "Set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 to override")
    return args.max_model_len


def _local_ranks(args: argparse.Namespace) -> list[int]:
    size = args.data_parallel_size
    if size < 1 or args.tensor_parallel_size < 1:
        raise ConfigError("ValueError: --data-parallel-size and --tensor-parallel-size must be >= 1")
    if args.data_parallel_rank is not None:
        if args.headless:
            raise ConfigError("ValueError: --data-parallel-rank cannot be combined with --headless; use "
                              "--data-parallel-start-rank for headless engines")
        if not 0 <= args.data_parallel_rank < size:
            raise ConfigError(f"ValueError: data_parallel_rank ({args.data_parallel_rank}) must be in "
                              f"[0, data_parallel_size={size})")
        return [args.data_parallel_rank]
    if args.headless and size < 2:
        raise ConfigError("ValueError: --headless requires --data-parallel-size > 1 (a headless node runs the "
                          "non-master DP ranks of a larger group)")
    start = args.data_parallel_start_rank or 0
    local = args.data_parallel_size_local if args.data_parallel_size_local is not None else size
    if local < 1:
        raise ConfigError(f"ValueError: data_parallel_size_local must be > 0, got {local}")
    if args.headless and start == 0:
        raise ConfigError("ValueError: --headless engines need --data-parallel-start-rank >= 1 (rank 0 belongs "
                          "to the API server node)")
    if start + local > size:
        raise ConfigError(f"ValueError: ranks {start}..{start + local - 1} (start rank {start}, local size "
                          f"{local}) exceed data_parallel_size={size}")
    return list(range(start, start + local))


def _pick_npus(needed: int, npu_count: int) -> list[int]:
    raw = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
    if raw is None:
        if needed > npu_count:
            raise ConfigError(f"RuntimeError: this process needs {needed} NPUs (tp x local dp) but the machine has "
                              f"{npu_count}")
        return list(range(needed))
    try:
        visible = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"RuntimeError: ASCEND_RT_VISIBLE_DEVICES={raw!r} is not a comma list of ids") from None
    bad = [n for n in visible if not 0 <= n < npu_count]
    if bad:
        raise ConfigError(f"RuntimeError: ASCEND_RT_VISIBLE_DEVICES={raw!r} names NPU {bad[0]} but this machine "
                          f"has {npu_count} NPUs (0-{npu_count - 1})")
    if len(set(visible)) < needed:
        raise ConfigError(f"RuntimeError: ASCEND_RT_VISIBLE_DEVICES={raw!r} exposes {len(set(visible))} NPUs but "
                          f"tp x local dp needs {needed}")
    return visible[:needed]


def _kv_plan(plan: Plan, cfg: dict[str, Any]) -> None:
    role = cfg.get("kv_role")
    if role not in KV_ROLES:
        raise ConfigError(f"ValueError: kv_role must be one of {list(KV_ROLES)}, got {role!r}")
    args = plan.args
    tp = args.tensor_parallel_size
    extra = cfg.get("kv_connector_extra_config") or {}
    side = "prefill" if role == "kv_producer" else "decode"
    if role != "kv_both" and isinstance(extra.get(side), dict):
        want_dp, want_tp = extra[side].get("dp_size"), extra[side].get("tp_size")
        if want_dp is not None and int(want_dp) != args.data_parallel_size:
            raise ConfigError(f"ValueError: KV transfer '{side}' config has a conflicting data parallel size: "
                              f"dp_size={want_dp} but --data-parallel-size={args.data_parallel_size}")
        if want_tp is not None and int(want_tp) != tp:
            raise ConfigError(f"ValueError: KV transfer '{side}' config has a conflicting tensor parallel size: "
                              f"tp_size={want_tp} but --tensor-parallel-size={tp}")
    try:
        base = int(cfg.get("kv_port", 20001))
    except (TypeError, ValueError):
        raise ConfigError(f"ValueError: kv_port {cfg.get('kv_port')!r} is not an integer") from None
    plan.kv_role = role
    plan.kv_ports = [base + rank * tp + t for rank in plan.local_ranks for t in range(tp)]
    plan.engine_id = str(cfg.get("engine_id") or uuid.uuid4())


def build_plan(args: argparse.Namespace) -> Plan:
    """Validate everything that vLLM validates before binding or loading."""
    cfg = _model_config(args.model_tag)
    if not 0 < args.gpu_memory_utilization <= 1:
        raise ConfigError(f"ValueError: gpu_memory_utilization must be in (0, 1], got {args.gpu_memory_utilization}")
    ranks = _local_ranks(args)
    try:
        npu_state = state.load()
    except state.StateError as err:
        raise ConfigError(f"RuntimeError: no NPU found: {err}") from None
    npus = _pick_npus(args.tensor_parallel_size * len(ranks), npu_state["npu_count"])
    hosts = args.data_parallel_size > 1 and (args.data_parallel_rank == 0 or (
        args.data_parallel_rank is None and not args.headless))
    plan = Plan(args, ranks, npus, _max_model_len(args, cfg), hosts,
                args.data_parallel_address or DEFAULT_DP_ADDRESS, args.data_parallel_rpc_port or DEFAULT_DP_RPC_PORT)
    if args.kv_transfer_config:
        _kv_plan(plan, args.kv_transfer_config)
    return plan


def advertise_host() -> str:
    """The address peers should dial: VLLM_SIM_ADVERTISE_HOST, VLLM_HOST_IP, HCCL_IF_IP, else the routed IP."""
    for name in ("VLLM_SIM_ADVERTISE_HOST", "VLLM_HOST_IP", "HCCL_IF_IP"):
        if os.environ.get(name):
            return os.environ[name]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class Server:
    """One ``vllm serve`` process."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.loaded = False
        self.client: dp.Client | None = None
        self.stop = asyncio.Event()
        self.fatal: str | None = None
        self.closers: list[Any] = []

    def readiness(self) -> str | None:
        """None when healthy, else why not."""
        if not self.loaded:
            return "engine is still loading weights"
        if self.client and not self.client.complete:
            joined = self.client.joined if self.client.connected else 0
            return (f"waiting for data parallel ranks: {joined}/{self.plan.args.data_parallel_size} joined "
                    f"(coordinator {self.plan.dp_address}:{self.plan.dp_port})")
        return None

    def die(self, message: str) -> None:
        """Record a fatal error and stop."""
        self.fatal = message
        self.stop.set()

    async def _bind_http(self, engine: Engine) -> None:
        args = self.plan.args
        host = args.host or "0.0.0.0"
        try:
            srv = await asyncio.start_server(lambda r, w: httpd.handle_connection(r, w, engine.handle),
                                             host, args.port, reuse_address=True)
        except OSError as err:
            raise ConfigError(f"OSError: [Errno {err.errno}] {os.strerror(err.errno or 0)}: API server {host}:{args.port}") from None
        self.closers.append(srv)
        log("INFO", WHERE, f"Starting vLLM API server on http://{host}:{args.port}")

    async def _bind_coordinator(self) -> None:
        coord = dp.Coordinator(self.plan.args.data_parallel_size)
        try:
            srv = await asyncio.start_server(coord.handle, self.plan.dp_address, self.plan.dp_port,
                                             reuse_address=True)
        except OSError as err:
            raise ConfigError(f"OSError: [Errno {err.errno}] {os.strerror(err.errno or 0)}: DP coordinator "
                              f"{self.plan.dp_address}:{self.plan.dp_port}") from None
        self.closers.append(srv)
        log("INFO", "core.py", f"DP coordinator for {coord.dp_size} ranks listening on "
            f"{self.plan.dp_address}:{self.plan.dp_port}")

    async def _watch_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.readiness():
            if time.monotonic() > deadline:
                self.die(f"TimeoutError: Timed out waiting for engines to become ready after {timeout:g}s "
                         f"({self.readiness()}); raise VLLM_ENGINE_READY_TIMEOUT_S for large checkpoints")
                return
            await asyncio.sleep(0.1)
        log("INFO", WHERE, "Application startup complete." if not self.plan.args.headless
            else f"Headless engines for DP ranks {self.plan.local_ranks} are ready.")

    async def main(self) -> int:
        """Bind, load, join, serve until SIGTERM or a fatal error."""
        plan, args = self.plan, self.plan.args
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        names = args.served_model_name or [args.model_tag]
        engine = Engine(EngineConfig(
            model_path=args.model_tag, served_names=names, max_model_len=plan.max_model_len,
            max_num_seqs=args.max_num_seqs or 256, seed=args.seed, token_delay=_env_float("VLLM_SIM_TOKEN_DELAY", 0),
            kv_role=plan.kv_role, engine_id=plan.engine_id, advertise_host=advertise_host(),
            first_kv_port=plan.kv_ports[0] if plan.kv_ports else None, tp_size=args.tensor_parallel_size,
            kv_timeout=_env_float("VLLM_SIM_KV_TIMEOUT", 5)), self.readiness)
        tasks = []
        try:
            if not args.headless:
                await self._bind_http(engine)
            if plan.host_coordinator:
                await self._bind_coordinator()
            if plan.kv_ports:
                self.closers += await kv.start_listeners(args.host or "0.0.0.0", plan.kv_ports, plan.engine_id)
        except (ConfigError, kv.KVError) as err:
            self._close()
            log("ERROR", "core.py", f"EngineCore failed to start: {err}")
            return 1
        tasks.append(asyncio.create_task(self._watch_ready(_env_float("VLLM_ENGINE_READY_TIMEOUT_S", 600))))
        tasks.append(asyncio.create_task(self._load_and_join()))
        await self.stop.wait()
        for task in tasks:
            task.cancel()
        self._close()
        if self.fatal:
            log("ERROR", "core.py", self.fatal)
            return 1
        log("INFO", WHERE, "Shutting down.")
        return 0

    async def _load_and_join(self) -> None:
        delay = _env_float("VLLM_SIM_STARTUP_DELAY", 0)
        log("INFO", "model_runner.py", f"Loading weights for DP ranks {self.plan.local_ranks} on NPUs "
            f"{self.plan.npus} (tp={self.plan.args.tensor_parallel_size})")
        await asyncio.sleep(delay)
        log("INFO", "model_runner.py", f"Loading weights took {delay:.2f} seconds")
        self.loaded = True
        args = self.plan.args
        if args.data_parallel_size > 1:
            identity = {"host": advertise_host(), "port": args.port, "pid": os.getpid()}
            self.client = dp.Client(self.plan.dp_address, self.plan.dp_port, self.plan.local_ranks,
                                    args.data_parallel_size, identity, self.die)
            await self.client.run()

    def _close(self) -> None:
        for srv in self.closers:
            srv.close()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vllm serve``; returns the exit code."""
    log("INFO", WHERE, f"vLLM API server (ascend_sim) version 0.0.0+sim; args: {' '.join(sys.argv[1:])}")
    try:
        plan = build_plan(args)
        locks = devices.acquire(plan.npus)
    except (ConfigError, devices.DeviceBusy) as err:
        log("ERROR", WHERE, str(err))
        return 1
    log("INFO", "worker.py", f"Claimed NPUs {plan.npus} for DP ranks {plan.local_ranks}")
    try:
        return asyncio.run(Server(plan).main())
    finally:
        for fd in locks:
            os.close(fd)

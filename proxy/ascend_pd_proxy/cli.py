"""Command line: a drop-in for vllm-ascend's load_balance_proxy_server_example.py plus health/failover knobs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from .app import Proxy, Settings
from .engines import Registry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ascend-pd-proxy",
        description="PD disaggregation proxy: prefill then decode, least-outstanding routing, health checks, "
                    "failover. Admin endpoints (/instances/*, /metrics, /healthcheck) share --port.")
    p.add_argument("--host", default="localhost", help="listen address (default: localhost)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default: 8000)")
    p.add_argument("--prefiller-hosts", nargs="+", default=["localhost"], metavar="HOST")
    p.add_argument("--prefiller-ports", nargs="+", type=int, default=[8001], metavar="PORT")
    p.add_argument("--decoder-hosts", nargs="+", default=["localhost"], metavar="HOST")
    p.add_argument("--decoder-ports", nargs="+", type=int, default=[8002], metavar="PORT")
    p.add_argument("--health-interval", type=float, default=2.0, help="seconds between GET /health probes")
    p.add_argument("--health-timeout", type=float, default=1.0, help="seconds before a probe counts as failed")
    p.add_argument("--failure-threshold", type=int, default=2,
                   help="consecutive failed probes that eject an engine (a refused connection ejects at once)")
    p.add_argument("--success-threshold", type=int, default=2,
                   help="consecutive good probes that re-admit an ejected or newly added engine")
    p.add_argument("--max-retries", type=int, default=2,
                   help="times one request may move to another engine before the client gets an error")
    p.add_argument("--request-timeout", type=float, default=600.0,
                   help="seconds to wait for a backend answer (and between streamed chunks) before 504")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    p.add_argument("--fallback", default="drained", choices=["drained", "always", "off"],
                   help="when every engine of one role is out of rotation, send whole requests to the other role "
                        "(its engines prefill locally): 'drained' only when they were drained on purpose, e.g. the "
                        "only instance of a role restarting for an upgrade; 'always' also when they are down; "
                        "'off' answers 503 instead (default: drained)")
    p.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"],
                   help="event loop: uvloop (faster), asyncio (standard library) or auto: uvloop when it can be "
                        "imported (default: auto)")
    return p


def _pairs(parser: argparse.ArgumentParser, role: str, hosts: list[str], ports: list[int]) -> list[tuple[str, int]]:
    if len(hosts) != len(ports):
        parser.error(f"{len(hosts)} --{role}-hosts but {len(ports)} --{role}-ports: give one port per host, "
                     f"in the same order (hosts={hosts}, ports={ports})")
    bad = [p for p in ports if not 0 < p < 65536]
    if bad:
        parser.error(f"--{role}-ports {bad} out of range 1-65535")
    return list(zip(hosts, ports))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.prefill = _pairs(parser, "prefiller", args.prefiller_hosts, args.prefiller_ports)
    args.decode = _pairs(parser, "decoder", args.decoder_hosts, args.decoder_ports)
    for name in ("failure_threshold", "success_threshold"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_retries < 0 or args.health_interval <= 0 or args.health_timeout <= 0 or args.request_timeout <= 0:
        parser.error("--max-retries must be >= 0 and the interval/timeouts > 0")
    return args


async def run(args: argparse.Namespace) -> None:
    registry = Registry(args.failure_threshold, args.success_threshold)
    for role, pairs in (("prefill", args.prefill), ("decode", args.decode)):
        for host, port in pairs:
            registry.add(role, host, port)
    settings = Settings(args.max_retries, args.request_timeout, args.health_interval, args.health_timeout,
                        args.fallback)
    proxy = Proxy(registry, settings)
    server = await proxy.serve(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("ascend_pd_proxy").info(
        "listening on %s:%d prefill=%s decode=%s loop=%s", args.host, args.port,
        [e.key for e in registry.engines["prefill"]], [e.key for e in registry.engines["decode"]],
        type(loop).__module__.split(".", 1)[0])
    try:
        async with server:
            await stop.wait()
    finally:
        proxy.access.flush()


def loop_factory(choice: str):
    """The event loop factory for --loop (None: asyncio's default loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop  # type: ignore[import-not-found]  # pylint: disable=import-outside-toplevel
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        factory = loop_factory(args.loop)
    except ImportError as exc:
        print(f"ascend-pd-proxy: --loop uvloop, but uvloop cannot be imported: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(run(args))
    except OSError as exc:
        print(f"ascend-pd-proxy: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0

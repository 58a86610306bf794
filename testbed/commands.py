"""Subcommand for the test bed: ``target`` (the demo app the collector's Prometheus scrapes)."""

from __future__ import annotations

import argparse

from telemetry.settings import Settings
from testbed.config import TargetConfig


def register(sub: argparse._SubParsersAction) -> None:
    default = TargetConfig()
    p = sub.add_parser("target", help="run the demo target: the original form server's routes and metrics")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)"
    )
    p.add_argument("--port", type=int, default=8080, help="port (default 8080, the original's)")
    p.add_argument(
        "--work-ms",
        type=float,
        default=default.work_ms,
        help=f"CPU time per request in ms; sets capacity (default {default.work_ms:g})",
    )
    p.add_argument(
        "--max-inflight",
        type=int,
        default=default.max_inflight,
        help=f"concurrent requests before answering 503 (default {default.max_inflight})",
    )
    p.add_argument(
        "--heap-mb",
        type=float,
        default=default.heap_max_bytes / 2**20,
        help=f"memory that counts as a full heap, MiB (default {default.heap_max_bytes // 2**20})",
    )
    p.set_defaults(handler=run_target)


def run_target(args: argparse.Namespace, settings: Settings) -> int:
    from testbed.target import serve  # Flask is imported only when the target runs

    config = TargetConfig(
        work_ms=args.work_ms, max_inflight=args.max_inflight, heap_max_bytes=int(args.heap_mb * 2**20)
    )
    serve(args.host, args.port, config)
    return 0

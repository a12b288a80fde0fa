"""``python -m mistralai_patched selftest``: the connection-leak reproduction on loopback.

N concurrent streaming chat calls through one shared SDK client with a small connection pool,
against an embedded HTTP/1.1 keep-alive server that answers an error status (429 by default),
retries on. Then one extra call, with the server answering a normal event stream, proves the
pool still serves. No API key, no network beyond 127.0.0.1.

With upstream mistralai (2.x on httpx, 3.x on httpx2) this ends with every pooled connection
checked out and the calls failing with ``PoolTimeout``; with mistralai-patched, zero responses
are left open. The clients are built with the installed line's HTTP library unless
``--http-library`` names the other one (the SDK takes a user's client of either).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Dict, List, Optional

from . import build_info, line_library
from .harness import TARGETS, PoolTally, SharedClient, retry_config
from .loopback import LoopbackServer, error_reply, sse_reply

HTTP_LIBRARIES = ("httpx", "httpx2")


def describe_build() -> str:
    """One line naming what is installed: version, release line, upstream base, HTTP library."""
    info = build_info()
    upstream = info.get("upstream", {})
    return (
        f"{info.get('distribution', 'mistralai-patched')} {info.get('version', '?')}: line "
        f"{info.get('line', '?')}, upstream {upstream.get('name', 'mistralai')} "
        f"{upstream.get('version', '?')}, HTTP library {info.get('http_library', '?')}"
    )


@dataclass
class Report:
    target: str
    mode: str
    status: int
    calls: int
    pool: int
    http_library: str = ""
    outcomes: Dict[str, int] = field(default_factory=dict)
    requests_served: int = 0
    responses_left_open: int = 0
    responses_closed_unread: int = 0
    responses_read_failed: int = 0
    tcp_connections: int = 0
    pool_connections: int = 0
    pool_idle: int = 0
    pool_in_use: int = 0
    extra_call: str = ""
    seconds: float = 0.0

    @property
    def leaked(self) -> bool:
        return (
            self.responses_left_open > 0
            or self.pool_in_use > 0
            or self.outcomes.get("PoolTimeout", 0) > 0
            or self.extra_call != "ok"
        )

    def table(self) -> str:
        rows = [
            ("target / mode", f"{self.target} / {self.mode}"),
            ("client library", self.http_library),
            ("server answers", f"{self.status}, retries on"),
            ("calls (concurrent)", str(self.calls)),
            ("outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items()))),
            ("requests served", str(self.requests_served)),
            ("responses left open", str(self.responses_left_open)),
            ("closed unread (connection lost)", str(self.responses_closed_unread)),
            ("body reads failed", str(self.responses_read_failed)),
            ("TCP connections opened", str(self.tcp_connections)),
            (
                "pool after (max " + str(self.pool) + ")",
                f"{self.pool_connections} connections: {self.pool_idle} idle, {self.pool_in_use} in use",
            ),
            ("extra call afterwards", self.extra_call),
            ("time", f"{self.seconds:.2f} s"),
            ("verdict", "LEAK" if self.leaked else "PASS: no response left open"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def _run_async(shared: SharedClient, server: LoopbackServer, n: int, report: Report) -> None:
    async def main() -> None:
        async with shared:
            results = await asyncio.gather(*(shared.call_async() for _ in range(n)))
            report.outcomes = dict(Counter(r.outcome for r in results))
            server.reply = sse_reply()
            report.extra_call = (await shared.call_async()).outcome
            await asyncio.sleep(0.05)
            _record(report, shared.tally())

    asyncio.run(main())


def _run_sync(shared: SharedClient, server: LoopbackServer, n: int, report: Report) -> None:
    with shared, ThreadPoolExecutor(max_workers=min(n, 64)) as threads:
        results = list(threads.map(lambda _: shared.call(), range(n)))
        report.outcomes = dict(Counter(r.outcome for r in results))
        server.reply = sse_reply()
        report.extra_call = shared.call().outcome
        _record(report, shared.tally())


def _record(report: Report, tally: PoolTally) -> None:
    report.responses_left_open = tally.responses_left_open
    report.responses_closed_unread = tally.responses_closed_unread
    report.responses_read_failed = tally.responses_read_failed
    report.pool_connections, report.pool_idle, report.pool_in_use = tally.connections, tally.idle, tally.in_use


def run(
    target: str = "mistral",
    sync: bool = False,
    status: int = 429,
    n: int = 60,
    pool: int = 8,
    pool_timeout_ms: int = 1000,
    library: Optional[ModuleType] = None,
) -> Report:
    """Run the reproduction once and return its :class:`Report`.

    Args:
        target: ``mistral``, ``azure`` or ``gcp``.
        sync: Use ``chat.stream`` from threads instead of ``chat.stream_async``.
        status: The error status the server answers.
        n: Concurrent calls.
        pool: ``max_connections`` of the shared client's pool.
        pool_timeout_ms: The pool timeout, in ms.
        library: The HTTP library of the shared client (the ``httpx`` or ``httpx2`` module);
            default the installed line's (:func:`mistralai_patched.line_library`).

    Raises:
        ImportError: the library is not installed.
    """
    library = library or line_library()
    report = Report(target, "sync" if sync else "async", status, n, pool, library.__name__)
    with LoopbackServer(error_reply(status)) as server:
        started = time.monotonic()
        shared = SharedClient(
            target,
            server.url,
            sync=sync,
            library=library,
            pool=pool,
            retries=retry_config(target),
            timeout_ms=pool_timeout_ms,
        )
        (_run_sync if sync else _run_async)(shared, server, n, report)
        report.seconds = time.monotonic() - started
        report.requests_served = server.requests_served
        report.tcp_connections = server.connections_accepted
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="mistralai-patched selftest", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        choices=TARGETS + ("all",),
        default="mistral",
        help="which SDK client to exercise (default: mistral; all = every target)",
    )
    parser.add_argument("--sync", action="store_true", help="sync chat.stream from threads")
    parser.add_argument("--both", action="store_true", help="run async and sync")
    parser.add_argument("--status", type=int, default=429, help="error status the server answers (default 429)")
    parser.add_argument("--n", type=int, default=60, help="concurrent calls (default 60)")
    parser.add_argument("--pool", type=int, default=8, help="max_connections of the pool (default 8)")
    parser.add_argument(
        "--pool-timeout-ms",
        type=int,
        default=1000,
        help="pool timeout in ms, also the SDK request timeout (default 1000)",
    )
    parser.add_argument(
        "--http-library", choices=HTTP_LIBRARIES, help="library of the shared client (default: the installed line's)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if args.n < 1 or args.pool < 1 or not 400 <= args.status <= 599:
        parser.error("--n and --pool must be >= 1 and --status an error status (400-599)")
    targets = TARGETS if args.target == "all" else (args.target,)
    modes = (False, True) if args.both else (args.sync,)
    import importlib

    library = importlib.import_module(args.http_library) if args.http_library else line_library()
    reports = [run(t, s, args.status, args.n, args.pool, args.pool_timeout_ms, library) for t in targets for s in modes]
    if args.json:
        print(json.dumps([dict(asdict(r), leaked=r.leaked) for r in reports], indent=2))
    else:
        print(describe_build())
        for r in reports:
            print(f"mistralai-patched selftest: {r.calls} concurrent streaming calls, one shared client")
            print(r.table())
            print()
    leaked = [r for r in reports if r.leaked]
    if leaked and not args.json:
        print(f"FAIL: {len(leaked)} of {len(reports)} runs left responses open or the pool exhausted")
    return 1 if leaked else 0

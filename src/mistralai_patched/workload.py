"""Workloads on the loopback server, for the benchmark (scripts/bench-reuse) and the soak
(scripts/soak). Not a test: these measure; the scripts compare and report.

One :func:`run` drives ``calls`` chat calls through one shared client (async with a concurrency
limit, or sync from a thread pool) against a :class:`~mistralai_patched.loopback.LoopbackServer`,
and returns a :class:`Measure`: requests served, TCP connections the server accepted, calls per
second, call latency percentiles, exception mix, responses left open and pool state after.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

from types import ModuleType

from .harness import CallResult, PoolTally, SharedClient, retry_config
from .loopback import (
    LoopbackServer,
    LoopbackServerProcess,
    Reply,
    completion_reply,
    error_reply,
    sse_reply,
    wants_stream,
)

__all__ = [
    "Measure",
    "run",
    "percentile",
    "mixed_replies",
    "compressed_error_reply",
    "open_fds",
    "rss_bytes",
    "reset_peak_rss",
    "peak_rss_bytes",
]


@dataclass
class Measure:
    """What one workload did. Times in seconds, latencies in ms."""

    name: str
    sdk: str
    calls: int = 0
    requests: int = 0
    tcp_connections: int = 0
    seconds: float = 0.0
    latencies_ms: List[float] = field(default_factory=list, repr=False)
    outcomes: Dict[str, int] = field(default_factory=dict)
    responses_left_open: int = 0
    responses_closed_unread: int = 0
    responses_read_failed: int = 0
    pool_in_use: int = 0

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """The ``q`` quantile (0..1) of call latency, in ms (nearest rank)."""
        return percentile(self.latencies_ms, q)

    def summary(self) -> Dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_ms")
        data.update(
            calls_per_s=round(self.calls_per_s, 1),
            p50_ms=round(self.percentile_ms(0.5), 2),
            p99_ms=round(self.percentile_ms(0.99), 2),
        )
        return data


def percentile(values: List[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def compressed_error_reply(status: int, decoded_mib: int) -> Reply:
    """An error reply whose body is ``Content-Encoding: gzip, gzip``: a JSON error message
    followed by ``decoded_mib`` MiB of spaces, a few KiB on the wire. A client that decodes
    every error body in full holds ``decoded_mib`` MiB per call."""
    head = json.dumps({"object": "error", "message": f"loopback {status}", "type": "loopback"}).encode()
    inner = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    padding = b" " * (1024 * 1024)
    layer = inner.compress(head) + b"".join(inner.compress(padding) for _ in range(decoded_mib)) + inner.flush()
    outer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    body = outer.compress(layer) + outer.flush()
    return Reply(status, {"content-type": "application/json", "content-encoding": "gzip, gzip"}, [body])


def mixed_replies(
    statuses: List[int], ok_every: int = 0, compressed_every: int = 0, compressed_mib: int = 16
) -> Callable[[Any], Reply]:
    """A ``respond`` function cycling through error ``statuses``; every ``ok_every``-th request
    (when > 0) gets a success instead: an SSE stream when the request asked for a stream, else a
    chat completion. Every ``compressed_every``-th request (when > 0 and not a success) gets a
    compressed error body that decodes to ``compressed_mib`` MiB (:func:`compressed_error_reply`)."""
    counter = itertools.count(1)
    lock = threading.Lock()
    cycle = itertools.cycle(statuses)
    compressed: Dict[int, Reply] = {}

    def respond(handler: Any) -> Reply:
        with lock:
            n = next(counter)
            status = next(cycle)
            if ok_every and n % ok_every == 0:
                return sse_reply(3) if wants_stream(handler) else completion_reply()
            if compressed_every and n % compressed_every == 0:
                if status not in compressed:
                    compressed[status] = compressed_error_reply(status, compressed_mib)
                return compressed[status]
        return error_reply(status, f"loopback {status}")

    return respond


def _sdk_label() -> str:
    import mistralai.client

    return os.path.dirname(os.path.dirname(mistralai.client.__file__))


def run(
    name: str,
    *,
    target: str = "mistral",
    reply: Optional[Reply] = None,
    respond: Optional[Callable[[Any], Reply]] = None,
    calls: int = 60,
    concurrency: int = 60,
    sync: bool = False,
    pool: int = 8,
    retries: bool = True,
    max_elapsed_ms: int = 500,
    stream: Any = True,
    timeout_ms: int = 10_000,
    server_process: bool = False,
    library: Optional[ModuleType] = None,
) -> Measure:
    """Run ``calls`` calls with at most ``concurrency`` in flight through one shared client.

    Args:
        reply / respond: what the server answers (see LoopbackServer); default a 429.
        sync: ``chat.stream``/``complete`` from ``concurrency`` threads instead of asyncio.
        pool: ``max_connections`` (all kept alive).
        retries: fast backoff retries (1-5 ms intervals, ``max_elapsed_ms`` in all) when True.
        stream: True, False, or a callable ``i -> bool`` choosing per call.
        timeout_ms: the SDK's request timeout (every httpx timeout, the pool's included), in ms.
        server_process: run the server in a child process (benchmarks: no shared GIL).
        library: the shared client's HTTP library (``httpx`` or ``httpx2`` module); default the
            installed line's (:func:`mistralai_patched.line_library`).
    """
    measure = Measure(name, _sdk_label(), calls=calls)
    choose = stream if callable(stream) else (lambda i: bool(stream))
    config = retry_config(target, max_elapsed_ms=max_elapsed_ms) if retries else None
    results: List[CallResult] = []
    server_class: Any = LoopbackServerProcess if server_process else LoopbackServer
    with server_class(reply or error_reply(429), respond=respond) as server:
        shared = SharedClient(
            target, server.url, sync=sync, library=library, pool=pool, retries=config, timeout_ms=timeout_ms
        )
        started = time.monotonic()
        if sync:
            with shared, ThreadPoolExecutor(max_workers=concurrency) as threads:
                results = list(threads.map(lambda i: shared.call(choose(i)), range(calls)))
                tally = shared.tally()
        else:

            async def main() -> PoolTally:
                async with shared:
                    gate = asyncio.Semaphore(concurrency)

                    async def one(i: int) -> CallResult:
                        async with gate:
                            return await shared.call_async(choose(i))

                    results.extend(await asyncio.gather(*(one(i) for i in range(calls))))
                    return shared.tally()

            tally = asyncio.run(main())
        measure.seconds = time.monotonic() - started
        measure.requests = server.requests_served
        measure.tcp_connections = server.connections_accepted
    measure.responses_left_open = tally.responses_left_open
    measure.responses_closed_unread = tally.responses_closed_unread
    measure.responses_read_failed = tally.responses_read_failed
    measure.pool_in_use = tally.in_use
    measure.outcomes = dict(Counter(r.outcome for r in results))
    measure.latencies_ms = [r.ms for r in results]
    return measure


def open_fds() -> int:
    """Open file descriptors of this process (Linux ``/proc/self/fd``; -1 elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux ``/proc/self/statm``; -1 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return -1


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (Linux: ``5`` to ``/proc/self/clear_refs``), so
    :func:`peak_rss_bytes` reports the peak from now on. Returns False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes since it started or since
    :func:`reset_peak_rss` (Linux ``VmHWM`` in ``/proc/self/status``; -1 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return -1

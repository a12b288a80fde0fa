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
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

from types import ModuleType

from . import line_library
from .loopback import (
    LoopbackServer,
    counting_transports,
    LoopbackServerProcess,
    Reply,
    completion_reply,
    error_reply,
    pool_state,
    sse_reply,
    wants_stream,
)
from .selftest import MESSAGES, make_sdk, outcome, pool_limits, retry_config

__all__ = ["Measure", "run", "percentile", "mixed_replies", "open_fds", "rss_bytes"]


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


def mixed_replies(statuses: List[int], ok_every: int = 0) -> Callable[[Any], Reply]:
    """A ``respond`` function cycling through error ``statuses``; every ``ok_every``-th request
    (when > 0) gets a success instead: an SSE stream when the request asked for a stream, else a
    chat completion."""
    counter = itertools.count(1)
    lock = threading.Lock()
    cycle = itertools.cycle(statuses)

    def respond(handler: Any) -> Reply:
        with lock:
            n = next(counter)
            status = next(cycle)
        if ok_every and n % ok_every == 0:
            return sse_reply(3) if wants_stream(handler) else completion_reply()
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
    library = library or line_library()
    sync_transport, async_transport = counting_transports(library)
    measure = Measure(name, _sdk_label(), calls=calls)
    choose = stream if callable(stream) else (lambda i: bool(stream))
    config = retry_config(target, max_elapsed_ms=max_elapsed_ms) if retries else None
    timeout = library.Timeout(timeout_ms / 1000)
    results: List[Any] = []
    server_class: Any = LoopbackServerProcess if server_process else LoopbackServer
    with server_class(reply or error_reply(429), respond=respond) as server:
        started = time.monotonic()
        if sync:
            transport: Any = sync_transport(limits=pool_limits(pool, library))
            with library.Client(transport=transport, timeout=timeout) as client:
                sdk = make_sdk(target, server.url, client=client, retries=config, timeout_ms=timeout_ms)

                def one(i: int) -> Any:
                    t0 = time.perf_counter()
                    try:
                        if choose(i):
                            with sdk.chat.stream(model="loopback", messages=MESSAGES) as events:
                                for _ in events:
                                    pass
                        else:
                            sdk.chat.complete(model="loopback", messages=MESSAGES)
                        exc = None
                    except Exception as error:  # noqa: BLE001 - the mix is what we report
                        exc = error
                    return exc, (time.perf_counter() - t0) * 1000

                with ThreadPoolExecutor(max_workers=concurrency) as executor:
                    results = list(executor.map(one, range(calls)))
                measure.responses_left_open = transport.responses_left_open
                measure.responses_closed_unread = transport.responses_closed_unread
                measure.responses_read_failed = transport.responses_read_failed
                measure.pool_in_use = pool_state(transport)[2]
        else:

            async def main() -> None:
                transport = async_transport(limits=pool_limits(pool, library))
                async with library.AsyncClient(transport=transport, timeout=timeout) as client:
                    sdk = make_sdk(target, server.url, async_client=client, retries=config, timeout_ms=timeout_ms)
                    gate = asyncio.Semaphore(concurrency)

                    async def one(i: int) -> Any:
                        async with gate:
                            t0 = time.perf_counter()
                            try:
                                if choose(i):
                                    res = await sdk.chat.stream_async(model="loopback", messages=MESSAGES)
                                    async with res as events:
                                        async for _ in events:
                                            pass
                                else:
                                    await sdk.chat.complete_async(model="loopback", messages=MESSAGES)
                                exc = None
                            except Exception as error:  # noqa: BLE001
                                exc = error
                            return exc, (time.perf_counter() - t0) * 1000

                    results.extend(await asyncio.gather(*(one(i) for i in range(calls))))
                    measure.responses_left_open = transport.responses_left_open
                    measure.responses_closed_unread = transport.responses_closed_unread
                    measure.responses_read_failed = transport.responses_read_failed
                    measure.pool_in_use = pool_state(transport)[2]

            asyncio.run(main())
        measure.seconds = time.monotonic() - started
        measure.requests = server.requests_served
        measure.tcp_connections = server.connections_accepted
    measure.outcomes = dict(Counter(outcome(exc) for exc, _ in results))
    measure.latencies_ms = [ms for _, ms in results]
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

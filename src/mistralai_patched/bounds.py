"""The time and memory bound of every path, measured (``scripts/bounds``; not a test).

Each :data:`SCENARIOS` entry is a server behaviour on a loopback server (stalled, trickling,
compressed, non-SSE, a stream dropped unclosed, a cancellation storm) and the call made against
it through one shared client with a real connection pool. :func:`measure` runs one with whatever
``mistralai`` this interpreter imports (the fork, or pristine upstream first on ``PYTHONPATH``)
and returns how long the call took (s), the peak of memory traced by ``tracemalloc`` during it
(MiB), what the caller got, and the pool afterwards (responses left open, connections in use).
``tests/test_bounds.py`` and ``tests/test_cancellation_storm.py`` assert the same bounds.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import threading
import time
import tracemalloc
import warnings
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional

from .harness import MESSAGES, SharedClient, outcome, retry_config
from .loopback import LoopbackServer, Reply, completion_reply, error_reply, sse_reply

__all__ = [
    "Scenario",
    "SCENARIOS",
    "WARM_UP",
    "Measured",
    "measure",
    "gzip_gzip_reply",
    "bomb_reply",
    "compressed",
    "coded",
    "GZIP_WBITS",
    "trickle_reply",
    "first_then",
    "always",
    "stalled_retry_reply",
    "tail_stall_reply",
    "slow_healthy_reply",
    "endless_event_reply",
    "huge_completion_reply",
    "EVENT_START",
    "ENDLESS_EVENT_MIB",
    "ERROR_TEXT",
    "HTML_PAGE",
    "STALL_MS",
    "TRICKLE_MS",
    "TIMEOUT_MS",
]

MIB = 1024 * 1024
STALL_MS = 6000
"""A stall (ms) long past every budget of ours, short enough to wait out for upstream."""
TRICKLE_MS = 100
"""One byte every TRICKLE_MS ms: a per-read timeout never fires."""
TIMEOUT_MS = 1500
"""The SDK's ``timeout_ms`` in the scenarios (upstream applies it to each phase of a request)."""


GZIP_WBITS = zlib.MAX_WBITS | 16
"""``wbits`` of gzip for :func:`compressed` (``zlib.MAX_WBITS``: zlib-wrapped deflate; its
negative: raw deflate)."""


def compressed(pieces: Any, wbits: int = GZIP_WBITS) -> bytes:
    """``pieces`` (an iterable of bytes, taken one at a time) compressed at level 9 in the format
    ``wbits`` names: a body many MiB long costs one piece of memory."""
    out = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(out.compress(piece) for piece in pieces) + out.flush()


def coded(pieces: Any, coding: str) -> bytes:
    """``pieces`` (an iterable of bytes, taken one at a time) in the content coding ``coding``:
    ``gzip`` (level 9), ``br`` (``brotli``, quality 5) or ``zstd`` (``compression.zstd`` on
    Python 3.14, else ``backports.zstd``; level 3). A body many MiB long costs one piece of memory.

    Raises:
        ImportError: ``brotli`` or ``backports.zstd`` is not installed (tests/requirements.txt).
        ValueError: another coding.
    """
    if coding == "gzip":
        return compressed(pieces)
    if coding == "br":
        import brotli

        compressor: Any = brotli.Compressor(quality=5)
        return b"".join(compressor.process(piece) for piece in pieces) + compressor.finish()
    if coding == "zstd":
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            from backports import zstd
        compressor = zstd.ZstdCompressor(level=3)
        return b"".join(compressor.compress(piece) for piece in pieces) + compressor.flush()
    raise ValueError(f"coding {coding!r}: gzip, br or zstd")


_BOMB: List[bytes] = []


def bomb_reply(status: int, coding: str, decoded_mib: int = 128) -> Reply:
    """``application/json`` in ``Content-Encoding: <coding>`` (``gzip, gzip``, ``br``, ``zstd``):
    a few hundred bytes to a few KiB that decode to ``decoded_mib`` MiB of zeros."""
    if coding == "gzip, gzip":
        return gzip_gzip_reply(status, decoded_mib)
    body = coded(itertools.repeat(b"\0" * MIB, decoded_mib), coding)
    return Reply(status, {"content-type": "application/json", "content-encoding": coding}, [body])


def gzip_gzip_reply(status: int, decoded_mib: int = 128) -> Reply:
    """``Content-Encoding: gzip, gzip``: a few hundred bytes that decode to ``decoded_mib`` MiB of
    zeros (built once per process for the default size)."""
    if decoded_mib != 128 or not _BOMB:
        body = compressed([compressed(itertools.repeat(b"\0" * MIB, decoded_mib))])
        if decoded_mib != 128:
            return Reply(status, {"content-type": "application/json", "content-encoding": "gzip, gzip"}, [body])
        _BOMB.append(body)
    return Reply(status, {"content-type": "application/json", "content-encoding": "gzip, gzip"}, [_BOMB[0]])


def trickle_reply(status: int, content_type: str, body: bytes, seconds: float = STALL_MS / 1000) -> Reply:
    """``body`` one byte every :data:`TRICKLE_MS` ms, for at most ``seconds``."""
    count = min(len(body), int(seconds * 1000 / TRICKLE_MS))
    return Reply(status, {"content-type": content_type}, [body[i : i + 1] for i in range(count)], delay_ms=TRICKLE_MS)


def first_then(first: Reply, rest: Reply) -> Callable[[Any], Reply]:
    """A ``respond`` function: ``first`` for the first request, ``rest`` for the others."""
    counter = itertools.count()
    lock = threading.Lock()

    def respond(handler: Any) -> Reply:
        with lock:
            n = next(counter)
        return first if n == 0 else rest

    return respond


def always(reply: Reply) -> Callable[[Any], Reply]:
    """A ``respond`` function answering every request with ``reply``."""
    return lambda handler: reply


@dataclass(frozen=True)
class Scenario:
    """A server behaviour and the call made against it.

    Attributes:
        name: Short label.
        path: What the row says (the path through the SDK).
        respond: Builds the server's ``respond`` function (a fresh one per run).
        stream: ``chat.stream`` (True) or ``chat.complete``.
        retries: Fast retries on (``max_elapsed_time`` :attr:`max_elapsed_ms`).
        max_elapsed_ms: The retry loop's budget, ms.
        pool: ``max_connections``.
        special: ``"dropped"`` (a stream dropped unclosed, then one call), else a plain call.
            The cancellation storm is not a scenario: see :func:`measure_storm`.
    """

    name: str
    path: str
    respond: Callable[[], Callable[[Any], Reply]]
    stream: bool = True
    retries: bool = False
    max_elapsed_ms: int = 5000
    pool: int = 2
    special: str = ""


def stalled_retry_reply() -> Reply:
    """A 429 whose JSON body stops half-way for :data:`STALL_MS`."""
    return Reply(429, {"content-type": "application/json"}, [b'{"message":', b'"late"}'], delays_ms=[0, STALL_MS])


def tail_stall_reply() -> Reply:
    """A stream of 2 events and ``[DONE]``, then a comment line that comes :data:`STALL_MS` later."""
    reply = sse_reply(2)
    reply.chunks = reply.chunks + [b": tail\n\n"]
    reply.delays_ms = [0] * (len(reply.chunks) - 1) + [STALL_MS]
    return reply


def slow_healthy_reply(stream: bool) -> Reply:
    """A healthy answer spread over about 3 s: 30 events (``stream``) or a chat completion in
    10-byte pieces, evenly spaced."""
    reply = sse_reply(30) if stream else completion_reply()
    if not stream:
        body = reply.chunks[0]
        reply.chunks = [body[i : i + 10] for i in range(0, len(body), 10)]
    reply.delays_ms = [0] + [3000 // len(reply.chunks)] * (len(reply.chunks) - 1)
    return reply


EVENT_START = b'data: {"id": "'
"""How the endless-event scenarios' one event begins."""
ENDLESS_EVENT_MIB = 40
"""Size (MiB) of the event that never ends: well over ``release.EVENT_MAX_BYTES`` (16 MiB)."""


def huge_completion_reply(mib: int, chunked: bool = True) -> Reply:
    """A valid ``200 application/json`` chat completion whose answer is ``mib`` MiB of ``z``, in
    64 KiB pieces; chunked, or with its ``Content-Length``."""
    head = (
        b'{"id": "cmpl-huge", "object": "chat.completion", "created": 0, "model": "loopback", '
        b'"choices": [{"index": 0, "message": {"role": "assistant", "content": "'
    )
    tail = b'"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}'
    piece = b"z" * (64 * 1024)
    return Reply(200, {"content-type": "application/json"}, [head] + [piece] * (mib * 16) + [tail], chunked=chunked)


def endless_event_reply(size: int = ENDLESS_EVENT_MIB * MIB) -> Reply:
    """A ``200 text/event-stream`` whose first event never ends: :data:`EVENT_START`, then about
    ``size`` bytes of ``z`` in 64 KiB chunks without a blank line, then the end of the body."""
    piece = b"z" * min(size, 64 * 1024)
    return Reply(
        200, {"content-type": "text/event-stream"}, [EVENT_START] + [piece] * -(-size // len(piece)), chunked=True
    )


ERROR_TEXT = b'{"message": "' + b"x" * 80 + b'"}'
"""The JSON error body the trickling scenarios send."""
HTML_PAGE = b"<html>" + b"y" * 100
"""The ``text/html`` body the unexpected-answer scenarios send."""

SCENARIOS: List[Scenario] = [
    Scenario(
        "retried-stall",
        "retried 429 whose body stalls 6 s, then a stream",
        lambda: first_then(stalled_retry_reply(), sse_reply(2)),
        retries=True,
    ),
    Scenario(
        "retried-trickle-budget",
        "429s trickling 1 B/100 ms, max_elapsed_time 1 s",
        lambda: always(trickle_reply(429, "application/json", ERROR_TEXT)),
        retries=True,
        max_elapsed_ms=1000,
    ),
    Scenario("tail-stall", "stream whose tail stalls 6 s after [DONE]", lambda: always(tail_stall_reply())),
    Scenario(
        "error-trickle-complete",
        "complete: 500 body trickling 1 B/100 ms for 6 s",
        lambda: always(trickle_reply(500, "application/json", ERROR_TEXT)),
        stream=False,
    ),
    Scenario(
        "error-trickle-stream",
        "stream: 500 body trickling 1 B/100 ms for 6 s",
        lambda: always(trickle_reply(500, "application/json", ERROR_TEXT)),
    ),
    Scenario(
        "html-trickle-stream",
        "stream answered 200 text/html, trickling 6 s",
        lambda: always(trickle_reply(200, "text/html", HTML_PAGE)),
    ),
    Scenario(
        "html-trickle-complete",
        "complete answered 200 text/html, trickling 6 s",
        lambda: always(trickle_reply(200, "text/html", HTML_PAGE)),
        stream=False,
    ),
    Scenario(
        "retried-bomb",
        "retried 429, gzip,gzip body decoding to 128 MiB, then a stream",
        lambda: first_then(gzip_gzip_reply(429), sse_reply(2)),
        retries=True,
    ),
    Scenario(
        "final-bomb",
        "final 500, gzip,gzip body decoding to 128 MiB",
        lambda: always(gzip_gzip_reply(500)),
    ),
    Scenario(
        "final-bomb-br",
        "final 500, br body decoding to 128 MiB (brotli installed)",
        lambda: always(bomb_reply(500, "br")),
    ),
    Scenario(
        "final-bomb-zstd",
        "final 500, zstd body decoding to 128 MiB (zstd module installed)",
        lambda: always(bomb_reply(500, "zstd")),
    ),
    Scenario(
        "complete-bomb-br",
        "complete answered 200 in br decoding to 256 MiB (brotli installed)",
        lambda: always(bomb_reply(200, "br", 256)),
        stream=False,
    ),
    Scenario(
        "huge-complete",
        "complete answered a valid 512 MiB chat completion (chunked)",
        lambda: always(huge_completion_reply(512)),
        stream=False,
    ),
    Scenario(
        "trickling-event",
        "stream: one event trickling 1 B/100 ms for 6 s",
        lambda: always(trickle_reply(200, "text/event-stream", EVENT_START + b"z" * 100)),
    ),
    Scenario(
        "slow-healthy-stream",
        "healthy stream taking 3 s (100 ms gaps, timeout_ms 1.5 s)",
        lambda: always(slow_healthy_reply(True)),
    ),
    Scenario(
        "slow-healthy-complete",
        "healthy complete body taking 3 s (timeout_ms 1.5 s)",
        lambda: always(slow_healthy_reply(False)),
        stream=False,
    ),
    Scenario(
        "dropped",
        "stream dropped unclosed (del, gc), then a call; pool of 1",
        lambda: always(sse_reply(3)),
        pool=1,
        special="dropped",
    ),
]


WARM_UP = Scenario("warm-up", "a healthy stream (imports, model classes; not reported)", lambda: always(sse_reply(2)))


@dataclass
class Measured:
    """One scenario, one mode. ``seconds`` wall time of the call (s); ``peak_mib`` peak traced
    memory during it (MiB); ``outcome`` what the caller got (``ok``, ``SDKError(500)``, ...),
    ``note`` the incomplete-body note when the error had one; ``left_open`` / ``in_use``
    responses left open and pooled connections in use afterwards; ``next_call`` outcome of a
    healthy call made afterwards on the same client (``dropped``, ``storm``)."""

    name: str
    mode: str
    seconds: float
    peak_mib: float
    outcome: str
    note: str
    left_open: int
    in_use: int
    next_call: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _note(error: Optional[BaseException]) -> str:
    body = getattr(error, "body", "") or ""
    marker = "[mistralai-patched: error body incomplete ("
    return body[body.index(marker) + len(marker) : -2] if marker in body else ""


def _drop_sync(shared: SharedClient) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = shared.sdk.chat.stream(model="m", messages=MESSAGES)
        del events
        gc.collect()
    return shared.call().outcome


async def _drop_async(shared: SharedClient) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = await shared.sdk.chat.stream_async(model="m", messages=MESSAGES)
        del events
        gc.collect()
    await asyncio.sleep(0.05)
    return (await asyncio.wait_for(shared.call_async(), 10)).outcome


def measure(scenario: Scenario, sync: bool) -> Measured:
    """Run ``scenario`` once on a fresh loopback server and shared client (sync or async).

    Raises:
        OSError: the loopback server could not start.
    """
    retries = retry_config("mistral", max_elapsed_ms=scenario.max_elapsed_ms) if scenario.retries else None
    with LoopbackServer(respond=scenario.respond()) as server:
        shared = SharedClient(
            "mistral", server.url, sync=sync, pool=scenario.pool, retries=retries, timeout_ms=TIMEOUT_MS
        )
        gc.collect()
        tracemalloc.start()
        started = time.monotonic()
        next_call = ""
        try:
            if sync:
                with shared:
                    if scenario.special == "dropped":
                        next_call = _drop_sync(shared)
                        result = None
                    else:
                        result = shared.call(scenario.stream)
                    tally = shared.tally()
            else:

                async def run() -> Any:
                    async with shared:
                        if scenario.special == "dropped":
                            return await _drop_async(shared), None, shared.tally()
                        return "", await shared.call_async(scenario.stream), shared.tally()

                next_call, result, tally = asyncio.run(run())
            seconds = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1] / MIB
        finally:
            tracemalloc.stop()
    error = result.error if result is not None else None
    return Measured(
        scenario.name,
        "sync" if sync else "async",
        round(seconds, 2),
        round(peak, 1),
        outcome(error) if result is not None else "-",
        _note(error),
        tally.responses_left_open,
        tally.in_use,
        next_call,
    )


# ---------------------------------------------------------------------- the cancellation storm

STORM_CALLS = 500
STORM_CONCURRENCY = 8
STORM_POOL = 8
STORM_MAX_TIMEOUT_S = 0.050
STORM_SEED = 20261121


def storm_server() -> Callable[[Any], Reply]:
    """Answers in a fixed rotation: a slow stream (headers after 0-4 ms, events 1 ms apart), a
    503 whose body trickles (retried), a 429 with ``retry-after-ms: 5`` (retried), a slow stream."""
    counter = itertools.count()
    lock = threading.Lock()

    def respond(handler: Any) -> Reply:
        with lock:
            n = next(counter)
        time.sleep((n % 5) * 0.001)
        kind = n % 4
        if kind == 1:
            return Reply(503, {"content-type": "application/json"}, [b'{"message":', b' "slow"}'], delay_ms=5)
        if kind == 2:
            return error_reply(429, "wait", headers={"retry-after-ms": "5"})
        reply = sse_reply(4)
        reply.delay_ms = 1
        return reply

    return respond


async def _under_timeout(seconds: float, coro: Any) -> None:
    if hasattr(asyncio, "timeout"):  # 3.11+
        async with asyncio.timeout(seconds):
            await coro
    else:  # 3.10
        await asyncio.wait_for(coro, seconds)


async def _consume(sdk: Any) -> None:
    async with await sdk.chat.stream_async(model="m", messages=MESSAGES) as events:
        async for _ in events:
            pass


async def storm(server_url: str, library: Any = None) -> Dict[str, Any]:
    """:data:`STORM_CALLS` ``chat.stream_async`` calls on one shared client (pool of
    :data:`STORM_POOL`, at most :data:`STORM_CONCURRENCY` at a time), each under
    ``asyncio.timeout`` of 0 to 50 ms (seeded: the same storm every run), then one call without a
    timeout. Returns ``outcomes`` (label → count), ``tally`` (the pool after the storm) and
    ``next_call`` (its ``CallResult``)."""
    rng = random.Random(STORM_SEED)
    timeouts = [rng.uniform(0, STORM_MAX_TIMEOUT_S) for _ in range(STORM_CALLS)]
    outcomes: Dict[str, int] = {}
    async with SharedClient(
        "mistral",
        server_url,
        sync=False,
        library=library,
        pool=STORM_POOL,
        retries=retry_config("mistral", max_elapsed_ms=2000),
        timeout_ms=3000,
    ) as shared:
        gate = asyncio.Semaphore(STORM_CONCURRENCY)

        async def one(seconds: float) -> None:
            async with gate:
                try:
                    await _under_timeout(seconds, _consume(shared.sdk))
                    label = "ok"
                except (asyncio.TimeoutError, TimeoutError):
                    label = "cancelled"
                except Exception as exc:  # noqa: BLE001 - counted, the storm goes on
                    label = type(exc).__name__
                outcomes[label] = outcomes.get(label, 0) + 1

        await asyncio.gather(*(one(s) for s in timeouts))
        await asyncio.sleep(0.3)  # closes scheduled on the loop finish
        tally = shared.tally()
        next_call = await asyncio.wait_for(shared.call_async(), 10)
        return {"outcomes": outcomes, "tally": tally, "next_call": next_call}


def measure_storm(library: Any = None) -> Measured:
    """The cancellation storm (:func:`storm`) as a :class:`Measured` row (async)."""
    with LoopbackServer(respond=storm_server()) as server:
        started = time.monotonic()
        result = asyncio.run(storm(server.url, library))
    tally = result["tally"]
    label = ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"].items()))
    return Measured(
        "storm",
        "async",
        round(time.monotonic() - started, 2),
        0.0,
        label,
        "",
        tally.responses_left_open,
        tally.in_use,
        result["next_call"].outcome,
    )

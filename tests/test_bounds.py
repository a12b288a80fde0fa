"""Every call ends within its time budget and holds bounded memory, whatever the server does:
stalled bodies we discard, compressed bodies, streams dropped without being closed.

Real loopback server, real connection pool (``SharedClient``). Time bounds are asserted with a
wide margin against a stall of 5 s or more: a healthy build ends in about a quarter of a second,
the fork before these fixes waited the stall out. Memory is measured with ``tracemalloc`` (it sees
the bytes objects zlib returns), peak during the call.

Which tests bite: those where pristine upstream fails too (a stream dropped unclosed keeps its
connection checked out; a compressed final error body is decoded in full). The stalled-drain
and compressed-retried-body cases guard the fork's own drains: upstream closes retried responses
unread on 3.x (it leaks them on 2.x's azure/gcp instead), so they are regression tests of ours.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import itertools
import threading
import time
import tracemalloc
import warnings
import zlib
from typing import Any, Callable

import pytest

from conftest import MESSAGES, TARGETS, SharedClient
from mistralai_patched.harness import retry_config, target_module
from mistralai_patched.loopback import LoopbackServer, Reply, error_reply, sse_reply

MODES = [pytest.param(True, id="sync"), pytest.param(False, id="async")]
STALL_MS = 6000
MIB = 1024 * 1024


def _gzip(chunks: Any) -> bytes:
    out = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return b"".join(out.compress(c) for c in chunks) + out.flush()


_BOMB: list = []


def _bomb() -> bytes:
    """``Content-Encoding: gzip, gzip``: a few hundred bytes that decode to 128 MiB of zeros."""
    if not _BOMB:
        inner = _gzip(itertools.repeat(b"\0" * MIB, 128))
        _BOMB.append(_gzip([inner]))
    return _BOMB[0]


def _bomb_reply(status: int) -> Reply:
    headers = {"content-type": "application/json", "content-encoding": "gzip, gzip"}
    return Reply(status, headers, [_bomb()])


def _first_then(first: Reply, rest: Reply) -> Callable[[Any], Reply]:
    counter = itertools.count()
    lock = threading.Lock()

    def respond(handler: Any) -> Reply:
        with lock:
            n = next(counter)
        return first if n == 0 else rest

    return respond


def _call(server: LoopbackServer, sync: bool, target: str = "mistral", **kwargs: Any) -> Any:
    """One streamed call on a fresh shared client; returns (CallResult, tally, seconds)."""
    started = time.monotonic()
    shared = SharedClient(target, server.url, sync=sync, pool=2, **kwargs)
    if sync:
        with shared:
            result = shared.call()
            tally = shared.tally()
    else:

        async def run() -> Any:
            async with shared:
                return await shared.call_async(), shared.tally()

        result, tally = asyncio.run(run())
    return result, tally, time.monotonic() - started


# ---------------------------------------------------------------- a discarded body that stalls


@pytest.mark.parametrize("sync", MODES)
def test_retried_response_whose_body_stalls_costs_one_drain_budget(sync: bool) -> None:
    """The first answer is a 429 whose body stops half-way for 6 s; the retry succeeds. The
    drain gives up after its budget (250 ms), not after the 5 s read timeout."""
    stalled = Reply(429, {"content-type": "application/json"}, [b'{"message":', b'"late"}'],
                    delays_ms=[0, STALL_MS])
    with LoopbackServer(respond=_first_then(stalled, sse_reply(2))) as server:
        result, tally, seconds = _call(server, sync, retries=retry_config("mistral", max_elapsed_ms=5000),
                                       timeout_ms=5000)
    assert result.error is None and result.events == 2, result.error
    assert seconds < 2.0, f"the retried body's drain took {seconds:.1f} s"
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.parametrize("sync", MODES)
def test_stream_whose_tail_stalls_after_done_ends_at_once(sync: bool) -> None:
    """The events and ``[DONE]`` arrive, then the body stalls for 6 s: the caller's loop ends
    within the drain budget (the fork waited for the read timeout, 5 s)."""
    reply = sse_reply(2)
    reply.chunks = reply.chunks + [b": tail\n\n"]
    reply.delays_ms = [0] * (len(reply.chunks) - 1) + [STALL_MS]
    with LoopbackServer(reply) as server:
        result, tally, seconds = _call(server, sync, timeout_ms=5000)
    assert result.error is None and result.events == 2, result.error
    assert seconds < 2.0, f"the stream ended {seconds:.1f} s after its start"
    assert tally.responses_left_open == 0 and tally.in_use == 0


# ------------------------------------------------------------------- compressed bodies


def _peak_mib(run: Callable[[], Any]) -> Any:
    tracemalloc.start()
    try:
        value = run()
        return value, tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("sync", MODES)
def test_compressed_retried_body_is_not_decoded(sync: bool) -> None:
    """A retried 429 whose ``gzip, gzip`` body decodes to 128 MiB: drained raw (a few hundred
    bytes), so the call's memory stays small and the connection is reused."""
    _bomb()
    with LoopbackServer(respond=_first_then(_bomb_reply(429), sse_reply(2))) as server:
        (result, tally, _), peak = _peak_mib(
            lambda: _call(server, sync, retries=retry_config("mistral", max_elapsed_ms=5000), timeout_ms=5000))
        connections = server.connections_accepted
    assert result.error is None and result.events == 2, result.error
    assert peak < 24, f"peak traced memory {peak:.0f} MiB"
    assert tally.responses_closed_unread == 0 and connections == 1


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_compressed_error_body_is_decoded_within_a_bound(target: str, sync: bool) -> None:
    """The final error body is shown decoded, at most DECODED_MAX_BYTES of it, with a note that it
    was cut; upstream decodes all 128 MiB."""
    _bomb()
    with LoopbackServer(_bomb_reply(500)) as server:
        (result, tally, _), peak = _peak_mib(lambda: _call(server, sync, target=target, timeout_ms=5000))
    sdk_error = importlib.import_module(target_module(target) + ".errors").SDKError
    assert isinstance(result.error, sdk_error), repr(result.error)
    assert result.error.status_code == 500
    assert "decoded size over bound" in result.error.body
    assert peak < 24, f"peak traced memory {peak:.0f} MiB"
    assert tally.responses_left_open == 0 and tally.in_use == 0


# ------------------------------------------------------------ streams dropped without close


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
def test_sync_stream_dropped_unclosed_gives_its_connection_back(target: str) -> None:
    """``s = sdk.chat.stream(...); del s``: with a pool of one, the next call gets the connection
    (upstream: PoolTimeout), and a ResourceWarning names the call."""
    with LoopbackServer(sse_reply(3)) as server, SharedClient(target, server.url, sync=True, pool=1) as shared:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            events = shared.sdk.chat.stream(model="m", messages=MESSAGES)
            del events
            gc.collect()
        result = shared.call()
        assert result.error is None and result.events == 3, repr(result.error)
        assert shared.tally().responses_left_open == 0
    assert any(issubclass(w.category, ResourceWarning) and "without being closed" in str(w.message) for w in caught)


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
async def test_async_stream_dropped_unclosed_gives_its_connection_back(target: str) -> None:
    with LoopbackServer(sse_reply(3)) as server:
        async with SharedClient(target, server.url, sync=False, pool=1) as shared:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                events = await shared.sdk.chat.stream_async(model="m", messages=MESSAGES)
                del events
                gc.collect()
            await asyncio.sleep(0.05)  # the close runs on this loop
            result = await shared.call_async()
            assert result.error is None and result.events == 3, repr(result.error)
            assert shared.tally().responses_left_open == 0
    assert any(issubclass(w.category, ResourceWarning) for w in caught)

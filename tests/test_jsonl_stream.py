"""The NDJSON stream (3.x: ``beta.context.search_indexes.generate_index_summary[_async]``, upstream's
``utils/jsonl.py``) gives its connection back on every path, like the event streams: read to its
end (connection reused), a line that fails to decode (closed at once, even while the caller still
holds the stream), a stream dropped unclosed (closed when collected, with a ResourceWarning), a
line that never ends (cut at ``release.EVENT_MAX_BYTES``).

Real loopback server, real connection pool of one connection (``SharedClient``): a response left
open makes the next call wait for the pool and fail. Same lines as upstream: the differential
test's ``jsonl`` cases. The 2.x line has no NDJSON stream: skipped there.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import warnings
from typing import Any, List

import pytest

from conftest import SharedClient
from mistralai_patched.harness import outcome
from mistralai_patched.bounds import endless_event_reply
from mistralai_patched.loopback import LoopbackServer, Reply

if importlib.util.find_spec("mistralai.client.utils.jsonl") is None:
    pytest.skip("this line's SDK has no NDJSON stream (utils/jsonl.py: 3.x)", allow_module_level=True)

MODES = [pytest.param(True, id="sync"), pytest.param(False, id="async")]
LINES = b'{"status": "started", "translated": false}\n{"content": "Par"}\n{"content": "is"}\n'
BAD = b'{"content": "a"}\n{"nope": 1}\n{"content": "c"}\n'


def _ndjson(body: bytes) -> Reply:
    return Reply(200, {"content-type": "application/x-ndjson"}, [body[:20], body[20:]], chunked=True)


def _summary(shared: SharedClient) -> Any:
    method = shared.sdk.beta.context.search_indexes
    kwargs = {"language": "en", "index_name": "docs"}
    return method.generate_index_summary(**kwargs) if shared.sync else method.generate_index_summary_async(**kwargs)


def _run(shared: SharedClient, calls: Any) -> Any:
    """``calls(shared)`` inside the client, sync or async (a coroutine function when async)."""
    if shared.sync:
        with shared:
            return calls(shared), shared.tally()

    async def run() -> Any:
        async with shared:
            return await calls(shared), shared.tally()

    return asyncio.run(run())


def _read(shared: SharedClient) -> Any:
    """One call read to its end: the lines' contents, or the outcome label of its error."""
    if shared.sync:
        try:
            return [getattr(line, "content", None) for line in _summary(shared)]
        except Exception as exc:  # noqa: BLE001 - compared
            return outcome(exc)

    async def read() -> Any:
        try:
            return [getattr(line, "content", None) async for line in await _summary(shared)]
        except Exception as exc:  # noqa: BLE001 - compared
            return outcome(exc)

    return read()


@pytest.mark.parametrize("sync", MODES)
def test_ndjson_stream_read_to_its_end_reuses_its_connection(sync: bool) -> None:
    with LoopbackServer(_ndjson(LINES)) as server:
        shared = SharedClient("mistral", server.url, sync=sync, pool=1, timeout_ms=1000)
        if sync:
            results, tally = _run(shared, lambda s: [_read(s), _read(s)])
        else:

            async def two(s: SharedClient) -> List[Any]:
                return [await _read(s), await _read(s)]

            results, tally = _run(shared, two)
        connections = server.connections_accepted
    assert results == [[None, "Par", "is"]] * 2
    assert connections == 1 and tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.parametrize(
    "sync", [pytest.param(True, id="sync"), pytest.param(False, id="async", marks=pytest.mark.bites)]
)
def test_ndjson_line_that_fails_to_decode_gives_the_connection_back(sync: bool) -> None:
    """The second line does not validate: the caller gets the error while still holding the
    stream (no ``with``), and the next call on the pool of one gets the connection. Upstream's
    async stream leaves the response open until the stream is collected: the next call times out
    on the pool (its sync stream gives it back as CPython finalizes the byte iterator at once)."""
    with LoopbackServer(_ndjson(BAD)) as server:
        shared = SharedClient("mistral", server.url, sync=sync, pool=1, timeout_ms=1000)
        held: List[Any] = []
        if sync:

            def calls(s: SharedClient) -> Any:
                held.append(_summary(s))
                try:
                    list(held[0])
                except Exception as exc:  # noqa: BLE001 - compared
                    first = outcome(exc)
                return first, _read(s)

        else:

            async def calls(s: SharedClient) -> Any:
                held.append(await _summary(s))
                try:
                    [line async for line in held[0]]
                except Exception as exc:  # noqa: BLE001 - compared
                    first = outcome(exc)
                return first, await _read(s)

        (first, second), tally = _run(shared, calls)
    assert first == "ValidationError"
    assert second == "ValidationError", second  # the same answer again, not a PoolTimeout
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
def test_ndjson_stream_dropped_unclosed_gives_its_connection_back(sync: bool) -> None:
    """``s = ...generate_index_summary(...); del s``: with a pool of one, the next call gets the
    connection (upstream: PoolTimeout), and a ResourceWarning names the call."""
    with LoopbackServer(_ndjson(LINES)) as server:
        shared = SharedClient("mistral", server.url, sync=sync, pool=1, timeout_ms=1000)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if sync:

                def calls(s: SharedClient) -> Any:
                    stream = _summary(s)
                    del stream
                    gc.collect()
                    return _read(s)

            else:

                async def calls(s: SharedClient) -> Any:
                    stream = await _summary(s)
                    del stream
                    gc.collect()
                    await asyncio.sleep(0.05)  # the close runs on the loop
                    return await _read(s)

            result, tally = _run(shared, calls)
    assert result == [None, "Par", "is"], result
    assert any(issubclass(w.category, ResourceWarning) and "JsonLStream" in str(w.message) for w in caught)
    assert tally.responses_left_open == 0 and tally.in_use == 0


@pytest.mark.bites
@pytest.mark.parametrize("sync", MODES)
def test_ndjson_line_that_never_ends_is_cut_at_event_max_bytes(sync: bool, monkeypatch: Any) -> None:
    """A line that never ends (512 KiB without a newline; bound lowered to 32 KiB so that
    upstream's rescans end in seconds): the stream ends with SDKError(200) and the response is
    closed. Upstream buffers the whole body, then yields nothing and no error."""
    from mistralai_patched import release

    monkeypatch.setattr(release, "EVENT_MAX_BYTES", 32 * 1024)
    reply = endless_event_reply(512 * 1024)
    reply.headers = {"content-type": "application/x-ndjson"}
    with LoopbackServer(reply) as server:
        shared = SharedClient("mistral", server.url, sync=sync, pool=1, timeout_ms=5000)
        result, tally = _run(shared, _read)
    assert result == "SDKError(200)", result
    assert tally.responses_left_open == 0 and tally.in_use == 0

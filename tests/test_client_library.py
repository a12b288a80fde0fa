"""The client in hand decides the HTTP library: an httpx2 client passed by the user (as frameworks
built on httpx2 do) goes through every path of the fork as well as an httpx client.

Upstream 2.10.1 accepts any client with httpx's API; the fork's release helper used to assert
that bodies were ``httpx.SyncByteStream`` and raised a bare ``AssertionError`` on the first
retried 429 with an httpx2 client. The leak paths (error hooks, ``after_success`` raising) and
stream reuse run with both libraries where they are tested (``tests/test_pool_loopback.py``,
``tests/test_stream_reuse.py``, through conftest's ``library`` fixture); this module adds the
retried-429 storm through either library's real transport and pool on a loopback server.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import List

import pytest

from conftest import MESSAGES, TARGETS, SharedClient, warm_up
from mistralai_patched.allowances import race_errors, reuse_problems
from mistralai_patched.harness import outcome, retry_config
from mistralai_patched.loopback import LoopbackServer, error_reply, pool_state

POOL = 2
CALLS = 8
MAX_ELAPSED_MS = 200
"""The retry loop's budget: room for a retry after a first attempt on a loaded machine. Upstream's
loop gives up before any retry when the first attempt took longer, and then has nothing to leak:
the test would pass against it (tests/test_fault_matrix.py has the same budget)."""

@pytest.mark.bites
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("target", TARGETS)
def test_retried_429s(library: ModuleType, target: str, sync: bool) -> None:
    """Concurrent calls answered 429 with retries on: every call ends in the SDK's 429 error with
    the server's body, and the retried responses were drained to their end (their connections
    kept); see mistralai_patched.allowances for the sync rule."""
    warm_up(target, sync=sync, pool=POOL)  # the first attempts must not build the model classes
    with LoopbackServer(error_reply(429, "slow down from the server")) as server:
        shared = SharedClient(target, server.url, sync=sync, library=library, pool=POOL,
                              retries=retry_config(target, max_elapsed_ms=MAX_ELAPSED_MS), timeout_ms=5000)
        sdk, transport = shared.sdk, shared.transport

        def call_sync() -> BaseException:
            with pytest.raises(Exception) as info:
                with sdk.chat.stream(model="m", messages=MESSAGES) as events:
                    list(events)
            return info.value

        async def call_async() -> BaseException:
            with pytest.raises(Exception) as info:
                async with await sdk.chat.stream_async(model="m", messages=MESSAGES) as events:
                    async for _ in events:
                        pass
            return info.value

        async def storm() -> List[BaseException]:
            async with shared:
                return list(await asyncio.gather(*(call_async() for _ in range(CALLS))))

        if sync:
            with shared, ThreadPoolExecutor(CALLS) as pool:
                errors = list(pool.map(lambda _: call_sync(), range(CALLS)))
        else:
            errors = asyncio.run(storm())
        assert transport.responses_left_open == 0
        assert pool_state(transport)[2] == 0, "no pooled connection may stay in use"
    outcomes = [outcome(e) for e in errors]
    assert outcomes.count("SDKError(429)") == CALLS - race_errors(errors, sync), outcomes
    assert all("slow down from the server" in getattr(e, "body", "") for e in errors if outcome(e) == "SDKError(429)")
    assert not reuse_problems(POOL, sync, server.connections_accepted, transport.responses_closed_unread,
                              transport.responses_read_failed)


def test_release_names_the_library_of_the_response_in_hand() -> None:
    httpx = pytest.importorskip("httpx")  # not installed with the 3.x line

    from mistralai_patched.release import http_library

    httpx2 = pytest.importorskip("httpx2")
    assert http_library(httpx.Response(200)) is httpx
    assert http_library(httpx2.Response(200)) is httpx2

    class Subclassed(httpx2.Response):  # a user's subclass, in a module of theirs
        pass

    assert http_library(Subclassed(200)) is httpx2
    with pytest.raises(TypeError, match="not an object of httpx or httpx2"):
        http_library(object())

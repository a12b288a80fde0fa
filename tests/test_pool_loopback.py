"""Integration tests: a real HTTP/1.1 server on 127.0.0.1 and httpx's real connection pool (the
leak paths also with an httpx2 client, the ``library`` fixture of conftest).

Claims about sockets are made with sockets here: a small pool (``max_connections`` 2-4) with a
short pool timeout, the server counting the TCP connections it accepted, and a transport that
counts responses never closed.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from conftest import MESSAGES, TARGETS, Hooks, SharedClient, cancel_while_hook_runs, expected_error, install_hooks
from mistralai_patched import selftest
from mistralai_patched.allowances import race_errors, reuse_problems
from mistralai_patched.loopback import LoopbackServer, error_reply, pool_state, sse_reply

POOL = 2
PATHS = ["hook_error", "no_result", "hook_raises", "after_success_raises"]


@pytest.mark.bites
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("target", TARGETS)
def test_429_storm_reproduction(target: str, sync: bool) -> None:
    """The bug report: concurrent streams, one client, server answering 429, retries on.

    ``timeout_ms`` (which upstream applies to reads as well as to the pool) is 5 s: long enough
    that no read times out on a loaded machine, short enough that upstream's exhausted pool shows.
    """
    report = selftest.run(target, sync=sync, status=429, n=30, pool=4, pool_timeout_ms=5000)
    # Sync: 30 threads share 4 connections; see mistralai_patched.allowances.
    race = race_errors(report.outcomes, sync)
    assert report.outcomes.get("SDKError(429)", 0) == 30 - race, report.table()
    assert report.responses_left_open == 0, report.table()
    assert report.pool_in_use == 0, report.table()
    assert report.extra_call == "ok", report.table()
    # Retried error responses were drained to their end, so their keep-alive connections were kept.
    assert not reuse_problems(4, sync, report.tcp_connections, report.responses_closed_unread,
                              report.responses_read_failed), report.table()


@pytest.mark.bites
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("target", TARGETS)
def test_sync_path_keeps_pool_serving(library: ModuleType, target: str, path: str) -> None:
    reply = sse_reply() if path == "after_success_raises" else error_reply(503, "boom from the server")
    with LoopbackServer(reply) as server:
        with SharedClient(target, server.url, sync=True, library=library, pool=POOL) as shared:
            sdk, transport = shared.sdk, shared.transport
            install_hooks(sdk, Hooks(path))
            for _ in range(POOL * 3):  # more calls than the pool has connections
                with pytest.raises(expected_error(path)) as info:
                    sdk.chat.stream(model="m", messages=MESSAGES)
                if path == "no_result":
                    assert info.value.status_code == 503 and "boom from the server" in info.value.body
            assert transport.responses_left_open == 0
            assert pool_state(transport)[2] == 0
        if path != "after_success_raises":
            assert server.connections_accepted == 1, "drained error responses should reuse one connection"


@pytest.mark.bites
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("target", TARGETS)
async def test_async_path_keeps_pool_serving(library: ModuleType, target: str, path: str) -> None:
    reply = sse_reply() if path == "after_success_raises" else error_reply(503, "boom from the server")
    with LoopbackServer(reply) as server:
        async with SharedClient(target, server.url, sync=False, library=library, pool=POOL) as shared:
            sdk, transport = shared.sdk, shared.transport
            install_hooks(sdk, Hooks(path))
            for _ in range(POOL * 3):
                with pytest.raises(expected_error(path)):
                    await sdk.chat.stream_async(model="m", messages=MESSAGES)
            assert transport.responses_left_open == 0
            assert pool_state(transport)[2] == 0
        if path != "after_success_raises":
            assert server.connections_accepted == 1


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
async def test_cancel_while_error_hook_runs_frees_the_connection(target: str) -> None:
    hooks = Hooks("block")
    with LoopbackServer(error_reply(503)) as server:
        async with SharedClient(target, server.url, sync=False, pool=1) as shared:
            sdk, transport = shared.sdk, shared.transport
            install_hooks(sdk, hooks)
            await cancel_while_hook_runs(sdk.chat.stream_async(model="m", messages=MESSAGES), hooks)
            assert transport.responses_left_open == 0
            # The single pooled connection is free again: a further call gets it.
            hooks.path = "no_result"
            with pytest.raises(expected_error("no_result")):
                await sdk.chat.stream_async(model="m", messages=MESSAGES)
            assert transport.responses_left_open == 0


@pytest.mark.bites
def test_over_bound_error_body_closes_connection_and_keeps_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from mistralai_patched import release

    monkeypatch.setattr(release, "DRAIN_MAX_BYTES", 1024)
    big = "x" * 10_000
    with LoopbackServer(error_reply(500, big)) as server:
        with SharedClient("mistral", server.url, sync=True, pool=1) as shared:
            sdk, transport = shared.sdk, shared.transport
            install_hooks(sdk, Hooks("no_result"))
            for _ in range(3):
                with pytest.raises(expected_error("no_result")) as info:
                    sdk.chat.stream(model="m", messages=MESSAGES)
                assert info.value.status_code == 500
                assert "xxxx" in info.value.body and "incomplete (over bound)" in info.value.body
            assert transport.responses_left_open == 0
        assert server.connections_accepted == 3, "over-bound bodies must not be reused"


# ----------------------------------------------------------------- EventStream context managers


def _consume_sync(sdk: Any, mode: str) -> None:
    with sdk.chat.stream(model="m", messages=MESSAGES) as events:
        for i, _ in enumerate(events):
            if mode == "break":
                break
            if mode == "raise":
                raise ValueError("in the block")


async def _consume_async(sdk: Any, mode: str) -> None:
    res = await sdk.chat.stream_async(model="m", messages=MESSAGES)
    async with res as events:
        async for _ in events:
            if mode == "break":
                break
            if mode == "raise":
                raise ValueError("in the block")


@pytest.mark.parametrize("mode", ["end", "break", "raise"])
@pytest.mark.parametrize("target", TARGETS)
def test_event_stream_with_closes(target: str, mode: str) -> None:
    with LoopbackServer(sse_reply(50)) as server:
        with SharedClient(target, server.url, sync=True, pool=1) as shared:
            sdk, transport = shared.sdk, shared.transport
            for _ in range(3):  # a pool of one: a stream left open would block the next call
                if mode == "raise":
                    with pytest.raises(ValueError):
                        _consume_sync(sdk, mode)
                else:
                    _consume_sync(sdk, mode)
                assert transport.responses_left_open == 0


@pytest.mark.parametrize("mode", ["end", "break", "raise"])
@pytest.mark.parametrize("target", TARGETS)
async def test_event_stream_async_with_closes(target: str, mode: str) -> None:
    with LoopbackServer(sse_reply(50)) as server:
        async with SharedClient(target, server.url, sync=False, pool=1) as shared:
            sdk, transport = shared.sdk, shared.transport
            for _ in range(3):
                if mode == "raise":
                    with pytest.raises(ValueError):
                        await _consume_async(sdk, mode)
                else:
                    await _consume_async(sdk, mode)
                assert transport.responses_left_open == 0

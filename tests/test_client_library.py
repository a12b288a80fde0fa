"""The client in hand decides the HTTP library: an httpx2 client passed by the user (as frameworks
built on httpx2 do) goes through every path of the fork as well as an httpx client.

Upstream 2.10.1 accepts any client with httpx's API; the fork's release helper used to assert
that bodies were ``httpx.SyncByteStream`` and raised a bare ``AssertionError`` on the first
retried 429 with an httpx2 client. Each test runs with both libraries' real transports and
connection pools (``loopback.counting_transports``) against a real loopback server: the leak
paths (error hooks, ``after_success`` raising), retried 429s, and successful streams.

Not covered: the GCP client with an httpx2 client. Upstream 2.10.1's GCP path hook
(``mistralai/gcp/client/_hooks/registration.py``) rebuilds every request as an ``httpx.Request``,
which an httpx2 client cannot send (``TypeError`` from httpx's URL); that is upstream's, with or
without the fork, outside the units we replace.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import httpx
import pytest

from conftest import MESSAGES, TARGETS, Hooks, expected_error, install_hooks, make_sdk
from mistralai_patched.allowances import race_errors, reuse_problems
from mistralai_patched.loopback import LoopbackServer, counting_transports, error_reply, pool_state, sse_reply
from mistralai_patched.selftest import outcome, retry_config

POOL = 2
PATHS = ["hook_error", "no_result", "hook_raises", "after_success_raises"]


@pytest.fixture(params=["httpx", "httpx2"])
def library(request: Any) -> ModuleType:
    """The HTTP library of the client the user passes (GCP with httpx2: see the module docstring)."""
    if request.param == "httpx2" and request.node.callspec.params.get("target") == "gcp":
        pytest.skip("upstream 2.10.1's GCP hook rebuilds requests as httpx.Request (module docstring)")
    return httpx if request.param == "httpx" else pytest.importorskip("httpx2")


def _client(library: ModuleType, sync: bool, pool: int = POOL) -> Any:
    transport = counting_transports(library)[0 if sync else 1](
        limits=library.Limits(max_connections=pool, max_keepalive_connections=pool))
    timeout = library.Timeout(5.0, pool=0.5)
    return (library.Client if sync else library.AsyncClient)(transport=transport, timeout=timeout), transport


def _check_pool(transport: Any) -> None:
    assert transport.responses_left_open == 0
    assert pool_state(transport)[2] == 0, "no pooled connection may stay in use"


@pytest.mark.bites
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("target", TARGETS)
def test_leak_paths_sync(library: ModuleType, target: str, path: str) -> None:
    reply = sse_reply() if path == "after_success_raises" else error_reply(503, "boom from the server")
    with LoopbackServer(reply) as server:
        client, transport = _client(library, sync=True)
        with client:
            sdk = make_sdk(target, server.url, client=client)
            install_hooks(sdk, Hooks(path))
            for _ in range(POOL * 3):  # more calls than the pool has connections
                with pytest.raises(expected_error(path)) as info:
                    sdk.chat.stream(model="m", messages=MESSAGES)
                if path == "no_result":
                    assert info.value.status_code == 503 and "boom from the server" in info.value.body
            _check_pool(transport)
        if path != "after_success_raises":
            assert server.connections_accepted == 1, "drained error responses reuse one connection"


@pytest.mark.bites
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("target", TARGETS)
async def test_leak_paths_async(library: ModuleType, target: str, path: str) -> None:
    reply = sse_reply() if path == "after_success_raises" else error_reply(503, "boom from the server")
    with LoopbackServer(reply) as server:
        client, transport = _client(library, sync=False)
        async with client:
            sdk = make_sdk(target, server.url, async_client=client)
            install_hooks(sdk, Hooks(path))
            for _ in range(POOL * 3):
                with pytest.raises(expected_error(path)) as info:
                    await sdk.chat.stream_async(model="m", messages=MESSAGES)
                if path == "no_result":
                    assert info.value.status_code == 503 and "boom from the server" in info.value.body
            _check_pool(transport)
        if path != "after_success_raises":
            assert server.connections_accepted == 1


@pytest.mark.bites
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("target", TARGETS)
def test_retried_429s(library: ModuleType, target: str, sync: bool) -> None:
    """Concurrent calls answered 429 with retries on: every call ends in the SDK's 429 error with
    the server's body, and the drained retried responses keep their connections."""
    calls = 8
    with LoopbackServer(error_reply(429, "slow down from the server")) as server:
        client, transport = _client(library, sync)
        sdk = make_sdk(target, server.url, client=client if sync else None, async_client=None if sync else client,
                       retries=retry_config(target, max_elapsed_ms=100), timeout_ms=5000)

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

        if sync:
            from concurrent.futures import ThreadPoolExecutor

            with client, ThreadPoolExecutor(calls) as pool:
                errors = list(pool.map(lambda _: call_sync(), range(calls)))
                _check_pool(transport)
        else:
            async def storm() -> list:
                async with client:
                    found = await asyncio.gather(*(call_async() for _ in range(calls)))
                    _check_pool(transport)
                    return found

            errors = asyncio.run(storm())
    outcomes = [outcome(e) for e in errors]
    race = race_errors(errors, sync)
    assert outcomes.count("SDKError(429)") == calls - race, outcomes
    assert all("slow down from the server" in e.body for e in errors if outcome(e) == "SDKError(429)")
    assert not reuse_problems(POOL, sync, server.connections_accepted, transport.responses_closed_unread,
                              transport.responses_read_failed)


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
def test_sequential_streams_use_one_connection(library: ModuleType, target: str) -> None:
    with LoopbackServer(sse_reply(3)) as server:
        client, transport = _client(library, sync=True)
        with client:
            sdk = make_sdk(target, server.url, client=client)
            for _ in range(5):
                with sdk.chat.stream(model="m", messages=MESSAGES) as events:
                    assert len(list(events)) == 3
            _check_pool(transport)
        assert server.connections_accepted == 1


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
async def test_sequential_async_streams_use_one_connection(library: ModuleType, target: str) -> None:
    with LoopbackServer(sse_reply(3)) as server:
        client, transport = _client(library, sync=False)
        async with client:
            sdk = make_sdk(target, server.url, async_client=client)
            for _ in range(5):
                async with await sdk.chat.stream_async(model="m", messages=MESSAGES) as events:
                    assert len([e async for e in events]) == 3
            _check_pool(transport)
        assert server.connections_accepted == 1

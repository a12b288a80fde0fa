"""Unit tests, one per leaking path, with a mock transport: precise control of each response's body.

The responses come from the HTTP library's own ``MockTransport`` (``httpx.MockTransport``, or
``httpx2.MockTransport`` on the 3.x line), given to the client the test builds, not from respx:
respx speaks httpx only, and reaching httpx2 through it would need ``httpx2.alias_httpx()``,
which rewires ``import httpx`` process-wide for every other test too (and respx.mock patches the
library's transports process-wide while it is active). A transport handed to one client touches
nothing else, on either line.

Each test asserts what a user relies on: the caller gets the documented error (carrying the
server's status and body), and the response the SDK did not hand over was read to its end
(so its connection could go back to the pool) and closed. Every test here fails against the
pristine upstream tree (marker ``bites``; scripts/prove-tests-bite checks it).
"""

from __future__ import annotations

import asyncio
from typing import Any, List

from conftest import httpx  # the line's HTTP library (2.x: httpx; 3.x: httpx2, as upstream imports it)
import pytest

from conftest import (
    cancel_while_hook_runs, MESSAGES, SSE_OK, TARGETS, Hooks, TrackedBody, expected_error, install_hooks,
    make_sdk, retry_config,
)

URL = "http://api.test"
pytestmark = pytest.mark.bites


def _error_route(bodies: List[TrackedBody], status: int = 503, headers: Any = None) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        body = TrackedBody()
        bodies.append(body)
        return httpx.Response(status, headers=headers or {"content-type": "application/json"}, stream=body)

    return httpx.MockTransport(answer)


def _ok_route(bodies: List[TrackedBody]) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        body = TrackedBody(SSE_OK)
        bodies.append(body)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)

    return httpx.MockTransport(answer)


PATHS = ["hook_error", "no_result", "hook_raises", "after_success_raises"]


def _check_error(exc: BaseException, path: str) -> None:
    if path == "no_result":
        assert exc.status_code == 503
        assert "boom from the server" in exc.body
        assert "boom from the server" in str(exc)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("path", PATHS)
def test_sync_path_releases_response(target: str, path: str) -> None:
    bodies: List[TrackedBody] = []
    with httpx.Client(transport=(_ok_route if path == "after_success_raises" else _error_route)(bodies)) as client:
        sdk = make_sdk(target, URL, client=client)
        install_hooks(sdk, Hooks(path))
        with pytest.raises(expected_error(path)) as info:
            sdk.chat.stream(model="m", messages=MESSAGES)
    _check_error(info.value, path)
    assert len(bodies) == 1
    assert bodies[0].closed, "the response was left open"
    if path != "after_success_raises":
        assert bodies[0].read_to_end, "the error body was not drained: its connection is discarded"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("path", PATHS)
async def test_async_path_releases_response(target: str, path: str) -> None:
    bodies: List[TrackedBody] = []
    async with httpx.AsyncClient(transport=(_ok_route if path == "after_success_raises" else _error_route)(bodies)) as client:
        sdk = make_sdk(target, URL, async_client=client)
        install_hooks(sdk, Hooks(path))
        with pytest.raises(expected_error(path)) as info:
            await sdk.chat.stream_async(model="m", messages=MESSAGES)
    _check_error(info.value, path)
    assert bodies[0].closed, "the response was left open"
    if path != "after_success_raises":
        assert bodies[0].read_to_end, "the error body was not drained: its connection is discarded"


@pytest.mark.parametrize("target", TARGETS)
def test_sync_hook_keyboard_interrupt_closes(target: str) -> None:
    bodies: List[TrackedBody] = []
    with httpx.Client(transport=_error_route(bodies)) as client:
        sdk = make_sdk(target, URL, client=client)
        install_hooks(sdk, Hooks("hook_raises", raises=KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            sdk.chat.stream(model="m", messages=MESSAGES)
    assert bodies[0].closed


def _retry_then_ok(bodies: List[TrackedBody], failures: int, headers: Any = None) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        if len(bodies) < failures:
            body = TrackedBody()
            bodies.append(body)
            return httpx.Response(429, headers=headers or {"content-type": "application/json"}, stream=body)
        body = TrackedBody(SSE_OK)
        bodies.append(body)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)

    return httpx.MockTransport(answer)


@pytest.mark.parametrize("target", TARGETS)
def test_sync_retried_responses_are_drained_and_closed(target: str) -> None:
    bodies: List[TrackedBody] = []
    with httpx.Client(transport=_retry_then_ok(bodies, failures=3)) as client:
        sdk = make_sdk(target, URL, client=client, retries=retry_config(target, max_elapsed_ms=5000))
        with sdk.chat.stream(model="m", messages=MESSAGES) as events:
            assert [e.data.choices[0].delta.content for e in events] == ["hi"]
    assert len(bodies) == 4
    for body in bodies[:3]:
        assert body.closed and body.read_to_end, "a retried response was not drained and closed"


@pytest.mark.parametrize("target", TARGETS)
async def test_async_retried_responses_are_drained_and_closed(target: str) -> None:
    bodies: List[TrackedBody] = []
    async with httpx.AsyncClient(transport=_retry_then_ok(bodies, failures=3)) as client:
        sdk = make_sdk(target, URL, async_client=client, retries=retry_config(target, max_elapsed_ms=5000))
        res = await sdk.chat.stream_async(model="m", messages=MESSAGES)
        async with res as events:
            assert [e.data.choices[0].delta.content async for e in events] == ["hi"]
    for body in bodies[:3]:
        assert body.closed and body.read_to_end, "a retried response was not drained and closed"


@pytest.mark.parametrize("target", TARGETS)
async def test_cancel_in_error_hook_thread_closes(target: str) -> None:
    bodies: List[TrackedBody] = []
    hooks = Hooks("block")
    async with httpx.AsyncClient(transport=_error_route(bodies)) as client:
        sdk = make_sdk(target, URL, async_client=client)
        install_hooks(sdk, hooks)
        await cancel_while_hook_runs(sdk.chat.stream_async(model="m", messages=MESSAGES), hooks)
    assert bodies[0].closed, "cancellation in the error hook left the response open"


@pytest.mark.parametrize("target", TARGETS)
async def test_cancel_during_retry_sleep_leaves_nothing_open(target: str) -> None:
    bodies: List[TrackedBody] = []
    # Retry-After: 30 s; the task is cancelled while the retry loop sleeps.
    async with httpx.AsyncClient(transport=_retry_then_ok(bodies, failures=5, headers={"content-type": "application/json", "retry-after": "30"})) as client:
        sdk = make_sdk(target, URL, async_client=client, retries=retry_config(target, max_elapsed_ms=60_000))
        task = asyncio.ensure_future(sdk.chat.stream_async(model="m", messages=MESSAGES))
        while not bodies:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(bodies) == 1
    assert bodies[0].closed and bodies[0].read_to_end


@pytest.mark.parametrize("target", TARGETS)
def test_sdk_error_never_response_not_read(target: str) -> None:
    """No hook result on a streamed error: upstream raises httpx.ResponseNotRead instead."""
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(500, stream=TrackedBody(b"")))) as client:
        sdk = make_sdk(target, URL, client=client)
        install_hooks(sdk, Hooks("no_result"))
        with pytest.raises(expected_error("no_result")) as info:
            sdk.chat.stream(model="m", messages=MESSAGES)
    assert info.value.status_code == 500


"""Cancellation at every await between send and return (issue 3, item 3).

Each case starts ``chat.stream_async`` on a real loopback server, waits until the call is at one
await (a hook running in its worker thread, the send, a drain, the retry sleep, the event-stream
drain after ``[DONE]``), cancels it with ``task.cancel()`` or ``asyncio.wait_for``, then checks that
no response is left open and no pooled connection is in use, and that the next call is served.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Optional

from conftest import httpx  # the line's HTTP library (2.x: httpx; 3.x: httpx2, as upstream imports it)
import pytest

from conftest import MESSAGES, TARGETS, UPSTREAM_CLOSES_RETRIED
from mistralai_patched.loopback import (
    LoopbackServer, Reply, error_reply, pool_state, sse_reply,
)
from mistralai_patched import release
from mistralai_patched.harness import SharedClient, retry_config

pytestmark = pytest.mark.long  # one of the long suites: .ci/run runs them in full on one Python

POINTS = ["before_request_hook", "send", "after_error_hook", "retry_drain", "error_drain",
          "retry_sleep", "after_success_hook", "stream_drain"]
HOW = ["task_cancel", "wait_for"]


class BlockingHook:
    """A hook that blocks its worker thread at one stage until released."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.entered = threading.Event()
        self.release = threading.Event()

    def _block(self, stage: str) -> None:
        if stage == self.stage:
            self.entered.set()
            self.release.wait(10)

    def before_request(self, hook_ctx: Any, request: httpx.Request) -> Any:
        self._block("before_request_hook")
        return request

    def after_error(self, hook_ctx: Any, response: Optional[httpx.Response], error: Optional[Exception]) -> Any:
        self._block("after_error_hook")
        return response, error

    def after_success(self, hook_ctx: Any, response: httpx.Response) -> Any:
        self._block("after_success_hook")
        return response


def _setup(point: str, server: LoopbackServer) -> Callable[[], bool]:
    """Program the server for ``point``; return a predicate true once the call has reached it
    (for hook points the hook's ``entered`` event tells)."""
    first_request = lambda: server.requests_served >= 1  # noqa: E731
    if point == "send":
        def slow_headers(handler: Any) -> Reply:
            time.sleep(3)
            return sse_reply(1)

        server._respond = slow_headers
        return first_request
    if point in ("retry_drain", "error_drain"):
        server.reply = Reply(503, {"content-type": "application/json"}, [b'{"message":', b'"slow"}'], delay_ms=3000)
        return first_request
    if point == "retry_sleep":
        server.reply = error_reply(429, "wait", headers={"retry-after": "3"})
        return first_request
    if point == "stream_drain":
        reply = sse_reply(1)
        reply.chunks.append(b": trailing\n\n")
        reply.delays_ms = [0, 0, 3000]
        server.reply = reply
        return first_request
    server.reply = sse_reply(2) if point == "after_success_hook" else error_reply(503, "boom")
    return lambda: False


async def _consume(sdk: Any) -> None:
    async with await sdk.chat.stream_async(model="m", messages=MESSAGES) as events:
        async for _ in events:
            pass


def _bites(target: str, point: str) -> bool:
    """Where pristine upstream leaves a response open on cancellation. Not at the send or in the
    before_request hook (no response yet), not during the event-stream drain (upstream has no
    such await: it discards the connection at [DONE]), not on a retry path where upstream
    closes retried responses unread (conftest.UPSTREAM_CLOSES_RETRIED), and not while the final
    error body is read on the 3.x line: httpx2 itself closes a response whose body read is
    cancelled (httpx 0.28 leaves it open)."""
    if point in ("before_request_hook", "send", "stream_drain"):
        return False
    if point == "error_drain" and httpx.__name__ == "httpx2":
        return False
    return not (target in UPSTREAM_CLOSES_RETRIED and point in ("retry_drain", "retry_sleep"))


CASES = [
    pytest.param(target, point, how, marks=[pytest.mark.bites] if _bites(target, point) else [],
                 id=f"{target}-{point}-{how}")
    for target in TARGETS for point in POINTS for how in HOW
]


@pytest.mark.parametrize("target,point,how", CASES)
async def test_cancel_at_every_await(server: LoopbackServer, target: str, point: str, how: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if point in ("retry_drain", "stream_drain"):
        # Discarded bodies get DRAIN_TIMEOUT_MS (250 ms); give them long enough to cancel within.
        monkeypatch.setattr(release, "DRAIN_TIMEOUT_MS", 10_000)
    at_point = _setup(point, server)
    hook = BlockingHook(point)
    retries = retry_config(target, max_elapsed_ms=10_000) if point in ("retry_drain", "retry_sleep") else None
    async with SharedClient(target, server.url, sync=False, pool=1, retries=retries, timeout_ms=10_000) as shared:
        sdk, transport = shared.sdk, shared.transport
        registry = sdk.sdk_configuration.__dict__["_hooks"]
        registry.register_before_request_hook(hook)
        registry.register_after_error_hook(hook)
        registry.register_after_success_hook(hook)

        started = time.monotonic()
        if how == "task_cancel":
            task = asyncio.ensure_future(_consume(sdk))
            deadline = time.monotonic() + 5
            while not (hook.entered.is_set() or at_point()):
                assert time.monotonic() < deadline, f"the call never reached {point}"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # let the call settle into the await
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(_consume(sdk), timeout=1.0)
            assert hook.entered.is_set() or at_point(), f"the call never reached {point}"
        assert time.monotonic() - started < 8, "cancellation must not wait for the body or the sleep"
        hook.release.set()
        await asyncio.sleep(0.05)
        assert transport.responses_left_open == 0, f"cancelled at {point}: response left open"
        assert pool_state(transport)[2] == 0, f"cancelled at {point}: connection still in use"

        # The pool of one serves the next call.
        server._respond = None
        server.reply = sse_reply(1)
        hook.stage = "none"
        await asyncio.wait_for(_consume(sdk), timeout=5)
        assert transport.responses_left_open == 0

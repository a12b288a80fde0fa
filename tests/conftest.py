"""Shared helpers: SDK factories per target, hooks that take each leaking path, tracked bodies.

Set ``MISTRALAI_PATCHED_PRISTINE=1`` (scripts/prove-tests-bite does) when the ``mistralai``
package under test is the pristine upstream tree: packaging tests are then skipped.

The suite tests the release line that is built (``src/mistralai_patched/_build_info.json``):
``httpx`` below is that line's HTTP library, imported under the name upstream's own code uses
(2.x: ``import httpx``; 3.x: ``import httpx2 as httpx``). Tests import it from here.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any, AsyncIterator, Iterator, List, Optional, Tuple

import pytest

from mistralai_patched import build_info, line_library
from mistralai_patched.harness import TARGETS as _TARGETS, CallResult, SharedClient, make_sdk, retry_config
from mistralai_patched.loopback import LoopbackServer

httpx = line_library()
"""The built line's HTTP library (the ``httpx`` module on 2.x, ``httpx2`` on 3.x)."""
LINE = build_info().get("line", "?")

TARGETS = list(_TARGETS)  # gen.yaml `targets`, through the build record (mistralai_patched.targets)
PRISTINE = os.environ.get("MISTRALAI_PATCHED_PRISTINE") == "1"
MESSAGES = [{"role": "user", "content": "hi"}]
ERROR_BODY = b'{"object":"error","message":"boom from the server","code":"x"}'


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    if not PRISTINE:
        return
    skip = pytest.mark.skip(reason="packaging test: not meaningful against the pristine upstream tree")
    for item in items:
        if "packaging" in item.keywords:
            item.add_marker(skip)


UPSTREAM_CLOSES_RETRIED = ("mistral",) if LINE == "2.x" else tuple(TARGETS)
"""Targets whose pristine upstream retry loop closes each retried response (unread: nothing is
left open, the connection is thrown away): 2.10.1's main client only; every client of 3.x, whose
azure and gcp retry code is generated like the main client's."""


def retry_leak_case(target: str) -> Any:
    """A target as a test parameter, marked ``bites`` where pristine upstream leaves retried
    responses open (see :data:`UPSTREAM_CLOSES_RETRIED`)."""
    return pytest.param(target, marks=[] if target in UPSTREAM_CLOSES_RETRIED else [pytest.mark.bites], id=target)


CLIENT_LIBRARIES = ["httpx", "httpx2"] if httpx.__name__ == "httpx" else ["httpx2"]
"""Libraries of the clients a user may pass: on the 2.x line (httpx), httpx and httpx2 (its
continuation, with its own classes; frameworks built on it pass such clients), as upstream 2.x
accepts both; on the 3.x line, httpx2 (upstream 3.x catches httpx2's exception classes only)."""


@pytest.fixture(params=CLIENT_LIBRARIES)
def library(request: Any) -> ModuleType:
    """The HTTP library of the client the user passes (see :data:`CLIENT_LIBRARIES`). The GCP
    client is skipped with the other line's library: upstream's GCP hook
    (``mistralai/gcp/client/_hooks/registration.py``) rebuilds every request as a ``Request`` of
    the line's library, which a client of the other cannot send, with or without the fork."""
    if request.param != httpx.__name__ and getattr(request.node, "callspec", None) is not None \
            and request.node.callspec.params.get("target") == "gcp":
        pytest.skip(f"upstream's GCP hook rebuilds requests as {httpx.__name__}.Request (conftest.library)")
    return httpx if request.param == httpx.__name__ else pytest.importorskip(request.param)


class HookError(Exception):
    """The error our test hooks return or raise."""


class Hooks:
    """after_error / after_success hooks that take one of the leaking paths.

    ``path`` is one of: ``hook_error`` (after_error returns the response and an error),
    ``no_result`` (after_error returns no response and no error → SDKError),
    ``hook_raises`` (after_error raises ``raises``), ``after_success_raises``.
    ``block``: an after_error hook that waits on an event (to cancel while it runs).
    """

    def __init__(self, path: str, raises: type = HookError) -> None:
        self.path = path
        self.raises = raises
        self.entered = threading.Event()
        self.release = threading.Event()

    def after_error(self, hook_ctx: Any, response: Optional[httpx.Response], error: Optional[Exception]) -> Any:
        if response is None:
            return response, error
        self.entered.set()
        if self.path == "block":
            self.release.wait(10)
            return response, error
        if self.path == "hook_error":
            return response, HookError("hook turned the response into an error")
        if self.path == "no_result":
            return None, None
        if self.path == "hook_raises":
            raise self.raises("hook raised")
        return response, error

    def after_success(self, hook_ctx: Any, response: httpx.Response) -> Any:
        if self.path == "after_success_raises":
            raise HookError("after_success raised")
        return response


async def cancel_while_hook_runs(call: Any, hooks: Hooks) -> None:
    """Start ``call`` (a coroutine), cancel it once ``hooks`` entered its error hook, expect
    ``asyncio.CancelledError``, then let the hook thread finish."""
    import asyncio

    task = asyncio.ensure_future(call)
    while not hooks.entered.is_set():
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    hooks.release.set()


def install_hooks(sdk: Any, hooks: Hooks) -> None:
    """Register ``hooks`` on an SDK instance of any target (upstream's SDKHooks registry)."""
    registry = sdk.sdk_configuration.__dict__["_hooks"]
    registry.register_after_error_hook(hooks)
    registry.register_after_success_hook(hooks)


def expected_error(path: str, raises: type = HookError) -> type:
    if path == "no_result":
        return _sdk_error_types()
    return {"hook_error": HookError, "hook_raises": raises, "after_success_raises": HookError}[path]


def _sdk_error_types() -> Tuple[type, ...]:
    from mistralai.azure.client.errors import SDKError as AzureSDKError
    from mistralai.client.errors import SDKError
    from mistralai.gcp.client.errors import SDKError as GcpSDKError

    return (SDKError, AzureSDKError, GcpSDKError)


class TrackedBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that records whether it was read to its end and whether it was closed."""

    def __init__(self, body: bytes = ERROR_BODY, pieces: int = 1) -> None:
        self.body = body
        self.pieces = pieces
        self.read_to_end = False
        self.closed = False

    def _chunks(self) -> List[bytes]:
        size = max(1, -(-len(self.body) // self.pieces))
        return [self.body[i:i + size] for i in range(0, len(self.body), size)] or [b""]

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks()
        self.read_to_end = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            yield chunk
        self.read_to_end = True

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


SSE_OK = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


__all__ = [
    "TARGETS", "PRISTINE", "LINE", "UPSTREAM_CLOSES_RETRIED", "retry_leak_case", "httpx", "CLIENT_LIBRARIES", "MESSAGES", "ERROR_BODY", "SSE_OK", "HookError", "Hooks", "install_hooks",
    "expected_error", "TrackedBody", "cancel_while_hook_runs", "make_sdk", "retry_config", "SharedClient",
    "call_once", "Outcome",
]


# ------------------------------------------------------------------ one call, then inspect


class Outcome:
    """What one SDK call on a fresh client left behind.

    Attributes: ``error`` (the exception the caller got, or None), ``events`` (events read from a
    stream before it ended), ``left_open`` (responses never closed, counted by the transport),
    ``in_use`` (pooled connections still checked out), ``elapsed`` (seconds).
    """

    def __init__(self) -> None:
        self.error: Optional[BaseException] = None
        self.events = 0
        self.left_open = -1
        self.in_use = -1
        self.elapsed = 0.0


def call_once(server_url: str, target: str, *, sync: bool, stream: bool = True, retries: Any = None,
              prepare: Any = None, timeout_ms: int = 2000, pool: int = 2, calls: int = 1,
              disable_gc: bool = False) -> Outcome:
    """Make ``calls`` chat calls (streamed and read to the end, or complete) through one fresh
    :class:`~mistralai_patched.harness.SharedClient` with a real pool of ``pool`` connections;
    ``prepare(sdk)`` may install hooks. The last call's exception is kept; ``disable_gc`` turns
    the garbage collector off for the run so that nothing is closed behind the test's back."""
    import asyncio
    import gc
    import time

    outcome = Outcome()
    shared = SharedClient(target, server_url, sync=sync, pool=pool, retries=retries, timeout_ms=timeout_ms)
    if prepare is not None:
        prepare(shared.sdk)

    def keep(result: CallResult) -> None:
        outcome.error, outcome.events = result.error, result.events

    async def run_async() -> None:
        async with shared:
            for _ in range(calls):
                keep(await shared.call_async(stream))
            tally = shared.tally()
        outcome.left_open, outcome.in_use = tally.responses_left_open, tally.in_use

    if disable_gc:
        gc.disable()
    started = time.monotonic()
    try:
        if sync:
            with shared:
                for _ in range(calls):
                    keep(shared.call(stream))
                tally = shared.tally()
            outcome.left_open, outcome.in_use = tally.responses_left_open, tally.in_use
        else:
            asyncio.run(run_async())
    finally:
        if disable_gc:
            gc.enable()
    outcome.elapsed = time.monotonic() - started
    return outcome


_WARM: set = set()


def warm_up(target: str, *, sync: bool, stream: bool = True, pool: int = 2, server_url: Optional[str] = None) -> None:
    """One call of ``target`` in this mode, once per test process, through a fresh client of
    ``pool`` connections: a target's first call builds its model classes (tens of ms, more on a
    loaded machine), which a retry budget or a timed case must not pay. Against ``server_url``
    whatever it answers, else against a loopback server of its own answering as the call expects."""
    if (target, sync, stream) in _WARM:
        return
    if server_url is not None:
        call_once(server_url, target, sync=sync, stream=stream, pool=pool)
    else:
        from mistralai_patched.loopback import completion_reply, sse_reply

        with LoopbackServer(sse_reply(2) if stream else completion_reply()) as server:
            call_once(server.url, target, sync=sync, stream=stream, pool=pool)
    _WARM.add((target, sync, stream))


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A :class:`~mistralai_patched.loopback.LoopbackServer` for one test (its default reply)."""
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def module_server() -> Iterator[LoopbackServer]:
    """One :class:`~mistralai_patched.loopback.LoopbackServer` for a module's tests; each test
    programs its ``reply``."""
    with LoopbackServer() as srv:
        yield srv

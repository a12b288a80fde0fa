"""Where an async call's hook chains run (mistralai_patched.hookpath).

Upstream runs every hook chain of an async call in a worker thread (``run_sync_in_thread``). The
fork runs it on the event loop when every registered hook is one of upstream's own, on a path
that does no I/O; any other hook, or an upstream hook about to do I/O (telemetry on, workflow
encoding configured, a deprecation header to log), keeps upstream's thread. Thread hops are
counted by wrapping the target's ``basesdk.run_sync_in_thread``; the HTTP library's own ``MockTransport`` answers.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
import threading
from typing import Any, Iterator, List, Tuple

from conftest import httpx  # the line's HTTP library (2.x: httpx; 3.x: httpx2, as upstream imports it)
import pytest

from conftest import ERROR_BODY, MESSAGES, SSE_OK, TARGETS, make_sdk
from mistralai_patched import hookpath
from mistralai_patched.harness import target_module

URL = "http://api.test"
COMPLETION = {
    "id": "c", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[Tuple[str, str]]]:
    """Every hook chain handed to upstream's worker thread: (target module, chain name)."""
    seen: List[Tuple[str, str]] = []
    for target in TARGETS:
        module = importlib.import_module(target_module(target) + ".basesdk")
        original = module.run_sync_in_thread

        def counting(func: Any, *args: Any, _original: Any = original, _name: str = module.__name__) -> Any:
            seen.append((_name, func.__name__))
            return _original(func, *args)

        monkeypatch.setattr(module, "run_sync_in_thread", counting)
    yield seen


def _answers(status: int = 200, headers: Any = None) -> Any:
    """The library's own mock transport answering every request (see tests/test_leak_paths_mock.py
    for why not respx)."""

    def answer(request: httpx.Request) -> httpx.Response:
        if status != 200:
            return httpx.Response(status, headers={"content-type": "application/json"}, content=ERROR_BODY)
        if b'"stream":true' in request.content:
            return httpx.Response(200, headers={"content-type": "text/event-stream", **(headers or {})},
                                  content=SSE_OK)
        return httpx.Response(200, headers=headers or {}, json=COMPLETION)

    return httpx.MockTransport(answer)


async def _stream(sdk: Any) -> int:
    async with await sdk.chat.stream_async(model="m", messages=MESSAGES) as events:
        return len([e async for e in events])


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
async def test_default_hooks_run_on_the_event_loop(target: str, hops: List[Tuple[str, str]]) -> None:
    async with httpx.AsyncClient(transport=_answers()) as client:
        sdk = make_sdk(target, URL, async_client=client)
        assert await _stream(sdk) == 1  # the first call resolves telemetry settings (may do I/O)
        hops.clear()
        for _ in range(3):
            assert await _stream(sdk) == 1
            assert (await sdk.chat.complete_async(model="m", messages=MESSAGES)).choices[0].message.content == "hi"
    assert hops == []


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
async def test_error_path_hooks_run_on_the_event_loop_and_keep_the_body(target: str,
                                                                        hops: List[Tuple[str, str]]) -> None:
    async with httpx.AsyncClient(transport=_answers(status=429)) as client:
        sdk = make_sdk(target, URL, async_client=client)
        for attempt in range(3):
            with pytest.raises(Exception) as info:
                await _stream(sdk)
            assert info.value.status_code == 429 and "boom from the server" in info.value.body
            if attempt == 0:
                hops.clear()
    assert hops == []


class _UserHook:
    def __init__(self) -> None:
        self.threads: List[str] = []

    def before_request(self, hook_ctx: Any, request: httpx.Request) -> httpx.Request:
        self.threads.append(threading.current_thread().name)
        return request


@pytest.mark.parametrize("target", TARGETS)
async def test_a_user_hook_keeps_upstreams_worker_thread(target: str, hops: List[Tuple[str, str]]) -> None:
    hook = _UserHook()
    async with httpx.AsyncClient(transport=_answers()) as client:
        sdk = make_sdk(target, URL, async_client=client)
        sdk.sdk_configuration.__dict__["_hooks"].register_before_request_hook(hook)
        for _ in range(2):
            assert await _stream(sdk) == 1
    assert len(hook.threads) == 2 and threading.current_thread().name not in hook.threads
    assert [name for _, name in hops].count("before_request") == 2


async def test_telemetry_on_keeps_the_thread_for_the_tracing_hook(hops: List[Tuple[str, str]]) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    from mistralai.extra.observability.telemetry import configure_telemetry

    async with httpx.AsyncClient(transport=_answers()) as client:
        sdk = make_sdk("mistral", URL, async_client=client)
        assert await _stream(sdk) == 1
        configure_telemetry(sdk, provider=NoOpTracerProvider())
        hops.clear()
        assert await _stream(sdk) == 1
    assert [name for _, name in hops] == ["before_request", "after_success"]


async def test_workflow_encoding_configured_keeps_the_thread(hops: List[Tuple[str, str]]) -> None:
    from mistralai.client._hooks.workflow_encoding_hook import configure_workflow_encoding
    from mistralai.extra.workflows.encoding.config import WorkflowEncodingConfig

    async with httpx.AsyncClient(transport=_answers()) as client:
        sdk = make_sdk("mistral", URL, async_client=client)
        configure_workflow_encoding(WorkflowEncodingConfig(), "ns", sdk.sdk_configuration)
        for _ in range(2):
            assert await _stream(sdk) == 1
    assert [name for _, name in hops][-2:] == ["before_request", "after_success"]


async def test_deprecation_header_keeps_the_thread_and_still_warns(hops: List[Tuple[str, str]],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    async with httpx.AsyncClient(transport=_answers(headers={"x-model-deprecation-timestamp": "2027-01-01"})) as client:
        sdk = make_sdk("mistral", URL, async_client=client)
        await sdk.chat.complete_async(model="m", messages=MESSAGES)
        hops.clear()
        with caplog.at_level(logging.WARNING):
            await sdk.chat.complete_async(model="m", messages=MESSAGES)
    assert [name for _, name in hops] == ["after_success"]
    assert any("deprecated" in r.getMessage() and r.threadName != threading.current_thread().name
               for r in caplog.records)


def test_unknown_states_keep_the_thread() -> None:
    from mistralai.client._hooks import BeforeRequestContext, HookContext
    from mistralai.client._hooks.sdkhooks import SDKHooks

    sdk = make_sdk("mistral", URL, async_client=httpx.AsyncClient())
    hooks = sdk.sdk_configuration.__dict__["_hooks"]
    ctx = BeforeRequestContext(HookContext(sdk.sdk_configuration, URL, "chat_completion_v1_chat_completions_post",
                                           None, None, None, None))
    request = httpx.Request("POST", URL)
    tracing = next(h for h in hooks.before_request_hooks if type(h).__name__ == "TracingHook")
    tracing._telemetry_auto_disabled = True  # as after the first call, telemetry off
    assert hookpath.runs_inline(hooks, "before_request", ctx, (request,))

    del tracing._telemetry_auto_disabled  # an attribute upstream renamed: the check cannot run
    assert not hookpath.runs_inline(hooks, "before_request", ctx, (request,))
    tracing._telemetry_auto_disabled = True

    hooks.before_request = lambda c, r: r  # a chain replaced on the instance
    assert not hookpath.runs_inline(hooks, "before_request", ctx, (request,))
    del hooks.before_request

    upstream_chain = SDKHooks.before_request

    def wrapped_chain(self: Any, c: Any, r: Any) -> Any:  # as an instrumentation package may wrap it
        return upstream_chain(self, c, r)

    SDKHooks.before_request = wrapped_chain
    try:
        assert not hookpath.runs_inline(hooks, "before_request", ctx, (request,))
    finally:
        SDKHooks.before_request = upstream_chain
    tracing.before_request = lambda c, r: r  # a hook's method replaced on the instance
    assert not hookpath.runs_inline(hooks, "before_request", ctx, (request,))
    del tracing.before_request
    assert hookpath.runs_inline(hooks, "before_request", ctx, (request,))
    hook_class = type(tracing)
    upstream_hook = hook_class.before_request
    hook_class.before_request = lambda self, c, r: upstream_hook(self, c, r)  # wrapped after calls ran inline
    try:
        assert not hookpath.runs_inline(hooks, "before_request", ctx, (request,))
    finally:
        hook_class.before_request = upstream_hook
    assert hookpath.runs_inline(hooks, "before_request", ctx, (request,))

    class Subclassed(SDKHooks):
        pass

    other = Subclassed()
    assert not hookpath.runs_inline(other, "before_request", ctx, (request,))

    class LikeUpstream(type(tracing)):  # a subclass of an upstream hook may override anything
        pass

    hooks.before_request_hooks.append(LikeUpstream())
    assert not hookpath.runs_inline(hooks, "before_request", ctx, (request,))


_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("hookpath_test", default="caller")


class _SetsContext:
    def before_request(self, hook_ctx: Any, request: httpx.Request) -> httpx.Request:
        _VAR.set("hook")
        request.extensions["seen"] = (_VAR.get(), threading.current_thread().name)
        return request


async def test_inline_chain_runs_in_a_copy_of_the_callers_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """As with asyncio.to_thread: the hook sees the caller's context, its changes stay its own."""
    from mistralai.client._hooks import BeforeRequestContext, HookContext
    from mistralai.client._hooks.sdkhooks import SDKHooks

    monkeypatch.setitem(hookpath._CHECKS, (_SetsContext.__module__, _SetsContext.__qualname__), hookpath._always)
    monkeypatch.setattr(hookpath, "_ENTRIES", {})  # what runs_inline worked out per class, before the table changed
    hooks = SDKHooks()
    hooks.before_request_hooks[:] = [_SetsContext()]
    ctx = BeforeRequestContext(HookContext(None, URL, "op", None, None, None, None))

    async def never(*args: Any) -> Any:
        raise AssertionError("went to the worker thread")

    request = await hookpath.run_hook_chain(never, hooks, "before_request", ctx, httpx.Request("GET", URL))
    assert request.extensions["seen"] == ("hook", threading.current_thread().name)
    assert _VAR.get() == "caller"
    assert asyncio.current_task() is not None

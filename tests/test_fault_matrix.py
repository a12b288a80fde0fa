"""Fault matrix (issue 3, item 1) on a real loopback server with httpx's real connection pool.

Every combination of sync/async x stream/non-stream x retries on/off x error status x hook
behaviour x SDK target. After each case: no response left open (counted by a transport
wrapper, with the garbage collector disabled during the case so nothing is reclaimed behind our
back), no pooled connection in use, at most one TCP connection opened (error bodies are drained,
so even retried attempts reuse the connection), and the caller got the documented exception
carrying the status and the server's body.

Cases where pristine upstream 2.10.1 fails are marked ``bites`` (scripts/prove-tests-bite runs
them against the pristine tree and requires every one to fail): streamed calls on every hook path
that hands the response to the SDK's own error handling (upstream leaves it open, or raises
``httpx.ResponseNotRead`` for ``no_result``), and streamed retried attempts in every target (left
open in azure/gcp, closed unread in the main client so each retry opens a new connection).
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Tuple

from conftest import httpx  # the line's HTTP library (2.x: httpx; 3.x: httpx2, as upstream imports it)
import pytest

from conftest import TARGETS, HookError, Hooks, call_once, install_hooks, warm_up
from mistralai_patched.loopback import LoopbackServer, Reply
from mistralai_patched.harness import retry_config, target_module

pytestmark = pytest.mark.long  # one of the long suites: .ci/run runs them in full on one Python

STATUSES = [400, 401, 404, 422, 429, 500, 502, 503, 504]
RETRIED = {429, 500, 502, 503, 504}  # the retry status codes of every streaming/chat method
HOOKS = ["default", "hook_error", "no_result", "hook_raises", "after_success_raises", "before_request_raises"]
MESSAGE = "boom from the server"
POOL = 2


class BeforeRequestError(Exception):
    """Raised by the before_request hook of the ``before_request_raises`` case."""


class _RaisingBeforeRequest:
    def before_request(self, hook_ctx: Any, request: httpx.Request) -> Any:
        raise BeforeRequestError("before_request raised")


def _body(status: int) -> bytes:
    if status == 422:  # the shape of the API's validation error (HTTPValidationErrorData)
        return json.dumps({"detail": [{"loc": ["body", "model"], "msg": MESSAGE, "type": "value_error"}]}).encode()
    return json.dumps({"object": "error", "message": MESSAGE, "type": "loopback", "code": str(status)}).encode()


def _errors(target: str) -> Tuple[type, type]:
    """(HTTPValidationError, SDKError) of the target's own ``errors`` module."""
    import importlib

    module = importlib.import_module(target_module(target) + ".errors")
    return module.HTTPValidationError, module.SDKError


def _is_bite(stream: bool, retries: bool, status: int, hook: str) -> bool:
    if not stream or hook == "before_request_raises":
        return False
    if hook in ("hook_error", "no_result", "hook_raises"):
        return True
    return retries and status in RETRIED


def _cases() -> Iterator[Any]:
    for target in TARGETS:
        for hook in HOOKS:
            for status in STATUSES:
                for retries in (False, True):
                    for stream in (True, False):
                        marks = [pytest.mark.bites] if _is_bite(stream, retries, status, hook) else []
                        ident = f"{target}-{hook}-{status}-{'retries' if retries else 'once'}-{'stream' if stream else 'complete'}"
                        yield pytest.param(target, hook, status, retries, stream, marks=marks, id=ident)


CASES = list(_cases())


def _check_error(exc: BaseException, target: str, hook: str, status: int) -> None:
    if hook == "before_request_raises":
        assert isinstance(exc, BeforeRequestError), repr(exc)
        return
    if hook == "hook_error":
        assert isinstance(exc, HookError) and "turned the response into an error" in str(exc), repr(exc)
        return
    if hook == "hook_raises":
        assert isinstance(exc, HookError) and "hook raised" in str(exc), repr(exc)
        return
    validation_error, sdk_error = _errors(target)
    expected = validation_error if status == 422 and hook != "no_result" else sdk_error
    assert isinstance(exc, expected), f"{type(exc).__module__}.{type(exc).__name__}: {exc!r}"
    assert exc.status_code == status  # type: ignore[attr-defined]
    assert MESSAGE in exc.body, exc.body  # type: ignore[attr-defined]


def _prepare(sdk: Any, hook: str) -> None:
    registry = sdk.sdk_configuration.__dict__["_hooks"]
    if hook == "before_request_raises":
        registry.register_before_request_hook(_RaisingBeforeRequest())
    elif hook != "default":
        install_hooks(sdk, Hooks(hook))


# The retry loop's budget. Upstream gives up before a first retry when the first attempt took
# longer than this, and then has nothing left to leak: the retried cases' bite needs a retry, so
# the budget is well above one attempt on a loaded machine, and the target's modules are imported
# before the measured call (a cold first call of a target builds its model classes).
MAX_ELAPSED_MS = 200

def _run_case(server: LoopbackServer, target: str, hook: str, status: int, retries: bool, stream: bool,
              sync: bool) -> None:
    server.reply = Reply(status, {"content-type": "application/json"}, [_body(status)])
    warm_up(target, sync=sync, stream=stream, pool=POOL, server_url=server.url)
    config = retry_config(target, max_elapsed_ms=MAX_ELAPSED_MS) if retries else None
    before = server.connections_accepted
    out = call_once(server.url, target, sync=sync, stream=stream, retries=config,
                    prepare=lambda sdk: _prepare(sdk, hook), pool=POOL, disable_gc=True)
    assert out.error is not None, "an error status must raise"
    _check_error(out.error, target, hook, status)
    assert out.left_open == 0, f"{out.left_open} response(s) left open"
    assert out.in_use == 0, f"{out.in_use} pooled connection(s) still in use"
    opened = server.connections_accepted - before
    assert opened <= (0 if hook == "before_request_raises" else 1), f"{opened} TCP connections opened"


@pytest.mark.parametrize("target,hook,status,retries,stream", CASES)
def test_sync(module_server: LoopbackServer, target: str, hook: str, status: int, retries: bool,
              stream: bool) -> None:
    _run_case(module_server, target, hook, status, retries, stream, sync=True)


@pytest.mark.parametrize("target,hook,status,retries,stream", CASES)
def test_async(module_server: LoopbackServer, target: str, hook: str, status: int, retries: bool,
               stream: bool) -> None:
    _run_case(module_server, target, hook, status, retries, stream, sync=False)

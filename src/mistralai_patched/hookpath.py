"""Run an async call's hook chain on the event loop when no registered hook can block.

Upstream (mistralai 2.10.1 and 3.x, ``basesdk.py`` of every SDK target) runs the ``before_request``,
``after_success`` and ``after_error`` hook chains of every async call in a worker thread
(``utils.run_sync_in_thread``, which is ``asyncio.to_thread``), because a hook is synchronous
code that may block: the workflow encoding hook may offload a payload to S3 or GCS, the tracing
hook may create an exporter or end a span in a processor that exports at once, and a user may
register any hook of their own. Those two thread hops per call were the largest single cost
left in the fork's async path (scripts/bench; sequential streaming gained about a quarter in
calls/s without them).

:func:`run_hook_chain` keeps upstream's thread hop except when every hook registered for the
phase is one of upstream's own hook classes (exact type, matched by module and name) whose code
path for *this* call does no I/O: then the chain runs on the event loop, in a copy of the
caller's context (as ``asyncio.to_thread`` gives it, so context changes made by a hook stay out
of the caller's context, as upstream). Which path a hook takes, per class:

============================================  ==================================================
hook (upstream module)                        runs inline when
============================================  ==================================================
``CustomUserAgentHook`` (client)               always (edits a header)
``TraceparentInjectionHook`` (client)          the operation is not a workflow ``/execute``
``TracingHook`` (client)                       telemetry resolved as off for this client
                                               (before_request), and no span on the request
                                               (after_success, after_error)
``DeprecationWarningHook`` (client)            the response has no deprecation header
``WorkflowEncodingHook`` (client)              no workflow encoding configured for the client
``WorkflowStreamErrorHook`` (client)           always (wraps the byte stream, reads nothing)
``GCPVertexAIPathHook`` (gcp)                  always (rewrites the URL from the JSON body)
``ServiceAccountAuthHook`` (client, 3.x)       the client has an api_key, or
                                               ``MISTRAL_SA_TOKEN_PATH`` is unset (else it reads
                                               the token file)
============================================  ==================================================

Anything else, a hook of another class (a user's, a subclass, a hook upstream adds later), an
``SDKHooks`` object that is not upstream's, a chain or hook method replaced on the instance or
wrapped on the class (by an instrumentation package, say), or a condition that cannot be
evaluated (an attribute upstream renamed): the chain goes to upstream's thread, unchanged. The
units these conditions read are fingerprinted in ``.speakeasy/gen.lock`` (``relies_on`` in
gen.yaml), so a new upstream release that changes them fails regeneration until this table is
reviewed. The sync path is not concerned: upstream runs its hooks inline.

What a class is (upstream's, with its own plain method for the phase, and which condition applies)
is worked out once per class; every call still checks that each class attribute and instance
leaves that method in place and evaluates the conditions above, so a hook added, a method
replaced or wrapped at any time sends the chain to the thread from the next call on.
"""

from __future__ import annotations

import contextvars
import os
import sys
import types
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple, TypeVar

from . import targets
from .fastpath import _store

__all__ = ["run_hook_chain", "runs_inline", "PHASES"]

T = TypeVar("T")

PHASES: Dict[str, str] = {
    "before_request": "before_request_hooks",
    "after_success": "after_success_hooks",
    "after_error": "after_error_hooks",
}
"""Hook chain method of upstream's ``SDKHooks`` → the list of hooks it runs."""

_SDK_HOOKS_MODULES = frozenset(f"{target}._hooks.sdkhooks" for target in targets())

Check = Callable[[Any, str, Any, Tuple[Any, ...]], bool]


_FUNCTION = types.FunctionType
_NO_ATTRIBUTES: Dict[str, Any] = {}


def _module(hook: Any) -> Any:
    return sys.modules[type(hook).__module__]


def _always(hook: Any, phase: str, hook_ctx: Any, args: Tuple[Any, ...]) -> bool:
    return True


def _traceparent(hook: Any, phase: str, hook_ctx: Any, args: Tuple[Any, ...]) -> bool:
    # Upstream returns the request untouched unless the operation is a workflow /execute, where
    # it calls the OpenTelemetry propagator (user-configurable code).
    return hook_ctx.operation_id not in _module(hook)._EXECUTE_OPERATION_IDS


def _tracing(hook: Any, phase: str, hook_ctx: Any, args: Tuple[Any, ...]) -> bool:
    if phase == "before_request":
        # configure_telemetry_for_hook returns False at once when telemetry was resolved as off
        # (no MISTRAL_SDK_TELEMETRY, no client setting), and then no span is started.
        return (
            hook._telemetry_auto_disabled is True
            and hook.tracer_provider is None
            and hook._telemetry_use_global_provider is False
            and hook._auto_telemetry_provider is None
        )
    response = args[0]
    if response is None:
        return True
    # Without a span on the request, get_traced_response / get_response_and_error return at once.
    return response.request.extensions.get(_module(hook)._SPAN_EXT_KEY) is None


def _deprecation(hook: Any, phase: str, hook_ctx: Any, args: Tuple[Any, ...]) -> bool:
    # With the header, upstream reads the body (response.json()) and logs a warning.
    return _module(hook).HEADER_MODEL_DEPRECATION_TIMESTAMP not in args[0].headers


def _workflow_encoding(hook: Any, phase: str, hook_ctx: Any, args: Tuple[Any, ...]) -> bool:
    return _module(hook)._get_encoding_config(hook_ctx.config) is None


def _service_account(hook: Any, phase: str, hook_ctx: Any, args: Tuple[Any, ...]) -> bool:
    # Upstream (3.0.0+) returns at once when the client has security settings; otherwise it reads
    # the token file named by the environment variable, and nothing when the variable is unset.
    module = _module(hook)
    return hook_ctx.config.security is not None or not os.getenv(module.MISTRAL_SA_TOKEN_PATH_ENV)


_CHECKS: Dict[Tuple[str, str], Check] = {
    ("mistralai.client._hooks.custom_user_agent", "CustomUserAgentHook"): _always,
    ("mistralai.client._hooks.traceparent", "TraceparentInjectionHook"): _traceparent,
    ("mistralai.client._hooks.tracing", "TracingHook"): _tracing,
    ("mistralai.client._hooks.deprecation_warning", "DeprecationWarningHook"): _deprecation,
    ("mistralai.client._hooks.workflow_encoding_hook", "WorkflowEncodingHook"): _workflow_encoding,
    ("mistralai.client._hooks.stream_error_hook", "WorkflowStreamErrorHook"): _always,
    ("mistralai.gcp.client._hooks.registration", "GCPVertexAIPathHook"): _always,
    ("mistralai.client._hooks.service_account_auth", "ServiceAccountAuthHook"): _service_account,
}


_Entry = Tuple[Callable[..., Any], Optional[Check]]
_ENTRIES: Dict[Tuple[type, str, bool], Optional[_Entry]] = {}


def _entry(cls: type, phase: str, chain: bool) -> Optional[_Entry]:
    """What :func:`runs_inline` needs to know of a class for one phase, worked out once per
    class: ``(function, check)`` when ``cls`` is upstream's ``SDKHooks`` (``chain``) or one of
    the hook classes of ``_CHECKS`` (not ``chain``) and defines ``phase`` as a plain function of
    its own module, with ``check`` None where nothing is left to check per call (the chain, and
    hooks that always run inline); else None. Each call still checks that the class attribute
    *is* that function and that the instance does not replace it, so a method wrapped or
    replaced later sends the chain to the thread. Bounded by ``fastpath.MAX_ENTRIES``."""
    key = (cls, phase, chain)
    if key in _ENTRIES:
        return _ENTRIES[key]
    function = cls.__dict__.get(phase)
    entry: Optional[_Entry] = None
    if type(function) is _FUNCTION and function.__module__ == cls.__module__:
        if chain:
            if cls.__name__ == "SDKHooks" and cls.__module__ in _SDK_HOOKS_MODULES:
                entry = (function, None)
        else:
            check = _CHECKS.get((cls.__module__, cls.__qualname__))
            if check is not None:
                entry = (function, None if check is _always else check)
    _store(_ENTRIES, key, entry)
    return entry


def runs_inline(hooks: Any, phase: str, hook_ctx: Any, args: Tuple[Any, ...]) -> bool:
    """Whether :func:`run_hook_chain` would run this chain on the event loop (see the module
    docstring for the conditions).

    Args:
        hooks: The SDK configuration's hooks object (upstream's ``SDKHooks``).
        phase: ``"before_request"``, ``"after_success"`` or ``"after_error"``.
        hook_ctx: The phase's context object (``BeforeRequestContext`` and so on).
        args: The chain's other arguments: ``(request,)``, ``(response,)`` or
            ``(response_or_None, error_or_None)``.

    Returns:
        True only when every registered hook passes its check; False on anything unknown,
        including a check that raises. Never raises.
    """
    try:
        cls = type(hooks)
        entry = _ENTRIES.get((cls, phase, True)) or _entry(cls, phase, True)
        if entry is None or getattr(cls, phase) is not entry[0] or phase in getattr(hooks, "__dict__", _NO_ATTRIBUTES):
            return False
        for hook in getattr(hooks, PHASES[phase]):
            cls = type(hook)
            entry = _ENTRIES.get((cls, phase, False)) or _entry(cls, phase, False)
            if (
                entry is None
                or getattr(cls, phase) is not entry[0]
                or phase in getattr(hook, "__dict__", _NO_ATTRIBUTES)
            ):
                return False
            check = entry[1]
            if check is not None and check(hook, phase, hook_ctx, args) is not True:
                return False
    except Exception:  # noqa: BLE001 - an unforeseen state means: keep upstream's thread
        return False
    return True


async def run_hook_chain(
    run_in_thread: Callable[..., Awaitable[T]], hooks: Any, phase: str, hook_ctx: Any, *args: Any
) -> T:
    """Run ``hooks.<phase>(hook_ctx, *args)`` as upstream does, without the thread hop when no
    registered hook can block.

    Args:
        run_in_thread: Upstream's ``utils.run_sync_in_thread`` of the target (used unchanged
            whenever the chain is not known to be non-blocking).
        hooks: The SDK configuration's hooks object.
        phase: ``"before_request"``, ``"after_success"`` or ``"after_error"``.
        hook_ctx: The phase's context object.
        *args: The chain's other arguments.

    Returns:
        What the chain returns (a request, a response, or ``(response, error)``).

    Raises:
        Whatever the chain raises, as upstream. Inline, the chain cannot be interrupted by a
        task cancellation (it takes microseconds); the cancellation arrives at the next await.
    """
    chain = getattr(hooks, phase)
    if runs_inline(hooks, phase, hook_ctx, args):
        return contextvars.copy_context().run(chain, hook_ctx, *args)
    return await run_in_thread(chain, hook_ctx, *args)

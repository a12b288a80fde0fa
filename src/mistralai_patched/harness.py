"""The call harness shared by ``selftest``, the workloads (``scripts/bench-reuse``,
``scripts/soak``), ``scripts/bench`` and the tests: one SDK client of a target over one real
connection pool that counts what the SDK leaves behind, and one chat call read to its end.

    with LoopbackServer(error_reply(429)) as server, SharedClient("mistral", server.url, sync=True, pool=2) as shared:
        result = shared.call(stream=True)        # CallResult(error, events, ms)
        tally = shared.tally()                    # PoolTally(responses_left_open=0, ..., in_use=0)

``async with SharedClient(..., sync=False)`` gives the async client; ``await shared.call_async()``.
The HTTP library is the installed line's (:func:`mistralai_patched.line_library`) unless one is
passed: the SDK takes a user's client of either library.
"""

from __future__ import annotations

import importlib
import sys
import inspect
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

from . import line_library, targets
from .loopback import counting_transports, pool_state

__all__ = [
    "TARGETS",
    "MESSAGES",
    "target_module",
    "retry_config",
    "make_sdk",
    "outcome",
    "pool_limits",
    "PoolTally",
    "CallResult",
    "SharedClient",
    "stream_or_complete",
    "stream_or_complete_async",
]


def _short_name(package: str) -> str:
    """Short name of a target's import package: ``mistralai.client`` → ``mistral``,
    ``mistralai.azure.client`` → ``azure``."""
    parts = package.split(".")
    return "mistral" if len(parts) == 2 else parts[1]


_MODULES: Dict[str, str] = {_short_name(package): package for package in targets()}
TARGETS: Tuple[str, ...] = tuple(_MODULES)
"""Short names of the SDK targets this build rendered (gen.yaml ``targets``, through the build
record): ``("mistral", "azure", "gcp")``."""
MESSAGES: List[Dict[str, str]] = [{"role": "user", "content": "Say hi."}]
MODEL = "loopback"


def target_module(target: str) -> str:
    """Import package of a target name (``mistral`` → ``mistralai.client``).

    Raises:
        KeyError: no such target.
    """
    return _MODULES[target]


def retry_config(target: str, max_elapsed_ms: int = 500) -> Any:
    """A fast backoff ``RetryConfig`` of the target's own ``utils``: intervals 1-5 ms, no jitter
    where upstream has it (3.x), ``max_elapsed_ms`` in all, connection errors not retried."""
    name = target_module(target) + ".utils"
    utils = sys.modules.get(name) or importlib.import_module(name)  # see line_library
    kwargs: Dict[str, Any] = {}
    if "jitter_ms" in inspect.signature(utils.BackoffStrategy).parameters:
        kwargs["jitter_ms"] = 0
    backoff = utils.BackoffStrategy(1, 5, 1.5, max_elapsed_ms, **kwargs)
    return utils.RetryConfig("backoff", backoff, False)


def make_sdk(
    target: str,
    server_url: str,
    *,
    client: Any = None,
    async_client: Any = None,
    retries: Any = None,
    timeout_ms: int = 2000,
) -> Any:
    """Build the target's SDK object pointed at ``server_url`` with the given clients (httpx or
    httpx2 ``Client`` / ``AsyncClient``; None lets the SDK make its own).

    ``retries`` is a ``RetryConfig`` of that target (or None for no retries). ``timeout_ms`` is
    the SDK's request timeout in ms; upstream applies it to every timeout of a request (connect,
    read, write and pool, overriding the client's own; ``chat`` otherwise defaults to
    300,000 ms), so it must be short for a pool exhaustion to show quickly.

    Raises:
        ValueError: unknown target.
    """
    common: Dict[str, Any] = {
        "server_url": server_url,
        "client": client,
        "async_client": async_client,
        "timeout_ms": timeout_ms,
    }
    if retries is not None:
        common["retry_config"] = retries
    if target == "mistral":
        from mistralai.client import Mistral

        return Mistral(api_key="loopback", **common)
    if target == "azure":
        from mistralai.azure.client import MistralAzure

        return MistralAzure(api_key="loopback", **common)
    if target == "gcp":
        from mistralai.gcp.client import MistralGCP

        return MistralGCP(project_id="loopback", region="europe-west4", access_token="loopback", **common)
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")


def outcome(exc: Optional[BaseException]) -> str:
    """A short label for a call's outcome: ``ok``, ``SDKError(429)``, ``PoolTimeout``, ..."""
    if exc is None:
        return "ok"
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}({status})" if status is not None else type(exc).__name__


def pool_limits(pool: int, library: Optional[ModuleType] = None) -> Any:
    """``Limits`` of ``library`` (default: the line's, :func:`mistralai_patched.line_library`) for
    a connection pool of ``pool`` connections, all of them kept alive."""
    return (library or line_library()).Limits(max_connections=pool, max_keepalive_connections=pool)


@dataclass(frozen=True)
class PoolTally:
    """What a counting transport saw (see ``loopback.counting_transports``) and its pool now."""

    responses_left_open: int
    responses_closed_unread: int
    responses_read_failed: int
    connections: int
    idle: int
    in_use: int

    @classmethod
    def of(cls, transport: Any) -> "PoolTally":
        """The tally of a counting transport."""
        connections, idle, in_use = pool_state(transport)
        return cls(
            transport.responses_left_open,
            transport.responses_closed_unread,
            transport.responses_read_failed,
            connections,
            idle,
            in_use,
        )


@dataclass
class CallResult:
    """One call: the exception the caller got (None: success), events read, duration in ms."""

    error: Optional[BaseException]
    events: int
    ms: float

    @property
    def outcome(self) -> str:
        return outcome(self.error)


def stream_or_complete(sdk: Any, stream: bool = True, messages: Any = None) -> CallResult:
    """One ``chat.stream`` read to its end inside ``with`` (or one ``chat.complete``); the
    exception is returned in the result, never raised."""
    events, error, started = 0, None, time.perf_counter()
    try:
        if stream:
            with sdk.chat.stream(model=MODEL, messages=messages or MESSAGES) as stream_events:
                for _ in stream_events:
                    events += 1
        else:
            sdk.chat.complete(model=MODEL, messages=messages or MESSAGES)
    except Exception as exc:  # noqa: BLE001 - the caller inspects it
        error = exc
    return CallResult(error, events, (time.perf_counter() - started) * 1000)


async def stream_or_complete_async(sdk: Any, stream: bool = True, messages: Any = None) -> CallResult:
    """The async twin of :func:`stream_or_complete` (``chat.stream_async`` inside ``async with``,
    or ``chat.complete_async``)."""
    events, error, started = 0, None, time.perf_counter()
    try:
        if stream:
            async with await sdk.chat.stream_async(model=MODEL, messages=messages or MESSAGES) as stream_events:
                async for _ in stream_events:
                    events += 1
        else:
            await sdk.chat.complete_async(model=MODEL, messages=messages or MESSAGES)
    except Exception as exc:  # noqa: BLE001 - the caller inspects it
        error = exc
    return CallResult(error, events, (time.perf_counter() - started) * 1000)


class SharedClient:
    """One SDK client of ``target`` at ``server_url`` over one counting transport with a real
    connection pool of ``pool`` connections (all kept alive), sync or async.

    Use it as a context manager (``with`` when ``sync``, ``async with`` otherwise); it closes the
    HTTP client on exit. Attributes: ``library``, ``transport``, ``client``, ``sdk``.

    Args:
        target: ``mistral``, ``azure`` or ``gcp``.
        sync: a ``Client`` (True) or an ``AsyncClient`` (False).
        library: the HTTP library (``httpx`` or ``httpx2`` module); default the line's.
        pool: ``max_connections`` of the pool.
        retries: a ``RetryConfig`` of the target (see :func:`retry_config`), or None.
        timeout_ms: the SDK's request timeout in ms, applied by upstream to every phase of a
            request, the pool wait included; the client gets the same timeout.
        transport_class: a subclass of the library's counting transport to use instead.
        transport_kwargs: more arguments for the transport (``http2=True``, ...).
    """

    def __init__(
        self,
        target: str,
        server_url: str,
        *,
        sync: bool,
        library: Optional[ModuleType] = None,
        pool: int = 8,
        retries: Any = None,
        timeout_ms: int = 2000,
        transport_class: Optional[type] = None,
        **transport_kwargs: Any,
    ) -> None:
        self.library = library or line_library()
        self.sync = sync
        transports = counting_transports(self.library)
        cls = transport_class or (transports.sync if sync else transports.async_)
        self.transport = cls(limits=pool_limits(pool, self.library), **transport_kwargs)
        timeout = self.library.Timeout(timeout_ms / 1000)
        client_class = self.library.Client if sync else self.library.AsyncClient
        self.client = client_class(transport=self.transport, timeout=timeout)
        clients = {"client": self.client} if sync else {"async_client": self.client}
        self.sdk = make_sdk(target, server_url, retries=retries, timeout_ms=timeout_ms, **clients)

    def tally(self) -> PoolTally:
        """The transport's counts and the pool's state now."""
        return PoolTally.of(self.transport)

    def call(self, stream: bool = True) -> CallResult:
        """One sync call (see :func:`stream_or_complete`)."""
        return stream_or_complete(self.sdk, stream)

    async def call_async(self, stream: bool = True) -> CallResult:
        """One async call (see :func:`stream_or_complete_async`)."""
        return await stream_or_complete_async(self.sdk, stream)

    def __enter__(self) -> "SharedClient":
        if not self.sync:
            raise TypeError("an async SharedClient is used with 'async with'")
        self.client.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.client.__exit__(*exc_info)

    async def __aenter__(self) -> "SharedClient":
        if self.sync:
            raise TypeError("a sync SharedClient is used with 'with'")
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.client.__aexit__(*exc_info)

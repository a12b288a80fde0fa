"""A programmable HTTP/1.1 keep-alive server on loopback, and a transport that counts responses.

Used by ``python -m mistralai_patched selftest`` and by the test suite to make claims about
sockets with real sockets: the server counts the TCP connections it accepted, and
:func:`counting_transports` wraps the own transports (a real connection pool) of httpx or httpx2
and counts the responses that were never closed; ``CountingTransport`` /
``CountingAsyncTransport`` are those of the installed line's library.
"""

from __future__ import annotations

import functools
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

__all__ = [
    "Reply",
    "LoopbackServer",
    "CountingTransport",  # noqa: F822 - module __getattr__ (the line's library, on first use)
    "CountingAsyncTransport",  # noqa: F822 - module __getattr__
    "sse_reply",
    "error_reply",
    "pool_state",
]


@dataclass
class Reply:
    """One programmed answer.

    Attributes:
        status: HTTP status code.
        headers: Extra response headers.
        chunks: Body pieces, written in order (with ``delay_ms`` between them).
        chunked: Send with ``Transfer-Encoding: chunked`` instead of ``Content-Length``.
        delay_ms: Pause before each chunk, in ms.
        delays_ms: Pause before each chunk, in ms, one per chunk (overrides ``delay_ms``).
        close: Close the connection after this reply (``Connection: close``).
        cut_after: Misbehave: after this many chunks, stop writing and close the socket with the
            body incomplete (no terminating chunk, or fewer bytes than ``Content-Length``).
        reset: With ``cut_after``, abort the connection with a TCP reset (RST) instead of FIN.
        content_length: Declared ``Content-Length`` when it should differ from the bytes sent.
    """

    status: int = 200
    headers: Dict[str, str] = field(default_factory=dict)
    chunks: List[bytes] = field(default_factory=list)
    chunked: bool = False
    delay_ms: int = 0
    delays_ms: Optional[List[int]] = None
    close: bool = False
    cut_after: Optional[int] = None
    reset: bool = False
    content_length: Optional[int] = None


def error_reply(
    status: int = 429, message: str = "rate limited", headers: Optional[Dict[str, str]] = None, **kw: Any
) -> Reply:
    """A JSON error reply like the Mistral API's; ``headers`` are added to its content type,
    other keywords go to :class:`Reply`."""
    body = json.dumps({"object": "error", "message": message, "type": "loopback", "code": status})
    return Reply(status, {"content-type": "application/json", **(headers or {})}, [body.encode()], **kw)


def sse_reply(n_chunks: int = 3, **kw: Any) -> Reply:
    """A 200 ``text/event-stream`` chat completion of ``n_chunks`` events plus ``[DONE]``."""
    events = []
    for i in range(n_chunks):
        data = {
            "id": "cmpl-loopback",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "loopback",
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": f"t{i}"},
                    "finish_reason": "stop" if i == n_chunks - 1 else None,
                }
            ],
        }
        events.append(f"data: {json.dumps(data)}\n\n".encode())
    events.append(b"data: [DONE]\n\n")
    return Reply(200, {"content-type": "text/event-stream"}, events, chunked=True, **kw)


def completion_reply(**kw: Any) -> Reply:
    """A 200 ``application/json`` chat completion (the answer to a non-streaming call)."""
    body = {
        "id": "cmpl-loopback",
        "object": "chat.completion",
        "created": 0,
        "model": "loopback",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return Reply(200, {"content-type": "application/json"}, [json.dumps(body).encode()], **kw)


def wants_stream(handler: BaseHTTPRequestHandler) -> bool:
    """Whether the request being answered asked for a stream (``"stream": true`` in its body)."""
    try:
        return bool(json.loads(getattr(handler, "request_body", b"") or b"{}").get("stream"))
    except (ValueError, AttributeError):
        return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as production HTTP servers set: with Nagle's algorithm on, a small write that
    # follows an unacknowledged one (the last chunk of a body) waits for the client's delayed ACK
    # (~40 ms on Linux), which would make every drained response look 40 ms slower.
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.owner._lock:
            self.server.owner.connections_accepted += 1

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.request_body = self.rfile.read(length) if length else b""
        owner = self.server.owner
        with owner._lock:
            owner.requests_served += 1
            owner.paths.append(self.path)
            owner.request_times.append(time.monotonic())
        reply = owner.respond(self)
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if reply.chunked:
                self.send_header("transfer-encoding", "chunked")
            else:
                length = sum(len(c) for c in reply.chunks)
                if reply.content_length is not None:
                    length = reply.content_length
                self.send_header("content-length", str(length))
            if reply.close:
                self.send_header("connection", "close")
                self.close_connection = True
            self.end_headers()
            for index, chunk in enumerate(reply.chunks):
                if reply.cut_after is not None and index >= reply.cut_after:
                    self._cut(reply.reset)
                    return
                delay = reply.delays_ms[index] if reply.delays_ms else reply.delay_ms
                if delay:
                    time.sleep(delay / 1000)
                if reply.chunked:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                else:
                    self.wfile.write(chunk)
                self.wfile.flush()
            if reply.chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def _cut(self, reset: bool) -> None:
        """Drop the connection mid-body: FIN, or RST when ``reset`` (SO_LINGER 0)."""
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    owner: "LoopbackServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients closing connections mid-request are expected here: stay quiet."""


class LoopbackServer:
    """A threaded HTTP/1.1 keep-alive server on 127.0.0.1 with a programmable answer.

    ``respond`` is called for every request with the handler and returns a :class:`Reply`; by
    default the server answers ``reply`` (settable). Counters: ``connections_accepted`` (TCP
    connections), ``requests_served``, and per request ``paths`` and ``request_times``
    (``time.monotonic()`` seconds). Use as a context manager; the port is chosen by the OS.
    """

    def __init__(
        self, reply: Optional[Reply] = None, respond: Optional[Callable[[BaseHTTPRequestHandler], Reply]] = None
    ) -> None:
        self.reply = reply or error_reply(429)
        self._respond = respond
        self._lock = threading.Lock()
        self.connections_accepted = 0
        self.requests_served = 0
        self.paths: List[str] = []
        self.request_times: List[float] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-server", daemon=True
        )

    def respond(self, handler: BaseHTTPRequestHandler) -> Reply:
        return self._respond(handler) if self._respond else self.reply

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def reset_counters(self) -> None:
        with self._lock:
            self.connections_accepted = 0
            self.requests_served = 0
            self.paths.clear()
            self.request_times.clear()

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------- counting transports


class _Tracker:
    """Counts a transport's responses: opened, closed, closed before their body ended while it
    was still readable, and those whose body read failed (the connection was already broken)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.opened = 0
        self.closed = 0
        self.closed_unread = 0
        self.read_failed = 0

    def open(self) -> None:
        with self._lock:
            self.opened += 1

    def close(self, read_to_end: bool, read_failed: bool) -> None:
        with self._lock:
            self.closed += 1
            if read_failed:
                self.read_failed += 1
            elif not read_to_end:
                self.closed_unread += 1

    @property
    def left_open(self) -> int:
        return self.opened - self.closed


class _TrackedSync:
    """Mixin: a sync byte stream that tells its tracker when it is closed, and whether its body
    had been read to the end then (else httpcore discards the connection)."""

    def __init__(self, inner: Any, tracker: _Tracker) -> None:
        self._inner, self._tracker, self._closed, self._ended, self._failed = inner, tracker, False, False, False
        tracker.open()

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except Exception:
            self._failed = True
            raise
        self._ended = True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._tracker.close(self._ended, self._failed)
        self._inner.close()


class _TrackedAsync:
    """Mixin: the async twin of _TrackedSync."""

    def __init__(self, inner: Any, tracker: _Tracker) -> None:
        self._inner, self._tracker, self._closed, self._ended, self._failed = inner, tracker, False, False, False
        tracker.open()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception:
            self._failed = True
            raise
        self._ended = True

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._tracker.close(self._ended, self._failed)
        await self._inner.aclose()


class _Counts:
    """Mixin: what a counting transport's tracker counted (see :func:`counting_transports`)."""

    tracker: _Tracker

    @property
    def responses_left_open(self) -> int:
        return self.tracker.left_open

    @property
    def responses_closed_unread(self) -> int:
        return self.tracker.closed_unread

    @property
    def responses_read_failed(self) -> int:
        return self.tracker.read_failed


class CountingTransports(NamedTuple):
    """The counting transport classes of one HTTP library (see :func:`counting_transports`)."""

    sync: type
    async_: type


@functools.lru_cache(maxsize=None)
def counting_transports(library: ModuleType) -> CountingTransports:
    """``CountingTransports(sync, async_)``: transport classes of ``library`` (the ``httpx`` or ``httpx2`` module):
    the library's own transport with its real connection pool, counting the responses never
    closed (``responses_left_open``), those closed before their body was read to the end while
    it was still readable (``responses_closed_unread``: each costs its connection, which the pool
    then discards), and those whose body read failed (``responses_read_failed``: the connection
    was already broken), and keeping the pool for :func:`pool_state`. They take the library's
    transport arguments (``limits=``, ``http2=``, …)."""
    tracked_sync = type("_TrackedSyncStream", (_TrackedSync, library.SyncByteStream), {})
    tracked_async = type("_TrackedAsyncStream", (_TrackedAsync, library.AsyncByteStream), {})

    class Counting(_Counts, library.HTTPTransport):  # type: ignore[name-defined]
        __doc__ = f"{library.__name__}'s sync transport (real connection pool) that counts responses never closed."

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.tracker: _Tracker = _Tracker()

        def handle_request(self, request: Any) -> Any:
            response = super().handle_request(request)
            response.stream = tracked_sync(response.stream, self.tracker)
            return response

    class CountingAsync(_Counts, library.AsyncHTTPTransport):  # type: ignore[name-defined]
        __doc__ = f"{library.__name__}'s async transport (real connection pool) that counts responses never closed."

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.tracker: _Tracker = _Tracker()

        async def handle_async_request(self, request: Any) -> Any:
            response = await super().handle_async_request(request)
            response.stream = tracked_async(response.stream, self.tracker)
            return response

    return CountingTransports(Counting, CountingAsync)


def __getattr__(name: str) -> Any:
    """``CountingTransport`` / ``CountingAsyncTransport``: :func:`counting_transports` of the
    installed line's HTTP library (:func:`mistralai_patched.line_library`), resolved on first use
    rather than at import, so that importing this module imports no HTTP library."""
    if name in ("CountingTransport", "CountingAsyncTransport"):
        from . import line_library

        transports = counting_transports(line_library())
        return transports.async_ if name == "CountingAsyncTransport" else transports.sync
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pool_state(transport: Any) -> Tuple[int, int, int]:
    """``(connections, idle, in_use)`` of an httpx transport's connection pool.

    Reads httpcore's public ``ConnectionPool.connections``; the pool itself is httpx's
    ``HTTPTransport._pool`` attribute (stable since httpx 0.18).
    """
    pool = getattr(transport, "_pool", None)
    conns = list(getattr(pool, "connections", []) or [])
    idle = sum(1 for c in conns if c.is_idle())
    in_use = sum(1 for c in conns if not c.is_idle() and not c.is_closed())
    return len(conns), idle, in_use


# --------------------------------------------------------------------------- server in a process


class LoopbackServerProcess:
    """A :class:`LoopbackServer` in a child process, so that a benchmark's client does not share
    the interpreter (and its GIL) with the server. Same ``url``, ``requests_served``,
    ``connections_accepted`` and ``reset_counters()``; ``reply``/``respond`` are fixed at start.

    Uses the ``fork`` start method (Linux, macOS), so ``respond`` may be a closure.

    Raises:
        RuntimeError: when the platform has no ``fork`` start method, or the child did not start
            within 10 s.
    """

    def __init__(
        self, reply: Optional[Reply] = None, respond: Optional[Callable[[BaseHTTPRequestHandler], Reply]] = None
    ) -> None:
        import multiprocessing

        try:
            self._ctx = multiprocessing.get_context("fork")
        except ValueError as exc:
            raise RuntimeError("LoopbackServerProcess needs the 'fork' start method") from exc
        self._reply, self._respond = reply, respond
        self._conn, child = self._ctx.Pipe()
        self._child = child
        self._proc: Any = None
        self.url = ""

    @staticmethod
    def _serve(conn: Any, reply: Optional[Reply], respond: Any) -> None:
        with LoopbackServer(reply, respond) as server:
            conn.send(server.url)
            while True:
                command = conn.recv()
                if command == "stop":
                    return
                if command == "reset":
                    server.reset_counters()
                conn.send((server.requests_served, server.connections_accepted))

    def _ask(self, command: str) -> Tuple[int, int]:
        self._conn.send(command)
        return self._conn.recv()

    @property
    def requests_served(self) -> int:
        return self._ask("stats")[0]

    @property
    def connections_accepted(self) -> int:
        return self._ask("stats")[1]

    def reset_counters(self) -> None:
        self._ask("reset")

    def __enter__(self) -> "LoopbackServerProcess":
        self._proc = self._ctx.Process(
            target=self._serve, args=(self._child, self._reply, self._respond), name="loopback-server", daemon=True
        )
        self._proc.start()
        if not self._conn.poll(10):
            self._proc.kill()
            raise RuntimeError("the loopback server process did not start within 10 s")
        self.url = self._conn.recv()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._conn.send("stop")
        except OSError:
            pass
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()

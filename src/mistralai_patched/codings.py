"""Content codings undone within a bound on every step's output.

The HTTP library decodes a response's ``Content-Encoding`` as it reads: httpx 0.28 decodes each
received chunk whole (a few hundred bytes of ``gzip, gzip``, or of ``br`` or ``zstd``, give
hundreds of MiB at once), httpx2 decodes in pieces of at most 1 MiB but its ``read()`` joins them
all. :mod:`mistralai_patched.release` reads the bodies it bounds raw and undoes their codings
here, one bounded step at a time, so that a small body that expands a thousandfold cannot take
memory.

Which codings, and with what: exactly those the response's HTTP library decodes (its
``_decoders.SUPPORTED_DECODERS``), with the decompressor module that library imported, so the
bytes are the library's own. A coding the library does not decode is left as it is, as the
library leaves it. Per coding:

==========  ==============================================  ====================================
coding      decompressor (as the library picks it)          bound on one step's output
==========  ==============================================  ====================================
gzip        ``zlib`` (gzip wrapper)                         ``limit`` bytes (``max_length``)
deflate     ``zlib`` (zlib-wrapped, or raw as httpx         ``limit`` bytes (``max_length``)
            accepts it)
br          ``brotli`` or ``brotlicffi`` 1.2 or later        about 1.5 × ``limit`` bytes
            (``output_buffer_limit``)                       (``output_buffer_limit``)
zstd        httpx2: ``compression.zstd`` (Python 3.14) or   ``limit`` bytes (``max_length``)
            ``backports.zstd``
zstd        httpx 0.28/0.29: ``zstandard``, which has no    ``limit`` + 640 KiB: input is fed in
            output bound: fed in slices                     slices of ``4 × limit / 128 KiB``
                                                            bytes (16 at least), and a zstd
                                                            block of at least 4 bytes gives at
                                                            most 128 KiB
==========  ==============================================  ====================================

A coding the library decodes with a module this table cannot bound (``brotli`` older than 1.2,
whose ``process`` takes no output limit; a decoder of another name) makes :func:`plan` answer
None: the caller then leaves the body to the library (decoded unbounded, as upstream).

Input is given to a decompressor in pieces too (zlib: 64 KiB; zstandard: the slices above), and a
whole body is decoded 1 MiB a step (:func:`decode_bounded`), so neither the input nor the output
is copied whole on every step.
"""

from __future__ import annotations

import zlib
from types import ModuleType
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Type

__all__ = ["Decoder", "plan", "decode_bounded", "ZLIB_CODINGS"]

ZLIB_CODINGS = ("gzip", "x-gzip", "deflate")
"""Codings undone with ``zlib`` (``x-gzip`` when a library decodes it; httpx and httpx2 do not)."""

_ZSTD_BLOCK_MAX = 128 * 1024
"""A zstd block's largest output (RFC 8878 ``Block_Maximum_Size``); a block takes 4 bytes or more."""


class Decoder:
    """One content coding undone step by step: :meth:`feed` input, then :meth:`take` output until
    it gives ``b""`` (it needs input), :meth:`end` at the end of the body.

    Attributes:
        errors: The exception types the decompressor raises on data it cannot decode.
    """

    errors: Tuple[Type[BaseException], ...] = ()

    def feed(self, data: bytes) -> None:
        """Queue ``data`` (raw bytes of this coding) for :meth:`take`."""
        raise NotImplementedError

    def take(self, limit: int) -> bytes:
        """At most about ``limit`` bytes (see the module's table) of output from what was fed;
        ``b""`` when all of it has been consumed and given out.

        Raises:
            One of :attr:`errors`: data that does not decode.
        """
        raise NotImplementedError

    def end(self) -> None:
        """The body ended: release what was held back for :meth:`take` (a one-byte deflate body).

        Raises:
            One of :attr:`errors`: the data ended where the library's decoder raises (a zstd
            frame, or with ``brotlicffi`` a brotli stream, left incomplete).
        """


class _Queued(Decoder):
    """A decoder whose input waits in a queue (the chunks as fed, not copied) until its
    decompressor takes it."""

    def __init__(self) -> None:
        self.queue: Deque[bytes] = deque()
        self.offset = 0  # of the first chunk, taken already
        self.seen = False

    def feed(self, data: bytes) -> None:
        if data:
            self.queue.append(data)
            self.seen = True

    def queued(self) -> bool:
        return bool(self.queue)

    def next_input(self, size: Optional[int] = None) -> bytes:
        """The next ``size`` bytes queued (all of them when None; at most the rest of the first
        chunk otherwise), taken off the queue."""
        if not self.queue:
            return b""
        head = self.queue[0]
        end = len(head) if size is None else min(len(head), self.offset + size)
        data = head[self.offset : end] if self.offset or end < len(head) else head
        if end < len(head):
            self.offset = end
            return data
        self.queue.popleft()
        self.offset = 0
        if size is None and self.queue:
            data = b"".join([data, *self.queue])
            self.queue.clear()
        return data

    def peek(self, size: int) -> bytes:
        """The first ``size`` bytes queued (fewer when fewer are), left on the queue."""
        first = b""
        for i, chunk in enumerate(self.queue):
            first += chunk[self.offset : self.offset + size] if i == 0 else chunk[: size - len(first)]
            if len(first) >= size:
                break
        return first

    def put_back(self, data: bytes) -> None:
        """Put ``data`` in front of what is queued."""
        if self.offset:
            self.queue[0] = self.queue[0][self.offset :]
            self.offset = 0
        self.queue.appendleft(data)


class _Zlib(_Queued):
    """gzip or deflate, given to zlib at most ``_ZLIB_INPUT`` bytes at a time (zlib copies the input
    it could not use yet on every step). A deflate layer waits for its first two bytes: they tell
    zlib-wrapped (RFC 9110) from raw deflate, which some servers send and httpx accepts."""

    errors = (zlib.error,)

    def __init__(self, coding: str) -> None:
        super().__init__()
        self.coding = coding
        self.decompressor: Any = None
        self.tail = b""
        self.ended = False

    def take(self, limit: int) -> bytes:
        if self.decompressor is None:
            first = self.peek(2)
            if not first or (self.coding == "deflate" and len(first) < 2 and not self.ended):
                return b""
            self.decompressor = _zlib_decompressor(self.coding, first)
        while True:
            data = self.tail or self.next_input(_ZLIB_INPUT)
            out = self.decompressor.decompress(data, limit)  # b"": input used, no output held back
            self.tail = self.decompressor.unconsumed_tail
            if out or not (self.tail or self.queued()):
                return out

    def end(self) -> None:
        self.ended = True


_ZLIB_INPUT = 64 * 1024


def _zlib_decompressor(coding: str, first: bytes) -> Any:
    """A zlib decompressor for ``coding`` (gzip, x-gzip, deflate) of data starting with ``first``."""
    if coding == "deflate":
        wrapped = len(first) >= 2 and (first[0] * 256 + first[1]) % 31 == 0 and first[0] & 0x0F == 8
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
    return zlib.decompressobj(zlib.MAX_WBITS | 16)


class _Brotli(_Queued):
    """br with ``brotli`` or ``brotlicffi`` 1.2+: ``process(data, output_buffer_limit=...)``, and
    only empty input until ``can_accept_more_data()``."""

    def __init__(self, module: ModuleType) -> None:
        super().__init__()
        self.decompressor = module.Decompressor()
        self.errors = (module.error,)

    def take(self, limit: int) -> bytes:
        while True:
            data = self.next_input() if self.queued() and self.decompressor.can_accept_more_data() else b""
            out = self.decompressor.process(data, output_buffer_limit=limit)
            if out or not self.queued():
                return bytes(out)
            if not data and self.decompressor.can_accept_more_data() is False:
                raise self.errors[0]("brotli decoder gave no output and takes no input")

    def end(self) -> None:
        finish = getattr(self.decompressor, "finish", None)  # brotlicffi: raises on an incomplete stream
        if finish is not None:
            finish()


class _ZstdFrames(_Queued):
    """zstd: frames one after the other, each with a new decompressor (``new()``, as both
    libraries do); a body whose last frame is incomplete raises at its end, as both libraries do."""

    def __init__(self, new: Callable[[], Any], error: Type[BaseException]) -> None:
        super().__init__()
        self.new = new
        self.decompressor = new()
        self.errors = (error,)

    def end(self) -> None:
        if self.seen and not self.decompressor.eof:
            raise self.errors[0]("Zstandard data is incomplete")


class _Zstd(_ZstdFrames):
    """zstd with the standard library's API (``compression.zstd``, ``backports.zstd``; httpx2):
    ``decompress(data, max_length)``, which keeps the input it has not used."""

    def take(self, limit: int) -> bytes:
        while True:
            if self.decompressor.eof:
                data = self.decompressor.unused_data + self.next_input()
                if not data:
                    return b""
                self.decompressor = self.new()
            else:
                data = self.next_input()
                if not data and self.decompressor.needs_input:
                    return b""
            out = self.decompressor.decompress(data, limit)
            if out or not (self.decompressor.eof and self.decompressor.unused_data):
                return out


class _Zstandard(_ZstdFrames):
    """zstd with ``zstandard`` (httpx 0.28/0.29), whose ``decompressobj`` gives all it can at
    once: the input is fed in slices small enough for the output of one step to stay bounded."""

    def __init__(self, module: ModuleType) -> None:
        super().__init__(lambda: module.ZstdDecompressor().decompressobj(), module.ZstdError)

    def take(self, limit: int) -> bytes:
        size = max(16, 4 * (limit // _ZSTD_BLOCK_MAX))
        while self.queued():
            data = self.next_input(size)
            if self.decompressor.eof:  # a new frame: the last one ended with nothing after it
                self.decompressor = self.new()
            out = self.decompressor.decompress(data)
            unused = self.decompressor.unused_data if self.decompressor.eof else b""
            if unused:  # the next frame's first bytes: back on the queue, for a new decompressor
                self.put_back(unused)
                self.decompressor = self.new()
            if out:
                return out
        return b""


Factory = Callable[[], Decoder]


class _Library:
    """What a library decodes: coding → a bounded decoder factory (None: not bounded here);
    ``known``: False when the library's table could not be read (its other codings are then
    unknown, not skipped); ``most``: how many codings it undoes (httpx2 raises over 5)."""

    __slots__ = ("factories", "known", "most")

    def __init__(self, factories: Dict[str, Optional[Factory]], known: bool, most: int) -> None:
        self.factories, self.known, self.most = factories, known, most


_LIBRARIES: Dict[str, _Library] = {}


def _brotli_bounded(module: Any) -> bool:
    """Whether ``module`` (``brotli`` or ``brotlicffi``) takes an output limit (1.2 and later)."""
    try:
        module.Decompressor().process(b"", output_buffer_limit=1)
    except Exception:  # noqa: BLE001 - TypeError before 1.2; anything else, an unknown module
        return False
    return hasattr(module.Decompressor(), "can_accept_more_data")


def _factory(coding: str, decoders: Any) -> Optional[Factory]:
    if coding in ZLIB_CODINGS:
        return lambda: _Zlib(coding)
    if coding == "br":
        brotli = getattr(decoders, "brotli", None)
        if brotli is not None and _brotli_bounded(brotli):
            return lambda: _Brotli(brotli)
        return None
    if coding == "zstd":
        zstd_class = getattr(decoders, "ZstdDecompressor", None)
        zstd_error = getattr(decoders, "ZstdError", None)
        if zstd_class is not None and zstd_error is not None:
            return lambda: _Zstd(zstd_class, zstd_error)
        zstandard = getattr(decoders, "zstandard", None)
        if zstandard is not None:
            return lambda: _Zstandard(zstandard)
    return None


def _library(library: ModuleType) -> _Library:
    """What ``library`` decodes, read once from its (private) ``_decoders`` module."""
    known = _LIBRARIES.get(library.__name__)
    if known is None:
        decoders = getattr(library, "_decoders", None)
        supported = getattr(decoders, "SUPPORTED_DECODERS", None)
        codings = ["gzip", "deflate"] if supported is None else [c for c in supported if c != "identity"]
        links = getattr(getattr(decoders, "MultiDecoder", None), "max_decode_links", None)
        known = _Library(
            {coding: _factory(coding, decoders) for coding in codings},
            supported is not None,
            links if isinstance(links, int) else 1 << 30,
        )
        _LIBRARIES[library.__name__] = known
    return known


def plan(library: ModuleType, codings: List[str]) -> Optional[List[Factory]]:
    """How to undo ``codings`` (``Content-Encoding`` values in the order applied, lower-case,
    without ``identity``) as ``library`` (``httpx`` or ``httpx2``) would, within a bound.

    Returns:
        The decoder factories, in the order the codings were applied, for the codings the
        library decodes (the others it leaves as they are: so are they here); ``[]`` when it
        decodes none of them. None when one of them cannot be undone within a bound here (see
        the module's table), or there are more than the library undoes (httpx2: 5; it raises its
        ``DecodingError``): the caller leaves the body to the library.
    """
    decodes = _library(library)
    chosen = []
    for coding in codings:
        if coding not in decodes.factories and decodes.known:
            continue
        factory = decodes.factories.get(coding)
        if factory is None:
            return None
        chosen.append(factory)
    return chosen if len(chosen) <= decodes.most else None


def decode_bounded(
    raw: bytes, codings: List[Any], limit: int, *, strict: bool = False, prefix: bool = True
) -> Tuple[Optional[bytes], bool]:
    """Undo ``codings`` on ``raw`` (a whole body, or its first bytes) with at most ``limit`` bytes
    kept out of each layer, so a small body that expands a thousandfold per layer cannot take
    memory.

    Args:
        raw: The body as received.
        codings: In the order applied: decoder factories from :func:`plan`, or coding names
            (gzip, x-gzip, deflate only).
        limit: Bytes kept out of each layer (a step gives at most about ``limit`` more, see the
            module's table).
        strict: True for a whole body: data that ends where the library's decoder raises (an
            incomplete zstd frame) does not decode. False for a prefix, which decodes to what it
            holds.
        prefix: False when the decoded prefix of a body that was cut is not wanted: ``b""`` is
            returned in its place, and no copy of ``limit`` bytes is made.

    Returns:
        ``(decoded, cut)``: ``decoded`` is None for a coding name it does not decode or data that
        does not decode; ``cut`` is True when a layer had more than ``limit`` bytes.
    """
    data, cut = raw, False
    for coding in reversed(codings):
        if isinstance(coding, str):
            if coding not in ZLIB_CODINGS:
                return None, cut
            decoder: Decoder = _Zlib(coding)
        else:
            decoder = coding()
        out = bytearray()
        try:
            decoder.feed(data)
            _take_all(decoder, out, limit)
            if len(out) <= limit:
                try:
                    decoder.end()
                except decoder.errors:
                    if strict:
                        return None, cut
                _take_all(decoder, out, limit)
        except decoder.errors:
            return None, cut
        if len(out) > limit:
            cut = True
            if not prefix:
                return b"", cut
            del out[limit:]
        data = bytes(out)
    return data, cut


_WHOLE_BODY_STEP = 1024 * 1024
"""Most bytes one step of :func:`decode_bounded` asks for: ``out`` grows by small pieces, so the
decoded body is held about once (a piece of the whole limit could be held twice)."""


def _take_all(decoder: Decoder, out: bytearray, limit: int) -> None:
    """Add the decoder's output to ``out`` until it needs input or ``out`` is over ``limit``."""
    while len(out) <= limit:
        piece = decoder.take(min(_WHOLE_BODY_STEP, limit + 1 - len(out)))
        if not piece:
            return
        out += piece

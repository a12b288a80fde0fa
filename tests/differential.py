"""Inputs and evaluator for the differential test (tests/test_differential.py).

``evaluate()`` parses every input with whatever ``mistralai`` this interpreter imports and returns
JSON-able results (``model_dump(mode="json")`` of each value, or the exception's type and
message). The test runs it here (the fork) and in a subprocess on pristine upstream 2.10.1 and
requires equal results. Run as a script it prints the results as JSON.

Inputs are shaped like the API's answers: chat completions with tool calls and usage, SSE streams
of every streaming endpoint's event type (split into network chunks in several ways, with CRLF,
CR and LF boundaries, a BOM, comments, ids, retry fields and multi-line data), error bodies,
invalid data, and request bodies for marshalling (dicts, models, tuples where lists are due).

Every streaming endpoint is found in the generated code (each ``EventStream`` a method returns
names its event model), and every member of its event's ``data`` union gets an event built from
the member's fields (:func:`sample`), so an endpoint or event type upstream adds is covered
without a change here.

The ``sse-raw`` cases give the stream a decoder of one's own that returns the JSON text it is
handed, parsed: the fork hands compact JSON text (not ``json.dumps``' spacing) that parses to the
same value, which is what the decoder's contract is.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import datetime
import enum
import importlib
import importlib.util
import json
import random
import re
import sys
import typing
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List

import pydantic

from conftest import httpx  # the line's HTTP library (2.x: httpx; 3.x: httpx2, as upstream imports it)

from mistralai_patched.harness import TARGETS, target_module

def _chunk(i: int, content: str = "", tool: bool = False, finish: Any = None, usage: bool = False) -> Dict[str, Any]:
    delta: Dict[str, Any] = {"role": "assistant", "content": content}
    if tool:
        delta = {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "index": 0,
             "function": {"name": "get_weather", "arguments": '{"city": "Par' if i % 2 else 'is"}'}}]}
    data: Dict[str, Any] = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": 1700000000 + i,
                            "model": "mistral-small-latest",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        data["usage"] = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    return data


COMPLETION = {
    "id": "cmpl-1", "object": "chat.completion", "created": 1700000000, "model": "mistral-small-latest",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Let me check.",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
}


def _sse(events: List[str], boundary: str = "\n\n", bom: bool = False) -> bytes:
    body = boundary.join(events) + boundary
    return (b"\xef\xbb\xbf" if bom else b"") + body.encode()


def _data(obj: Any) -> str:
    return "data: " + json.dumps(obj)


CHAT_STREAM = [_data(_chunk(0, "Hel")), ": keep-alive comment", _data(_chunk(1, "lo")),
               _data(_chunk(2, tool=True)), _data(_chunk(3, tool=True)),
               _data(_chunk(4, "", finish="stop", usage=True)), "data: [DONE]"]
SSE_BODIES = {
    "chat-lf": _sse(CHAT_STREAM),
    "chat-crlf-bom": _sse(CHAT_STREAM, "\r\n\r\n", bom=True),
    "chat-cr": _sse(CHAT_STREAM, "\r\r"),
    "chat-mixed": (_data(_chunk(0, "a")) + "\r\n\n" + _data(_chunk(1, "b")) + "\n\r\n"
                   + "id: 7\nretry: 1500\n" + _data(_chunk(2, "c")) + "\r\n\r\n\n\n"
                   + "data: {\"id\": \"cmpl-1\", \"object\": \"chat.completion.chunk\",\ndata: \"model\": \"m\", "
                     "\"created\": 1, \"choices\": []}\n\n" + "data: [DONE]\n\n").encode(),
    "chat-no-done": _sse(CHAT_STREAM[:-1]),
    "chat-trailing-partial": _sse(CHAT_STREAM[:3]) + b"data: {\"id\": \"x\"",
    "chat-invalid-event": _sse([_data({"id": "x", "choices": "not a list"}), "data: [DONE]"]),
    "chat-not-json": _sse(["data: this is not json", "data: [DONE]"]),
}
FRAMING_BODIES = {  # short events and odd boundaries, decoded raw
    "short": b"data: 1\n\ndata: [2]\n\n:c\n\nevent: e\n\nid: 9\n\nretry: 5\n\ndata: \"x\"\n\n",
    "short-crlf": b"data: 1\r\n\r\ndata: 2\r\rdata: 3\n\r\ndata: 4\r\r\ndata: 5\n\rdata: 6\r\n\n",
    "runs-of-newlines": b"\n\n\n\ndata: 1\n\n\n\r\n\r\r\n\ndata: 2\r\n\r\n\r\n\r\ndata: 3",
    "multiline": b"data: a\ndata: b\r\ndata: c\rdata:d\n\nid\nevent:x\ndata\n\n",
    "id-with-nul": b"id: a\x00b\ndata: 1\n\nid: c\ndata: 2\n\n",
    "done-midway": b"data: 1\n\ndata: [DONE]\n\ndata: 3\n\n",
}
CONVERSATION_STREAM = _sse([
    "event: conversation.response.started\n" + _data({"type": "conversation.response.started",
                                                      "conversation_id": "conv_1"}),
    "event: message.output.delta\n" + _data({"type": "message.output.delta", "id": "msg_1", "content": "Hi",
                                             "role": "assistant", "output_index": 0, "content_index": 0}),
    "event: conversation.response.done\n" + _data({"type": "conversation.response.done", "usage": {
        "prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}),
    "event: something.new\n" + _data({"type": "something.new", "x": 1}),
])
TRANSCRIPTION_STREAM = _sse([
    "event: transcription.language\n" + _data({"type": "transcription.language", "audio_language": "en"}),
    "event: transcription.text.delta\n" + _data({"type": "transcription.text.delta", "text": "hello"}),
    "event: transcription.done\n" + _data({"type": "transcription.done", "model": "voxtral", "text": "hello",
                                           "usage": {"prompt_audio_seconds": 1}, "segments": []}),
])
SPEECH_STREAM = _sse([
    "event: speech.audio.delta\n" + _data({"type": "speech.audio.delta", "audio_data": "UklGRg=="}),
    "event: speech.audio.done\n" + _data({"type": "speech.audio.done", "usage": {"prompt_tokens": 1}}),
])
LOGS_STREAM = _sse(["event: log\n" + _data({"timestamp": "2026-01-01T00:00:00Z", "message": "started"}),
                    "event: heartbeat", "id: 3\nevent: log\n" + _data({"message": "x"})])


_ANSWER = json.dumps(COMPLETION).encode()
_ANSWER_ACCENTED = json.dumps(dict(COMPLETION, model="modèle"), ensure_ascii=False)
# Response bodies for unmarshal_json_response: (headers, bytes, encoding set on the response).
RESPONSE_BODIES: Dict[str, Any] = {
    "utf8": ({"content-type": "application/json"}, _ANSWER, None),
    "utf8-accented": ({"content-type": "application/json"}, _ANSWER_ACCENTED.encode(), None),
    "charset-latin1": ({"content-type": "application/json; charset=latin-1"}, _ANSWER_ACCENTED.encode("latin-1"), None),
    # UTF-8 bytes that a latin-1 charset or encoding makes other text: upstream's text is that.
    "charset-latin1-utf8-bytes": ({"content-type": "application/json; charset=latin-1"}, _ANSWER_ACCENTED.encode(), None),
    "encoding-set-latin1-utf8-bytes": ({"content-type": "application/json"}, _ANSWER_ACCENTED.encode(), "latin-1"),
    "latin1-no-charset": ({"content-type": "application/json"}, _ANSWER_ACCENTED.encode("latin-1"), None),
    "encoding-set-latin1": ({"content-type": "application/json"}, _ANSWER_ACCENTED.encode("latin-1"), "latin-1"),
    "encoding-set-utf8": ({"content-type": "application/json"}, _ANSWER_ACCENTED.encode(), "utf-8"),
    "no-content-type": ({}, _ANSWER, None),
    "bom": ({"content-type": "application/json"}, b"\xef\xbb\xbf" + _ANSWER, None),
    "invalid-utf8-in-string": ({"content-type": "application/json"}, _ANSWER.replace(b"hi", b"h\xff"), None),
    "not-json": ({"content-type": "application/json"}, b"{oops", None),
    "empty": ({"content-type": "application/json"}, b"", None),
    "wrong-shape": ({"content-type": "application/json"}, b'{"id": 1, "choices": 3}', None),
}


def json_answer(content: bytes, headers: Any = None, encoding: Any = None) -> Any:
    """A read 200 answer of the line's HTTP library: ``content`` with ``headers`` (default
    ``application/json``), and ``encoding`` set on it when given (``response.encoding = ...``)."""
    response = httpx.Response(200, headers={"content-type": "application/json"} if headers is None else headers,
                              content=content, request=httpx.Request("POST", "http://loopback/"))
    if encoding is not None:
        response.encoding = encoding
    return response


def _splits(body: bytes) -> Dict[str, List[bytes]]:
    rng = random.Random(len(body))
    cuts = sorted(rng.sample(range(1, len(body)), min(12, len(body) - 1)))
    pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])]
    return {"whole": [body], "bytewise": [body[i:i + 1] for i in range(len(body))],
            "by7": [body[i:i + 7] for i in range(0, len(body), 7)], "random": pieces}


class _Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, chunks: List[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _outcome(fn: Any) -> Dict[str, Any]:
    try:
        return {"value": _dump(fn())}
    except Exception as exc:  # noqa: BLE001 - compared across implementations
        # Object addresses (a validator's repr in a union's name) differ from process to process.
        return {"error": type(exc).__name__, "message": re.sub(r" at 0x[0-9a-f]+", " at 0x", str(exc))}


def _sse_cases(target: str, model: Any, body: bytes, sentinel: Any, data_required: bool) -> Dict[str, Any]:
    pkg = target_module(target)
    eventstreaming = importlib.import_module(pkg + ".utils.eventstreaming")
    if model is None:  # the raw event JSON the decoder gets: shows every framing difference
        def unmarshal_json_response(typ: Any, response: Any, raw: str) -> Any:
            assert isinstance(raw, str)
            return json.loads(raw)
        typ = None
    else:
        unmarshal_json_response = importlib.import_module(
            pkg + ".utils.unmarshal_json_response").unmarshal_json_response
        typ = getattr(importlib.import_module(pkg + ".models"), model)

    def event_stream(cls: Any, chunks: List[bytes]) -> Any:
        """An upstream-shaped ``cls`` (EventStream or EventStreamAsync) over an SSE response."""
        response = httpx.Response(200, stream=_Chunks(chunks), headers={"content-type": "text/event-stream"},
                                  request=httpx.Request("POST", "http://loopback/"))
        return cls(response, lambda raw, r=response: unmarshal_json_response(typ, r, raw), sentinel=sentinel,
                   data_required=data_required)

    out = {}
    for split, chunks in _splits(body).items():
        stream = event_stream(eventstreaming.EventStream, chunks)
        events: List[Any] = []

        def read(s: Any = stream, acc: List[Any] = events) -> List[Any]:
            for event in s:
                acc.append(event)
            return acc

        result = _outcome(read)
        result["events_before_error"] = _dump(events) if "error" in result else None
        out[split] = result

        astream = event_stream(eventstreaming.EventStreamAsync, chunks)
        aevents: List[Any] = []

        async def aread(s: Any = astream, acc: List[Any] = aevents) -> List[Any]:
            async for event in s:
                acc.append(event)
            return acc

        result = _outcome(lambda: asyncio.run(aread()))
        result["events_before_error"] = _dump(aevents) if "error" in result else None
        out[split + "-async"] = result
    return out


JSONL_BODIES = {
    "summary": b'{"status": "started", "translated": false}\n{"content": "Par"}\n{"content": "is }"}\n',
    "crlf": b'{"content": "a"}\r\n{"content": "b"}\r\n',
    "no-final-newline": b'{"content": "a"}\n{"content": "b"}',
    "nested-and-blank": b'{"content": "x", "extra": {"k": {}}}\n\n{"content": "}\\n"}\n',
    "invalid-line": b'{"content": "a"}\n{"nope": 1}\n{"content": "c"}\n',
    "not-json": b'{"content": "a"}\n{oops}\n',
}
"""NDJSON answers (3.x: ``generate_index_summary``): lines ending in ``}`` + LF or CRLF, a ``}``
inside a string, blank lines, a last line without a newline, a line that fails to validate."""


def _jsonl_cases(model: Any, body: bytes) -> Dict[str, Any]:
    utils = importlib.import_module("mistralai.client.utils")
    jsonl = importlib.import_module("mistralai.client.utils.jsonl")
    decoder = json.loads if model is None else (lambda raw: utils.unmarshal_json(raw, model))
    out = {}
    for split, chunks in _splits(body).items():
        for label, cls in (("", jsonl.JsonLStream), ("-async", jsonl.JsonLStreamAsync)):
            response = httpx.Response(200, stream=_Chunks(chunks), headers={"content-type": "application/x-ndjson"},
                                      request=httpx.Request("POST", "http://loopback/"))
            stream = cls(response, decoder)
            lines: List[Any] = []

            async def aread(s: Any = stream, acc: List[Any] = lines) -> List[Any]:
                async for line in s:
                    acc.append(line)
                return acc

            def read(s: Any = stream, acc: List[Any] = lines) -> List[Any]:
                acc.extend(s)
                return acc

            result = _outcome(read if not label else (lambda r=aread: asyncio.run(r())))
            result["lines_before_error"] = _dump(lines) if "error" in result else None
            out[split + label] = result
    return out


_EVENT_MODEL = re.compile(r"EventStream(?:Async)?\(\s*http_res,\s*lambda raw: unmarshal_json_response\(\s*models\.(\w+),")


def stream_event_models(pkg: str = "mistralai.client") -> List[str]:
    """The event model of every streaming endpoint of ``pkg``, from the generated methods."""
    root = Path(importlib.import_module(pkg).__file__ or "").parent
    return sorted({name for path in root.glob("*.py") for name in _EVENT_MODEL.findall(path.read_text())})


def _members(tp: Any) -> List[Any]:
    """The types a (possibly Optional, Annotated or aliased) union stands for."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None and type(tp).__name__ == "TypeAliasType":  # a named union
        return _members(tp.__value__)
    if origin is typing.Annotated:
        return _members(args[0])
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return [m for a in args for m in _members(a)]
    if type(origin).__name__ == "TypeAliasType":  # Nullable[T] / OptionalNullable[T]
        return _members(args[0])
    return [] if tp is type(None) or getattr(tp, "__name__", "") == "Unset" else [tp]


def sample(tp: Any, depth: int = 0) -> Any:
    """A JSON value of type ``tp``: every field of a model (by alias), the first member of a union
    its sample fits, the smallest value (by repr) of a Literal and the first of an Enum."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        # The smallest by repr, not the first: typing caches Literal[...] by equality, which
        # ignores the order, so which order a class gets depends on what the process built first.
        return min(args, key=repr)
    members = _members(tp)
    if len(members) != 1 or members[0] is not tp:
        candidates = [sample(m, depth) for m in members]
        for member, candidate in zip(members, candidates):  # the first member its sample fits
            try:
                pydantic.TypeAdapter(member).validate_python(candidate)
            except Exception:  # noqa: BLE001 - try the next member
                continue
            return candidate
        return candidates[0] if candidates else None
    if origin in (list, collections.abc.Sequence, set, frozenset, tuple):
        return [sample(args[0], depth + 1)] if args else []
    if origin in (dict, collections.abc.Mapping):
        return {"k": sample(args[1], depth + 1)} if len(args) == 2 else {}
    if isinstance(tp, type):
        if hasattr(tp, "model_fields"):
            if depth > 12:
                return {}
            return {(f.alias or n): sample(f.annotation, depth + 1) for n, f in tp.model_fields.items()
                    if f.is_required() or depth < 3}
        if issubclass(tp, enum.Enum):
            return next(iter(tp)).value
        if issubclass(tp, bool):
            return True
        if issubclass(tp, int):
            return 1
        if issubclass(tp, float):
            return 0.5
        if issubclass(tp, datetime.datetime):
            return "2026-01-01T00:00:00Z"
        if issubclass(tp, datetime.date):
            return "2026-01-01"
        if issubclass(tp, str):
            return "x"
    return "any"


def event_type_streams(model_cls: Any) -> Dict[str, bytes]:
    """Per member of ``model_cls``'s ``data`` union: an SSE body of two events of that member
    (with an ``event:`` line when the model has an ``event`` field), LF then CRLF framed."""
    fields = model_cls.model_fields
    bodies = {}
    for member in _members(fields["data"].annotation):
        data = sample(member)
        line = "data: " + json.dumps(data)
        if "event" in fields:
            name = data.get("type", "message") if isinstance(data, dict) else "message"
            line = f"event: {name}\n" + line
        bodies[getattr(member, "__name__", str(member))] = _sse([line]) + _sse([line], "\r\n\r\n")
    return bodies


SENT_OPERATIONS = {
    # operation → call on a client (an AttributeError where a line lacks the operation).
    "chat-null-temperature": lambda sdk: sdk.chat.complete(
        model="m", messages=[{"role": "user", "content": "hi"}], temperature=None, http_headers={"X-Extra": "1"}),
    "chat-unset-twice": lambda sdk: [sdk.chat.complete(model="m", messages=[{"role": "user", "content": "hi"}])
                                     for _ in range(2)][-1],
    "chat-server-url-with-query": lambda sdk: sdk.chat.complete(
        model="m", messages=[{"role": "user", "content": "hi"}], server_url="http://loopback/base?tenant=a&x=%20"),
    "stream-stop-list": lambda sdk: list(sdk.chat.stream(
        model="m", messages=[{"role": "user", "content": "hi"}], stop=["a"], max_tokens=3)),
    "models-list": lambda sdk: sdk.models.list(),
    "agent-path-and-query": lambda sdk: sdk.beta.agents.get(agent_id="ag 1/x", agent_version=2),
    "workflow-events-header": lambda sdk: list(sdk.workflows.events.get_stream_events(last_event_id="7", start_seq=3)),
}


def sent_requests() -> Dict[str, Any]:
    """What the main client sends for operations with a body (explicit nulls, left-out optional
    arguments, twice), a server URL carrying a query, path, query and header parameters: method,
    URL, headers and body of every request, and what the call gave (the mock answers 200 with a
    completion, or an empty event stream)."""
    from mistralai.client import Mistral

    seen: List[Any] = []

    def answer(request: Any) -> Any:
        seen.append([request.method, str(request.url), sorted(request.headers.multi_items()), request.content.decode()])
        if "text/event-stream" in request.headers.get("accept", ""):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"data: [DONE]\n\n")
        return httpx.Response(200, json=COMPLETION)

    sdk = Mistral(api_key="key", client=httpx.Client(transport=httpx.MockTransport(answer)))
    results: Dict[str, Any] = {}
    for name, call in SENT_OPERATIONS.items():
        del seen[:]
        outcome = _outcome(lambda: call(sdk))  # AttributeError where a line lacks the operation
        results[f"mistral/sent/{name}"] = {"outcome": outcome, "requests": list(seen)}
    return results


def constructions(pkg: str) -> Dict[str, Any]:
    """Every model class of ``pkg`` with a field defaulting to ``UNSET``, built as generated methods
    build request models: required fields from :func:`sample`, every ``UNSET``-defaulted field
    passed ``UNSET``; three times (the fork leaves proven ``UNSET`` arguments out from the second
    time on), then with one of them passed None, and without the required fields (the error).
    Compared: ``model_dump`` (JSON mode), ``model_fields_set``, the values that are ``UNSET``
    itself, the request body ``utils.marshal_json`` writes (the fork leaves ``UNSET`` fields out of
    it from the second time on), and errors."""
    models = importlib.import_module(pkg + ".models")
    unset = importlib.import_module(pkg + ".types").UNSET
    marshal_json = importlib.import_module(pkg + ".utils").marshal_json
    results: Dict[str, Any] = {}
    for name in sorted(getattr(models, "__all__", dir(models))):
        cls = getattr(models, name, None)
        if not (isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)):
            continue
        fields = cls.model_fields
        left_out = [n for n, f in fields.items() if f.default is unset]
        if not left_out:
            continue
        required = {n: sample(f.annotation) for n, f in fields.items() if f.is_required()}

        def build(kwargs: Dict[str, Any], cls: Any = cls) -> Any:
            model = cls(**kwargs)
            return {"dump": model.model_dump(mode="json"), "set": sorted(model.model_fields_set),
                    "unset": sorted(n for n in type(model).model_fields if getattr(model, n) is unset),
                    "json": _outcome(lambda: marshal_json(model, cls))}

        all_unset = dict(required, **{n: unset for n in left_out})
        results[f"{pkg}/construct/{name}"] = {
            "whole": _outcome(lambda: build(all_unset)),  # the key test_differential flattens by
            **{f"again-{i}": _outcome(lambda: build(all_unset)) for i in (1, 2)},
            "one-null": _outcome(lambda: build(dict(all_unset, **{left_out[0]: None}))),
            "no-required": _outcome(lambda: build({n: unset for n in left_out})),
        }
    return results


class _Role(enum.Enum):
    USER = "user"


class _Tagged:
    """An object carrying the discriminator as an attribute (``role``, ``ROLE``, or both)."""

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)

    def __repr__(self) -> str:
        return f"_Tagged({sorted(self.__dict__.items())!r})"


class _Raising:
    """An object whose discriminator attribute raises something other than AttributeError."""

    @property
    def role(self) -> str:
        raise RuntimeError("no role here")

    def __repr__(self) -> str:
        return "_Raising()"


DISCRIMINATED = {  # values pydantic may hand a discriminator callable, and odd ones
    "dict": {"role": "user", "content": "hi"},
    "dict-int": {"role": 3},
    "dict-enum": {"role": _Role.USER},
    "nested-dict": {"message": {"role": "tool"}},
    "nested-list": {"items": [{"x": 1}, {"role": "assistant"}]},
    "nested-deep": {"a": {"b": [{"c": {"role": "system"}}]}},
    "nested-tuple": {"items": ({"role": "user"},)},
    "list": [{"x": 1}, {"role": "user"}],
    "list-empty": [],
    "attribute": _Tagged(role="assistant"),
    "attribute-enum": _Tagged(role=_Role.USER),
    "attribute-upper": _Tagged(ROLE="tool"),
    "attribute-both": _Tagged(role="a", ROLE="b"),
    "attribute-none": _Tagged(role=None),
    "attribute-raises": _Raising(),
    "missing": {"content": "hi"},
    "string": "user",
    "none": None,
}


def discriminators(pkg: str) -> Dict[str, Any]:
    """``utils.get_discriminator`` of ``pkg`` on every value of :data:`DISCRIMINATED`, by
    attribute ``role`` and key ``role``, and by ``type``/``type`` on the dicts."""
    get = importlib.import_module(pkg + ".utils").get_discriminator
    results: Dict[str, Any] = {}
    for label, value in DISCRIMINATED.items():
        results[f"{pkg}/discriminator/{label}"] = _outcome(lambda v=value: get(v, "role", "role"))
        results[f"{pkg}/discriminator/{label}/type"] = _outcome(lambda v=value: get(v, "type", "role"))
    return results


def model_containment(pkg: str) -> Dict[str, Any]:
    """``utils.serializers._contains_pydantic_model`` of ``pkg`` (which decides whether
    ``get_pydantic_model`` validates or coerces) on plain values and on models at every depth,
    in lists, dicts, their subclasses and tuples."""
    serializers = importlib.import_module(pkg + ".utils.serializers")
    models = importlib.import_module(pkg + ".models")
    unset = importlib.import_module(pkg + ".types").UNSET
    message = models.UserMessage(content="hi")
    values = {
        "none": None, "string": "x", "int": 1, "bool": True, "empty-list": [], "empty-dict": {},
        "dicts": [{"role": "user", "content": "hi"}], "model": message, "unset": unset,
        "in-list": [{"a": 1}, message], "in-dict": {"a": {"b": [message]}}, "in-tuple": ({"a": message},),
        "in-list-subclass": type("ListSubclass", (list,), {})([message]),
        "in-dict-subclass": collections.OrderedDict(a=[message]), "in-set": {1, 2},
        "pydantic-model": pydantic.create_model("Plain")(), "model-class": type(message),
    }
    return {f"{pkg}/contains_model/{label}": _outcome(lambda v=value: serializers._contains_pydantic_model(v))
            for label, value in values.items()}


def evaluate() -> Dict[str, Any]:
    results: Dict[str, Any] = {}
    for target in TARGETS:
        pkg = target_module(target)
        utils = importlib.import_module(pkg + ".utils")
        models = importlib.import_module(pkg + ".models")
        errors = importlib.import_module(pkg + ".errors")
        raw = json.dumps(COMPLETION)
        results[f"{target}/unmarshal/completion"] = _outcome(lambda: utils.unmarshal_json(raw, models.ChatCompletionResponse))
        results[f"{target}/unmarshal/completion-twice"] = _outcome(
            lambda: [utils.unmarshal_json(raw, models.ChatCompletionResponse) for _ in range(2)])
        results[f"{target}/unmarshal/invalid"] = _outcome(
            lambda: utils.unmarshal_json('{"id": 1, "choices": 3}', models.ChatCompletionResponse))
        results[f"{target}/unmarshal/not-json"] = _outcome(lambda: utils.unmarshal_json("{oops", models.ChatCompletionResponse))
        response_json = importlib.import_module(pkg + ".utils.unmarshal_json_response").unmarshal_json_response
        for label, (headers, content, encoding) in RESPONSE_BODIES.items():
            for typ_label, typ in (("model", models.ChatCompletionResponse), ("any", Any), ("dict", Dict[str, Any])):
                results[f"{target}/unmarshal_json_response/{label}/{typ_label}"] = _outcome(
                    lambda typ=typ, h=headers, c=content, e=encoding: response_json(typ, json_answer(c, h, e)))
        results[f"{target}/unmarshal/list"] = _outcome(
            lambda: utils.unmarshal([{"role": "user", "content": "hi"}], List[models.UserMessage]))
        results[f"{target}/unmarshal/validation-error"] = _outcome(lambda: utils.unmarshal_json(
            '{"detail": [{"loc": ["body", "model"], "msg": "field required", "type": "missing"}]}',
            errors.HTTPValidationErrorData))
        for name, body in SSE_BODIES.items():
            results[f"{target}/sse/{name}"] = _sse_cases(target, "CompletionEvent", body, "[DONE]", True)
        for name, body in dict(SSE_BODIES, **FRAMING_BODIES).items():
            for required in (True, False):
                results[f"{target}/sse-raw/{name}/{required}"] = _sse_cases(target, None, body, "[DONE]", required)
        request = models.ChatCompletionStreamRequest(
            model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}], temperature=0.2,
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
        results[f"{target}/marshal/request"] = _outcome(
            lambda: utils.marshal_json(request, models.ChatCompletionStreamRequest))
        results[f"{target}/marshal/none"] = _outcome(lambda: utils.marshal_json(None, models.ChatCompletionStreamRequest))
        results[f"{target}/marshal/invalid"] = _outcome(lambda: utils.marshal_json({"model": 3}, models.ChatCompletionStreamRequest))
        messages_typ = models.ChatCompletionStreamRequest.model_fields["messages"].annotation
        for label, messages in {
            "dicts": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            "tuple": ({"role": "user", "content": "hi"},),
            "nested-tuple": [{"role": "user", "content": ({"type": "text", "text": "hi"},)}],
            "models": [models.UserMessage(content="hi")],
            "invalid": [{"role": "nobody", "content": 1}],
        }.items():
            results[f"{target}/get_pydantic_model/{label}"] = _outcome(
                lambda m=messages: utils.get_pydantic_model(m, messages_typ))
        results[f"{target}/query_params/request"] = _outcome(lambda: utils.get_query_params(request, None))
    mistral_models = importlib.import_module("mistralai.client.models")
    for name, model, body, required in [
        ("fim", "CompletionEvent", SSE_BODIES["chat-crlf-bom"], True),
        ("conversations", "ConversationEvents", CONVERSATION_STREAM, True),
        ("transcriptions", "TranscriptionStreamEvents", TRANSCRIPTION_STREAM, True),
        ("speech", "SpeechStreamEvents", SPEECH_STREAM, True),
        ("deployment-logs", "StreamDeploymentLogsResponseBody", LOGS_STREAM, False),
        ("workflow-logs", "StreamWorkflowExecutionLogsResponseBody", LOGS_STREAM, False),
    ]:
        if hasattr(mistral_models, model):
            sentinel = "[DONE]" if model == "CompletionEvent" else None
            results[f"mistral/sse-endpoint/{name}"] = _sse_cases("mistral", model, body, sentinel, required)
    for model in stream_event_models():
        model_cls = getattr(mistral_models, model)
        required = not _members(model_cls.model_fields["data"].annotation) or model_cls.model_fields["data"].is_required()
        sentinel = "[DONE]" if model == "CompletionEvent" else None
        for member, body in event_type_streams(model_cls).items():
            results[f"mistral/sse-event-type/{model}/{member}"] = _sse_cases("mistral", model, body, sentinel, required)
    if importlib.util.find_spec("mistralai.client.utils.jsonl") is not None:  # 3.x
        for name, body in JSONL_BODIES.items():
            results[f"mistral/jsonl/{name}"] = _jsonl_cases(mistral_models.SummaryStreamTypes, body)
            results[f"mistral/jsonl-raw/{name}"] = _jsonl_cases(None, body)
    results.update(sent_requests())
    for target in TARGETS:
        results.update(constructions(target_module(target)))
        results.update(discriminators(target_module(target)))
        results.update(model_containment(target_module(target)))
    utils = importlib.import_module("mistralai.client.utils")
    list_request = mistral_models.ListModelsV1ModelsGetRequest() if hasattr(mistral_models, "ListModelsV1ModelsGetRequest") else None
    if list_request is not None:
        results["mistral/query_params/list-models"] = _outcome(lambda: utils.get_query_params(list_request, None))
    return results


if __name__ == "__main__":
    json.dump(evaluate(), sys.stdout, sort_keys=True)

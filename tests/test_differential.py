"""Differential test (issue 5): the fork and pristine upstream 2.10.1 parse the same inputs to
equal results (``model_dump`` equal, same exception types and messages). The inputs and the
evaluator are in tests/differential.py; pristine upstream runs in a subprocess on a pristine
regeneration of the pinned sdist. Also unit tests of mistralai_patched.fastpath."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Dict, List

import pydantic
import pytest

import differential
from mistralai_patched import bodyjson, built_line, fastpath

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def upstream_results(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    tree = tmp_path_factory.mktemp("pristine")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "regenerate"), "--pristine", "--upstream", built_line(), "--out",
                    str(tree / "mistralai")], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(ROOT / "tests")]),
               MISTRALAI_PATCHED_NO_CLOBBER_WARNING="1")  # the pristine tree is unpatched on purpose
    proc = subprocess.run([sys.executable, "-W", "ignore", str(ROOT / "tests" / "differential.py")],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def fork_results() -> Dict[str, Any]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return json.loads(json.dumps(differential.evaluate()))


def test_every_input_parses_the_same(upstream_results: Dict[str, Any], fork_results: Dict[str, Any]) -> None:
    assert sorted(fork_results) == sorted(upstream_results)
    different = [name for name in fork_results if fork_results[name] != upstream_results[name]]
    assert not different, f"fork and upstream differ on: {different}"
    # The inputs exercise both outcomes: values and errors.
    flat = [r for v in fork_results.values() for r in (v.values() if "whole" in v else [v])]
    assert sum("value" in r for r in flat) > 50 and sum("error" in r for r in flat) > 10


def test_caches_are_used_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from mistralai.client import models, utils

    fastpath.clear()
    for _ in range(3):  # a model class validates by itself; a list of them needs the wrapper
        utils.unmarshal_json('{"role": "user", "content": "hi"}', models.UserMessage)
        utils.unmarshal_json('[{"role": "user", "content": "hi"}]', typing.List[models.UserMessage])
    assert fastpath.cache_info()["models"]["misses"] == 1  # built once, then reused
    typ = typing.List[models.UserMessage]
    first = fastpath.cached_model("M", typ, lambda: type("Built", (), {}))
    assert fastpath.cached_model("M", typ, lambda: pytest.fail("rebuilt")) is first
    assert fastpath.cached_model("M", typing.List[models.UserMessage], lambda: pytest.fail("rebuilt")) is first
    monkeypatch.setattr(fastpath, "MAX_ENTRIES", 4)
    for n in range(10):
        fastpath.cached_model("M", ("key", n), lambda: object)
    assert fastpath.cache_info()["models"]["entries"] == 4


def test_unhashable_types_are_built_every_time() -> None:
    built: List[int] = []
    for _ in range(2):
        fastpath.cached_model("M", ["unhashable"], lambda: built.append(1) or object)
    assert built == [1, 1]


def test_cached_type_hints_match_typing_and_are_copies() -> None:
    from mistralai.client import models

    cls = models.ChatCompletionStreamRequest
    first = fastpath.cached_type_hints(cls)
    assert first == typing.get_type_hints(cls)
    first["mutated"] = int
    assert "mutated" not in fastpath.cached_type_hints(cls)
    assert fastpath.cached_type_hints(cls, include_extras=True) == typing.get_type_hints(cls, include_extras=True)
    assert fastpath.cached_type_hints(len) == typing.get_type_hints(len)  # not a class: not cached


def test_rendered_modules_use_the_caches() -> None:
    from mistralai.azure.client.utils import queryparams as azure_queryparams
    from mistralai.client.utils import eventstreaming, forms, queryparams, url

    for module in (queryparams, url, forms, azure_queryparams):
        assert module.get_type_hints is fastpath.cached_type_hints
    assert eventstreaming.asdict is fastpath.shallow_asdict


@pytest.mark.parametrize("value,expected", [
    ({"a": [1, 2.5, "x", None, True, {"b": []}]}, True),
    ([{"role": "user", "content": ({"type": "text"},)}], False),
    ({1: "int key"}, False),
    ([(1, 2)], False),
    (object(), False),
])
def test_is_json_tree(value: Any, expected: bool) -> None:
    assert fastpath.is_json_tree(value) is expected


def test_shallow_asdict_equals_asdict_for_server_events() -> None:
    import dataclasses

    from mistralai.client.utils.eventstreaming import ServerEvent

    event = ServerEvent(id="1", event="e", data={"a": [1, {"b": 2}]}, retry=5)
    assert fastpath.shallow_asdict(event) == dataclasses.asdict(event)
    with pytest.raises(TypeError):
        fastpath.shallow_asdict(ServerEvent)


TRICKY_BLOCKS = [
    b'data: {"a": 1}', b'data:{"a": 1}', b'data:  {"a": 1}', b"data:", b"data: ", b"data: 1", b'data: "text"',
    b"data: [DONE]", b"data: [DONE] ", b"data:[DONE]", b"data: NaN", b"data: 1e400", b"data: -0", b"data: " + b"9" * 5000,
    b'data: "\\ud800"', b'data: "a\x01b"', b'data: "\xff"', b'data: \xef\xbb\xbf{"a": 1}', b'data: {"a": 1, "a": 2}',
    b'data: {"a": 1}, "event": "evil"', b'data: {"a": 1} {"b": 2}', b"data: " + b"[" * 300 + b"]" * 300,
    b'event: e\ndata: {"a": 1}', b'event:\ndata: {"a": 1}', b'event: a:b\ndata: {"a": 1}', b'event: "q\\"\ndata: 2',
    b'event: \xff\ndata: 1', b'data: 1\ndata: 2', b'id: 7\ndata: 1', b': comment\ndata: 1', b'data: 1\r\n',
    b'Data: 1', b'event: e', b'\xef\xbb\xbfdata: 1', b'retry: 5\ndata: 1', b'data: {"a": 1}\n',
]


def _outcome_of(call: Any) -> Any:
    try:
        value, discard, event_id = call()
    except Exception as exc:  # noqa: BLE001 - compared between the two parsers
        return ("raised", type(exc).__name__, str(exc))
    dumped = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    return (dumped, discard, event_id)


@pytest.mark.parametrize("block", TRICKY_BLOCKS, ids=[repr(b[:24]) for b in TRICKY_BLOCKS])
@pytest.mark.parametrize("event_id", [None, "id-1"])
def test_the_fast_event_path_gives_what_upstreams_parse_gives(block: bytes, event_id: Any) -> None:
    """fastpath.parse_event against the target's own _parse_event (upstream's, unchanged), with a
    decoder of one's own (the JSON value handed over) and the SDK's typed decoder: same value,
    same end-of-stream flag and event id, or the same exception."""
    from mistralai.client import models
    from mistralai.client.utils import eventstreaming
    from mistralai.client.utils.unmarshal_json_response import unmarshal_json_response

    response = differential.httpx.Response(200, request=differential.httpx.Request("GET", "http://loopback/"))
    decoders = {"json": lambda raw: json.loads(raw),
                "typed": lambda raw: unmarshal_json_response(models.ConversationEvents, response, raw)}
    for name, decoder in decoders.items():
        for sentinel in ("[DONE]", None):
            kw = dict(decoder=decoder, sentinel=sentinel, event_id=event_id, data_required=True)
            upstream = _outcome_of(lambda: eventstreaming._parse_event(raw=bytearray(block), **kw))
            fast = _outcome_of(lambda: fastpath.parse_event(bytearray(block), decoder, sentinel, event_id, True,
                                                            eventstreaming._parse_event))
            assert fast == upstream, (name, sentinel)


def test_common_events_reach_the_decoder_parsed_once() -> None:
    from mistralai.client.utils import eventstreaming

    seen: List[Any] = []
    value, discard, _ = fastpath.parse_event(bytearray(b'event: e\ndata: {"a": [1, 2]}'), lambda raw: seen.append(raw) or 1,
                                             None, "7", True, eventstreaming._parse_event)
    assert value == 1 and not discard
    assert type(seen[0]) is fastpath.EventJSON
    assert seen[0].value == {"id": "7", "event": "e", "data": {"a": [1, 2]}} == json.loads(seen[0])


@pytest.mark.bites
def test_none_and_unset_are_validated_once_per_type() -> None:
    from mistralai.client import models, utils
    from mistralai.client.types import UNSET, OptionalNullable

    fastpath.clear()
    typ = typing.Optional[models.ResponseFormat]
    assert not fastpath.validates_to_itself(typ, None)
    assert utils.get_pydantic_model(None, typ) is None
    assert fastpath.validates_to_itself(typ, None) and not fastpath.validates_to_itself(typ, UNSET)
    unset_typ = OptionalNullable[models.ResponseFormat]
    assert utils.unmarshal(UNSET, unset_typ) is UNSET and utils.get_pydantic_model(UNSET, unset_typ) is UNSET
    assert fastpath.validates_to_itself(OptionalNullable[models.ResponseFormat], UNSET)  # an equal type, built anew
    for _ in range(2):  # a type that does not take the value fails every time, as upstream
        with pytest.raises(Exception):
            utils.get_pydantic_model(None, models.ResponseFormat)
        with pytest.raises(Exception):
            utils.unmarshal(UNSET, typing.Optional[models.ResponseFormat])
    fastpath.remember_validates_to_itself(typ, UNSET, object())  # a changed value is not remembered
    fastpath.remember_validates_to_itself(["unhashable"], None, None)
    assert not fastpath.validates_to_itself(typ, UNSET) and not fastpath.validates_to_itself(["unhashable"], None)


def test_query_and_header_walks_are_skipped_only_without_such_fields() -> None:
    from mistralai.client import models
    from mistralai.client.utils.metadata import HeaderMetadata, QueryParamMetadata, find_field_metadata

    fastpath.clear()
    chat = models.ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    assert fastpath.lacks_field_metadata(chat, QueryParamMetadata, find_field_metadata)
    assert fastpath.lacks_field_metadata(chat, HeaderMetadata, find_field_metadata)
    assert fastpath.lacks_field_metadata(None, QueryParamMetadata, find_field_metadata)
    events = models.GetStreamEventsV1WorkflowsEventsStreamGetRequest(last_event_id="7")
    assert not fastpath.lacks_field_metadata(events, HeaderMetadata, find_field_metadata)
    assert not fastpath.lacks_field_metadata(events, QueryParamMetadata, find_field_metadata)
    assert not fastpath.lacks_field_metadata(events, HeaderMetadata, find_field_metadata)  # cached, same answer


@pytest.mark.bites
def test_unset_is_hashable_and_never_copied() -> None:
    import copy

    from mistralai.client.types.basemodel import UNSET, Unset

    assert hash(UNSET) == hash(Unset()) and UNSET == Unset()
    assert copy.deepcopy(UNSET) is UNSET
    from mistralai.client import models

    delta = models.DeltaMessage.model_validate({"content": "x"})
    assert delta.role is UNSET


def _counting_model(with_model_validator: bool = False) -> Any:
    """A model of the SDK's BaseModel whose ``OptionalNullable`` field runs a counting validator
    each time pydantic validates an argument for it (the union's int branch, before it fails)."""
    from mistralai.client.types import UNSET, BaseModel, OptionalNullable

    seen: List[Any] = []

    def count(value: Any) -> Any:
        seen.append(value)
        return value

    class Request(BaseModel):
        model: str
        n: OptionalNullable[typing.Annotated[int, pydantic.BeforeValidator(count)]] = UNSET
        aliased: OptionalNullable[int] = pydantic.Field(default=UNSET, alias="aliasedField")

        if with_model_validator:
            @pydantic.model_validator(mode="before")
            @classmethod
            def look(cls, data: Any) -> Any:
                return data

    return Request, seen


@pytest.mark.bites
def test_unset_arguments_are_validated_once_per_class_and_field() -> None:
    from mistralai.client.types import UNSET

    fastpath.clear()
    Request, seen = _counting_model()
    built = [Request(model="m", n=UNSET, aliased=UNSET) for _ in range(3)]
    assert len(seen) == 1  # pydantic showed once that UNSET gives UNSET; then it is left out
    for request in built:  # every construction gives what pydantic's gives
        assert request.n is UNSET and request.aliased is UNSET
        assert request.model_fields_set == {"model", "n", "aliased"}
        assert request.model_dump(by_alias=True) == built[0].model_dump(by_alias=True)
    assert Request(model="m", n=5).n == 5 and len(seen) == 2  # any other value: validated
    assert Request(model="m").model_fields_set == {"model"}  # not passed: not set
    assert Request.__pydantic_custom_init__ is False  # nested models are still built in Rust


def test_unset_arguments_are_validated_every_time_where_a_validator_could_see_them() -> None:
    from mistralai.client.types import UNSET

    fastpath.clear()
    Request, seen = _counting_model(with_model_validator=True)
    for _ in range(3):
        assert Request(model="m", n=UNSET).n is UNSET
    assert len(seen) == 3


def test_an_invalid_construction_raises_pydantics_error_for_every_argument() -> None:
    from mistralai.client.types import UNSET

    fastpath.clear()
    Request, _ = _counting_model()
    Request(model="m", n=UNSET)  # proven: n is left out from now on
    with pytest.raises(pydantic.ValidationError) as raised:
        Request(model=3, n=UNSET)
    errors = raised.value.errors()
    assert [e["loc"] for e in errors] == [("model",)]
    with pytest.raises(pydantic.ValidationError) as missing:
        Request(n=UNSET)
    assert missing.value.errors()[0]["input"] == {"n": UNSET}  # the arguments as given


@pytest.mark.bites
def test_a_utf8_answer_is_parsed_from_its_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from mistralai.client import models
    from mistralai.client.utils.unmarshal_json_response import unmarshal_json_response

    monkeypatch.setattr(differential.httpx.Response, "text", property(lambda self: pytest.fail("text decoded")))
    parsed = unmarshal_json_response(models.ChatCompletionResponse, differential.json_answer(differential._ANSWER))
    assert parsed.model_dump(mode="json", by_alias=True)["id"] == differential.COMPLETION["id"]


def test_utf8_json_leaves_every_other_body_to_upstream() -> None:
    httpx, answer = differential.httpx, differential.json_answer

    assert fastpath.utf8_json(answer(b'{"a": "\xc3\xa9"}')) == {"a": "\u00e9"}
    assert fastpath.utf8_json(answer(b'{"a": 1}', encoding="utf-8")) == {"a": 1}
    assert fastpath.utf8_json(answer(b'{"a": 1}', {})) == {"a": 1}  # no content type: the default encoding
    not_parsed = [
        answer(b'{"a": 1}', {"content-type": "application/json; charset=utf-8"}),  # a parameter: upstream's
        answer(b'{"a": 1}', encoding="latin-1"),
        answer(b'{"a": "\xff"}'),  # not UTF-8: upstream's text has U+FFFD
        answer(b"{oops"),
    ]
    read = answer(b'{"a": 1}')
    assert read.text
    not_parsed.append(read)  # the text exists already
    assert all(fastpath.utf8_json(r) is fastpath.NOT_PARSED for r in not_parsed)
    autodetect = httpx.Response(200, headers={"content-type": "application/json"}, content=b'{"a": 1}',
                                default_encoding=lambda content: "utf-8")
    assert fastpath.utf8_json(autodetect) is fastpath.NOT_PARSED
    # The attribute utf8_json reads an encoding set on the response from, in this HTTP library.
    assert vars(answer(b"{}", encoding="latin-1")).get("_encoding") == "latin-1"
    assert "_encoding" not in vars(answer(b"{}"))


def _all_unset_request() -> Any:
    from mistralai.client import models
    from mistralai.client.types import UNSET

    fields = models.ChatCompletionRequest.model_fields
    return models.ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                        **{n: UNSET for n, f in fields.items() if f.default is UNSET})


@pytest.mark.bites
def test_unset_fields_are_left_out_of_a_request_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """``marshal_json`` dumps a request model without its ``UNSET`` fields once its class has
    been seen to give the same body so (``fastpath.dump_model``); upstream serialized each one,
    through every member of its union, to drop it afterwards."""
    from mistralai.client import models, utils
    from mistralai.client.types import UNSET

    fastpath.clear()
    monkeypatch.setattr(bodyjson, "dumps", lambda model, unset_class: None)  # the dump it falls back to
    request = _all_unset_request()
    unset = {n for n in type(request).model_fields if getattr(request, n) is UNSET}
    dumps: List[Dict[str, Any]] = []
    dump = models.ChatCompletionRequest.model_dump

    def recording(self: Any, **kwargs: Any) -> Any:
        dumps.append(kwargs)
        return dump(self, **kwargs)

    monkeypatch.setattr(models.ChatCompletionRequest, "model_dump", recording)
    bodies = [utils.marshal_json(request, models.ChatCompletionRequest) for _ in range(3)]
    assert bodies == ['{"model":"m","messages":[{"content":"hi","role":"user"}],"stream":false}'] * 3
    assert len(unset) > 10 and dumps and dumps[-1].get("exclude") == unset


def test_a_serializer_that_keeps_unset_gets_its_own_dump() -> None:
    """A model class whose serializer does not drop ``UNSET`` (here: none of its own, so the
    sentinel is written) is dumped whole every time: the check of its first dump refuses it."""
    from mistralai.client import utils
    from mistralai.client.types import UNSET, BaseModel, OptionalNullable

    fastpath.clear()

    class Plain(BaseModel):
        model: str
        n: OptionalNullable[int] = UNSET

    upstream = json.dumps(Plain(model="m", n=UNSET).model_dump(by_alias=True, mode="json", exclude_none=True),
                          separators=(",", ":"))
    assert "~?~unset~?~sentinel~?~" in upstream
    assert [utils.marshal_json(Plain(model="m", n=UNSET), Plain) for _ in range(3)] == [upstream] * 3


def test_dump_verdicts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from mistralai.client import models, utils

    fastpath.clear()
    monkeypatch.setattr(fastpath, "MAX_ENTRIES", 3)
    monkeypatch.setattr(bodyjson, "dumps", lambda model, unset_class: None)
    request = _all_unset_request()
    for field in ["temperature", "top_p", "max_tokens", "random_seed", "n"]:
        varied = request.model_copy(update={field: 1})
        utils.marshal_json(varied, models.ChatCompletionRequest)
    assert len(fastpath._DUMP_CHECKED) <= 3

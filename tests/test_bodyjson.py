"""Request bodies written without the request class's generated wrap serializer (issue 13,
``mistralai_patched.bodyjson``), on every target.

What a user relies on: the bytes sent are upstream's. Upstream's text is what the model's own
``model_dump`` gives (the generated ``serialize_model`` functions run there unchanged), so every
model class of every target is dumped both ways here, whole and with fields (its own and those of
the models it holds) set to None, ``UNSET``, the sentinel text and values of other models."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from typing import Any, Dict, Iterator, List, Tuple

import pydantic
import pytest

import differential
from conftest import MESSAGES, TARGETS, httpx
from mistralai_patched import bodyjson, fastpath
from mistralai_patched.harness import make_sdk, target_module
from mistralai_patched.loopback import completion_reply

COMPLETION = b"".join(completion_reply().chunks)


def _upstream(model: Any) -> Any:
    """Upstream's text (what pristine ``marshal_json`` writes for a model of its type), or the
    type of the error its dump raises."""
    try:
        return json.dumps(model.model_dump(by_alias=True, mode="json", exclude_none=True), separators=(",", ":"))
    except Exception as error:  # noqa: BLE001 - compared, not raised
        return type(error)


def _classes(package: str) -> Iterator[Tuple[str, Any]]:
    models = importlib.import_module(package + ".models")
    unset_class = type(importlib.import_module(package + ".types").UNSET)
    for name in sorted(getattr(models, "__all__", dir(models))):
        cls = getattr(models, name, None)
        if isinstance(cls, type) and issubclass(cls, pydantic.BaseModel) and cls is not unset_class:
            yield name, cls


def _nested(model: Any) -> Iterator[Tuple[str, Any, Any]]:
    """(field, path into the field's value, model) for the models a model holds, one level down."""
    for name, value in model.__dict__.items():
        if isinstance(value, pydantic.BaseModel):
            yield name, None, value
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, pydantic.BaseModel):
                    yield name, index, item
                    break


def _replaced(model: Any, name: str, value: Any) -> Any:
    return model.model_copy(update={name: value})


def _variants(model: Any, unset: Any, sentinel: str, other: Any) -> Iterator[Any]:
    """The model whole, then with each field (its own, and of each model it holds) set to None,
    ``UNSET``, the sentinel and a model of another class."""
    yield model
    for replacement in (None, unset, sentinel, other):
        for name in type(model).model_fields:
            yield _replaced(model, name, replacement)
    for field, index, inner in _nested(model):
        for replacement in (None, unset, sentinel):
            for name in type(inner).model_fields:
                changed = _replaced(inner, name, replacement)
                if index is None:
                    yield _replaced(model, field, changed)
                else:
                    items = list(getattr(model, field))
                    items[index] = changed
                    yield _replaced(model, field, items)


@pytest.mark.parametrize("target", TARGETS)
def test_every_model_dumps_to_upstreams_text(target: str) -> None:
    """For every model class: built from a sample of every field (as JSON would give it) and
    with its ``UNSET`` fields passed explicitly (as generated methods build request models), then
    changed field by field, the fast text is upstream's whenever there is one."""
    package = target_module(target)
    types_module = importlib.import_module(package + ".types")
    unset, sentinel = types_module.UNSET, types_module.UNSET_SENTINEL
    unset_class = type(unset)
    other = types_module.BaseModel()
    bodyjson.clear()
    fast = fallbacks = classes = 0
    wrong: List[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in _classes(package):
            sample = differential.sample(cls)
            built = []
            for data in (sample, dict(sample, **{n: unset for n, f in cls.model_fields.items() if f.default is unset})):
                try:
                    built.append(cls.model_validate(data))
                except Exception:  # noqa: BLE001 - a sample that does not validate is left out
                    continue
            classes += bool(built)
            for model in built:
                for variant in _variants(model, unset, sentinel, other):
                    text = bodyjson._text(variant, unset_class)
                    if text is None:
                        fallbacks += 1
                    elif text != _upstream(variant):
                        wrong.append(f"{name}: {text} != {_upstream(variant)}")
                    else:
                        fast += 1
    assert not wrong, "\n".join(wrong[:20])
    # Not vacuous: many classes build, and many variants go each way.
    assert classes > 40 and fast > 5 * classes and fallbacks > classes


def _serialize_model_calls(call: Any) -> List[str]:
    """The generated ``serialize_model`` functions that run during ``call()``."""
    ran: List[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name == "serialize_model" and ".models." in frame.f_globals.get("__name__", ""):
            ran.append(frame.f_globals["__name__"])

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return ran


def _answer(request: Any) -> Any:
    return httpx.Response(200, headers={"content-type": "application/json"}, content=COMPLETION)


@pytest.mark.bites
@pytest.mark.parametrize("target", TARGETS)
def test_a_request_body_runs_no_generated_serializer_of_the_request(target: str) -> None:
    """After the first call, a chat completion's body is written without calling the request
    model's generated ``serialize_model`` (a walk in Python over its 31 fields); the messages it
    holds are serialized as before, and the bytes sent stay the same."""
    sent: List[bytes] = []

    def answer(request: Any) -> Any:
        sent.append(request.content)
        return _answer(request)

    sdk = make_sdk(target, "http://loopback", client=httpx.Client(transport=httpx.MockTransport(answer)))
    messages = MESSAGES + [{"role": "assistant", "content": "yo"}, {"role": "user", "content": "again"}]
    sdk.chat.complete(model="m", messages=messages, temperature=0.5)
    ran = _serialize_model_calls(lambda: sdk.chat.complete(model="m", messages=messages, temperature=0.5))
    assert not [module for module in ran if module.endswith(".chatcompletionrequest")]
    assert [module.rsplit(".", 1)[-1] for module in ran] == ["usermessage", "assistantmessage", "usermessage"]
    assert len(sent) == 2 and sent[1] == sent[0] and json.loads(sent[0])["temperature"] == 0.5


def _body(package: str, **arguments: Any) -> Tuple[str, str]:
    """(marshal_json's text after the class's first dump, upstream's text) of a chat request."""
    models = importlib.import_module(package + ".models")
    utils = importlib.import_module(package + ".utils")
    request = models.ChatCompletionRequest(model="m", **arguments)
    utils.marshal_json(request, models.ChatCompletionRequest)
    return utils.marshal_json(request, models.ChatCompletionRequest), _upstream(request)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", ["explicit-null", "nested-null", "sentinel-text", "model-under-any", "subclass", "other-unset"])
def test_what_the_fast_dump_cannot_show_gets_upstreams_dump(target: str, case: str) -> None:
    """Values the generated functions treat in their own way give upstream's text: a nullable
    field set to None (``null`` is sent), a message's nullable field set to None, a value equal to
    the sentinel (dropped), a model inside an ``Any`` field, a message of a subclass, and an
    ``UNSET`` of another target."""
    package = target_module(target)
    models = importlib.import_module(package + ".models")
    if case == "explicit-null":
        arguments: Dict[str, Any] = {"messages": MESSAGES, "temperature": None}
    elif case == "nested-null":
        arguments = {"messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "function": {"name": "f", "arguments": "{}"}}]}]}
    elif case == "sentinel-text":
        arguments = {"messages": [{"role": "user", "content": "~?~unset~?~sentinel~?~"}]}
    elif case == "model-under-any":
        if "metadata" not in models.ChatCompletionRequest.model_fields:
            pytest.skip("no Any field on this line's request")
        arguments = {"messages": MESSAGES, "metadata": {"m": models.UserMessage(content="x")}}
    elif case == "subclass":
        class Mine(models.UserMessage):
            pass

        request = models.ChatCompletionRequest(model="m", messages=MESSAGES)
        request.messages = [Mine(content="hi")]
        assert bodyjson._text(request, type(importlib.import_module(package + ".types").UNSET)) in (None, _upstream(request))
        return
    else:
        other = importlib.import_module(target_module(next(t for t in TARGETS if t != target)) + ".types").UNSET
        request = models.ChatCompletionRequest(model="m", messages=MESSAGES)
        request.temperature = other
        assert bodyjson._text(request, type(importlib.import_module(package + ".types").UNSET)) is None
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, upstream = _body(package, **arguments)
    assert ours == upstream


def test_a_serializer_changed_by_one_statement_is_left_alone() -> None:
    """A ``serialize_model`` that is not one of the generated shapes, however close (here it keeps
    the sentinel of one field), or the right shape with another sentinel in its module, keeps
    its own dump."""
    from mistralai.client.types import UNSET, UNSET_SENTINEL, BaseModel, OptionalNullable
    from pydantic import model_serializer

    namespace: Dict[str, Any] = {"UNSET_SENTINEL": UNSET_SENTINEL, "model_serializer": model_serializer,
                                 "BaseModel": BaseModel, "OptionalNullable": OptionalNullable, "UNSET": UNSET,
                                 "__name__": "mistralai.client.models.changed"}
    exec(compile(  # noqa: S102 - a class defined as the generator writes one, with one statement changed
        "class Changed(BaseModel):\n"
        "    a: str\n"
        "    b: OptionalNullable[str] = UNSET\n"
        "    @model_serializer(mode='wrap')\n"
        "    def serialize_model(self, handler):\n"
        "        serialized = handler(self)\n"
        "        m = {}\n"
        "        for n, f in type(self).model_fields.items():\n"
        "            k = f.alias or n\n"
        "            val = serialized.get(k, serialized.get(n))\n"
        "            if val != UNSET_SENTINEL or n == 'b':\n"
        "                m[k] = val\n"
        "        return m\n", "<changed>", "exec", dont_inherit=True), namespace)
    changed = namespace["Changed"]
    assert bodyjson._build_plan(changed, type(UNSET), UNSET_SENTINEL) is None  # no source, and not the shape
    assert bodyjson._text(changed(a="x", b=UNSET), type(UNSET)) is None
    from mistralai.client.models import UserMessage

    function = UserMessage.__pydantic_core_schema__
    node, _ = bodyjson._resolve(function)
    serializer = node["serialization"]["function"]
    assert bodyjson._recognize(serializer, UserMessage, UNSET_SENTINEL) is not None
    assert bodyjson._recognize(serializer, UserMessage, "another sentinel") is None


def test_a_class_whose_fast_text_differs_keeps_upstreams(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first fast dump of a class is compared with upstream's; a class that differed gets
    upstream's dump from then on."""
    from mistralai.client import models, utils

    bodyjson.clear()
    request = models.ChatCompletionRequest(model="m", messages=MESSAGES)
    upstream = _upstream(request)
    monkeypatch.setattr(bodyjson, "_text", lambda model, unset_class: '{"model":"other"}')
    assert [utils.marshal_json(request, models.ChatCompletionRequest) for _ in range(3)] == [upstream] * 3
    assert bodyjson._VERIFIED[models.ChatCompletionRequest] is False


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from mistralai.client import models
    from mistralai.client.types import UNSET

    bodyjson.clear()
    monkeypatch.setattr(fastpath, "MAX_ENTRIES", 3)
    for name, cls in list(_classes("mistralai.client"))[:20]:
        bodyjson._plan(cls, type(UNSET), "~?~unset~?~sentinel~?~")
        bodyjson._serializer(cls, type(UNSET), "~?~unset~?~sentinel~?~")
    bodyjson.dumps(models.ChatCompletionRequest(model="m", messages=MESSAGES), type(UNSET))
    assert all(size <= 3 for size in bodyjson.cache_sizes())
    fastpath.clear()
    assert bodyjson.cache_sizes() == [0, 0, 0, 0]

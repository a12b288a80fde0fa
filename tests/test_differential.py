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

import pytest

import differential
from mistralai_patched import built_line, fastpath

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
    for _ in range(3):
        utils.unmarshal_json('{"role": "user", "content": "hi"}', models.UserMessage)
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

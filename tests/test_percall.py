"""Per-call work the fork leaves out (issue 13), on every target: debug messages the default
logger drops are not built (their body argument is the repr of the whole request body), and a
logger of one's own still gets every message upstream sends it, with the body."""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any, List

import pytest

from conftest import MESSAGES, TARGETS, httpx
from mistralai_patched.harness import make_sdk, target_module
from mistralai_patched.loopback import completion_reply

COMPLETION = b"".join(completion_reply().chunks)


def _answer(request: Any) -> Any:
    return httpx.Response(200, headers={"content-type": "application/json"}, content=COMPLETION)


def _call(target: str, asynchronous: bool, logger: Any = None) -> None:
    transport = httpx.MockTransport(_answer)
    if asynchronous:
        sdk = make_sdk(target, "http://loopback", async_client=httpx.AsyncClient(transport=transport))
    else:
        sdk = make_sdk(target, "http://loopback", client=httpx.Client(transport=transport))
    if logger is not None:
        sdk.sdk_configuration.debug_logger = logger  # what Mistral(debug_logger=...) sets
    if asynchronous:
        asyncio.run(sdk.chat.complete_async(model="m", messages=MESSAGES))
    else:
        sdk.chat.complete(model="m", messages=MESSAGES)


@pytest.mark.bites
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("target", TARGETS)
def test_the_default_logger_gets_no_request_body_built(target: str, asynchronous: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    basesdk = importlib.import_module(target_module(target) + ".basesdk")
    built: List[Any] = []
    monkeypatch.setattr(basesdk, "get_body_content", lambda request: built.append(request) or "")
    _call(target, asynchronous)
    assert built == []


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("target", TARGETS)
def test_a_logger_of_ones_own_gets_the_request_and_response(target: str, asynchronous: bool,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(f"test_percall.{target}")
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        _call(target, asynchronous, logger)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Request:\nMethod: POST" in text and '"content":"hi"' in text  # with the body sent
    assert "Response:\nStatus Code: 200" in text and "cmpl-loopback" in text  # with the body read

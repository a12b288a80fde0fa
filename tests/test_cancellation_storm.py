"""Cancellation storms (issue 12, item 7): 500 streamed calls on one shared async client, each
under ``asyncio.timeout`` of 0 to 50 ms (``asyncio.wait_for`` on 3.10), against a slow loopback
server (headers late, events spaced, error bodies that trickle, retried 429s). Cancellation then
lands everywhere: in the pool's queue, in the connect, waiting for headers, mid-stream, in a
drain, in a retry sleep. The storm is :func:`mistralai_patched.bounds.storm` (seeded).

After the storm no response may be left open, no pooled connection may be in use, and the next
call must be served.

The client's library decides what happens inside the HTTP client itself. httpx2 (the 3.x line,
and any httpx2 client a user passes on 2.x) loses nothing. httpx 0.28 with httpcore 1.0.x (the
2.x line's default) loses pool slots inside httpcore (measured: 8 of 8, then ``PoolTimeout``),
which SDK code cannot give back without private httpcore internals; on that library the test
measures and reports instead of asserting, and the README names the remedy ("Cancellation
storms").
"""

from __future__ import annotations

import time
from types import ModuleType

import pytest

from mistralai_patched.bounds import STORM_CALLS, STORM_POOL, storm, storm_server
from mistralai_patched.loopback import LoopbackServer

pytestmark = pytest.mark.long


async def test_cancellation_storm_loses_no_pool_slot(library: ModuleType) -> None:
    with LoopbackServer(respond=storm_server()) as server:
        started = time.monotonic()
        result = await storm(server.url, library)
        seconds = time.monotonic() - started
    tally = result["tally"]
    report = (f"{library.__name__}: {STORM_CALLS} calls {result['outcomes']}; after the storm: "
              f"{tally.responses_left_open} responses left open, {tally.in_use} of {STORM_POOL} pool slots in use; "
              f"next call: {result['next_call'].outcome} ({seconds:.1f} s)")
    print("\n" + report)
    # Calls take at least ~10 ms of the server's own delays, whatever the machine: a good part
    # of the 0-50 ms timeouts must cut them.
    assert result["outcomes"].get("cancelled", 0) > STORM_CALLS // 10, f"the storm cancelled too few calls: {report}"
    if library.__name__ == "httpx":
        pytest.skip(f"httpx 0.28 / httpcore 1.0: measured, not asserted (README, Cancellation storms): {report}")
    assert tally.responses_left_open == 0 and tally.in_use == 0, report
    assert result["next_call"].error is None, report

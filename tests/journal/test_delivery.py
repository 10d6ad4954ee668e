"""The delivery's batched marks: committed behind the sends, never held back by a slow answer, never lost at the
end of a connection. The station's real delivery against the loopback CSMS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from appliance.journal.delivery import MARK_BATCH, PAGE
from appliance.journal.store import Append
from appliance.lab.csms import NO_ANSWER, LoopbackCsms
from appliance.station import Station
from tests.conformance.helpers import booted_station
from tests.conformance.tx_helpers import wait_queue_empty
from tests.harness import peek

#: Message 2 stays unanswered far longer than the guard below waits for message 1's mark.
SLOW = {"OCPPCommCtrlr.MessageTimeout[Default]": 120}


def meter_values(marker: float) -> Append:
    return Append(
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [
                {
                    "timestamp": "2026-01-01T00:00:00.000Z",
                    "sampledValue": [{"value": marker, "measurand": "Energy.Active.Import.Register"}],
                }
            ],
        },
    )


def marker_of(payload: dict[str, Any]) -> float:
    return float(payload["meterValue"][0]["sampledValue"][0]["value"])


def row(station: Station, marker: float) -> tuple[str | None, int]:
    """(outcome, attempts) of our MeterValues with `marker`, read as `appliance-journal` would."""
    [found] = peek(
        station.storage.path,
        "SELECT outcome, attempts FROM outbox WHERE action = 'MeterValues'"
        " AND json_extract(payload, '$.meterValue[0].sampledValue[0].value') = ?",
        (marker,),
    )
    return found[0], found[1]


async def test_a_mark_is_committed_while_the_next_message_waits_for_its_answer(
    csms: LoopbackCsms, data_dir: Path
) -> None:
    """Message 1 is answered, message 2 never is: 1's mark must not wait for 2's answer (or timeout). A power
    cut during a long wait would otherwise send an answered message again long after its answer."""
    csms.set_response("MeterValues", lambda _station, payload: NO_ANSWER if marker_of(payload) == 2.0 else None)
    async with booted_station(csms, data_dir, variables=SLOW) as station:
        # One group commit, so both are in the delivery's next page, in this order.
        journal = station.journal
        await journal.run_sync(journal.store.append_batch, [meter_values(1.0), meter_values(2.0)])
        journal.appended.set(journal.appended.value + 1)
        with trio.fail_after(60):  # only a guard against hanging: the mark comes MARK_DELAY after the answer
            while row(station, 1.0)[0] != "delivered":  # noqa: ASYNC110 - the mark commits on the worker
                await trio.sleep(0.01)
        assert row(station, 2.0) == (None, 0)  # still waiting for its answer: the mark did not wait for it
        csms.set_response("MeterValues", None)


async def test_a_backlog_is_delivered_once_and_marked(csms: LoopbackCsms, data_dir: Path) -> None:
    """More messages than a page and than a mark batch: each reaches the CSMS once and ends marked delivered."""
    count = PAGE + MARK_BATCH + 7
    async with booted_station(csms, data_dir) as station:
        mark = csms.mark()
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(station.journal.append, meter_values(1000.0 + i))
        await wait_queue_empty(station, timeout=60)
        received = [marker_of(p) for p in csms.actions("CS001", "MeterValues", since=mark)]
        assert sorted(v for v in received if v >= 1000.0) == [1000.0 + i for i in range(count)]
        assert all(row(station, 1000.0 + i) == ("delivered", 0) for i in range(count))

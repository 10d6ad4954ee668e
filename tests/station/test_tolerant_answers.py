"""Real CSMS habits in answers are taken, with one warning per kind per connection (issue 15 item 1).

The loopback CSMS is scripted to answer the way CSMSs built on Python's `datetime` and loose JSON handling do:
`datetime.isoformat()` without an offset and with microseconds, `+00:00` instead of `Z`, a lower-case `t`,
extra fields, enum values in another case. A strict station refuses every boot of such a CSMS; this one boots,
sets its clock, authorizes, and delivers every TransactionEvent, logging each deviation kind once.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from appliance.journal import queries
from appliance.lab.csms import LoopbackCsms
from appliance.link.link import LinkState
from appliance.protocol.tolerance import Deviation
from tests.conformance.helpers import STATION_ID, booted_station
from tests.conformance.tx_helpers import AUTH_ONLINE, EVSE, TOKEN, wait_queue_empty, wait_trigger

#: The CSMS's clock runs two hours ahead of the host, so a set clock is visible.
AHEAD = timedelta(hours=2)


def csms_time() -> datetime:
    return datetime.now(UTC) + AHEAD


def boot_answer(station_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    # The EVerest test CSMS's habit: naive UTC with microseconds; plus a vendor field. (The status keeps its
    # case only because the loopback CSMS's own B02 bookkeeping reads it; enum case is replayed below.)
    return {
        "currentTime": csms_time().replace(tzinfo=None).isoformat(),
        "interval": 300,
        "status": "Accepted",
        "csmsVersion": "1.2.3",
    }


def heartbeat_answers() -> Any:
    answers = iter(
        [
            csms_time().isoformat(),  # aware datetime.isoformat(): "+00:00" and microseconds
            csms_time().astimezone(timezone(timedelta(hours=-5))).isoformat(timespec="seconds").replace("T", "t"),
        ]
    )
    return lambda station_id, payload: {"currentTime": next(answers)}


def authorize_answer(station_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    expiry = (csms_time() + timedelta(days=1)).replace(tzinfo=None).isoformat()
    return {"idTokenInfo": {"status": "ACCEPTED", "cacheExpiryDateTime": expiry, "internalId": 17}, "requestRef": "a-1"}


def transaction_answer(station_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"csmsTransactionRef": payload["transactionInfo"]["transactionId"]}
    if "idToken" in payload:
        answer["idTokenInfo"] = {"status": "accepted", "cacheExpiryDateTime": (csms_time() + AHEAD).isoformat()}
    return answer


def deviation_warnings(caplog: pytest.LogCaptureFixture) -> Counter[str]:
    kinds = Counter[str]()
    for record in caplog.records:
        match = re.match(r"CSMS answer deviates from OCPP 2\.0\.1 \(([a-z-]+)\)", record.getMessage())
        if match and record.levelno == logging.WARNING:
            kinds[match.group(1)] += 1
    return kinds


async def test_real_csms_habits_boot_heartbeat_authorize_transaction(
    csms: LoopbackCsms, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="appliance.link.rpc")
    csms.set_response("BootNotification", boot_answer, validate=False)
    csms.set_response("Heartbeat", heartbeat_answers(), validate=False)
    csms.set_response("Authorize", authorize_answer, validate=False)
    csms.set_response("TransactionEvent", transaction_answer, validate=False)
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        assert station.link.state.value is LinkState.ACCEPTED
        assert [b["reason"] for b in csms.actions(STATION_ID, "BootNotification")] == ["PowerUp"], "one boot"
        assert abs((station.clock.now() - csms_time()).total_seconds()) < 60, "clock follows the CSMS"

        for expected in (1, 2):
            answer = await csms.trio.call(STATION_ID, "TriggerMessage", {"requestedMessage": "Heartbeat"})
            assert answer["status"] == "Accepted"
            await csms.trio.wait_for(lambda n=expected: len(csms.actions(STATION_ID, "Heartbeat")) >= n, 10)

        await station.hardware.plug(EVSE)
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        await wait_trigger(csms, "Authorized")
        await station.hardware.charge(EVSE, watts=7400)
        await station.hardware.unplug(EVSE)
        await wait_trigger(csms, "EVCommunicationLost", event_type="Ended")
        await wait_queue_empty(station)
        summary = await station.journal.run_sync(lambda: queries.summary(station.journal.store.conn))
        outcomes = await station.journal.run_sync(
            lambda: station.journal.store.conn.execute(
                "SELECT outcome, count(*) FROM outbox WHERE action = 'TransactionEvent' GROUP BY outcome"
            ).fetchall()
        )
        assert station.link.connections == 1, "no answer dropped the link"
        assert abs((station.clock.now() - csms_time()).total_seconds()) < 60

    assert summary["pending"] == 0 and summary["dropped"] == 0, summary
    assert outcomes == [("delivered", len(csms.actions(STATION_ID, "TransactionEvent")))], outcomes
    assert len(csms.actions(STATION_ID, "Authorize")) == 1
    assert deviation_warnings(caplog) == {
        kind.value: 1
        for kind in (
            Deviation.TIMESTAMP_WITHOUT_OFFSET,
            Deviation.TIMESTAMP_LONG_FRACTION,
            Deviation.TIMESTAMP_NUMERIC_OFFSET,
            Deviation.TIMESTAMP_LOWER_CASE,
            Deviation.EXTRA_PROPERTY,
            Deviation.ENUM_CASE,
        )
    }

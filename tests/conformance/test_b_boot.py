"""Part 6 B provisioning, boot: TC_B_01 (Accepted), TC_B_02 (Pending), TC_B_03 (Rejected), TC_B_30 (SecurityError),
and the station's side of TC_B_31 (TriggerMessage(BootNotification) while Rejected).

Each case powers up a fresh station (a new in-process station on a new data directory is a cold boot) against
the loopback CSMS scripted with the BootNotification answers the case needs. Timing checks use the CSMS's own
frame timestamps: what the tool would measure on the wire.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.lab.csms import LoopbackCsms, RecordedFrame, StationCallError
from tests.conformance.helpers import (
    SLACK,
    STATION_ID,
    get_item,
    get_value,
    get_variables,
    set_item,
    set_variables,
    station_calls,
    statuses,
    wait_all_connectors_reported,
)
from tests.harness import make_config, running_station


def boot_answers(csms: LoopbackCsms) -> list[RecordedFrame]:
    """The CSMS's CALLRESULTs to BootNotification, oldest first."""
    return [
        f
        for f in csms.frames_snapshot(STATION_ID)
        if f.direction == "out" and f.message_type == 3 and f.action == "BootNotification"
    ]


def boot_requests(csms: LoopbackCsms) -> list[RecordedFrame]:
    return [f for f in station_calls(csms) if f.action == "BootNotification"]


def calls_between(csms: LoopbackCsms, start: RecordedFrame, end: RecordedFrame) -> list[str]:
    """Actions of the station's CALLs strictly between two recorded frames."""
    return [f.action or "?" for f in station_calls(csms, start.index + 1) if f.index < end.index]


async def test_TC_B_01_cold_boot_accepted(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_01_CS (B01): Reusable State Booted after a power-up.

    Checks: the first message is a BootNotification (reason PowerUp); nothing else is sent before it is
    Accepted; then every connector is reported (StatusNotification Available, evseId and connectorId not 0:
    Booted step 5 and the post-scenario validation); the interval of the Accepted answer becomes
    OCPPCommCtrlr.HeartbeatInterval (B01: the CSMS sets the heartbeat interval); one BootNotification only;
    Booted step 7, a SecurityEventNotification StartupOfTheDevice (or ResetOrReboot).
    """
    async with running_station(make_config(data_dir, csms)):
        await wait_all_connectors_reported(csms)
        calls = station_calls(csms)
        assert calls[0].action == "BootNotification", [f.action for f in calls]
        assert calls[0].payload["reason"] == "PowerUp"
        [accepted] = boot_answers(csms)
        assert accepted.payload["status"] == "Accepted"
        assert all(f.index > accepted.index for f in calls[1:]), "a CALL went out before the boot was Accepted"
        for status in statuses(csms):
            assert status["evseId"] != 0 and status["connectorId"] != 0, status
            assert status["connectorStatus"] == "Available", status
        assert await get_value(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
        assert len(boot_requests(csms)) == 1
        [event] = await csms.trio.wait_action(STATION_ID, "SecurityEventNotification", 10)
        assert event["type"] in ("StartupOfTheDevice", "ResetOrReboot"), event  # Booted step 7


async def test_TC_B_01_boot_notification_fields(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_01_CS step 3 (B01.FR.01): chargingStation carries the configured model, vendorName, serialNumber and
    firmwareVersion (CONTRACT: the [station] keys are the BootNotification chargingStation fields)."""
    async with running_station(make_config(data_dir, csms)):
        [boot] = await csms.trio.wait_action(STATION_ID, "BootNotification", 10)
        assert boot["chargingStation"] == {
            "model": "TestModel",
            "vendorName": "TestVendor",
            "serialNumber": "SN-1",
            "firmwareVersion": "1.0.0",
        }


def notify_report_pages(csms: LoopbackCsms, request_id: int) -> list[dict]:
    return [p for p in csms.actions(STATION_ID, "NotifyReport") if p["requestId"] == request_id]


async def test_TC_B_02_cold_boot_pending(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_02_CS (B02, F06.FR.17): while the boot is Pending the CSMS configures the station, which answers but
    sends nothing of its own until a triggered BootNotification is Accepted.

    Tool validations: step 4 SetVariables OCPPCommCtrlr.OfflineThreshold=300 (attributeType omitted) → Accepted;
    step 6 GetVariables of it → Accepted ("300"); step 12 RequestStartTransaction → Rejected; step 14
    TriggerMessage(BootNotification) → Accepted (or NotImplemented); step 15 the BootNotification that follows
    has reason Triggered and comes before the interval (30 s) has passed; step 17 every connector reported
    Available. Nothing but BootNotification goes out while Pending (the CSMS also records any other CALL as a
    violation). Steps 7-10 (the report) are test_TC_B_02_pending_base_report.
    """
    interval = 30
    csms.set_boot_responses([("Pending", interval)])
    async with running_station(make_config(data_dir, csms)):
        [pending] = await csms.trio.wait_for(lambda: boot_answers(csms), 10, what="the Pending answer")
        assert pending.payload["status"] == "Pending"

        [result] = await set_variables(csms, set_item("OCPPCommCtrlr", "OfflineThreshold", "300"))
        assert result["attributeStatus"] == "Accepted", result
        [result] = await get_variables(csms, get_item("OCPPCommCtrlr", "OfflineThreshold"))
        assert result["attributeStatus"] == "Accepted", result
        assert result["attributeValue"] == "300"

        # Steps 7-10 (GetBaseReport + NotifyReport while Pending): test_TC_B_02_pending_base_report.

        answer = await csms.trio.call(
            STATION_ID,
            "RequestStartTransaction",
            {"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}, "remoteStartId": 1, "evseId": 1},
        )
        assert answer["status"] == "Rejected", answer

        csms.set_boot_responses([("Accepted", 300)])
        answer = await csms.trio.call(STATION_ID, "TriggerMessage", {"requestedMessage": "BootNotification"})
        assert answer["status"] in ("Accepted", "NotImplemented"), answer
        accepted = await csms.trio.wait_for(
            lambda: next((a for a in boot_answers(csms) if a.payload["status"] == "Accepted"), None),
            interval + 10,
            what="an Accepted boot",
        )
        await wait_all_connectors_reported(csms, since=accepted.index)

        first, second = boot_requests(csms)
        if answer["status"] == "Accepted":
            assert second.payload["reason"] == "Triggered"
            assert second.monotonic - pending.monotonic < interval, "the triggered boot waited for the interval"
        assert calls_between(csms, first, second) == [], "the station sent a CALL while Pending"
        assert await get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "300"


async def test_TC_B_02_pending_base_report(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_02_CS steps 7-10 (B02: the CSMS may retrieve the configuration while Pending): GetBaseReport
    (FullInventory) → Accepted (step 8), then the NotifyReport pages follow while still Pending (step 9): seqNo
    0, 1, … and tbc true on all but the last; nothing else goes out."""
    csms.set_boot_responses([("Pending", 30)])
    async with running_station(make_config(data_dir, csms)):
        await csms.trio.wait_for(lambda: boot_answers(csms), 10, what="the Pending answer")
        answer = await csms.trio.call(STATION_ID, "GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"})
        assert answer["status"] == "Accepted", answer
        pages = await csms.trio.wait_for(
            lambda: p if (p := notify_report_pages(csms, 7)) and not p[-1].get("tbc", False) else None,
            5,
            what="the last NotifyReport page",
        )
        assert [p["seqNo"] for p in pages] == list(range(len(pages)))
        assert all(p.get("tbc") is True for p in pages[:-1]), [p.get("tbc") for p in pages]
        assert {f.action for f in station_calls(csms)} == {"BootNotification", "NotifyReport"}
        assert csms.boot_status(STATION_ID) == "Pending"


async def test_TC_B_02_pending_retry_after_interval(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_02_CS, step 15's note (B02.FR.01): without a trigger the station repeats its BootNotification only after
    `interval` (2 s here) has passed since the Pending answer, sending nothing in between; the untriggered retry
    keeps its reason (PowerUp); after Accepted every connector is reported."""
    interval = 2
    csms.set_boot_responses([("Pending", interval)])
    async with running_station(make_config(data_dir, csms)):
        await csms.trio.wait_for(lambda: boot_answers(csms), 10, what="the Pending answer")
        csms.set_boot_responses([("Accepted", 300)])
        accepted = await csms.trio.wait_for(
            lambda: next((a for a in boot_answers(csms) if a.payload["status"] == "Accepted"), None),
            interval + 10,
            what="an Accepted boot",
        )
        await wait_all_connectors_reported(csms, since=accepted.index)

        answers = boot_answers(csms)
        requests = boot_requests(csms)
        assert all(a.payload["status"] == "Pending" for a in answers if a.index < accepted.index)
        for answer, retry in zip(answers, requests[1:], strict=False):
            if answer.index < accepted.index:
                assert retry.monotonic - answer.monotonic >= interval - SLACK, "BootNotification retried too early"
                assert calls_between(csms, answer, retry) == [], "the station sent a CALL while Pending"
        assert all(r.payload["reason"] == "PowerUp" for r in requests), "an untriggered retry keeps its reason"


async def test_TC_B_03_cold_boot_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_03_CS (B03): after a Rejected boot the station is silent until `interval` has passed, then boots again.

    Checks: step 3, the second BootNotification comes at least `interval` (2 s) after the Rejected answer and
    nothing else is sent in between (B03.FR.02/04); step 5, every connector reported Available after Accepted.
    """
    interval = 2
    csms.set_boot_responses([("Rejected", interval), ("Accepted", 300)])
    async with running_station(make_config(data_dir, csms)):
        await wait_all_connectors_reported(csms, timeout=interval + 10)
        rejected, accepted = boot_answers(csms)[:2]
        assert rejected.payload["status"] == "Rejected" and accepted.payload["status"] == "Accepted"
        requests = boot_requests(csms)
        assert len(requests) == 2
        assert requests[1].monotonic - rejected.monotonic >= interval - SLACK, "BootNotification resent too early"
        assert calls_between(csms, rejected, requests[1]) == [], "the station sent a CALL while Rejected"
        assert all(s.index > accepted.index for s in station_calls(csms) if s.action == "StatusNotification")


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}),
        ("GetVariables", {"getVariableData": [get_item("OCPPCommCtrlr", "HeartbeatInterval")]}),
    ],
    ids=["GetBaseReport", "GetVariables"],
)
async def test_TC_B_30_rejected_boot_security_error(
    csms: LoopbackCsms, data_dir: Path, action: str, payload: dict
) -> None:
    """TC_B_30_CS (B03.FR.08): while the boot is Rejected every CSMS request gets CALLERROR SecurityError.

    Checks: step 4, GetBaseReport(FullInventory) → SecurityError (the tool's request); the same for a request the
    station does support (GetVariables), since the rule is about the boot state, not the action; and the
    station sends nothing but its BootNotification meanwhile.
    """
    csms.set_boot_responses([("Rejected", 30)])
    async with running_station(make_config(data_dir, csms)):
        await csms.trio.wait_for(lambda: boot_answers(csms), 10, what="the Rejected answer")
        with pytest.raises(StationCallError) as error:
            await csms.trio.call(STATION_ID, action, payload)
        assert error.value.code == "SecurityError"
        assert [f.action for f in station_calls(csms)] == ["BootNotification"]


async def test_TC_B_31_trigger_boot_while_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """B03 / TC_B_31 (the CSMS-side case; this is the station's part): while the boot is Rejected (interval 30 s),
    TriggerMessage(BootNotification) is the one request not refused with SecurityError: it is Accepted and a
    BootNotification with reason Triggered follows at once, not after the interval. Before it, every other request
    (a TriggerMessage for another message included) still gets SecurityError; once Accepted, the connectors are
    reported."""
    csms.set_boot_responses([("Rejected", 30), ("Accepted", 300)])
    async with running_station(make_config(data_dir, csms)):
        await csms.trio.wait_for(lambda: boot_answers(csms), 10, what="the Rejected answer")
        refused = [
            ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
            ("GetVariables", {"getVariableData": [get_item("OCPPCommCtrlr", "HeartbeatInterval")]}),
        ]
        for action, payload in refused:
            with pytest.raises(StationCallError) as error:
                await csms.trio.call(STATION_ID, action, payload)
            assert error.value.code == "SecurityError", action
        answer = await csms.trio.call(STATION_ID, "TriggerMessage", {"requestedMessage": "BootNotification"})
        assert answer["status"] == "Accepted", answer
        await wait_all_connectors_reported(csms, timeout=5)  # far less than the 30 s interval
        rejected, accepted = boot_answers(csms)[:2]
        assert rejected.payload["status"] == "Rejected" and accepted.payload["status"] == "Accepted"
        requests = boot_requests(csms)
        assert [r.payload["reason"] for r in requests] == ["PowerUp", "Triggered"], requests
        assert calls_between(csms, rejected, requests[1]) == [], "the station sent a CALL while Rejected"

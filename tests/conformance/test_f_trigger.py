"""Part 6 F06 TriggerMessage: TC_F_11/F_12 (MeterValues for one / all EVSEs), TC_F_13/F_14 (TransactionEvent for
one / all EVSEs), TC_F_15 (LogStatusNotification Idle), TC_F_17/F_18 (FirmwareStatusNotification Idle, with and
without an EVSE), TC_F_20 (Heartbeat), TC_F_23/F_24 (StatusNotification Available / Occupied), TC_F_26
(BootNotification after Accepted → Rejected), TC_F_27 (NotImplemented); every requestedMessage value, a trigger
while the boot is Pending, and malformed requests. (TC_K_38, a chargingProfile ignored by a station without smart
charging, gave way to TC_K_37 in test_k_smart_charging_tx.py.)

TC_F_16 (LogStatusNotification Uploading) is in test_n_logs.py, next to the GetLog it needs. Not applicable:
TC_F_19 (FirmwareStatusNotification Downloading) needs UpdateFirmware, not implemented in this build (CALLERROR
NotSupported).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from appliance.lab.csms import Delayed, LoopbackCsms
from tests.conformance.helpers import CONNECTORS, STATION_ID, set_item, set_variables
from tests.conformance.remote_helpers import (
    AUTH_ONLINE,
    HardwareDriver,
    assert_still_running,
    call,
    call_error,
    energy_transfer_started,
    no_error,
    station_up,
    statuses,
    tx_events,
    wait_tx_event,
)
from tests.harness import make_config, running_station


async def trigger(csms: LoopbackCsms, message: str, evse: dict[str, int] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"requestedMessage": message}
    if evse is not None:
        payload["evse"] = evse
    return await call(csms, "TriggerMessage", payload)


def first_sample(meter_values: list[dict[str, Any]]) -> dict[str, Any]:
    return meter_values[0]["sampledValue"][0]


def response_before(csms: LoopbackCsms, since: int, action: str) -> bool:
    """F06.FR.05: the TriggerMessageResponse went out before the triggered message came in."""
    frames = csms.frames_snapshot(STATION_ID, since)
    answer = next(f.index for f in frames if f.direction == "in" and not f.is_call and f.action == "TriggerMessage")
    message = next(f.index for f in frames if f.direction == "in" and f.is_call and f.action == action)
    return answer < message


# --- MeterValues -----------------------------------------------------------------------------------------------


async def test_TC_F_11_meter_values_specific_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_11_CS (F06.FR.02/04/05/06/10): TriggerMessage MeterValues evse.id 1 → Accepted; a MeterValuesRequest
    with evseId 1 whose meterValue[0].sampledValue[0].context is Trigger (only for that EVSE)."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, "MeterValues", {"id": 1})
        assert answer["status"] == "Accepted", answer
        [mv] = await csms.trio.wait_action(STATION_ID, "MeterValues", since=mark)
        assert mv["evseId"] == 1, mv
        assert first_sample(mv["meterValue"]).get("context") == "Trigger", mv
        assert response_before(csms, mark, "MeterValues")
        await trio.sleep(0.3)
        assert [m["evseId"] for m in csms.actions(STATION_ID, "MeterValues", mark)] == [1]


async def test_TC_F_12_meter_values_all_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_12_CS (F06.FR.04/05/06/10/11): TriggerMessage MeterValues without evse → Accepted; a MeterValuesRequest
    for every EVSE (1 and 2), each with sampledValue[0].context Trigger."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, "MeterValues")
        assert answer["status"] == "Accepted", answer
        mvs = await csms.trio.wait_action(STATION_ID, "MeterValues", count=2, since=mark)
        assert sorted(m["evseId"] for m in mvs) == [1, 2], mvs
        for mv in mvs:
            assert first_sample(mv["meterValue"]).get("context") == "Trigger", mv


async def test_trigger_meter_values_without_measurands_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """F06.FR.06: a triggered MeterValues carries AlignedDataCtrlr.Measurands; with that list emptied by the CSMS
    there is nothing to report, so the trigger is Rejected (with a reason) rather than Accepted and followed by
    nothing."""
    async with station_up(csms, data_dir):
        [result] = await set_variables(csms, set_item("AlignedDataCtrlr", "Measurands", ""))
        assert result["attributeStatus"] == "Accepted", result
        mark = csms.mark()
        answer = await trigger(csms, "MeterValues", {"id": 1})
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"], answer
        await assert_still_running(csms)
        assert [f for f in csms.frames_snapshot(STATION_ID, mark) if f.direction == "in" and f.is_call] == []


# --- TransactionEvent ------------------------------------------------------------------------------------------


def check_triggered_event(event: dict[str, Any], evse_id: int) -> None:
    """Step 3 of TC_F_13/F_14: triggerReason Trigger, chargingState Charging, evse.id the EVSE's (TC_F_13 allows it
    omitted, TC_F_14 does not: this station always sends it, with the connectorId), meterValue present with
    sampledValue[0].context Trigger."""
    assert event["eventType"] == "Updated", event
    assert event["triggerReason"] == "Trigger", event
    assert event["transactionInfo"].get("chargingState") == "Charging", event
    assert event.get("evse") == {"id": evse_id, "connectorId": 1}, event
    assert event.get("meterValue"), f"no meterValue in {event}"
    assert first_sample(event["meterValue"]).get("context") == "Trigger", event


async def test_TC_F_13_transaction_event_specific_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_13_CS (F06.FR.02/04/05/07/10): EnergyTransferStarted on EVSE 1; TriggerMessage TransactionEvent
    evse.id 1 → Accepted; one TransactionEvent for that transaction (see check_triggered_event)."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE) as station:
        tx_id = await energy_transfer_started(csms, HardwareDriver(station), 1)
        mark = csms.mark()
        answer = await trigger(csms, "TransactionEvent", {"id": 1})
        assert answer["status"] == "Accepted", answer
        event = await wait_tx_event(csms, mark, "Trigger", trigger="Trigger", tx_id=tx_id)
        check_triggered_event(event, 1)


async def test_TC_F_14_transaction_event_all_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_14_CS (F06.FR.04/05/07/10/11): EnergyTransferStarted on both EVSEs; TriggerMessage TransactionEvent
    without evse → Accepted; one triggered TransactionEvent per EVSE's transaction (evse.id, when given, that
    transaction's EVSE)."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE) as station:
        driver = HardwareDriver(station)
        txs = {
            1: await energy_transfer_started(csms, driver, 1),
            2: await energy_transfer_started(csms, driver, 2, token="04D5E6F7"),
        }
        mark = csms.mark()
        answer = await trigger(csms, "TransactionEvent")
        assert answer["status"] == "Accepted", answer
        for evse_id, tx_id in txs.items():
            event = await wait_tx_event(csms, mark, f"Trigger on EVSE {evse_id}", trigger="Trigger", tx_id=tx_id)
            check_triggered_event(event, evse_id)
        assert len([e for e in tx_events(csms, mark) if e["triggerReason"] == "Trigger"]) == 2


async def test_trigger_transaction_event_without_transaction_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """F06 (nothing to report): TriggerMessage TransactionEvent on an idle EVSE (and on an idle station) is
    Rejected (NotImplemented would claim it is unsupported), and no TransactionEvent follows."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        for evse in ({"id": 1}, None):
            answer = await trigger(csms, "TransactionEvent", evse)
            assert answer["status"] == "Rejected", answer
        await assert_still_running(csms)
        assert tx_events(csms, mark) == []


# --- LogStatusNotification, FirmwareStatusNotification, Heartbeat ---------------------------------------------


async def test_TC_F_15_log_status_idle(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_15_CS (F06.FR.15): TriggerMessage LogStatusNotification (no upload running) → Accepted; then a
    LogStatusNotificationRequest with status Idle (after the response)."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, "LogStatusNotification")
        assert answer["status"] == "Accepted", answer
        [log_status] = await csms.trio.wait_action(STATION_ID, "LogStatusNotification", since=mark)
        assert log_status["status"] == "Idle", log_status
        assert response_before(csms, mark, "LogStatusNotification")


async def test_TC_F_17_firmware_status_specific_evse_not_relevant(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_17_CS (F06.FR.03): TriggerMessage FirmwareStatusNotification with evse.id 1 (irrelevant for it) →
    Accepted; FirmwareStatusNotification status Idle."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, "FirmwareStatusNotification", {"id": 1})
        assert answer["status"] == "Accepted", answer
        [status] = await csms.trio.wait_action(STATION_ID, "FirmwareStatusNotification", since=mark)
        assert status["status"] == "Idle", status


async def test_TC_F_18_firmware_status_idle(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_18_CS (F06.FR.16, L01.FR.25): TriggerMessage FirmwareStatusNotification (no update running) →
    Accepted; FirmwareStatusNotification status Idle, sent after the response."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, "FirmwareStatusNotification")
        assert answer["status"] == "Accepted", answer
        [status] = await csms.trio.wait_action(STATION_ID, "FirmwareStatusNotification", since=mark)
        assert status["status"] == "Idle", status
        assert response_before(csms, mark, "FirmwareStatusNotification")


async def test_TC_F_20_heartbeat(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_20_CS (F06.FR.04/05/10): TriggerMessage Heartbeat → Accepted, then a HeartbeatRequest (the heartbeat
    interval is 300 s, so it can only be the triggered one)."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, "Heartbeat")
        assert answer["status"] == "Accepted", answer
        await csms.trio.wait_action(STATION_ID, "Heartbeat", since=mark)
        assert response_before(csms, mark, "Heartbeat")


async def test_trigger_while_triggered_heartbeat_in_flight(csms: LoopbackCsms, data_dir: Path) -> None:
    """F06.FR.05: a second TriggerMessage Heartbeat that comes while the first one's Heartbeat is already on the
    wire (the CSMS delays its answer by 3 s) is followed by a Heartbeat sent after its own acceptance, not merged
    into the one sent before it. A third trigger meanwhile asks for no third one: the station stays bounded."""
    async with station_up(csms, data_dir):
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        csms.set_response("Heartbeat", Delayed(3.0, {"currentTime": now}))
        mark = csms.mark()
        assert (await trigger(csms, "Heartbeat"))["status"] == "Accepted"
        await csms.trio.wait_action(STATION_ID, "Heartbeat", since=mark)
        again = csms.mark()
        assert (await trigger(csms, "Heartbeat"))["status"] == "Accepted"
        assert (await trigger(csms, "Heartbeat"))["status"] == "Accepted"
        await csms.trio.wait_action(STATION_ID, "Heartbeat", 10, since=again)
        assert response_before(csms, again, "Heartbeat")
        await trio.sleep(4)  # the second one's answer (3 s) and then some: nothing else follows
        assert len(csms.actions(STATION_ID, "Heartbeat", again)) == 1


# --- StatusNotification ---------------------------------------------------------------------------------------


async def test_TC_F_23_status_notification_available(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_23_CS (F06.FR.02): TriggerMessage StatusNotification evse.id 1, connectorId 1 → Accepted; a
    StatusNotification Available for EVSE 1 connector 1 (although nothing changed), and not for EVSE 2."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, "StatusNotification", {"id": 1, "connectorId": 1})
        assert answer["status"] == "Accepted", answer
        [sn] = await csms.trio.wait_action(STATION_ID, "StatusNotification", since=mark)
        assert (sn["evseId"], sn["connectorId"], sn["connectorStatus"]) == (1, 1, "Available"), sn
        await trio.sleep(0.3)
        assert [(p["evseId"], p["connectorId"]) for p in statuses(csms, mark)] == [(1, 1)]


async def test_TC_F_24_status_notification_occupied(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_24_CS (F06.FR.02): EVConnectedPreSession on EVSE 1; TriggerMessage StatusNotification evse.id 1,
    connectorId 1 → Accepted; StatusNotification Occupied for EVSE 1 connector 1."""
    async with station_up(csms, data_dir) as station:
        plugged = csms.mark()
        await station.hardware.plug(1)
        await csms.trio.wait_action(STATION_ID, "StatusNotification", since=plugged)
        mark = csms.mark()
        answer = await trigger(csms, "StatusNotification", {"id": 1, "connectorId": 1})
        assert answer["status"] == "Accepted", answer
        [sn] = await csms.trio.wait_action(STATION_ID, "StatusNotification", since=mark)
        assert (sn["evseId"], sn["connectorId"], sn["connectorStatus"]) == (1, 1, "Occupied"), sn


async def test_trigger_status_notification_whole_station(csms: LoopbackCsms, data_dir: Path) -> None:
    """F06: TriggerMessage StatusNotification without evse → Accepted; a StatusNotification for every
    connector with its current status (EVSE 2 Occupied)."""
    async with station_up(csms, data_dir) as station:
        await station.hardware.plug(2)
        await csms.trio.wait_for(lambda: any(p["connectorStatus"] == "Occupied" for p in statuses(csms)), 10)
        await trio.sleep(0.2)  # the station has taken the CSMS's answer (see the in-flight test below)
        mark = csms.mark()
        answer = await trigger(csms, "StatusNotification")
        assert answer["status"] == "Accepted", answer
        sns = await csms.trio.wait_action(STATION_ID, "StatusNotification", count=len(CONNECTORS), since=mark)
        assert {(p["evseId"], p["connectorId"]): p["connectorStatus"] for p in sns} == {
            (1, 1): "Available",
            (2, 1): "Occupied",
        }


async def test_trigger_status_notification_while_report_in_flight(csms: LoopbackCsms, data_dir: Path) -> None:
    """F06.FR.05/F06.FR.12: the triggered StatusNotification is sent even if the CSMS triggers while it has not yet
    answered the station's previous StatusNotification for that connector (the CSMS delays its answer to the
    Occupied report by 1 s and triggers meanwhile): after the trigger, both connectors are reported."""
    async with station_up(csms, data_dir) as station:
        csms.set_response("StatusNotification", Delayed(1.0, {}))
        plugged = csms.mark()
        await station.hardware.plug(2)
        await csms.trio.wait_action(STATION_ID, "StatusNotification", since=plugged)
        mark = csms.mark()
        answer = await trigger(csms, "StatusNotification")
        assert answer["status"] == "Accepted", answer
        sns = await csms.trio.wait_action(STATION_ID, "StatusNotification", 3, count=len(CONNECTORS), since=mark)
        assert {(p["evseId"], p["connectorId"]): p["connectorStatus"] for p in sns} == {
            (1, 1): "Available",
            (2, 1): "Occupied",
        }


# --- BootNotification ---------------------------------------------------------------------------------------------


async def test_TC_F_26_boot_notification_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_26_CS (F06.FR.17): after an Accepted boot, TriggerMessage BootNotification → Rejected and no
    BootNotification is sent."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, "BootNotification")
        assert answer["status"] == "Rejected", answer
        await assert_still_running(csms)
        assert csms.actions(STATION_ID, "BootNotification", mark) == []


async def test_trigger_boot_notification_while_pending(csms: LoopbackCsms, data_dir: Path) -> None:
    """B02/F06: while the boot is Pending (interval 60 s) a TriggerMessage BootNotification is Accepted and the
    station sends a BootNotification at once (reason Triggered) instead of waiting the interval."""
    csms.set_boot_responses([("Pending", 60), ("Accepted", 300)])
    async with running_station(make_config(data_dir, csms)):
        await csms.trio.wait_action(STATION_ID, "BootNotification")
        await csms.trio.wait_for(lambda: csms.boot_status(STATION_ID) == "Pending", 5)
        mark = csms.mark()
        answer = await trigger(csms, "BootNotification")
        assert answer["status"] == "Accepted", answer
        [boot] = await csms.trio.wait_action(STATION_ID, "BootNotification", 5, since=mark)
        assert boot["reason"] == "Triggered", boot
        await csms.trio.wait_for(lambda: csms.boot_status(STATION_ID) == "Accepted", 5)
        await csms.trio.wait_action(STATION_ID, "StatusNotification", count=2, since=mark)


# --- NotImplemented and every value --------------------------------------------------------------------------


async def test_TC_F_27_not_implemented(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_27_CS (F06.FR.08): TriggerMessage SignCombinedCertificate (ISO 15118 not supported) →
    NotImplemented; nothing is sent."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, "SignCombinedCertificate")
        assert answer["status"] == "NotImplemented", answer
        await assert_still_running(csms)
        assert [f.action for f in csms.frames_snapshot(STATION_ID, mark) if f.direction == "in" and f.is_call] == []


#: requestedMessage → (expected status, the message that must follow or None).
EVERY_VALUE: dict[str, tuple[str, str | None]] = {
    "BootNotification": ("Rejected", None),
    "LogStatusNotification": ("Accepted", "LogStatusNotification"),
    "FirmwareStatusNotification": ("Accepted", "FirmwareStatusNotification"),
    "Heartbeat": ("Accepted", "Heartbeat"),
    "MeterValues": ("Accepted", "MeterValues"),
    "SignChargingStationCertificate": ("Accepted", "SignCertificate"),
    "SignV2GCertificate": ("NotImplemented", None),
    "StatusNotification": ("Accepted", "StatusNotification"),
    "TransactionEvent": ("Rejected", None),
    "SignCombinedCertificate": ("NotImplemented", None),
    "PublishFirmwareStatusNotification": ("NotImplemented", None),
}


@pytest.mark.parametrize("message", list(EVERY_VALUE))
async def test_trigger_every_value(csms: LoopbackCsms, data_dir: Path, message: str) -> None:
    """Every MessageTriggerEnumType value on an idle, accepted station: the answer this station gives (Accepted
    for what it can send; Rejected for BootNotification after acceptance and TransactionEvent without a
    transaction; NotImplemented for ISO 15118 certificate signing and Local Controller messages), statusInfo absent or a
    reason; an Accepted trigger is followed by exactly that message, a refused one by nothing."""
    status, follows = EVERY_VALUE[message]
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, message)
        assert answer["status"] == status, answer
        if follows is not None:
            await csms.trio.wait_action(STATION_ID, follows, since=mark)
        await assert_still_running(csms)
        sent = {f.action for f in csms.frames_snapshot(STATION_ID, mark) if f.direction == "in" and f.is_call}
        assert sent == ({follows} if follows else set()), sent


async def test_trigger_unknown_evse_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """A trigger for an EVSE the station does not have (id 9) → Rejected, nothing sent."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        for message in ("MeterValues", "StatusNotification", "TransactionEvent"):
            answer = await trigger(csms, message, {"id": 9, "connectorId": 1})
            assert answer["status"] == "Rejected", (message, answer)
            assert no_error(answer, "UnknownEvse", "UnknownConnector"), answer
        await assert_still_running(csms)
        assert [f for f in csms.frames_snapshot(STATION_ID, mark) if f.direction == "in" and f.is_call] == []


@pytest.mark.parametrize("message", ["StatusNotification", "MeterValues"])
@pytest.mark.parametrize(
    "evse",
    [{"id": 1, "connectorId": 2}, {"id": 0, "connectorId": 1}],
    ids=["connector-2-of-evse-1", "connector-of-evse-0"],
)
async def test_trigger_unknown_connector_rejected(
    csms: LoopbackCsms, data_dir: Path, message: str, evse: dict[str, int]
) -> None:
    """A trigger naming a connector the station does not have (each EVSE has connector 1 only; EVSE 0, the station
    itself, has none) → Rejected, and nothing is sent (not an Accepted followed by silence)."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await trigger(csms, message, evse)
        assert answer["status"] == "Rejected", answer
        await assert_still_running(csms)
        assert [f for f in csms.frames_snapshot(STATION_ID, mark) if f.direction == "in" and f.is_call] == []


MALFORMED: list[tuple[str, Any, set[str]]] = [
    ("unknown-message", {"requestedMessage": "Coffee"}, {"PropertyConstraintViolation"}),
    ("missing-message", {"evse": {"id": 1}}, {"OccurrenceConstraintViolation"}),
    ("evse-without-id", {"requestedMessage": "MeterValues", "evse": {}}, {"OccurrenceConstraintViolation"}),
    ("evse-id-string", {"requestedMessage": "MeterValues", "evse": {"id": "one"}}, {"TypeConstraintViolation"}),
    ("extra-field", {"requestedMessage": "Heartbeat", "now": True}, {"FormatViolation"}),
]


@pytest.mark.parametrize(("payload", "codes"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_trigger(csms: LoopbackCsms, data_dir: Path, payload: Any, codes: set[str]) -> None:
    """A TriggerMessage breaking its schema gets the CALLERROR of the broken rule and nothing is triggered; the
    station keeps running."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        assert await call_error(csms, "TriggerMessage", payload) in codes
        await assert_still_running(csms)
        assert [f for f in csms.frames_snapshot(STATION_ID, mark) if f.direction == "in" and f.is_call] == []

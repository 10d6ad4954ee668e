"""Every device fault of the serial backend with its status, its event to the CSMS and its recovery.

Against the bench's devices on ptys: a reader unplugged and plugged back, a meter gone silent, a meter that
answers Modbus exceptions, a meter map off by one register (plausible garbage), a board that babbles garbage,
a board whose heartbeat stops, a board's port that disappears, an RCD trip. A meter or controller failure ends
the ongoing transaction (AbnormalCondition) and faults the EVSE until the device answers again, on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from appliance.lab.csms import LoopbackCsms
from appliance.lab.devsim.bench import Bench
from tests.conformance.tx_helpers import wait_event, wait_status
from tests.hardware.serial.bench_helpers import bench_station, notify_events

TOKEN = "04A1B2C3"


async def charging(
    csms: LoopbackCsms, bench: Bench, evse_id: int = 1, token: str = TOKEN, cable_a: int | None = None
) -> str:
    """Plug, select, card, charge: the transaction id once it is Charging."""
    mark = csms.mark()
    bench.board.plug(evse_id, cable_a)
    await wait_status(csms, "Occupied", evse_id=evse_id, since=mark)
    bench.board.select(evse_id)
    await trio.sleep(0.1)
    bench.reader.present(token)
    bench.board.charge(evse_id, 7000)
    event = await wait_event(csms, lambda e: e["transactionInfo"].get("chargingState") == "Charging", since=mark)
    return str(event["transactionInfo"]["transactionId"])


async def wait_notify(
    csms: LoopbackCsms, component: str, value: str, since: int, timeout: float = 10
) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next(
            (
                d
                for d in notify_events(csms, since)
                if d["component"]["name"] == component and d["actualValue"] == value
            ),
            None,
        )

    return await csms.trio.wait_for(find, timeout, what=f"NotifyEvent {component}.Problem={value}")


async def ended_abnormally(csms: LoopbackCsms, tx_id: str, since: int, reason: str = "Other") -> dict[str, Any]:
    ended = await wait_event(csms, lambda e: e["eventType"] == "Ended", since=since)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["triggerReason"] == "AbnormalCondition", ended
    assert ended["transactionInfo"]["stoppedReason"] == reason, ended
    return ended


async def test_reader_unplugged_and_back(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (station, bench):
        mark = csms.mark()
        bench.reader.disconnect()
        event = await wait_notify(csms, "TokenReader", "true", mark)
        assert "disappeared" in event["techInfo"] or "cannot open" in event["techInfo"], event
        assert station.hardware.reader.lost is not None  # type: ignore[attr-defined]
        # No connector depends on the reader: both stay Available.
        assert {p["connectorStatus"] for p in csms.actions("CS001", "StatusNotification", mark)} <= {"Available"}

        mark = csms.mark()
        bench.reader.reconnect()
        await wait_notify(csms, "TokenReader", "false", mark)
        bench.board.plug(1)
        bench.board.select(1)
        await trio.sleep(0.1)
        bench.reader.present(TOKEN)
        auth = await csms.trio.wait_action("CS001", "Authorize", since=mark)
        assert auth[0]["idToken"] == {"idToken": TOKEN, "type": "ISO14443"}


async def test_reader_garbage_is_ignored_and_repeats_are_one_tap(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (_station, bench):
        mark = csms.mark()
        bench.reader.garbage(b"HELLO READER\r\n" + b"F" * 300 + b"\r\n" + b"04A1B2\r\n" + b"\xff\xfe\r\n")
        bench.board.plug(1)
        await wait_status(csms, "Occupied", since=mark)
        bench.board.select(1)
        await trio.sleep(0.1)
        bench.reader.hold(TOKEN, seconds=1.6, every=0.4)  # the card lies on the reader: one tap
        await csms.trio.wait_action("CS001", "Authorize", since=mark)
        await trio.sleep(2.0)
        assert len(csms.actions("CS001", "Authorize", mark)) == 1
        assert notify_events(csms, mark) == []  # four bad lines: ignored, the reader stays in service


async def test_meter_silent_ends_the_session_and_recovers(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (_station, bench):
        tx_id = await charging(csms, bench)
        mark = csms.mark()
        bench.meters.silence(1)
        await wait_status(csms, "Faulted", since=mark)
        await ended_abnormally(csms, tx_id, mark)
        event = await wait_notify(csms, "ControlMetering", "true", mark)
        assert event["component"]["evse"] == {"id": 1} and "did not answer" in event["techInfo"], event
        assert bench.world.evses[1].offered_a == 0  # nothing offered on an unmetered EVSE

        mark = csms.mark()
        bench.meters.silence(1, False)
        await wait_notify(csms, "ControlMetering", "false", mark)
        await wait_status(csms, "Occupied", since=mark)  # the EV is still plugged in


async def test_modbus_exception_faults_the_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (_station, bench):
        mark = csms.mark()
        bench.meters.fail(2)  # the B23 of EVSE 2 answers "illegal data address"
        await wait_status(csms, "Faulted", evse_id=2, since=mark)
        event = await wait_notify(csms, "ControlMetering", "true", mark)
        assert "Modbus exception 2" in event["techInfo"] and event["component"]["evse"] == {"id": 2}, event
        mark = csms.mark()
        bench.meters.fail(2, False)
        await wait_status(csms, "Available", evse_id=2, since=mark)


async def test_an_off_by_one_map_is_refused_as_implausible(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (station, bench):
        before = station.hardware.read_meter(1).energy_wh
        mark = csms.mark()
        bench.meters.shift(1, 2)  # every value now comes from its neighbour's registers
        await wait_status(csms, "Faulted", since=mark)
        event = await wait_notify(csms, "ControlMetering", "true", mark)
        assert "implausible" in event["techInfo"], event
        assert station.hardware.read_meter(1).energy_wh == before  # no garbage reached a reading
        bench.meters.shift(1, 0)
        await wait_status(csms, "Available", since=mark)


async def test_controller_heartbeat_lost(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (_station, bench):
        tx_id = await charging(csms, bench)
        mark = csms.mark()
        bench.board.silence()
        await wait_status(csms, "Faulted", since=mark)
        await wait_status(csms, "Faulted", evse_id=2, since=mark)
        await ended_abnormally(csms, tx_id, mark)
        event = await wait_notify(csms, "Controller", "true", mark)
        assert "heartbeat lost" in event["techInfo"], event
        assert bench.world.reading(1).power_w == 0

        mark = csms.mark()
        bench.board.revive()
        await wait_status(csms, "Occupied", since=mark)
        await wait_status(csms, "Available", evse_id=2, since=mark)
        await wait_notify(csms, "Controller", "false", mark)


async def test_controller_garbage_and_port_loss(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (_station, bench):
        mark = csms.mark()
        bench.board.babble(6)
        await wait_status(csms, "Faulted", since=mark)
        event = await wait_notify(csms, "Controller", "true", mark)
        assert "garbage" in event["techInfo"], event
        mark = csms.mark()
        await wait_status(csms, "Available", since=mark)  # good statuses and a quiet window: back

        mark = csms.mark()
        bench.board.disconnect()
        await wait_status(csms, "Faulted", since=mark)
        event = await wait_notify(csms, "Controller", "true", mark)
        assert "disappeared" in event["techInfo"] or "heartbeat" in event["techInfo"], event
        mark = csms.mark()
        bench.board.reconnect()
        await wait_status(csms, "Available", since=mark)


async def test_rcd_trip_ends_the_session_with_ground_fault(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (_station, bench):
        tx_id = await charging(csms, bench)
        mark = csms.mark()
        bench.board.fault(1, "RCD")
        await ended_abnormally(csms, tx_id, mark, reason="GroundFault")
        faulted = await wait_status(csms, "Faulted", since=mark)
        event = await wait_notify(csms, "EVSE", "true", mark)
        assert event["techInfo"] == "RCD" and event["component"]["evse"] == {"id": 1}
        assert bench.world.reading(1).power_w == 0 and bench.world.evses[1].offered_a == 0
        ended = next(e for e in csms.actions("CS001", "TransactionEvent", mark) if e["eventType"] == "Ended")
        assert ended["timestamp"] <= faulted["timestamp"]

        mark = csms.mark()
        bench.board.clear(1)
        await wait_status(csms, "Occupied", since=mark)
        await wait_notify(csms, "EVSE", "false", mark)
        assert bench.world.evses[1].offered_a == 0  # the session ended; a new card is needed


async def test_welded_contactor_is_a_fault(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (_station, bench):
        mark = csms.mark()
        bench.board.weld(2)
        await wait_status(csms, "Faulted", evse_id=2, since=mark)
        event = await wait_notify(csms, "EVSE", "true", mark)
        assert event["techInfo"] == "ContactorWelded"
        mark = csms.mark()
        bench.board.weld(2, False)
        await wait_status(csms, "Available", evse_id=2, since=mark)


async def test_meter_bus_adapter_unplugged_and_back(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (_station, bench):
        mark = csms.mark()
        bench.meters.disconnect()  # the RS-485 adapter's USB cable: the pty disappears
        await wait_status(csms, "Faulted", evse_id=1, since=mark)
        await wait_status(csms, "Faulted", evse_id=2, since=mark)
        event = await wait_notify(csms, "ControlMetering", "true", mark)
        # A hung-up pty (like a USB adapter going away) may first just stop answering.
        assert any(why in event["techInfo"] for why in ("disappeared", "cannot open", "did not answer")), event
        mark = csms.mark()
        bench.meters.reconnect()
        await wait_status(csms, "Available", evse_id=1, since=mark, timeout=15)
        await wait_status(csms, "Available", evse_id=2, since=mark, timeout=15)


async def test_cable_rating_caps_the_offer_and_pilot_e_is_a_fault(csms: LoopbackCsms, data_dir: Path) -> None:
    async with bench_station(csms, data_dir) as (station, bench):
        tx_id = await charging(csms, bench, cable_a=20)  # a 20 A cable in a socket
        with trio.fail_after(5):
            while bench.world.evses[1].offered_a != 20.0:  # noqa: ASYNC110 - the board's view of CUR
                await trio.sleep(0.05)
        assert station.hardware.offered_current(1) == 20.0
        assert bench.board.pwm_percent[1] == pytest.approx(20 / 0.6)  # IEC 61851-1: the duty that offers 20 A
        mark = csms.mark()
        bench.board.pilot(1, "E")  # the pilot shorted
        await wait_status(csms, "Faulted", since=mark)
        await ended_abnormally(csms, tx_id, mark)
        event = await wait_notify(csms, "EVSE", "true", mark)
        assert event["techInfo"] == "PilotStateE"

"""The RFID reader's EVSE selection on a real pty, with Trio's MockClock: a card presented within
`selection_timeout_s` of the user's choice is for that EVSE, one later is not, and a selection serves one card.
The mock clock runs at real speed (so a card that never arrives fails the test) and the test jumps it past or
short of the timeout; the margins (half a second) are far above the milliseconds a card takes to arrive."""

from __future__ import annotations

import os
import tty
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from appliance.hardware.base import CardPresented, HardwareEvent
from appliance.hardware.serial.reader import CardReaderDevice
from appliance.hardware.serial.settings import PortSettings, ReaderSettings


@dataclass
class Reader:
    device: CardReaderDevice
    master: int
    cards: list[CardPresented] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)

    async def present(self, uid: str) -> CardPresented:
        """Write the UID line as the reader board would; the event the station receives."""
        self.arrived = trio.Event()
        os.write(self.master, uid.encode() + b"\r\n")
        with trio.fail_after(5):
            await self.arrived.wait()
        return self.cards[-1]


@pytest.fixture
async def reader(mock_clock: trio.testing.MockClock) -> AsyncIterator[Reader]:
    mock_clock.rate = 1.0
    master, slave = os.openpty()
    tty.setraw(master)
    settings = ReaderSettings(PortSettings(os.ttyname(slave)), debounce_s=3.0, selection_timeout_s=30.0)
    state: list[Reader] = []

    async def emit(event: HardwareEvent) -> None:
        assert isinstance(event, CardPresented)
        state[0].cards.append(event)
        state[0].arrived.set()

    device = CardReaderDevice(settings, emit)
    state.append(Reader(device, master))
    async with trio.open_nursery() as nursery:
        await nursery.start(device.run)
        yield state[0]
        nursery.cancel_scope.cancel()
    os.close(master)
    os.close(slave)


async def test_a_selection_serves_the_next_card_within_its_timeout(
    reader: Reader, mock_clock: trio.testing.MockClock
) -> None:
    reader.device.select(2)
    mock_clock.jump(29.5)
    assert (await reader.present("04A1B2C3D4E5F6")).evse_id == 2
    assert (await reader.present("04A1B2C3D4E5F7")).evse_id is None  # used up by the card before


async def test_a_selection_expires(reader: Reader, mock_clock: trio.testing.MockClock) -> None:
    reader.device.select(1)
    mock_clock.jump(30.5)
    assert (await reader.present("04A1B2C3D4E5F6")).evse_id is None
    reader.device.select(1)  # a new choice counts from now
    mock_clock.jump(10)
    assert (await reader.present("04A1B2C3D4E5F7")).evse_id == 1

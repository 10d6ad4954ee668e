"""The serial backend: a card reader, a charge controller board and Modbus energy meters behind `Hardware`.

Each device is its own task in the backend's nursery, and every one reports on the one bounded `events`
channel, so the order of what happened is kept across devices (an EV plugged in before the card that
follows). A device that fails never takes the others down: each re-opens its port with back-off and says
`DeviceFault` / `DeviceRecovered`; the station turns those into Faulted connectors (or a reader out of
service), log lines and CSMS notifications.

`read_meter` answers at once from the last accepted poll (never a bus round trip on the event loop); the
reading carries when it was taken, and the controller's offered current.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import trio

from appliance.hardware.base import EvseLayout, EVState, HardwareEvent, Indication, MeterReading
from appliance.hardware.serial.controller import ControllerBoard
from appliance.hardware.serial.meters import MeterPoint, poll_bus
from appliance.hardware.serial.modbus import ModbusBus
from appliance.hardware.serial.reader import CardReaderDevice
from appliance.hardware.serial.settings import SerialSettings

log = logging.getLogger("appliance.hardware.serial")

EVENTS_BUFFER = 64


class SerialHardware:
    def __init__(self, layouts: list[EvseLayout], settings: SerialSettings) -> None:
        self.layouts = list(layouts)
        self.settings = settings
        self._send, self.events = trio.open_memory_channel[HardwareEvent](EVENTS_BUFFER)
        by_id = {layout.evse_id: layout for layout in layouts}
        self.reader = (
            CardReaderDevice(settings.reader, self._send.send, reopen_max_s=settings.reopen_max_s)
            if settings.reader is not None
            else None
        )
        self.controller = ControllerBoard(
            settings.controller,
            self.layouts,
            self._send.send,
            on_select=self._select,
            reopen_max_s=settings.reopen_max_s,
        )
        self.buses = {name: ModbusBus(bus, reopen_max_s=settings.reopen_max_s) for name, bus in settings.buses.items()}
        self.meters = {
            evse_id: MeterPoint(meter, by_id[evse_id], settings.meter_failures)
            for evse_id, meter in settings.meters.items()
        }
        self._indications: dict[int | None, Indication] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every device's task; started() once each has had its first chance (the station then syncs)."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.controller.run)
                for name, bus in self.buses.items():
                    meters = [m for m in self.meters.values() if m.settings.bus == name]
                    if meters:
                        await nursery.start(poll_bus, bus, meters, self.settings.poll_interval_s, self._send.send)
                if self.reader is not None:
                    await nursery.start(self.reader.run)
                log.info(
                    "serial hardware ready: controller %s, %d meter(s) on %d bus(es), reader %s",
                    self.settings.controller.port.url,
                    len(self.meters),
                    len(self.buses),
                    self.settings.reader.port.url if self.settings.reader else "none",
                )
                task_status.started()
        finally:
            for bus in self.buses.values():
                bus.close()

    def _select(self, evse_id: int) -> None:
        if self.reader is not None:
            self.reader.select(evse_id)

    # --- ChargeController -----------------------------------------------------------------------------

    def ev_state(self, evse_id: int) -> EVState:
        return self.controller.ev_state(evse_id)

    def faulted(self, evse_id: int) -> str | None:
        return self.controller.faulted(evse_id)

    def set_offered_current(self, evse_id: int, amps: float) -> None:
        self.controller.set_offered_current(evse_id, amps)

    def offered_current(self, evse_id: int) -> float:
        return self.controller.offered_current(evse_id)

    # --- Meter ----------------------------------------------------------------------------------------

    def read_meter(self, evse_id: int) -> MeterReading:
        """The last accepted reading; a lost meter repeats its last register with no power, current or voltage."""
        meter = self.meters[evse_id]
        phases = meter.layout.phases
        offered = self.controller.offered_current(evse_id)
        sample = meter.sample
        if sample is None or meter.lost:
            energy = round(sample.raw.energy_wh, 3) if sample is not None else 0.0
            return MeterReading(
                energy, 0.0, (0.0,) * phases, (0.0,) * phases, offered, phases, trio.current_time(), datetime.now(UTC)
            )
        raw = sample.raw
        return MeterReading(
            round(raw.energy_wh, 3),
            round(raw.power_w, 1),
            tuple(round(v, 1) for v in raw.voltage_v),
            tuple(round(i, 2) for i in raw.current_a),
            offered,
            phases,
            sample.taken_at,
            sample.taken_utc,
        )

    # --- Display --------------------------------------------------------------------------------------

    def indicate(self, evse_id: int | None, indication: Indication) -> None:
        """The board's LEDs/display are driven by the board itself from pilot and contactor; we log the state."""
        if self._indications.get(evse_id) != indication:
            self._indications[evse_id] = indication
            log.info("display %s: %s", f"EVSE {evse_id}" if evse_id is not None else "(all EVSEs)", indication.value)

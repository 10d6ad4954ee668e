"""Energy meters on one simulated RS-485 bus: a pymodbus RTU server speaking the SDM630 and B23 register maps.

Each unit id is one meter, of one EVSE, with one register map; its registers are computed from the world at
each request (encoded as the meter's datasheet says, through the same `Field.encode` a real meter's firmware
would apply), so a reading is what the meter measures at that instant. What a bench can do to a meter:
`silence(unit)` (it stops answering: wrong wiring, power lost), `fail(unit)` (it answers every request with
Modbus exception 2, illegal data address: a wrong map), `shift(unit, n)` (its registers appear `n` places off:
an off-by-one map, plausible-looking garbage), and for the bus `disconnect()`/`reconnect()` (the RS-485 adapter
pulled). `served[unit]` keeps the last values it answered, decoded back, for tests to compare with what the
station reported.

The server runs pymodbus' asyncio server in a thread of its own. On a pty it sits behind a `PtyRelay` (the
server opens a tty by name, the station the other one); on `socket://` it is pymodbus' TCP server with the
RTU framer, which is what an RTU-over-TCP gateway does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus import FramerType
from pymodbus.datastore import ModbusServerContext
from pymodbus.datastore.context import ModbusBaseSlaveContext
from pymodbus.exceptions import NoSuchSlaveException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from appliance.hardware.serial.registers import RawReading, RegisterMap
from appliance.lab.devsim.endpoint import PtyRelay
from appliance.lab.devsim.world import World

log = logging.getLogger("appliance.lab.devsim")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # a silenced unit is an error to pymodbus, not to us


@dataclass
class MeterUnit:
    evse_id: int
    register_map: RegisterMap
    silent: bool = False
    failing: bool = False
    shift: int = 0


class _UnitContext(ModbusBaseSlaveContext):
    """One meter's registers, computed on demand."""

    def __init__(self, bus: MeterBusSim, unit: int) -> None:
        self._bus = bus
        self._unit = unit

    def reset(self) -> None:
        pass

    def validate(self, fx: int, address: int, count: int = 1) -> bool:
        meter = self._bus.units[self._unit]
        if meter.failing or fx != meter.register_map.function:
            return False
        phases = self._bus.world.evses[meter.evse_id].layout.phases
        return any(start <= address and address + count <= start + n for start, n in meter.register_map.reads(phases))

    def getValues(self, fc_as_hex: int, address: int, count: int = 1) -> Sequence[int]:
        image = self._bus.image(self._unit)
        shift = self._bus.units[self._unit].shift
        return [image.get(a + shift, 0) for a in range(address, address + count)]

    def setValues(self, fc_as_hex: int, address: int, values: Sequence[int]) -> None:
        pass


class _Units(ModbusServerContext):
    """The bus's meters; a silenced one is missing, so the server does not answer it."""

    def __init__(self, bus: MeterBusSim) -> None:
        super().__init__(slaves={unit: _UnitContext(bus, unit) for unit in bus.units}, single=False)
        self._bus = bus

    def __getitem__(self, unit: int) -> Any:
        meter = self._bus.units.get(unit)
        if meter is None or meter.silent:
            raise NoSuchSlaveException(f"unit {unit} is silent")
        return super().__getitem__(unit)


class MeterBusSim:
    """`where`: a path (a pty behind a symlink there) or `socket://127.0.0.1:PORT` (PORT 0: a free one)."""

    def __init__(
        self, where: str, world: World, units: dict[int, tuple[int, RegisterMap]], baudrate: int = 9600
    ) -> None:
        self.world = world
        self.units = {unit: MeterUnit(evse_id, regmap) for unit, (evse_id, regmap) in units.items()}
        self.served: dict[int, RawReading] = {}
        self.requests = 0
        self._baudrate = baudrate
        self._relay: PtyRelay | None = None
        self._tcp: tuple[str, int] | None = None
        if where.startswith("socket://"):
            host, _, port = where.removeprefix("socket://").rpartition(":")
            self._tcp = (host or "127.0.0.1", int(port) or _free_port(host or "127.0.0.1"))
            self.url = f"socket://{self._tcp[0]}:{self._tcp[1]}"
        else:
            self._relay = PtyRelay(Path(where))
            self.url = where
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusSerialServer | ModbusTcpServer | None = None
        self._thread: threading.Thread | None = None
        self._up = threading.Event()

    # --- the registers ------------------------------------------------------------------------------

    def image(self, unit: int) -> dict[int, int]:
        """Every register of the unit's map as the meter shows it now (and note what it showed)."""
        self.requests += 1
        meter = self.units[unit]
        layout = self.world.evses[meter.evse_id].layout
        reading = self.world.reading(meter.evse_id)
        regmap = meter.register_map
        values = [
            (regmap.energy_wh, reading.energy_wh),
            (regmap.power_w, reading.power_w),
            *zip(regmap.voltage_v[: layout.phases], reading.voltage_v, strict=True),
            *zip(regmap.current_a[: layout.phases], reading.current_a, strict=True),
        ]
        image: dict[int, int] = {}
        for f, value in values:
            for i, word in enumerate(f.encode(value, regmap.word_order)):
                image[f.address + i] = word
        self.served[unit] = regmap.decode(image, layout.phases)
        return image

    # --- what a bench does ----------------------------------------------------------------------------

    def silence(self, unit: int, silent: bool = True) -> None:
        self.units[unit].silent = silent

    def fail(self, unit: int, failing: bool = True) -> None:
        self.units[unit].failing = failing

    def shift(self, unit: int, by: int) -> None:
        self.units[unit].shift = by

    def disconnect(self) -> None:
        if self._relay is not None:
            self._relay.outer.unplug()
        else:
            self._stop_server()

    def reconnect(self) -> None:
        if self._relay is not None:
            self._relay.outer.plug()
        else:
            self._start_server()

    # --- the server -----------------------------------------------------------------------------------

    def start(self) -> MeterBusSim:
        self._start_server()
        return self

    def _start_server(self) -> None:
        self._up.clear()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="devsim-meters", daemon=True)
        self._thread.start()
        if not self._up.wait(10):
            raise RuntimeError("the meter simulator did not start")

    async def _serve(self) -> None:
        context = _Units(self)
        if self._tcp is not None:
            server: ModbusSerialServer | ModbusTcpServer = ModbusTcpServer(
                context, framer=FramerType.RTU, address=self._tcp, ignore_missing_slaves=True
            )
        else:
            assert self._relay is not None
            server = ModbusSerialServer(
                context,
                framer=FramerType.RTU,
                port=self._relay.inner,
                baudrate=self._baudrate,
                ignore_missing_slaves=True,
            )
        self._server, self._loop = server, asyncio.get_running_loop()
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.05)
        self._up.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _stop_server(self) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None and loop.is_running():
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(5)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = self._server = None

    def close(self) -> None:
        self._stop_server()
        if self._relay is not None:
            self._relay.close()


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])

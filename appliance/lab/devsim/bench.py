"""A whole test bench: one world, a card reader, a charge controller board and a meter bus, and the station
config that wires them (`[hardware] backend = "serial"`).

On ptys the devices appear as symlinks in the bench's directory (`reader`, `board`, `meters`), as udev would
name USB adapters; on `socket://` as loopback TCP ports. EVSE n's meter is unit n on the one bus; the maps
alternate SDM630, B23 unless told otherwise, so a two-EVSE bench exercises both.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from appliance.hardware.base import EvseLayout
from appliance.hardware.serial.registers import BUILT_IN
from appliance.lab.devsim.devices import BoardSim, ReaderSim
from appliance.lab.devsim.endpoint import PtyEndpoint, TcpEndpoint
from appliance.lab.devsim.meter import MeterBusSim
from appliance.lab.devsim.world import World

Transport = Literal["pty", "socket"]
DEFAULT_LAYOUTS = (EvseLayout(1, phases=3), EvseLayout(2, phases=1))


class Bench:
    def __init__(
        self,
        directory: Path,
        layouts: tuple[EvseLayout, ...] | list[EvseLayout] = DEFAULT_LAYOUTS,
        *,
        transport: Transport = "pty",
        maps: tuple[str, ...] = ("sdm630", "b23"),
        status_every: float = 0.5,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.layouts = list(layouts)
        self.world = World(self.layouts)
        self.maps = {layout.evse_id: maps[i % len(maps)] for i, layout in enumerate(self.layouts)}
        if transport == "pty":
            reader_ep: PtyEndpoint | TcpEndpoint = PtyEndpoint(self.directory / "reader")
            board_ep: PtyEndpoint | TcpEndpoint = PtyEndpoint(self.directory / "board")
            meters_at = str(self.directory / "meters")
        else:
            reader_ep, board_ep, meters_at = TcpEndpoint(), TcpEndpoint(), "socket://127.0.0.1:0"
        self.reader = ReaderSim(reader_ep)
        self.board = BoardSim(board_ep, self.world, status_every=status_every)
        self.meters = MeterBusSim(meters_at, self.world, {e: (e, BUILT_IN[name]) for e, name in self.maps.items()})

    def start(self) -> Bench:
        self.reader.start()
        self.board.start()
        self.meters.start()
        return self

    def close(self) -> None:
        for device in (self.reader, self.board, self.meters):
            device.close()

    def __enter__(self) -> Bench:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def serial_toml(
        self,
        *,
        poll_interval_s: float = 0.5,
        heartbeat_timeout_s: float = 2.0,
        reader: dict[str, Any] | None = None,
        meter_failures: int = 2,
        timeout_s: float = 0.3,
    ) -> str:
        """The `[hardware.serial…]` tables for these devices."""
        lines = [
            "[hardware.serial]",
            f"poll_interval_s = {poll_interval_s}",
            "reopen_max_s = 2.0",
            f"meter_failures = {meter_failures}",
            "[hardware.serial.reader]",
            f"port = {json.dumps(self.reader.endpoint.url)}",
            "baudrate = 9600",
            "debounce_s = 2.0",
        ]
        lines += [f"{key} = {json.dumps(value)}" for key, value in (reader or {}).items()]
        lines += [
            "[hardware.serial.controller]",
            f"port = {json.dumps(self.board.endpoint.url)}",
            "baudrate = 115200",
            f"heartbeat_timeout_s = {heartbeat_timeout_s}",
            "contactor_timeout_s = 1.5",
            "[hardware.serial.buses.rs485]",
            f"port = {json.dumps(self.meters.url)}",
            "baudrate = 9600",
            f"timeout_s = {timeout_s}",
        ]
        for evse_id, name in self.maps.items():
            lines += [f"[hardware.serial.meters.{evse_id}]", 'bus = "rs485"', f"unit = {evse_id}", f'map = "{name}"']
        return "\n".join(lines) + "\n"

    def station_config(self, base: str, **kwargs: Any) -> str:
        """A station config text (as `appliance.lab.process.config_text` makes it) switched to these devices."""
        return base.replace('backend = "sim"', 'backend = "serial"') + "\n" + self.serial_toml(**kwargs)

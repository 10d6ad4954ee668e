"""The transaction torture scenarios (`appliance.lab.torture`) on the serial backend: the station process drives
a device bench over ptys instead of the simulated hardware.

`SerialRig` is the torture rig with one difference: before the station starts, a `Bench` comes up in the work
directory and the station's config wires it (`backend = "serial"`). The EV drivers keep their script; `BenchCli`
carries out each of their commands on the bench — plug, charge, suspend, unplug on the board, a tap as the EVSE
button on the board followed by the card on the reader — the way the simulator's CLI would on the simulator.
Like that CLI, a command fails while no station is there to hear it (the board has had no heartbeat from it
for a second and a half), so a driver resynchronizes after a kill exactly as it does with the simulator.
"""

from __future__ import annotations

import time
from typing import Any

from appliance.lab.devsim.bench import Bench
from appliance.lab.torture import EVSES, Rig, SimCli, Tally

#: The station is "there" when the board heard its heartbeat this recently (it sends one every second).
STATION_HEARD_S = 1.5
#: A card UID is 4, 7 or 10 bytes; the drivers' tokens are padded to 7 bytes (14 hex digits).
UID_DIGITS = 14


class BenchCli(SimCli):
    """The simulator CLI's commands, carried out on a device bench."""

    def __init__(self, bench: Bench, tally: Tally) -> None:
        super().__init__(bench.directory / "unused.sock", tally)
        self.bench = bench

    def __call__(self, *args: str, timeout: float = 5.0) -> tuple[int, dict[str, Any] | None]:
        self._tally.add("sim_commands")
        code, answer = self._do(*args)
        if code != 0:
            self._tally.add("sim_failed")
        return code, answer

    def _do(self, *args: str) -> tuple[int, dict[str, Any] | None]:
        board, world = self.bench.board, self.bench.world
        if not board.station_heard_within(STATION_HEARD_S):
            return 3, None
        command, rest = args[0], list(args[1:])
        if command == "status":
            return 0, {"evses": [{"evseId": e, "evState": self._ev(e)} for e in world.evses]}
        if command == "tap":
            evse_id = int(rest[rest.index("--evse") + 1])
            board.select(evse_id)
            time.sleep(0.1)  # the user presses the button, then holds the card to the reader
            self.bench.reader.present(rest[0].rjust(UID_DIGITS, "0"))
            return 0, {}
        evse_id = int(rest[0])
        state = self._ev(evse_id)
        if command == "plug" and state == "A":
            board.plug(evse_id)
        elif command == "charge" and state != "A":
            watts = float(rest[rest.index("--watts") + 1]) if "--watts" in rest else None
            board.charge(evse_id, watts)
        elif command == "suspend" and state == "C":
            board.suspend(evse_id)
        elif command == "unplug" and state != "A":
            board.unplug(evse_id)
        else:
            return 1, None
        return 0, {}

    def _ev(self, evse_id: int) -> str:
        pilot = self.bench.world.evses[evse_id].pilot
        return "C" if pilot == "D" else pilot

    def ev_state(self, evse_id: int) -> str | None:
        return self._ev(evse_id) if self.bench.board.station_heard_within(STATION_HEARD_S) else None


class SerialRig(Rig):
    """The torture rig with the station on the serial backend and a device bench on ptys."""

    def station_config(self, url: str) -> str:
        bench = Bench(self.workdir / "bench")
        self._stack.callback(bench.close)
        bench.start()
        self.bench = bench
        self.sim = BenchCli(bench, self.tally)
        assert tuple(bench.world.evses) == EVSES
        return bench.station_config(super().station_config(url))

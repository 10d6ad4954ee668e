"""Hardware problems told to the CSMS as NotifyEvent (serial backend, issue 12).

Why NotifyEvent: a connector's Faulted status says *that* an EVSE cannot charge, not *why*, and the station's
card reader has no connector at all. OCPP 2.0.1's device model names the parts — TokenReader, ControlMetering
(the energy meter), Controller (the charge controller board), and the EVSE — each with the generic boolean
variable Problem. A lost device, or a fault the board reports, is one HardWiredNotification event with trigger
Delta: Problem "true" with the cause in techInfo, and "false" when it is over.

The events are journaled (`Append`), so they reach the CSMS in order once the boot is accepted, also after a
network outage or a power cut, like the station's other status messages.
"""

from __future__ import annotations

import itertools
import time

from appliance.clock import StationClock
from appliance.hardware.base import DeviceFault, DeviceRecovered, FaultCleared, FaultRaised, HardwareEvent
from appliance.journal.journal import Journal
from appliance.journal.store import Append

#: Device names of `DeviceFault` → the OCPP component that names them.
COMPONENTS = {"CardReader": "TokenReader", "Meter": "ControlMetering", "ChargeController": "Controller"}


class DeviceNotifications:
    def __init__(self, *, journal: Journal, clock: StationClock) -> None:
        self._journal = journal
        self._clock = clock
        # Unique per event across restarts too: tenths of a second since 2020, then counting up.
        self._ids = itertools.count(int((time.time() - 1_577_836_800) * 10) % 2**31)

    async def notify(self, event: HardwareEvent) -> None:
        match event:
            case DeviceFault(evse_id=evse, device=device, reason=reason):
                await self._send(COMPONENTS.get(device, device), evse, True, reason or "no answer")
            case DeviceRecovered(evse_id=evse, device=device):
                await self._send(COMPONENTS.get(device, device), evse, False, "answers again")
            case FaultRaised(evse_id=evse, code=code):
                await self._send("EVSE", evse, True, code)
            case FaultCleared(evse_id=evse):
                await self._send("EVSE", evse, False, "fault cleared")

    async def _send(self, component: str, evse_id: int | None, problem: bool, info: str) -> None:
        now = self._clock.iso()
        comp: dict = {"name": component[:50]}
        if evse_id is not None:
            comp["evse"] = {"id": evse_id}
        await self._journal.append(
            Append(
                "NotifyEvent",
                {
                    "generatedAt": now,
                    "seqNo": 0,
                    "tbc": False,
                    "eventData": [
                        {
                            "eventId": next(self._ids) % 2**31,
                            "timestamp": now,
                            "trigger": "Delta",
                            "actualValue": "true" if problem else "false",
                            "techInfo": info[:500],
                            "eventNotificationType": "HardWiredNotification",
                            "component": comp,
                            "variable": {"name": "Problem"},
                        }
                    ],
                },
            )
        )

"""What the hardware reports, turned into EVSE decisions: the one mapping from `HardwareEvent`s to runners.

Why here and not in the station: it is the EVSE layer's input side (the runner is its output side). The station
only starts `route` and calls `sync` at start-up; a card goes to whoever the station names (`on_card`, the
transactions block), since authorizing it is not an EVSE's decision.

`sync` feeds a difference between what a runner believes and what the hardware says through the state machine
like any other change, so a restart with the EV still plugged (the simulated car stays in, CONTRACT) is an
ordinary plug-in at boot: the connector is Occupied and TxStartPoint EVConnected starts a transaction. The
same path re-reads a controller that answers again after a `DeviceFault`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from appliance.evse.connectors import Connectors
from appliance.evse.runner import EvseRunner
from appliance.evse.state import EvseState, TxEvent
from appliance.hardware.base import (
    CardPresented,
    ChargeController,
    DeviceFault,
    DeviceRecovered,
    EVState,
    EVStateChanged,
    FaultCleared,
    FaultRaised,
    HardwareEvent,
    Plugged,
    StationSnapshot,
    Unplugged,
)

log = logging.getLogger("appliance.evse")

OnCard = Callable[[str, int | None, str], Awaitable[None]]
#: Told of every device and fault event after the EVSE has handled it (NotifyEvent to the CSMS).
Notify = Callable[[HardwareEvent], Awaitable[None]]
#: OCPP triggerReason of a transaction a hardware problem ends (serial backend, issue 12).
ABNORMAL = "AbnormalCondition"


def resync(state: EvseState, ev: EVState, fault: str | None) -> list[TxEvent]:
    """Bring the state machine to what the hardware reports, one ordinary input per difference."""
    events = state.set_fault(fault) if fault != state.fault_code else []
    plugged = ev is not EVState.A
    if plugged and not state.plugged:
        events += state.plug()
    elif state.plugged and not plugged:
        events += state.unplug()
    if plugged and state.ev_wants_energy != (ev is EVState.C):
        events += state.ev_state(ev is EVState.C)
    return events


async def sync(hardware: ChargeController, runner: EvseRunner) -> None:
    """Feed the hardware's current view of the runner's EVSE through its state machine (start-up, recovery)."""
    ev, fault = hardware.ev_state(runner.evse_id), hardware.faulted(runner.evse_id)
    await runner.apply(lambda s: resync(s, ev, fault))


async def route(
    hardware: ChargeController,
    runners: dict[int, EvseRunner],
    on_card: OnCard,
    nursery: trio.Nursery,
    notify: Notify | None = None,
) -> None:
    """Hand every hardware event to the runner it concerns, in order; cards to `on_card` in their own task;
    device and fault events then to `notify`."""
    async for event in hardware.events:
        await _route_one(hardware, runners, on_card, nursery, event)
        if notify is not None and isinstance(event, DeviceFault | DeviceRecovered | FaultRaised | FaultCleared):
            await notify(event)


async def _route_one(
    hardware: ChargeController,
    runners: dict[int, EvseRunner],
    on_card: OnCard,
    nursery: trio.Nursery,
    event: HardwareEvent,
) -> None:
    match event:
        case Plugged(evse_id=e):
            await runners[e].apply(lambda s: s.plug())
        case Unplugged(evse_id=e):
            await runners[e].apply(lambda s: s.unplug())
        case EVStateChanged(evse_id=e, state=state):
            await runners[e].apply(lambda s: s.ev_state(state is EVState.C))
        case FaultRaised(evse_id=e, code=code, stopped_reason=stop):
            # A fault that ends the transaction (an RCD trip …) ends it first: Ended, then Faulted.
            await runners[e].apply(lambda s: (s.end_now(ABNORMAL, stop) if stop else []) + s.set_fault(code))
        case FaultCleared(evse_id=e):
            await runners[e].apply(lambda s: s.set_fault(None))
        case DeviceFault(evse_id=None, device=device, reason=reason):
            # A station-wide device (the card reader): no connector depends on it; remote starts still work.
            log.error("hardware: %s stopped answering (%s)", device, reason)
        case DeviceRecovered(evse_id=None, device=device):
            log.warning("hardware: %s answers again", device)
        case DeviceFault(evse_id=int(e), device=device, reason=reason, stopped_reason=stop):
            log.error("EVSE %d: %s stopped answering (%s); the EVSE is Faulted until it recovers", e, device, reason)
            await runners[e].apply(lambda s: (s.end_now(ABNORMAL, stop) if stop else []) + s.set_silent(device, True))
        case DeviceRecovered(evse_id=int(e), device=device):
            log.warning("EVSE %d: %s answers again", e, device)
            # What happened while it was silent first (still Faulted: nothing is offered on stale state).
            ev, fault = hardware.ev_state(e), hardware.faulted(e)
            await runners[e].apply(lambda s: resync(s, ev, fault) + s.set_silent(device, False))
        case CardPresented(token=token, evse_id=e, token_type=kind):
            # Authorizing may wait for the CSMS; other EVSEs' events must not wait behind it.
            nursery.start_soon(on_card, token, e, kind)


def snapshots(
    runners: dict[int, EvseRunner], connectors: Connectors, online: Callable[[], bool]
) -> list[StationSnapshot]:
    """The station's view of each EVSE, for a backend that shows it (`appliance sim status`)."""
    result = []
    for evse_id, runner in sorted(runners.items()):
        s = runner.state
        token = s.authorization.id_token.get("idToken") if s.authorization and s.authorization.id_token else None
        result.append(
            StationSnapshot(
                evse_id=evse_id,
                connector_status=connectors.evse_status(evse_id),
                authorized_token=token,
                transaction_id=s.tx.transaction_id if s.tx else None,
                extra={"chargingState": s.charging_state, "online": online()},
            )
        )
    return result

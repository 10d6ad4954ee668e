"""What a functional block offers the station, so adding one is one module, one migration and one line of wiring.

A block is the station's answer to one part of OCPP (provisioning, authorization, transactions …). It is
built from the parts it needs (device model, storage, journal, link …) and hands the station everything the
station must wire up, in one shape: the CSMS requests it handles, the services that run while the CSMS is
connected and has accepted the boot, the TriggerMessage requests it answers, the hooks it wants called with
the CSMS's answers to journaled messages, the device-model variables whose truth it holds, the checks it adds to
CSMS writes of variables, the migrations that create its tables, and optionally a background task for the
whole life of the station. `Station` loops over its list of blocks and registers each of these; no block is
wired by hand.

Everything defaults to "nothing", so a block overrides only what it has.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import trio

from appliance.devicemodel.model import Provider, Validator
from appliance.journal.store import Queued
from appliance.link.link import Link, OnlineService
from appliance.link.rpc import CallFailed, Handler, Reply

log = logging.getLogger("appliance.blocks")

#: The CSMS's answer to a journaled message, after the journal marked it delivered.
ResponseHook = Callable[[Queued, dict], Awaitable[None]]


@dataclass(frozen=True)
class TriggerRequest:
    """A TriggerMessage, already checked against the station's EVSEs: `evse_id` None means "the station"."""

    requested_message: str
    evse_id: int | None
    connector_id: int | None


#: Answers one kind of TriggerMessage: {"status": …} or a Reply whose follow-up sends the message.
TriggerHandler = Callable[[TriggerRequest], Awaitable["dict | Reply"]]


class Block:
    """Base of every functional block; see the module docstring for what each hook is for."""

    #: Names of the files in migrations/ that create this block's tables (checked by a test).
    migrations: ClassVar[tuple[str, ...]] = ()

    def handlers(self) -> Mapping[str, Handler]:
        """CSMS request action → handler."""
        return {}

    def online_services(self) -> Mapping[str, OnlineService]:
        """Name → service run in every session after the boot is accepted (cancelled with the session)."""
        return {}

    def triggers(self) -> Mapping[str, TriggerHandler]:
        """TriggerMessage requestedMessage → handler; a message no block answers is NotImplemented."""
        return {}

    def response_hooks(self) -> Mapping[str, ResponseHook]:
        """Journaled action → hook called with each CSMS answer to it."""
        return {}

    def live_variables(self) -> Mapping[str, Provider]:
        """Device-model path → provider, for variables whose value lives in this block."""
        return {}

    def validators(self) -> Mapping[str, Validator]:
        """Device-model path → extra check for CSMS writes of that variable."""
        return {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The block's own task for the life of the station (recovery, schedules …); none by default."""
        task_status.started()


async def send_in_parts(link: Link, action: str, messages: Sequence[dict[str, Any]], what: str) -> bool:
    """Send the messages of one multi-part answer (NotifyCustomerInformation, ReportChargingProfiles …) in order,
    `tbc` true on all but the last; a part the CSMS does not take ends the sequence (logged, naming `what`).
    Whether every part went."""
    for index, message in enumerate(messages):
        part = {**message, "tbc": True} if index < len(messages) - 1 else message
        try:
            await link.call(action, part)
        except CallFailed as exc:
            log.warning("%s stopped at message %d of %d: %s", what, index, len(messages), exc)
            return False
    return True

"""Functional block B (reports): GetBaseReport and GetReport, answered, then NotifyReport pages.

The answer goes first (Accepted / EmptyResultSet / NotSupported / Rejected); the report follows in NotifyReport
messages of at most DeviceDataCtrlr.ItemsPerMessage[GetReport] items and BytesPerMessage[GetReport] bytes each
(an item larger than the byte limit travels alone), seqNo from 0, tbc true on all but the last. WriteOnly
values never appear: the device model leaves them out of every report entry.

Bounded under any flood: reports go through one JobQueue — one report is sent at a time and REPORTS_WAITING
more wait their turn; a request beyond that, or one whose requestId is already running or waiting, is answered
Rejected (GenericDeviceModelStatusEnumType has no "busy"; reasonCode DuplicateRequestId is the appendix's code for
report requests, for the full queue additionalInfo says why). A waiting report holds only its selection (which
variables), and pages are built one at a time while sending, from the values current at that moment, so memory
does not grow with the number of requests or the size of the device model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from appliance.blocks.base import Block
from appliance.clock import StationClock
from appliance.devicemodel import DeviceModel
from appliance.devicemodel import settings as keys
from appliance.devicemodel.report import Entry
from appliance.devicemodel.settings import Settings
from appliance.link.link import Link
from appliance.link.rpc import CallFailed, Handler, Reply
from appliance.protocol import ErrorCode, OcppError
from appliance.util.jobs import JobQueue

log = logging.getLogger("appliance.reports")

SUMMARY_VARIABLES = {"availabilitystate", "available", "problem", "active", "enabled"}
CRITERIA = {"Active", "Available", "Enabled", "Problem"}
#: Reports admitted beyond the one being sent.
REPORTS_WAITING = 2

#: Which entries a report holds, computed again when its pages are built.
Selection = Callable[[], Iterator[Entry]]


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def pages(items: Iterable[dict], max_items: int, max_bytes: int, envelope: dict) -> Iterator[list[dict]]:
    """Split report items into NotifyReport pages whose whole payload (the envelope with this page's seqNo and
    tbc, and its reportData) stays within both limits; an item too large for any page goes alone. Lazy: an
    item is taken from `items` only when the page before it is full."""

    def base(seq_no: int) -> int:
        return _size({**envelope, "seqNo": seq_no, "tbc": True, "reportData": []})

    count = 0
    page: list[dict] = []
    used = base(0)
    for item in items:
        size = _size(item) + (1 if page else 0)  # the comma between array items
        if page and (len(page) >= max_items or used + size > max_bytes):
            yield page
            count += 1
            page, used = [], base(count)
            size -= 1
        page.append(item)
        used += size
    if page:
        yield page


class Reports(Block):
    def __init__(self, *, device_model: DeviceModel, link: Link, clock: StationClock, settings: Settings) -> None:
        self._dm = device_model
        self._link = link
        self._clock = clock
        self._settings = settings
        self.queue = JobQueue("reports", waiting=REPORTS_WAITING)

    def handlers(self) -> Mapping[str, Handler]:
        return {"GetBaseReport": self._get_base_report, "GetReport": self._get_report}

    async def _get_base_report(self, payload: dict) -> dict | Reply:
        base = payload["reportBase"]

        def select() -> Iterator[Entry]:
            for entry in self._dm.entries():
                if base == "FullInventory":
                    yield entry
                elif base == "ConfigurationInventory":
                    if entry.writable:
                        yield entry
                elif entry.variable.name.lower() in SUMMARY_VARIABLES:  # each component's availability, problem
                    yield entry

        return self._answer(payload["requestId"], select)

    async def _get_report(self, payload: dict) -> dict | Reply:
        wanted = payload.get("componentVariable", [])
        limit = self._settings.integer(keys.items_per_message("GetReport"))
        if len(wanted) > limit:
            raise OcppError(
                ErrorCode.OccurrenceConstraintViolation,
                f"{len(wanted)} componentVariable entries; ItemsPerMessage[GetReport] is {limit}",
            )
        size = _size(payload)
        byte_limit = self._settings.integer(keys.bytes_per_message("GetReport"))
        if size > byte_limit:
            raise OcppError(ErrorCode.FormatViolation, f"{size} bytes; BytesPerMessage[GetReport] is {byte_limit}")
        criteria = payload.get("componentCriteria", [])
        if any(c not in CRITERIA for c in criteria):
            return {"status": "NotSupported"}

        def select() -> Iterator[Entry]:
            entries: Iterable[Entry] = self._dm.entries()
            if wanted:
                entries = (e for e in entries if any(e.matches(cv["component"], cv.get("variable")) for cv in wanted))
            if criteria:
                entries = _filter_by_criteria(entries, criteria, list(self._dm.entries()))
            yield from entries

        return self._answer(payload["requestId"], select)

    def _answer(self, request_id: int, select: Selection) -> dict | Reply:
        if self.queue.holds(request_id):
            return _rejected("DuplicateRequestId", f"report {request_id} is already being prepared or sent")
        ticket = self.queue.admit(request_id, lambda: self.send_report(request_id, select))
        if ticket is None:
            return _rejected(
                "Unspecified",
                f"busy: one report is being sent and {REPORTS_WAITING} wait; ask again after its last NotifyReport",
            )
        if next(select(), None) is None:
            ticket.release()
            return {"status": "EmptyResultSet"}
        return Reply({"status": "Accepted"}, then=ticket.run, abandon=ticket.release)

    async def send_report(self, request_id: int, select: Selection) -> None:
        generated = self._clock.iso()
        envelope = {"requestId": request_id, "generatedAt": generated}
        split = pages(
            (e.report_data() for e in select()),
            self._settings.integer(keys.items_per_message("GetReport")),
            self._settings.integer(keys.bytes_per_message("GetReport")),
            envelope,
        )
        items = sent = 0
        page = next(split, None)
        while page is not None:
            following = next(split, None)  # tbc needs to know whether this page is the last
            message = {**envelope, "seqNo": sent, "reportData": page}
            if following is not None:
                message["tbc"] = True
            try:
                await self._link.call("NotifyReport", message)
            except CallFailed as exc:
                log.warning("report %d stopped at page %d: %s", request_id, sent, exc)
                return
            items += len(page)
            sent += 1
            page = following
        log.info("report %d sent: %d item(s) in %d NotifyReport message(s)", request_id, items, sent)


def _rejected(reason: str, info: str) -> dict:
    return {"status": "Rejected", "statusInfo": {"reasonCode": reason, "additionalInfo": info}}


def _filter_by_criteria(entries: Iterable[Entry], criteria: list[str], everything: list[Entry]) -> Iterator[Entry]:
    """Keep the variables of components that meet every criterion (e.g. Problem = true).

    A component meets "Active"/"Problem" if it has that variable and it is true; "Available"/"Enabled" if it
    has no such variable (it cannot be otherwise) or it is true.
    """
    flags: dict[tuple, dict[str, str | None]] = {}
    for entry in everything:
        name = entry.variable.name
        if name in CRITERIA:
            flags.setdefault(_component_key(entry), {})[name] = (entry.value() or "").lower()

    def meets(entry: Entry) -> bool:
        known = flags.get(_component_key(entry), {})
        for criterion in criteria:
            value = known.get(criterion)
            if criterion in ("Active", "Problem") and value != "true":
                return False
            if criterion in ("Available", "Enabled") and value not in (None, "true"):
                return False
        return True

    return (e for e in entries if meets(e))


def _component_key(entry: Entry) -> tuple:
    c = entry.component
    return (c.name.lower(), (c.instance or "").lower(), c.evse, c.connector)

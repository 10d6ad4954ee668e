"""Functional block B (reports): GetBaseReport and GetReport, answered, then NotifyReport pages.

The answer goes first (Accepted / EmptyResultSet / NotSupported); the report follows in NotifyReport messages
of at most DeviceDataCtrlr.ItemsPerMessage[GetReport] items and BytesPerMessage[GetReport] bytes each
(an item larger than the byte limit travels alone), seqNo from 0, tbc true on all but the last. WriteOnly
values never appear: the device model leaves them out of every report entry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from appliance.blocks.base import Block
from appliance.clock import StationClock
from appliance.devicemodel.report import Entry
from appliance.link.link import Link
from appliance.link.rpc import CallFailed, Handler, Reply
from appliance.protocol import ErrorCode, OcppError

log = logging.getLogger("appliance.reports")

SUMMARY_VARIABLES = {"availabilitystate", "available", "problem", "active", "enabled"}
CRITERIA = {"Active", "Available", "Enabled", "Problem"}


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def pages(items: list[dict], max_items: int, max_bytes: int, envelope: dict) -> list[list[dict]]:
    """Split report items into NotifyReport pages whose whole payload (the envelope with this page's seqNo and
    tbc, and its reportData) stays within both limits; an item too large for any page goes alone."""

    def base(seq_no: int) -> int:
        return _size({**envelope, "seqNo": seq_no, "tbc": True, "reportData": []})

    result: list[list[dict]] = []
    page: list[dict] = []
    used = base(0)
    for item in items:
        size = _size(item) + (1 if page else 0)  # the comma between array items
        if page and (len(page) >= max_items or used + size > max_bytes):
            result.append(page)
            page, used = [], base(len(result))
            size -= 1
        page.append(item)
        used += size
    if page:
        result.append(page)
    return result


class Reports(Block):
    def __init__(self, *, device_model: Any, link: Link, clock: StationClock, setting: Callable[[str], Any]) -> None:
        self._dm = device_model
        self._link = link
        self._clock = clock
        self._setting = setting

    def handlers(self) -> Mapping[str, Handler]:
        return {"GetBaseReport": self._get_base_report, "GetReport": self._get_report}

    async def _get_base_report(self, payload: dict) -> dict | Reply:
        base = payload["reportBase"]
        entries = list(self._dm.entries())
        if base == "ConfigurationInventory":
            selected = [e for e in entries if e.writable]
        elif base == "FullInventory":
            selected = entries
        else:  # SummaryInventory: each component's availability and problem state
            selected = [e for e in entries if e.variable.name.lower() in SUMMARY_VARIABLES]
        return self._answer(payload["requestId"], selected)

    async def _get_report(self, payload: dict) -> dict | Reply:
        wanted = payload.get("componentVariable", [])
        limit = int(self._setting("DeviceDataCtrlr.ItemsPerMessage[GetReport]"))
        if len(wanted) > limit:
            raise OcppError(ErrorCode.OccurrenceConstraintViolation,
                            f"{len(wanted)} componentVariable entries; ItemsPerMessage[GetReport] is {limit}")
        size = _size(payload)
        byte_limit = int(self._setting("DeviceDataCtrlr.BytesPerMessage[GetReport]"))
        if size > byte_limit:
            raise OcppError(ErrorCode.FormatViolation, f"{size} bytes; BytesPerMessage[GetReport] is {byte_limit}")
        criteria = payload.get("componentCriteria", [])
        if any(c not in CRITERIA for c in criteria):
            return {"status": "NotSupported"}
        entries = list(self._dm.entries())
        if wanted:
            entries = [e for e in entries if any(e.matches(cv["component"], cv.get("variable")) for cv in wanted)]
        if criteria:
            entries = _filter_by_criteria(entries, criteria, list(self._dm.entries()))
        return self._answer(payload["requestId"], entries)

    def _answer(self, request_id: int, entries: list[Entry]) -> dict | Reply:
        if not entries:
            return {"status": "EmptyResultSet"}
        items = [e.report_data() for e in entries]

        async def send() -> None:
            await self.send_report(request_id, items)

        return Reply({"status": "Accepted"}, then=send)

    async def send_report(self, request_id: int, items: list[dict]) -> None:
        generated = self._clock.iso()
        envelope = {"requestId": request_id, "generatedAt": generated}
        split = pages(items, int(self._setting("DeviceDataCtrlr.ItemsPerMessage[GetReport]")),
                      int(self._setting("DeviceDataCtrlr.BytesPerMessage[GetReport]")), envelope)
        for seq_no, page in enumerate(split):
            message = {"requestId": request_id, "generatedAt": generated, "seqNo": seq_no,
                       "reportData": page}
            if seq_no < len(split) - 1:
                message["tbc"] = True
            try:
                await self._link.call("NotifyReport", message)
            except CallFailed as exc:
                log.warning("report %d stopped at page %d of %d: %s", request_id, seq_no, len(split), exc)
                return
        log.info("report %d sent: %d item(s) in %d NotifyReport message(s)", request_id, len(items), len(split))


def _filter_by_criteria(entries: Iterable[Entry], criteria: list[str], everything: list[Entry]) -> list[Entry]:
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

    return [e for e in entries if meets(e)]


def _component_key(entry: Entry) -> tuple:
    c = entry.component
    return (c.name.lower(), (c.instance or "").lower(), c.evse, c.connector)

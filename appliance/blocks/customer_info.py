"""Functional block N (customer information, N09/N10): what the station holds about a customer, and forgetting it.

A CustomerInformation request names a customer by idToken, customerCertificate or customerIdentifier. What this
station can hold about an idToken: its authorization cache entry, its Local Authorization List entry, and the
transactions it authorized in the journal (with their TransactionEvents). It never stores customer identifiers or
customer (ISO 15118 contract) certificates, so for those there is never data: Accepted, then one message saying
so (N09.FR.06 / N10.FR.04), which is what the spec asks of a station holding nothing about that customer.

Clearing (N10) removes the cache entry and the token from every *ended* transaction whose messages the CSMS has
acknowledged (the transaction's row and its delivered TransactionEvent payloads: idToken is optional there, so the
rows stay valid OCPP); the Local Authorization List stays (only the CSMS changes it, N10.FR.03 / N10.FR.06), and
so do an open transaction's token (the card may still end it) and messages still on their way (the CSMS needs
them to bill). The report says what was kept and why. The clear is one storage transaction, committed before the
answer: Accepted means the data is gone, also after a power cut.

The answer comes first; the report follows in NotifyCustomerInformation messages of at most 512 characters of
data each (the schema's limit), seqNo from 0, tbc on all but the last. Bounded: a report lists at most
MAX_TRANSACTIONS transactions (newest first, then a count of the rest) and MAX_PAGES messages; one report is sent
at a time and REPORTS_WAITING more wait (a request beyond that is Rejected: N09.FR.03).
Refused at once: neither report nor clear (Rejected, N09.FR.07 / N10.FR.07), no reference to a customer (Invalid:
N09.FR.04 / N10.FR.08 say the CSMS shall give one).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.blocks.auth_store import AuthCache, LocalList
from appliance.blocks.base import Block, send_in_parts
from appliance.clock import StationClock
from appliance.devicemodel import settings as keys
from appliance.devicemodel.settings import Settings
from appliance.journal.store import last_register_wh
from appliance.link.link import Link
from appliance.link.rpc import Handler, Reply
from appliance.storage import Storage
from appliance.util.jobs import JobQueue
from appliance.util.redact import mask

log = logging.getLogger("appliance.customer_info")

#: The schema's maxLength of NotifyCustomerInformationRequest.data.
PAGE_CHARS = 512
MAX_PAGES = 32
MAX_TRANSACTIONS = 50
REPORTS_WAITING = 2


@dataclass
class Findings:
    """What the station held (and, with clear, removed) about one idToken; filled by one storage job."""

    transactions: list[dict[str, Any]] = field(default_factory=list)
    transactions_total: int = 0
    cache_removed: bool = False
    redacted_transactions: int = 0
    redacted_messages: int = 0
    kept_open: list[str] = field(default_factory=list)
    kept_pending: list[str] = field(default_factory=list)


class CustomerInformation(Block):
    def __init__(
        self,
        *,
        storage: Storage,
        cache: AuthCache,
        local_list: LocalList,
        link: Link,
        clock: StationClock,
        settings: Settings,
    ) -> None:
        self._storage = storage
        self._cache = cache
        self._local_list = local_list
        self._link = link
        self._clock = clock
        self._settings = settings
        self.queue = JobQueue("customer information", waiting=REPORTS_WAITING)

    def handlers(self) -> Mapping[str, Handler]:
        return {"CustomerInformation": self._customer_information}

    async def _customer_information(self, payload: dict) -> dict | Reply:
        request_id, report, clear = payload["requestId"], payload["report"], payload["clear"]
        id_token = payload.get("idToken")
        if not report and not clear:
            return _answer("Rejected", "InvalidValue", "neither report nor clear: nothing to do")
        if id_token is None and "customerIdentifier" not in payload and "customerCertificate" not in payload:
            return _answer("Invalid", "InvalidValue", "no idToken, customerCertificate or customerIdentifier")
        if self.queue.holds(request_id):
            return _answer("Rejected", "DuplicateRequestId", f"request {request_id} is already being answered")
        if self.queue.admitted >= self.queue.capacity:  # checked before clearing: a refused request changes nothing
            return _answer("Rejected", "Unspecified", "busy: customer information reports are being sent")
        lines = await self._lines(payload, id_token, clear) if report else []
        if clear and not report:
            if id_token is not None:
                findings = await self._cache.write(_gather, self._storage.writer, id_token, True)
                lines = [f"customer information for {_who(payload)} cleared", *_clear_lines(findings)]
            else:
                lines = [f"customer information for {_who(payload)} cleared (this station stores none)"]
        # Handlers run one at a time and the queue only shrinks meanwhile: this admission cannot be refused.
        ticket = self.queue.admit(request_id, lambda: self._send(request_id, lines))
        assert ticket is not None
        return Reply({"status": "Accepted"}, then=ticket.run, abandon=ticket.release)

    async def _lines(self, payload: dict, id_token: dict | None, clear: bool) -> list[str]:
        """The report's text, one fact per line; with `clear`, the facts as they were, then what was cleared."""
        lines: list[str] = []
        if "customerIdentifier" in payload:
            lines.append(
                f"customerIdentifier {payload['customerIdentifier']}: no data (this station stores no "
                "customer identifiers)"
            )
        if "customerCertificate" in payload:
            serial = payload["customerCertificate"].get("serialNumber", "?")
            lines.append(f"customerCertificate {serial}: no data (this station stores no customer certificates)")
        if id_token is None:
            return lines
        who = f"idToken {id_token['idToken']} ({id_token['type']})"
        found: list[str] = []
        cached = await self._cache.get(
            id_token, self._clock.now(), int(self._settings.seconds(keys.AUTH_CACHE_LIFE_TIME))
        )
        if cached is not None:
            found.append(f"authorization cache: {_info(cached)}")
        listed = self._local_list.get(id_token)
        if listed is not None:
            found.append(f"local authorization list (version {self._local_list.version()}): {_info(listed)}")
        # Through the cache: a clear removes its entry, and its copy in memory must follow the commit.
        findings = await self._cache.write(_gather, self._storage.writer, id_token, clear)
        for tx in findings.transactions:
            found.append(_transaction_line(tx))
        if findings.transactions_total > len(findings.transactions):
            found.append(f"and {findings.transactions_total - len(findings.transactions)} older transaction(s)")
        if not found:
            return [*lines, f"{who}: no data found"]
        lines += [f"{who}:", *found]
        if clear:
            lines += _clear_lines(findings)
            if listed is not None:
                lines.append("kept: the local authorization list entry (only the CSMS changes the list: SendLocalList)")
        return lines

    async def _send(self, request_id: int, lines: list[str]) -> None:
        generated = self._clock.iso()
        messages = [
            {"data": data, "seqNo": seq_no, "generatedAt": generated, "requestId": request_id}
            for seq_no, data in enumerate(_pages(lines))
        ]
        if await send_in_parts(self._link, "NotifyCustomerInformation", messages, f"customer information {request_id}"):
            log.info("customer information %d sent in %d message(s)", request_id, len(messages))


def _who(payload: dict) -> str:
    if "idToken" in payload:
        return f"idToken {payload['idToken']['idToken']} ({payload['idToken']['type']})"
    if "customerIdentifier" in payload:
        return f"customerIdentifier {payload['customerIdentifier']}"
    return f"customerCertificate {payload['customerCertificate'].get('serialNumber', '?')}"


def _answer(status: str, reason: str, info: str) -> dict:
    return {"status": status, "statusInfo": {"reasonCode": reason, "additionalInfo": info}}


def _info(info: dict) -> str:
    parts = [f"status {info.get('status', '?')}"]
    if "cacheExpiryDateTime" in info:
        parts.append(f"expires {info['cacheExpiryDateTime']}")
    if "groupIdToken" in info:
        parts.append(f"group {info['groupIdToken'].get('idToken')}")
    if "language1" in info:
        parts.append(f"language {info['language1']}")
    return ", ".join(parts)


def _transaction_line(tx: dict[str, Any]) -> str:
    text = f"transaction {tx['transaction_id']} on EVSE {tx['evse_id']}: started {tx['started_at']}"
    if tx["ended_at"]:
        text += f", ended {tx['ended_at']}"
        if tx["stopped_reason"]:
            text += f" ({tx['stopped_reason']})"
    else:
        text += ", still open"
    if tx["meter_start_wh"] is not None and tx["meter_last_wh"] is not None:
        text += f", {tx['meter_last_wh'] - tx['meter_start_wh']:.0f} Wh"
    return text


def _clear_lines(findings: Findings) -> list[str]:
    done = []
    if findings.cache_removed:
        done.append("the authorization cache entry")
    if findings.redacted_transactions or findings.redacted_messages:
        done.append(
            f"the token in {findings.redacted_transactions} ended transaction(s) and "
            f"{findings.redacted_messages} delivered message(s)"
        )
    lines = [f"cleared: {', '.join(done)}" if done else "cleared: nothing was stored"]
    if findings.kept_open:
        lines.append(f"kept until they end: open transaction(s) {', '.join(findings.kept_open)}")
    if findings.kept_pending:
        lines.append(f"kept until delivered to the CSMS: messages of transaction(s) {', '.join(findings.kept_pending)}")
    return lines


def _pages(lines: list[str]) -> Iterator[str]:
    """The lines packed into pages of at most PAGE_CHARS characters, split at line ends where one fits; at most
    MAX_PAGES pages (the last then says the report was cut)."""
    pages: list[str] = []
    current = ""
    for line in lines:
        while len(line) > PAGE_CHARS:  # a line longer than a page is split where it must be
            if current:
                pages.append(current)
                current = ""
            pages.append(line[:PAGE_CHARS])
            line = line[PAGE_CHARS:]
        joined = f"{current}\n{line}" if current else line
        if len(joined) > PAGE_CHARS:
            pages.append(current)
            current = line
        else:
            current = joined
    if current or not pages:
        pages.append(current or "no data")
    if len(pages) > MAX_PAGES:
        note = "\n… (report cut: more than this station sends in one report)"
        pages = pages[:MAX_PAGES]
        pages[-1] = pages[-1][: PAGE_CHARS - len(note)] + note
    yield from pages


def _gather(conn: sqlite3.Connection, id_token: dict, clear: bool) -> Findings:
    """What the journal holds about `id_token` and, with `clear`, remove what may go (a storage write job: the
    listing and the clearing are one transaction)."""
    key = (id_token["idToken"], id_token["type"])
    match = "json_extract(id_token, '$.idToken') = ? AND json_extract(id_token, '$.type') = ?"
    found = Findings()
    found.transactions_total = conn.execute(f"SELECT count(*) FROM transactions WHERE {match}", key).fetchone()[0]
    columns = (
        "transaction_id",
        "evse_id",
        "started_at",
        "ended_at",
        "stopped_reason",
        "meter_start_wh",
        "state",
    )
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM transactions WHERE {match} ORDER BY started_at DESC LIMIT ?",
        (*key, MAX_TRANSACTIONS),
    ).fetchall()
    found.transactions = [dict(zip(columns, row, strict=True)) for row in rows]
    for tx in found.transactions:
        tx["meter_last_wh"] = last_register_wh(conn, tx["transaction_id"])
    if not clear:
        return found
    found.cache_removed = AuthCache.forget_in(conn, id_token)
    for tx_id, state in conn.execute(f"SELECT transaction_id, state FROM transactions WHERE {match}", key):
        if state == "open":
            found.kept_open.append(tx_id)
            continue
        for row_id, payload in conn.execute(
            "SELECT id, payload FROM outbox WHERE transaction_id = ? AND outcome IS NOT NULL", (tx_id,)
        ).fetchall():
            message = json.loads(payload)
            if "idToken" in message:
                del message["idToken"]
                conn.execute(
                    "UPDATE outbox SET payload = ? WHERE id = ?", (json.dumps(message, separators=(",", ":")), row_id)
                )
                found.redacted_messages += 1
        pending = conn.execute(
            "SELECT count(*) FROM outbox WHERE transaction_id = ? AND outcome IS NULL", (tx_id,)
        ).fetchone()[0]
        if pending:
            found.kept_pending.append(tx_id)
        else:
            conn.execute("UPDATE transactions SET id_token = NULL WHERE transaction_id = ?", (tx_id,))
            found.redacted_transactions += 1
    log.info(
        "customer information: cleared token %s (cache entry %s, %d transaction(s), %d message(s))",
        mask(id_token["idToken"]),
        "removed" if found.cache_removed else "none",
        found.redacted_transactions,
        found.redacted_messages,
    )
    return found

"""Part 6 N09/N10 customer information: TC_N_27 (report + data), TC_N_28 (report, no data), TC_N_29 (not
accepted: no customer named → Invalid), TC_N_30 (clear and report + data), TC_N_31 (clear and report, no data),
TC_N_32 (clear, no report); beyond Part 6: neither report nor clear (Rejected, N09.FR.07), a customerIdentifier or
customerCertificate (the station stores none: Accepted, "no data"), and the clear being durable — committed before
the answer — and leaving the Local Authorization List, open transactions and undelivered messages alone.

The memory states are built as the station builds them in the field: IdTokenLocalAuthList by a SendLocalList,
IdTokenCached (and a finished transaction of that card) by presenting the card once (auth_helpers.seed_cache).
TC_N_62/N_63 (customerIdentifier / customerCertificate data) are not applicable: the station stores neither.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from appliance.journal.verify import verify
from appliance.lab.csms import LoopbackCsms
from appliance.station import Station
from tests.conformance.auth_helpers import VALID, auth_station, entry, id_token, install_list, seed_cache
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import call

UNKNOWN = "04DEAD00"


async def customer_information(
    csms: LoopbackCsms, request_id: int, *, report: bool, clear: bool, **reference: Any
) -> dict[str, Any]:
    return await call(
        csms, "CustomerInformation", {"requestId": request_id, "report": report, "clear": clear, **reference}
    )


async def notifications(csms: LoopbackCsms, request_id: int, since: int) -> list[dict[str, Any]]:
    """Every NotifyCustomerInformation of `request_id` up to the one without tbc (all report parts)."""

    def complete() -> list[dict[str, Any]] | None:
        parts = [
            p for p in csms.actions(STATION_ID, "NotifyCustomerInformation", since) if p["requestId"] == request_id
        ]
        return parts if parts and not parts[-1].get("tbc", False) else None

    parts = await csms.trio.wait_for(complete, 10, what=f"NotifyCustomerInformation of {request_id}")
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert all(p.get("tbc") for p in parts[:-1])
    assert all(0 < len(p["data"]) <= 512 for p in parts)
    return parts


def text(parts: list[dict[str, Any]]) -> str:
    return "\n".join(p["data"] for p in parts)


async def known_customer(csms: LoopbackCsms, station: Station) -> None:
    """IdTokenCached and IdTokenLocalAuthList for VALID (the cache first: a listed card is never asked about);
    seeding the cache leaves one ended transaction of it."""
    await seed_cache(csms, station, VALID)
    await install_list(csms, 1, entry(VALID))


def journal_rows(data_dir: Path) -> tuple[list[str | None], list[dict[str, Any]]]:
    """The transactions' id_token column and every TransactionEvent payload, read from the file itself."""
    with sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True) as db:
        tokens = [row[0] for row in db.execute("SELECT id_token FROM transactions")]
        events = [
            json.loads(row[0]) for row in db.execute("SELECT payload FROM outbox WHERE action = 'TransactionEvent'")
        ]
        assert verify(db) == []
    return tokens, events


async def test_TC_N_27_report_with_data(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_27_CS (N09.FR.02/05): report true for a token in the cache and the local list → Accepted; the
    NotifyCustomerInformation data is not empty and names the cache entry, the list entry and the transaction."""
    async with auth_station(csms, data_dir) as station:
        await known_customer(csms, station)
        mark = csms.mark()
        answer = await customer_information(csms, 31, report=True, clear=False, idToken=id_token(VALID))
        assert answer["status"] == "Accepted", answer
        data = text(await notifications(csms, 31, mark))
        assert VALID in data
        assert "authorization cache: status Accepted" in data
        assert "local authorization list (version 1): status Accepted" in data
        assert "transaction " in data and "ended" in data
        assert re.search(r"ended [^,]+ \(\w+\), \d+ Wh", data), data  # the energy, from its messages' register
        assert station.authorizer.cache.count() == 1  # a report changes nothing


async def test_TC_N_28_report_without_data(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_28_CS (N09.FR.02/06): after the CSMS cleared the token's information, a report → Accepted and one
    message (tbc not true) saying no data is found."""
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
        mark = csms.mark()
        cleared = await customer_information(csms, 32, report=False, clear=True, idToken=id_token(VALID))
        assert cleared["status"] == "Accepted", cleared
        await notifications(csms, 32, mark)
        mark = csms.mark()
        answer = await customer_information(csms, 33, report=True, clear=False, idToken=id_token(VALID))
        assert answer["status"] == "Accepted", answer
        [part] = await notifications(csms, 33, mark)
        assert "no data found" in part["data"] and not part.get("tbc", False)


async def test_TC_N_29_no_customer_named_is_invalid(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_29_CS (N09.FR.03/04): a request that names no customer (no idToken, customerCertificate or
    customerIdentifier) cannot be processed → Invalid, and nothing follows."""
    async with auth_station(csms, data_dir):
        mark = csms.mark()
        answer = await customer_information(csms, 34, report=True, clear=False)
        assert answer["status"] == "Invalid", answer
        both_false = await customer_information(csms, 35, report=False, clear=False, idToken=id_token(VALID))
        assert both_false["status"] == "Rejected", both_false  # N09.FR.07 / N10.FR.07
        assert csms.actions(STATION_ID, "NotifyCustomerInformation", mark) == []


async def test_TC_N_30_clear_and_report_with_data(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_30_CS (N10.FR.01/03): clear and report → Accepted; the data (not empty) lists what was held and what
    was cleared; the cache entry and the token in the ended transaction are gone (committed before the answer),
    the Local Authorization List entry stays. A report afterwards → Accepted, its last part with tbc not true."""
    async with auth_station(csms, data_dir) as station:
        await known_customer(csms, station)
        tokens, events = journal_rows(data_dir)
        assert any(t and VALID in t for t in tokens) and any("idToken" in e for e in events)
        mark = csms.mark()
        answer = await customer_information(csms, 36, report=True, clear=True, idToken=id_token(VALID))
        assert answer["status"] == "Accepted", answer
        tokens, events = journal_rows(data_dir)  # right after the answer: already on disk
        assert tokens == [None] and not any("idToken" in e for e in events)
        data = text(await notifications(csms, 36, mark))
        assert "authorization cache: status Accepted" in data
        assert "cleared: the authorization cache entry, the token in 1 ended transaction(s)" in data
        assert "kept: the local authorization list entry" in data
        assert station.authorizer.cache.count() == 0
        assert station.authorizer.local_list.get(id_token(VALID)) == {"status": "Accepted"}
        mark = csms.mark()
        again = await customer_information(csms, 37, report=True, clear=False, idToken=id_token(VALID))
        assert again["status"] == "Accepted", again
        after = text(await notifications(csms, 37, mark))
        assert "local authorization list" in after and "authorization cache" not in after
        assert "transaction " not in after


async def test_TC_N_31_clear_and_report_without_data(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_31_CS (N10.FR.01/04): clear and report for a token the station knows nothing about → Accepted; one
    message saying no data is found."""
    async with auth_station(csms, data_dir):
        mark = csms.mark()
        answer = await customer_information(csms, 38, report=True, clear=True, idToken=id_token(UNKNOWN))
        assert answer["status"] == "Accepted", answer
        [part] = await notifications(csms, 38, mark)
        assert UNKNOWN in part["data"] and "no data found" in part["data"]


async def test_TC_N_32_clear_without_report(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_32_CS (N10.FR.01/06): clear true, report false → Accepted; the cache entry is gone, and one message
    says the data is cleared."""
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
        assert station.authorizer.cache.count() == 1
        mark = csms.mark()
        answer = await customer_information(csms, 39, report=False, clear=True, idToken=id_token(VALID))
        assert answer["status"] == "Accepted", answer
        [part] = await notifications(csms, 39, mark)
        assert "cleared" in part["data"] and VALID in part["data"]
        assert station.authorizer.cache.count() == 0


async def test_customer_identifier_and_certificate_hold_no_data(csms: LoopbackCsms, data_dir: Path) -> None:
    """The station stores no customer identifiers and no customer certificates: Accepted, then a message saying
    there is no data for either (N09.FR.06); a clear of them is Accepted too (nothing to remove)."""
    certificate = {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "a" * 64,
        "issuerKeyHash": "b" * 64,
        "serialNumber": "0A1B",
    }
    async with auth_station(csms, data_dir):
        mark = csms.mark()
        answer = await customer_information(
            csms, 40, report=True, clear=True, customerIdentifier="CUST-7", customerCertificate=certificate
        )
        assert answer["status"] == "Accepted", answer
        data = text(await notifications(csms, 40, mark))
        assert "customerIdentifier CUST-7: no data" in data and "customerCertificate 0A1B: no data" in data

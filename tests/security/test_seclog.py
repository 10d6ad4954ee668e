"""The security log (A04) on a real journal: critical events journaled and logged in one commit, non-critical
ones only logged, the log bounded, and the export GetLog(SecurityLog) uploads."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.blocks.security import SecurityEvents
from appliance.clock import StationClock
from appliance.journal.journal import Journal
from appliance.journal.store import Append
from appliance.security.seclog import CAPACITY
from appliance.storage import Storage
from tests.harness import peek


@pytest.fixture
async def events(tmp_path: Path) -> AsyncIterator[SecurityEvents]:
    storage = await Storage.open(tmp_path)
    journal = Journal(storage)
    try:
        yield SecurityEvents(journal=journal, clock=StationClock(), boot_reason="PowerUp", storage=storage)
    finally:
        storage.close()


def outbox(events: SecurityEvents) -> list[tuple[str, str]]:
    return peek(events._journal.storage.path, "SELECT action, json_extract(payload, '$.type') FROM outbox ORDER BY id")


async def test_critical_journaled_and_logged_non_critical_only_logged(events: SecurityEvents) -> None:
    await events.raise_event("InvalidCsmsCertificate", "certificate has expired")
    await events.raise_event("ReconfigurationOfSecurityParameters", "SecurityCtrlr.BasicAuthPassword changed")
    await events.raise_event("InvalidFirmwareSignature", "x" * 400)  # techInfo cut to the schema's 255
    assert outbox(events) == [
        ("SecurityEventNotification", "InvalidCsmsCertificate"),
        ("SecurityEventNotification", "InvalidFirmwareSignature"),
    ]
    logged = await events.log.entries()
    assert [(e.type, e.critical) for e in logged] == [
        ("InvalidCsmsCertificate", True),
        ("ReconfigurationOfSecurityParameters", False),
        ("InvalidFirmwareSignature", True),
    ]
    assert len(logged[2].tech_info or "") == 255


async def test_a_journaled_notification_is_logged_in_the_same_commit(events: SecurityEvents) -> None:
    """The trigger: whoever journals a SecurityEventNotification (here the journal directly) logs it with the
    row's id, so the two cannot disagree after a power cut."""
    stored = await events._journal.append(
        Append(
            "SecurityEventNotification",
            {"type": "TamperDetectionActivated", "timestamp": "2026-01-02T03:04:05.000Z", "techInfo": "lid"},
        )
    )
    assert stored["type"] == "TamperDetectionActivated"
    row = peek(
        events._journal.storage.path,
        "SELECT l.type, l.tech_info, l.outbox_id = o.id FROM security_log l JOIN outbox o ON o.id = l.outbox_id",
    )
    assert row == [("TamperDetectionActivated", "lid", 1)]


async def test_export_between_bounds(events: SecurityEvents, tmp_path: Path) -> None:
    storage = events._journal.storage
    stamps = [f"2026-01-0{day}T12:00:00.000Z" for day in range(1, 6)]
    for day, stamp in enumerate(stamps, 1):
        await events.log.record("InvalidMessages", f"day {day}\twith\ttabs\nand a line break", stamp)
    assert peek(storage.path, "SELECT count(*) FROM security_log") == [(5,)]

    out = tmp_path / "security.log"
    count = await events.log.export(out, datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 4, 12, tzinfo=UTC))
    assert count == 3
    lines = out.read_text().splitlines()
    assert lines == [f"{stamps[d - 1]}\tInvalidMessages\tday {d} with tabs and a line break" for d in (2, 3, 4)]
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert await events.log.export(out, None, None) == 5
    assert await events.log.export(out, datetime(2027, 1, 1, tzinfo=UTC), None) == 0
    assert out.read_text() == ""


async def test_the_log_is_bounded(events: SecurityEvents) -> None:
    storage = events._journal.storage

    def flood(conn: object) -> None:
        storage.writer.executemany(
            "INSERT INTO security_log (timestamp, type, tech_info, critical) VALUES (?, 'InvalidMessages', ?, 0)",
            (("2026-01-01T00:00:00.000Z", str(i)) for i in range(CAPACITY + 50)),
        )

    await storage.write(flood, None)
    await events.raise_event("StartupOfTheDevice", "boot reason PowerUp")
    entries = await events.log.entries()
    assert len(entries) == CAPACITY
    assert entries[0].tech_info == "51" and entries[-1].type == "StartupOfTheDevice"

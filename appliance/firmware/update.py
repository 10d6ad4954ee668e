"""The durable record of the one firmware update under way (table `firmware_update`, migration 0008).

Written through the storage worker before the station acts on it, so after a power cut the firmware block
knows the stage, the request, how many download attempts have begun and where the image is. The record is
deleted when the update ends (Installed or a failure status); no record means Idle.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from appliance.storage import Storage
from appliance.timetext import now_text

#: Stages of an update that is still under way, in order (FirmwareStatusEnumType values).
STAGES = (
    "DownloadScheduled",
    "Downloading",
    "Downloaded",
    "SignatureVerified",
    "InstallScheduled",
    "Installing",
    "InstallRebooting",
)


@dataclass(frozen=True)
class UpdateRecord:
    request_id: int
    stage: str
    request: dict[str, Any]
    attempts: int = 0
    image_path: str | None = None
    target_slot: str | None = None
    target_version: str | None = None

    def at(self, stage: str, **changes: Any) -> UpdateRecord:
        return replace(self, stage=stage, **changes)


class UpdateStore:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def load(self) -> UpdateRecord | None:
        row = await self._storage.run(
            lambda: self._storage.writer.execute(
                "SELECT request_id, stage, request, attempts, image_path, target_slot, target_version "
                "FROM firmware_update WHERE singleton = 1"
            ).fetchone()
        )
        if row is None:
            return None
        return UpdateRecord(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5], row[6])

    async def save(self, record: UpdateRecord) -> None:
        await self._storage.write(_save, self._storage.writer, record)

    async def clear(self) -> None:
        await self._storage.write(lambda conn: conn.execute("DELETE FROM firmware_update"), self._storage.writer)

    async def last_journaled_status(self, request_id: int) -> str | None:
        """The status of the last FirmwareStatusNotification journaled for `request_id` (to never repeat one
        after a restart that came between journaling it and recording the stage)."""

        def query() -> str | None:
            rows = self._storage.writer.execute(
                "SELECT payload FROM outbox WHERE action = 'FirmwareStatusNotification' ORDER BY id DESC LIMIT 20"
            ).fetchall()
            for (raw,) in rows:
                payload = json.loads(raw)
                if payload.get("requestId") == request_id:
                    return str(payload.get("status"))
            return None

        return await self._storage.run(query)

    async def event_after_status(self, request_id: int, status: str, kind: str) -> bool:
        """Was a SecurityEventNotification `kind` journaled after `request_id`'s last status `status`?

        A status and the security event that follows it are two journal commits; a power cut between them
        leaves the status without its event, and the restart must raise it (Part 6 wants it after the status)."""

        def query() -> bool:
            rows = self._storage.writer.execute(
                "SELECT action, payload FROM outbox "
                "WHERE action IN ('FirmwareStatusNotification', 'SecurityEventNotification') ORDER BY id DESC LIMIT 50"
            ).fetchall()
            for action, raw in rows:  # newest first: an event seen before the status came after it
                payload = json.loads(raw)
                if action == "SecurityEventNotification" and payload.get("type") == kind:
                    return True
                if action == "FirmwareStatusNotification" and payload.get("requestId") == request_id:
                    return payload.get("status") != status  # the status is not the last one: nothing owed
            return False

        return await self._storage.run(query)


def _save(conn: sqlite3.Connection, record: UpdateRecord) -> None:
    conn.execute(
        "INSERT INTO firmware_update (singleton, request_id, stage, request, attempts, image_path, target_slot, "
        "target_version, updated_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(singleton) DO UPDATE SET request_id = excluded.request_id, stage = excluded.stage, "
        "request = excluded.request, attempts = excluded.attempts, image_path = excluded.image_path, "
        "target_slot = excluded.target_slot, target_version = excluded.target_version, "
        "updated_at = excluded.updated_at",
        (
            record.request_id,
            record.stage,
            json.dumps(record.request),
            record.attempts,
            record.image_path,
            record.target_slot,
            record.target_version,
            now_text(),
        ),
    )

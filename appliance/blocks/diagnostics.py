"""Functional block N (diagnostics, N01): GetLog, its upload, and LogStatusNotification.

A GetLog names a log (DiagnosticsLog: the station's own rotated log files; SecurityLog: the security events)
and a time window. The file is assembled before the answer, so "nothing to send" is answered Rejected (TC_N_34)
and Accepted always carries the file name that will arrive. The upload then runs in this block's own nursery,
not the CSMS session's: a dropped connection does not stop it, and its statuses, journaled before they are sent,
reach the CSMS once it is back. Each attempt reports Uploading and then Uploaded or its failure status; up to
`retries` more attempts follow, spaced `retryInterval` apart (start to start, TC_N_26), and the last attempt's
status is the request's final one; a failure retrying cannot mend (NotSupportedOperation) ends it at once.

One upload at a time. A GetLog while one is uploading cancels it (N01.FR.12, TC_N_36): the new file is assembled
first (a request that would be Rejected leaves the running upload alone), then the running upload is cancelled
and waited for, the answer is AcceptedCanceled, and the cancelled request ends with LogStatusNotification
AcceptedCanceled, journaled before the new request's Uploading. An upload that finished while being cancelled
keeps its own final status and the answer is plain Accepted. A GetLog while another is still being assembled (a
moment) is Rejected, reasonCode UploadInProgress. TriggerMessage(LogStatusNotification) reports the true status:
the running upload's last status with its requestId (journaled like the others), else Idle (N01.FR.11: no
requestId).

Power cut or restart mid-upload: the journal's last LogStatusNotification is then Uploading; at the next start
the block reports that request UploadFailure, so the CSMS never waits for an upload that died with the process.
"""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import trio

from appliance import logsetup
from appliance.blocks.base import Block, TriggerHandler, TriggerRequest
from appliance.clock import parse_iso
from appliance.diagnostics.upload import Timeouts, UploadFailed, check_url, shown, target_url, upload
from appliance.journal.journal import Journal
from appliance.journal.store import Append
from appliance.link.link import Link
from appliance.link.rpc import CallFailed, Handler, Reply
from appliance.storage import Storage

log = logging.getLogger("appliance.diagnostics")

#: When a GetLog leaves them out ("left to the Charging Station").
DEFAULT_RETRIES = 2
DEFAULT_RETRY_INTERVAL = 30
#: Bounds on what a CSMS may ask: more retries, or longer waits, keep the station busy for nothing.
MAX_RETRIES = 10
MAX_RETRY_INTERVAL = 3600


class LogSource(Protocol):
    """A log the CSMS can ask for: writes its entries inside [oldest, latest] to `path`, returns how many."""

    async def export(self, path: Path, oldest: datetime | None, latest: datetime | None) -> int: ...


@dataclass(frozen=True)
class LogFiles:
    """Where the station keeps its own log files and how many (config `[logging] file_max_bytes`, `file_count`)."""

    directory: Path
    max_bytes: int
    count: int


@dataclass
class _Upload:
    request_id: int
    log_type: str
    path: Path
    url: str
    retries: int
    retry_interval: int
    #: Cancelled by the next GetLog; `done` is set once the upload task has ended.
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    #: The final status journaled for this request (None while it runs, or when it was cancelled).
    final: str | None = None


class Diagnostics(Block):
    def __init__(
        self,
        *,
        station_id: str,
        data_dir: Path,
        journal: Journal,
        storage: Storage,
        link: Link,
        files: LogFiles,
        sources: Mapping[str, LogSource],
        extra_roots: Callable[[], list[str]] = list,
    ) -> None:
        self._station_id = station_id
        self._spool = data_dir / "diagnostics"
        #: Numbers the spooled files: two GetLogs with the same requestId in the same second name the same
        #: upload file, and the second must not overwrite (or, cancelling the first, delete) the first's bundle.
        self._spooled = itertools.count(1)
        self._journal = journal
        self._storage = storage
        self._link = link
        self._files = files
        self._sources = dict(sources)
        self._extra_roots = extra_roots
        self.timeouts = Timeouts()
        #: The upload under way (a new GetLog cancels it).
        self._current: _Upload | None = None
        #: A GetLog's file is being assembled (a second GetLog meanwhile is Rejected).
        self._assembling: int | None = None
        #: The running upload's last status payload, for TriggerMessage; None = Idle.
        self._status: dict | None = None
        self._nursery: trio.Nursery | None = None

    def handlers(self) -> Mapping[str, Handler]:
        return {"GetLog": self._get_log}

    def triggers(self) -> Mapping[str, TriggerHandler]:
        return {"LogStatusNotification": self._trigger}

    # --- life ------------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the station's log files for its whole run, own the uploads, and settle one a restart cut off."""
        files = self._files
        with logsetup.file_log(files.directory, max_bytes=files.max_bytes, count=files.count):
            async with trio.open_nursery() as nursery:
                await trio.to_thread.run_sync(self._clean_spool)
                await self._settle_interrupted()
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()

    def _clean_spool(self) -> None:
        """Bundles left by a run that ended mid-upload are of no use any more."""
        self._spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in self._spool.iterdir():
            leftover.unlink(missing_ok=True)

    async def _settle_interrupted(self) -> None:
        last = await self._storage.run(_last_log_status, self._storage.writer)
        if last is not None and last.get("status") == "Uploading" and "requestId" in last:
            log.warning("log upload %d was cut off by a restart: reporting UploadFailure", last["requestId"])
            await self._journal.append(
                Append("LogStatusNotification", {"status": "UploadFailure", "requestId": last["requestId"]})
            )

    # --- GetLog ------------------------------------------------------------------------------------------------

    async def _get_log(self, payload: dict) -> dict | Reply:
        request_id = payload["requestId"]
        log_type = payload["logType"]
        if self._assembling is not None:
            return _rejected(
                "UploadInProgress", f"the file of GetLog {self._assembling} is being assembled: ask again in a moment"
            )
        source = self._sources.get(log_type)
        if source is None:
            return _rejected("UnsupportedParam", f"this station keeps no {log_type}")
        window = payload["log"]
        try:
            oldest = parse_iso(window["oldestTimestamp"]) if "oldestTimestamp" in window else None
            latest = parse_iso(window["latestTimestamp"]) if "latestTimestamp" in window else None
        except ValueError as exc:
            return _rejected("InvalidValue", f"timestamp: {exc}")
        if oldest is not None and latest is not None and oldest > latest:
            return _rejected("InvalidValue", "oldestTimestamp is after latestTimestamp")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        filename = f"{self._station_id}-{log_type}-{stamp}-{request_id}.log"
        path = self._spool / f"{next(self._spooled)}-{filename}"
        job = _Upload(
            request_id,
            log_type,
            path,
            target_url(window["remoteLocation"], filename),
            min(max(payload.get("retries", DEFAULT_RETRIES), 0), MAX_RETRIES),
            min(max(payload.get("retryInterval", DEFAULT_RETRY_INTERVAL), 0), MAX_RETRY_INTERVAL),
        )
        self._assembling = request_id
        try:
            entries = await source.export(path, oldest, latest)
        except BaseException as exc:
            path.unlink(missing_ok=True)
            if not isinstance(exc, Exception):
                raise
            log.exception("GetLog %d: assembling the %s failed", request_id, log_type)
            return _rejected("Unspecified", f"the {log_type} could not be assembled: {type(exc).__name__}")
        finally:
            self._assembling = None
        if entries == 0:
            path.unlink(missing_ok=True)
            return _rejected("NoLogAvailable", f"no {log_type} entries in the requested period")
        cancelled = await self._cancel_current()
        self._current = job
        log.info(
            "GetLog %d: %s of %d entries (%d bytes) to %s%s",
            request_id,
            log_type,
            entries,
            path.stat().st_size,
            shown(job.url),
            f" (upload {cancelled.request_id} cancelled)" if cancelled is not None else "",
        )

        async def start() -> None:
            assert self._nursery is not None
            self._nursery.start_soon(self._upload, job, cancelled)  # before any checkpoint: always reached

        def abandon() -> None:
            self._release(job)
            if cancelled is not None and self._nursery is not None:  # it still ends with its status
                self._nursery.start_soon(self._report, cancelled, "AcceptedCanceled")

        status = "Accepted" if cancelled is None else "AcceptedCanceled"
        return Reply({"status": status, "filename": filename}, then=start, abandon=abandon)

    async def _cancel_current(self) -> _Upload | None:
        """Cancel the running upload and wait for it to end; it, if it was cancelled before its final status."""
        running = self._current
        if running is None:
            return None
        running.scope.cancel()
        with trio.CancelScope(shield=True):  # a moment: the transfer thread is interrupted by its socket's shutdown
            await running.done.wait()
        return running if running.final is None else None

    def _release(self, job: _Upload) -> None:
        job.path.unlink(missing_ok=True)
        if self._current is job:
            self._current = None
            self._status = None

    async def _upload(self, job: _Upload, cancelled: _Upload | None = None) -> None:
        try:
            if cancelled is not None:
                await self._report(cancelled, "AcceptedCanceled")
            with job.scope:
                failure: UploadFailed | None = None
                try:
                    check_url(job.url)
                except UploadFailed as exc:
                    failure = exc
                else:
                    failure = await self._attempts(job)
                await self._report(job, failure.status if failure is not None else "Uploaded")
                job.final = failure.status if failure is not None else "Uploaded"  # no checkpoint since the report
                if failure is None:
                    log.info("log upload %d: %s uploaded to %s", job.request_id, job.log_type, shown(job.url))
                else:
                    log.warning("log upload %d failed: %s (%s)", job.request_id, failure.status, failure.reason)
            if job.scope.cancelled_caught:
                log.warning("log upload %d cancelled by a new GetLog", job.request_id)
        finally:
            self._release(job)
            job.done.set()

    async def _attempts(self, job: _Upload) -> UploadFailed | None:
        """N retries = N+1 attempts, each starting retryInterval after the one before; the last failure.

        Each attempt is reported: Uploading, and for every failed attempt but the last its failure status (TC_N_26:
        "step (3,) 5, four times"; one Uploading per attempt, not a flood of them). The caller reports the last."""
        context = await trio.to_thread.run_sync(self._ssl_context)
        failure: UploadFailed | None = None
        for attempt in range(1, job.retries + 2):
            started = trio.current_time()
            await self._report(job, "Uploading")
            try:
                await upload(job.path, job.url, timeouts=self.timeouts, ssl_context=context)
                return None
            except UploadFailed as exc:
                failure = exc
                log.warning(
                    "log upload %d: attempt %d of %d to %s failed: %s",
                    job.request_id,
                    attempt,
                    job.retries + 1,
                    shown(job.url),
                    exc.reason,
                )
                if exc.final:
                    break
            if attempt <= job.retries:
                await self._report(job, failure.status)
                await trio.sleep_until(started + job.retry_interval)
        return failure

    def _ssl_context(self) -> ssl.SSLContext:
        """The system's trusted roots plus the CSMS roots the station holds: an upload server is often the
        CSMS operator's, with a certificate from the same private root."""
        context = ssl.create_default_context()
        roots = self._extra_roots()
        if roots:
            context.load_verify_locations(cadata="\n".join(roots))
        return context

    async def _report(self, job: _Upload, status: str) -> None:
        payload = {"status": status, "requestId": job.request_id}
        if self._current is job:
            self._status = payload
        await self._journal.append(Append("LogStatusNotification", payload))

    # --- TriggerMessage ------------------------------------------------------------------------------------------

    async def _trigger(self, request: TriggerRequest) -> Reply:
        async def send() -> None:
            current = self._status  # read when sending: never a status the upload has moved past
            if current is not None:
                await self._journal.append(Append("LogStatusNotification", dict(current)))
                return
            try:
                await self._link.call("LogStatusNotification", {"status": "Idle"})
            except CallFailed as exc:
                log.warning("LogStatusNotification not delivered: %s", exc)

        return Reply({"status": "Accepted"}, then=send)


def _rejected(reason: str, info: str) -> dict:
    return {"status": "Rejected", "statusInfo": {"reasonCode": reason, "additionalInfo": info[:512]}}


def _last_log_status(conn: sqlite3.Connection) -> dict | None:
    """The newest journaled LogStatusNotification's payload (a storage job on the writer connection)."""
    row = conn.execute(
        "SELECT payload FROM outbox WHERE action = 'LogStatusNotification' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return json.loads(row[0]) if row else None

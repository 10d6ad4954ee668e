"""A critical security event raised while offline survives a SIGKILL and reaches the CSMS exactly once.

The station process meets a CSMS with an expired certificate: it refuses the handshake and journals
InvalidCsmsCertificate (nobody has heard of it yet). It is killed with SIGKILL. The CSMS is fixed; a new process
on the same data directory connects, boots, and delivers the journaled event — once — with both starts'
StartupOfTheDevice; the journal marks each delivered and verifies clean.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import trustme

from appliance.lab.process import StationProcess
from appliance.storage.db import DB_NAME
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import journal, stop_proc, wait_all_reported, wait_boot, write_config
from tests.harness import in_thread, wait_until
from tests.security.tls_lab import make_good, server_context, tls_csms


def journaled(data_dir: Path, kind: str) -> list[tuple[str | None]]:
    """The outcome of each journaled SecurityEventNotification of `kind` (read-only, beside the station)."""
    try:
        conn = sqlite3.connect(f"{(data_dir / DB_NAME).as_uri()}?mode=ro", uri=True)
    except sqlite3.OperationalError:  # the station has not created it yet
        return []
    try:
        return conn.execute(
            "SELECT outcome FROM outbox WHERE action = 'SecurityEventNotification' AND "
            "json_extract(payload, '$.type') = ?",
            (kind,),
        ).fetchall()
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        conn.close()


async def test_invalid_csms_certificate_survives_sigkill_and_arrives_once(data_dir: Path) -> None:
    ca = trustme.CA()
    ca_file = data_dir / "csms-root.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    now = dt.datetime.now(dt.UTC)
    context = server_context(
        ca.issue_cert("127.0.0.1", not_before=now - dt.timedelta(days=9), not_after=now - dt.timedelta(days=1))
    )
    with tls_csms(context) as csms:
        config = write_config(data_dir, csms.url, profile=2, ca_file=ca_file)
        first = StationProcess(config, data_dir / "first.log")
        first.start()
        try:
            await in_thread(wait_until, lambda: journaled(data_dir, "InvalidCsmsCertificate") == [(None,)], 20)
        finally:
            first.kill()
        assert "refused: certificate has expired" in first.log()
        assert csms.connections_snapshot(STATION_ID) == []

        make_good(context, ca)
        second = StationProcess(config, data_dir / "second.log")
        second.start()
        try:
            await wait_boot(csms, 0)
            await wait_all_reported(csms, 0)
            await csms.trio.wait_for(
                lambda: journaled(data_dir, "InvalidCsmsCertificate") == [("delivered",)], 10, what="the delivered mark"
            )
            await csms.trio.wait_for(
                lambda: len(csms.actions(STATION_ID, "SecurityEventNotification")) >= 3,
                10,
                what="three security events",
            )
            types = [p["type"] for p in csms.actions(STATION_ID, "SecurityEventNotification")]
            assert sorted(types) == ["InvalidCsmsCertificate", "StartupOfTheDevice", "StartupOfTheDevice"], types
            assert await stop_proc(second) == 0
        finally:
            if second.proc is not None and second.proc.poll() is None:
                second.kill()
    code, report = await journal(config, "verify")
    assert code == 0, report

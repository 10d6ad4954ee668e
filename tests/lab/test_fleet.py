"""`appliance fleet`: a small fleet against the loopback CSMS, every station's transaction stream checked.

Fifty real stations (their own journals and device models, sim hardware) play charging sessions while some
cables are pulled; afterwards what the CSMS received is checked per station — each transaction Started,
Updated*, Ended with seqNos 0, 1, 2 … — and compared with the station's journal (nothing lost, nothing left
pending, every journal verifying clean).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator

import pytest

from appliance.journal.queries import transactions
from appliance.journal.verify import check_events
from appliance.lab.csms import LoopbackCsms
from appliance.lab.fleet import Fleet, FleetOptions, ok
from appliance.lab.process import PACKAGE_ROOT, short_dir
from appliance.storage.db import DB_NAME, open_read_only


@pytest.fixture
def open_csms() -> Iterator[LoopbackCsms]:
    """A CSMS without basic auth (security profile 0), so any station id may connect."""
    with LoopbackCsms(heartbeat_interval=300) as server:
        yield server
        assert server.violations == [], f"OCPP violations seen by the CSMS: {server.violations}"


async def test_fifty_stations_with_cable_pulls_deliver_every_transaction_whole(open_csms: LoopbackCsms) -> None:
    data_dir = short_dir()
    try:
        options = FleetOptions(
            count=50,
            csms_url=open_csms.url,
            scenario="pulls",
            duration_s=15,
            ramp_s=5,
            charge_s=(2.0, 4.0),
            pause_s=(0.5, 1.5),
            meter_interval_s=1,
            summary_every_s=5,
            drain_s=90,
        )
        out = io.StringIO()
        fleet = Fleet(options, out)
        report = await fleet.run(data_dir)
        assert ok(report), out.getvalue()
        assert report["sessions_done"] >= 50
        assert report["cable_pulls"] > 0  # the scenario did pull cables (50 stations, one pull per ~30 s each)

        for member in fleet.members:
            received = open_csms.actions(member.station_id, "TransactionEvent")
            assert check_events(received, allow_resends=True) == [], member.station_id
            streams: dict[str, list[dict]] = defaultdict(list)
            for payload in received:
                streams[payload["transactionInfo"]["transactionId"]].append(payload)
            for tx_id, events in streams.items():
                unique = {e["seqNo"]: e for e in events}  # a resend after a pull repeats a seqNo identically
                kinds = [unique[n]["eventType"] for n in sorted(unique)]
                assert sorted(unique) == list(range(len(unique))), (member.station_id, tx_id)
                assert kinds[0] == "Started" and kinds[-1] == "Ended", (member.station_id, tx_id, kinds)
                assert set(kinds[1:-1]) <= {"Updated"}, (member.station_id, tx_id, kinds)
            conn = open_read_only(member.config.station.data_dir / DB_NAME)
            try:
                journaled = {t["transactionId"]: t for t in transactions(conn)}
            finally:
                conn.close()
            assert set(journaled) == set(streams), member.station_id  # nothing lost, nothing invented
            assert all(t["state"] == "ended" for t in journaled.values()), member.station_id
            assert len(journaled) == member.sessions_done, member.station_id
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _fleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance", "fleet", *args]


def test_fleet_command_runs_a_quick_fleet_and_prints_the_report(open_csms: LoopbackCsms) -> None:
    quick = ("--duration", "4", "--ramp", "1", "--summary-every", "1")
    result = subprocess.run(
        _fleet("--count", "3", "--csms", open_csms.url, "--prefix", "QUICK", *quick),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fleet report" in result.stdout
    assert "journals_verified: 3" in result.stdout
    assert "connected 3/3" in result.stdout  # the live summary line
    for station_id in ("QUICK0001", "QUICK0002", "QUICK0003"):
        assert open_csms.actions(station_id, "BootNotification"), station_id


def test_fleet_command_refuses_an_unknown_scenario() -> None:
    result = subprocess.run(
        _fleet("--count", "3", "--csms", "ws://127.0.0.1:9/ocpp", "--scenario", "nonsense"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 2
    assert "--scenario one of idle, sessions, pulls, storm" in result.stderr


async def test_the_fleets_summary_counts_every_journal_on_its_storage_worker(open_csms: LoopbackCsms) -> None:
    """The summary lines count each journal as a job on the station's storage worker (its one connection), all
    stations at once."""
    data_dir = short_dir()
    try:
        options = FleetOptions(
            count=3, csms_url=open_csms.url, scenario="idle", duration_s=6, ramp_s=1, summary_every_s=1
        )
        out = io.StringIO()
        report = await Fleet(options, out).run(data_dir)
        assert ok(report), out.getvalue()
        assert "acknowledged 3" in out.getvalue()  # the summary did count the journals
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_the_fleet_stops_its_stations_a_bounded_number_at_a_time(
    open_csms: LoopbackCsms, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the end every station stops (link closed with a handshake, tasks cancelled), at most STOPPING_AT_ONCE
    together: all at once, a fleet's RSS peaked above its steady figure there."""
    from appliance.lab import fleet as fleet_module
    from appliance.station import Station

    monkeypatch.setattr(fleet_module, "STOPPING_AT_ONCE", 3)
    stopping, most, stopped = 0, 0, 0
    original = Station.stop

    async def counted_stop(self: Station) -> None:
        nonlocal stopping, most, stopped
        stopping += 1
        most = max(most, stopping)
        try:
            await original(self)
        finally:
            stopping -= 1
            stopped += 1

    monkeypatch.setattr(Station, "stop", counted_stop)
    data_dir = short_dir()
    try:
        options = FleetOptions(count=10, csms_url=open_csms.url, scenario="idle", duration_s=4, ramp_s=1)
        out = io.StringIO()
        report = await Fleet(options, out).run(data_dir)
        assert ok(report), out.getvalue()
        assert (stopped, most) == (10, 3)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

"""Bounded under any flood: a CSMS that fires a thousand report requests at once, without waiting for answers,
gets an answer to every one, and the station's memory stays flat — one report is sent at a time, two more
wait, the rest are Rejected, and pages are built as they are sent.

The station is a real `appliance run` process (its RSS is what is measured, from /proc, sampled while the flood
lasts and until the last accepted report is sent); the requests go over its real WebSocket as raw CALL frames,
as a hostile or broken CSMS would send them (the CSMS side's own one-CALL-at-a-time client would throttle it).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import StationProcess, config_text, station_process
from tests.conformance.helpers import STATION_ID
from tests.station.test_persistence import wait_booted

FLOOD = 1000
#: The growth of the station's RSS a flood may cause: "within a few MB" (48.6 → 178.9 MB before the bound).
RSS_GROWTH_MB = 6.0
#: Reports the station admits at once (one being sent, REPORTS_WAITING waiting).
ADMITTED = 3

REQUESTS: dict[str, dict[str, Any]] = {
    "GetBaseReport": {"reportBase": "FullInventory"},
    "GetReport": {"componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}]},
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def last_frame(csms: LoopbackCsms, since: int, ids: set[str]) -> int:
    """The recording index of the last answer to these message ids."""
    return max(
        f.index
        for f in csms.frames_snapshot(STATION_ID, since)
        if f.direction == "in" and f.message_type in (3, 4) and f.message_id in ids
    )


def finished_before(csms: LoopbackCsms, since: int, until: int) -> set[int]:
    """requestIds whose last NotifyReport the station sent between frames `since` and `until`."""
    return {
        f.payload["requestId"]
        for f in csms.frames_snapshot(STATION_ID, since)
        if f.index < until
        and f.direction == "in"
        and f.is_call
        and f.action == "NotifyReport"
        and not f.payload.get("tbc", False)
    }


def answers(csms: LoopbackCsms, since: int, ids: set[str]) -> dict[str, Any]:
    """The station's CALLRESULT payloads (or CALLERROR codes) to the CALLs with these message ids."""
    return {
        f.message_id: f.payload if f.message_type == 3 else f.error_code
        for f in csms.frames_snapshot(STATION_ID, since)
        if f.direction == "in" and f.message_type in (3, 4) and f.message_id in ids
    }


def reports_done(csms: LoopbackCsms, since: int, request_ids: set[int]) -> bool:
    finished = {p["requestId"] for p in csms.actions(STATION_ID, "NotifyReport", since) if not p.get("tbc", False)}
    return request_ids <= finished


def run_report(csms: LoopbackCsms, action: str, request_id: int) -> None:
    """One request, as a raw frame too (the `ocpp` client chokes on the flood's unclaimed answers), answered
    Accepted and its report sent to the end."""
    mark = csms.mark()
    message_id = f"single-{request_id}"
    csms.send_raw(STATION_ID, json.dumps([2, message_id, action, {"requestId": request_id, **REQUESTS[action]}]))
    answer = csms.wait_for(lambda: answers(csms, mark, {message_id}).get(message_id), 10, what="the answer")
    assert answer["status"] == "Accepted", answer
    csms.wait_for(lambda: reports_done(csms, mark, {request_id}), 30, what=f"report {request_id}")


@contextlib.contextmanager
def booted_process(csms: LoopbackCsms, data_dir: Path) -> Iterator[StationProcess]:
    """A real `appliance run` process, booted and past its startup security event (so nothing else is due)."""
    config = data_dir / "station.toml"
    config.write_text(config_text(data_dir, csms.url))
    with station_process(config, data_dir / "station.log") as station:
        assert station.proc is not None
        wait_booted(csms, 0)
        csms.wait_action(STATION_ID, "SecurityEventNotification", 10)
        yield station


@pytest.mark.parametrize("action", list(REQUESTS))
def test_report_flood_is_answered_and_bounded(csms: LoopbackCsms, data_dir: Path, action: str) -> None:
    """1,000 `action` CALLs sent back to back: every one is answered (Accepted or Rejected with a reasonCode —
    never silence, never a CALLERROR), at most three are Accepted at a time (more only as earlier ones finish),
    every Accepted report
    is sent completely (seqNo 0…n, the last without tbc), and the station's peak RSS during all of it stays
    within a few MB of its RSS after one warm-up report. Afterwards a new request is Accepted again."""
    with booted_process(csms, data_dir) as station:
        assert station.proc is not None
        run_report(csms, action, 1)  # warm-up: every code path of a report has run once
        baseline = rss_mb(station.proc.pid)

        mark = csms.mark()
        ids = {f"flood-{n}": 1000 + n for n in range(FLOOD)}
        with PeakRss(station.proc.pid) as rss:
            for message_id, request_id in ids.items():
                payload = {"requestId": request_id, **REQUESTS[action]}
                csms.send_raw(STATION_ID, json.dumps([2, message_id, action, payload]))
            got = csms.wait_for(
                lambda: (a := answers(csms, mark, set(ids))) and len(a) == FLOOD and a,
                60,
                what=f"answers to all {FLOOD} requests",
            )
            accepted = {
                ids[m]
                for m, payload in got.items()
                if isinstance(payload, dict) and payload.get("status") == "Accepted"
            }
            # While the flood lasted, a report was admitted only when one of the three admitted had finished.
            done_meanwhile = finished_before(csms, mark, last_frame(csms, mark, set(ids))) & accepted
            assert 1 <= len(accepted) <= ADMITTED + len(done_meanwhile), (len(accepted), len(done_meanwhile))
            csms.wait_for(lambda: reports_done(csms, mark, accepted), 60, what="the accepted reports")
        assert station.proc.poll() is None, station.log()

        statuses = {m: p.get("status") if isinstance(p, dict) else f"CALLERROR {p}" for m, p in got.items()}
        assert set(statuses.values()) <= {"Accepted", "Rejected"}, set(statuses.values())
        for payload in got.values():
            if payload["status"] == "Rejected":
                assert payload["statusInfo"]["reasonCode"] == "Unspecified", payload
                assert "busy" in payload["statusInfo"]["additionalInfo"], payload
        pages = [p for p in csms.actions(STATION_ID, "NotifyReport", mark)]
        for request_id in accepted:
            mine = [p for p in pages if p["requestId"] == request_id]
            assert [p["seqNo"] for p in mine] == list(range(len(mine))), request_id
            assert all(p.get("tbc") for p in mine[:-1]) and not mine[-1].get("tbc", False), request_id
        growth = rss.peak - baseline
        assert growth <= RSS_GROWTH_MB, f"RSS {baseline:.1f} MB → peak {rss.peak:.1f} MB during the flood"

        run_report(csms, action, 9)  # nothing left behind: the queue is free again
        print(
            f"{action} flood: {len(accepted)} accepted, {FLOOD - len(accepted)} rejected; RSS {baseline:.1f} MB "
            f"→ peak {rss.peak:.1f} MB (+{growth:.1f})"
        )


@pytest.mark.parametrize("message", ["Heartbeat", "MeterValues"])
def test_trigger_flood_is_answered_and_coalesced(csms: LoopbackCsms, data_dir: Path, message: str) -> None:
    """1,000 TriggerMessage(`message`) back to back: every one answered Accepted (the message is coming), but
    one follow-up at a time is on its way — the station sends the message far fewer than 1,000 times, keeps no
    task per request, and its RSS stays within a few MB. It still answers a trigger afterwards."""
    with booted_process(csms, data_dir) as station:
        assert station.proc is not None
        baseline = rss_mb(station.proc.pid)
        mark = csms.mark()
        ids = {f"trigger-{n}" for n in range(FLOOD)}
        with PeakRss(station.proc.pid) as rss:
            for message_id in sorted(ids):
                csms.send_raw(STATION_ID, json.dumps([2, message_id, "TriggerMessage", {"requestedMessage": message}]))
            got = csms.wait_for(
                lambda: (a := answers(csms, mark, ids)) and len(a) == FLOOD and a,
                60,
                what=f"answers to all {FLOOD} triggers",
            )
        assert {p["status"] for p in got.values()} == {"Accepted"}
        sent = csms.wait_for(lambda: csms.actions(STATION_ID, message, mark), 10, what=f"a triggered {message}")
        assert 1 <= len(sent) < FLOOD // 2, f"{len(sent)} {message} for {FLOOD} triggers"
        assert rss.peak - baseline <= RSS_GROWTH_MB, f"RSS {baseline:.1f} MB → peak {rss.peak:.1f} MB"
        after = csms.mark()
        csms.send_raw(STATION_ID, json.dumps([2, "trigger-after", "TriggerMessage", {"requestedMessage": message}]))
        csms.wait_for(lambda: csms.actions(STATION_ID, message, after), 10, what=f"{message} after the flood")
        assert station.proc.poll() is None, station.log()
        print(
            f"TriggerMessage({message}) flood: {len(sent)} sent for {FLOOD}; RSS {baseline:.1f} MB "
            f"→ peak {rss.peak:.1f} MB"
        )

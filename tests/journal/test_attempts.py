"""The CONTRACT's `attempts`, as `appliance-journal` shows it, counts failed attempts: a CALLERROR and a send
left unanswered each count one, a message answered at the first try shows 0 (README, the journal CLI).

The delivery is the station's real one against the loopback CSMS, scripted like TC_E_51/TC_E_42 combined.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.journal.cli import main
from appliance.lab.csms import NO_ANSWER, CsmsCallError, LoopbackCsms
from tests.conformance.helpers import booted_station
from tests.conformance.test_e_offline_retries import RETRIES, Script, step5_sends
from tests.conformance.tx_helpers import wait_queue_empty


async def test_attempts_counts_failed_attempts(
    csms: LoopbackCsms, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with booted_station(csms, data_dir, variables=RETRIES) as station:
        frames = await step5_sends(csms, station, Script(CsmsCallError("InternalError"), NO_ANSWER, None), 3)
        csms.set_response("TransactionEvent", None)
        await wait_queue_empty(station)
        capsys.readouterr()
        assert main(["--db", str(data_dir), "events", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    retried = [e for e in events if e["messageId"] == frames[0].message_id]
    assert [(e["attempts"], e["outcome"]) for e in retried] == [(2, "delivered")]
    first_time = [e for e in events if e["messageId"] != frames[0].message_id]
    assert first_time and {(e["attempts"], e["outcome"]) for e in first_time} == {(0, "delivered")}

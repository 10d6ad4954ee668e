"""A station on the serial backend, in-process, wired to a device bench (ptys or socket:// loopbacks)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from appliance.config import parse
from appliance.lab.csms import LoopbackCsms
from appliance.lab.devsim.bench import Bench, Transport
from appliance.lab.process import config_text
from appliance.station import Station
from tests.conformance.helpers import STATION_ID, wait_all_connectors_reported
from tests.harness import running_station

#: Sampling fast enough to see every change; meters polled twice a second.
VARIABLES = {"SampledDataCtrlr.TxUpdatedInterval": 1, "AuthCtrlr.LocalPreAuthorize": False}


@contextlib.asynccontextmanager
async def bench_station(
    csms: LoopbackCsms,
    data_dir: Path,
    *,
    transport: Transport = "pty",
    variables: dict[str, Any] | None = None,
    serial: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Station, Bench]]:
    """A bench and a booted station using it ("Booted, Idle": every connector reported Available)."""
    with Bench(data_dir / "bench", transport=transport) as bench:
        text = bench.station_config(
            config_text(data_dir / "station", csms.url, variables={**VARIABLES, **(variables or {})}), **(serial or {})
        )
        mark = csms.mark()
        async with running_station(parse(text, source="test")) as station:
            await csms.trio.wait_action(STATION_ID, "BootNotification", 10, since=mark)
            await wait_all_connectors_reported(csms, since=mark)
            yield station, bench


def notify_events(csms: LoopbackCsms, since: int = 0) -> list[dict[str, Any]]:
    """Every eventData entry of the NotifyEvent requests after frame `since`."""
    return [d for p in csms.actions(STATION_ID, "NotifyEvent", since) for d in p["eventData"]]

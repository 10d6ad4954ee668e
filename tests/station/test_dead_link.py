"""A pulled cable (no FIN, no RST) is noticed within one ping interval plus the pong deadline, and the station
reconnects without a new BootNotification when the cable is back."""

from __future__ import annotations

from pathlib import Path

import trio

from appliance.config import parse
from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import config_text
from appliance.lab.proxy import ChaosProxy
from appliance.link.link import LinkState
from tests.harness import running_station


async def test_blackholed_link_noticed_within_ping_bound(csms: LoopbackCsms, data_dir: Path) -> None:
    interval, timeout = 1, 2
    with ChaosProxy("127.0.0.1", csms.port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/ocpp"
        config = parse(
            config_text(
                data_dir,
                url,
                variables={
                    "OCPPCommCtrlr.WebSocketPingInterval": interval,
                    "OCPPCommCtrlr.MessageTimeout[Default]": timeout,
                },
            ),
            source="test",
        )
        async with running_station(config) as station:
            await station.link.state.wait_until(lambda s: s is LinkState.ACCEPTED)
            await trio.sleep(0.5)
            proxy.blackhole()
            cut = trio.current_time()
            with trio.fail_after(10):
                await station.link.state.wait_until(lambda s: s is LinkState.OFFLINE)
            noticed = trio.current_time() - cut
            # One interval until the next ping, then min(interval, MessageTimeout) for its pong, plus slack.
            assert noticed <= interval + min(interval, timeout) + 0.5, f"noticed after {noticed:.2f} s"
            proxy.restore()
            with trio.fail_after(15):
                await station.link.state.wait_until(lambda s: s is LinkState.ACCEPTED)
            assert station.link.connections == 2
    assert len(csms.actions("CS001", "BootNotification")) == 1, "a reconnect is not a reboot"

"""Part 6 A security, HTTP Basic authentication (security profile 1): TC_A_01, the station's side of TC_A_02 and
TC_A_03 (both are CSMS cases in Part 6), and the BasicAuthPassword update of A01 (TC_A_09 / TC_A_10).

The loopback CSMS checks the Authorization header of every upgrade request against the password it holds for
the station id at the end of the URL and records the outcome (`auth_username`, `auth_ok`, `http_status`); the
password itself is never recorded.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import trio

from appliance.config import ConfigError, parse
from appliance.lab.csms import ConnectionRecord, LoopbackCsms
from appliance.lab.process import PASSWORD, config_text
from tests.conformance.helpers import (
    SLACK,
    STATION_ID,
    booted_station,
    get_item,
    get_variables,
    set_item,
    set_variables,
    wait_all_connectors_reported,
)
from tests.harness import make_config, running_station

#: identifierString characters (Part 2 primitive datatypes), which TC_A_01 allows in the password.
IDENTIFIER_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*-_=:+|@.")


def accepted_connections(csms: LoopbackCsms, station_id: str = STATION_ID) -> list[ConnectionRecord]:
    return [c for c in csms.connections_snapshot(station_id) if c.accepted]


async def test_TC_A_01_basic_auth_valid_credentials(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_A_01_CS (A00.FR.202-205): the upgrade request carries `Authorization: Basic base64(<id>:<password>)`.

    Tool validations of step 1: the CSMS decoded the header, its username equals the id at the end of the URL
    and the password is the configured one (auth_ok); ocpp2.0.1 was offered; the password is 16-40
    identifierString characters. Then Reusable State Booted (BootNotification Accepted, connectors reported).
    """
    assert 16 <= len(PASSWORD) <= 40 and set(PASSWORD) <= IDENTIFIER_CHARS
    async with booted_station(csms, data_dir):
        [connection] = csms.connections_snapshot(STATION_ID)
        assert connection.path == f"/ocpp/{STATION_ID}"
        assert connection.auth_username == STATION_ID
        assert connection.auth_ok is True
        assert connection.http_status == 101 and connection.accepted
        assert "ocpp2.0.1" in connection.offered_subprotocols


@pytest.mark.parametrize("password", ["x" * 15, "x" * 41], ids=["15-chars", "41-chars"])
def test_TC_A_01_factory_password_length_enforced(data_dir: Path, password: str) -> None:
    """TC_A_01_CS: "BasicAuthPassword must consist of minimum 16 and maximum 40 characters" — a factory password
    outside that range is a config error naming the key (CONTRACT: exit 2), so the station never sends one."""
    with pytest.raises(ConfigError) as error:
        parse(config_text(data_dir, "ws://127.0.0.1:9000/ocpp", password=password), source="test")
    assert "csms.basic_auth_password" in str(error.value)


async def test_TC_A_02_username_is_the_station_id(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_A_02 (a CSMS case: the CSMS must refuse a username that is not the ChargingStationId; A00.FR.204).

    The station's side: its username is always exactly its identity, also for an identity that has to be
    percent-encoded in the URL (`*` here): the CSMS, which compares the username with the unquoted last path
    segment, accepts it.
    """
    station_id = "CS*A02"
    csms.set_password(station_id, PASSWORD)
    async with running_station(make_config(data_dir, csms, station_id=station_id)):
        await csms.trio.wait_action(station_id, "BootNotification", 10)
        [connection] = csms.connections_snapshot(station_id)
        assert connection.path == f"/ocpp/{quote(station_id, safe='')}"
        assert connection.auth_username == station_id
        assert connection.auth_ok is True and connection.accepted


async def test_TC_A_03_wrong_password_refused_then_retried(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_A_03 (a CSMS case: the CSMS must refuse an invalid password with the upgrade; A00.FR.204).

    The station's side: with a password the CSMS does not accept it gets HTTP 401 and no session — it sends no
    OCPP frame, keeps running and retries with the reconnect back-off (WaitMinimum 1 s, then doubled); once the
    CSMS accepts that password the next attempt is upgraded and the station boots.
    """
    wrong = "not-the-csms-password"
    async with running_station(make_config(data_dir, csms, password=wrong)) as station:
        await csms.trio.wait_for(lambda: len(csms.connections_snapshot(STATION_ID)) >= 2, 10, what="2 attempts")
        refused = csms.connections_snapshot(STATION_ID)
        assert all(a.http_status == 401 and a.auth_ok is False and not a.accepted for a in refused), refused
        assert all(a.auth_username == STATION_ID for a in refused)
        assert csms.frames_snapshot(STATION_ID) == []
        assert not station.link.online

        csms.set_password(STATION_ID, wrong)  # the operator fixes the CSMS side
        await wait_all_connectors_reported(csms, timeout=15)
        attempts = csms.connections_snapshot(STATION_ID)
        assert [a.http_status for a in attempts] == [401, 401, 101], attempts
        first_gap = attempts[1].opened_monotonic - attempts[0].opened_monotonic
        second_gap = attempts[2].opened_monotonic - attempts[1].opened_monotonic
        assert first_gap >= 1 - SLACK, f"retried after {first_gap:.3f} s < RetryBackOffWaitMinimum"
        assert second_gap >= 2 * first_gap - SLACK, f"back-off not doubled: {first_gap:.3f} s, {second_gap:.3f} s"
        assert attempts[2].auth_ok is True


async def test_TC_A_09_password_update_reconnects_with_new_password(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_A_09_CS (A01.FR.01/11/12): SetVariables SecurityCtrlr.BasicAuthPassword → Accepted (or RebootRequired);
    the station drops the connection and comes back with the new password (step 3), which the CSMS — told the
    new password beforehand, as a real CSMS stores what it sets — accepts (step 4). No attempt uses the old one.

    Accepted (not RebootRequired) means no reboot: no new BootNotification (steps 5-8 only for RebootRequired).
    The password is WriteOnly: GetVariables answers Rejected without a value (TC_B_53's rule for reports).
    """
    new_password = "N3w-Password_0123456789"
    async with booted_station(csms, data_dir) as station:
        [old] = csms.connections_snapshot(STATION_ID)
        csms.set_password(STATION_ID, new_password)
        [result] = await set_variables(csms, set_item("SecurityCtrlr", "BasicAuthPassword", new_password))
        assert result["attributeStatus"] in ("Accepted", "RebootRequired"), result

        new = await csms.trio.wait_for(
            lambda: next((c for c in accepted_connections(csms) if c.connection_id > old.connection_id), None),
            10,
            what="the reconnection with the new password",
        )
        attempts = [c for c in csms.connections_snapshot(STATION_ID) if c.connection_id > old.connection_id]
        assert [(a.auth_ok, a.http_status) for a in attempts] == [(True, 101)], attempts
        assert new.auth_username == STATION_ID
        closed = next(c for c in csms.connections_snapshot(STATION_ID) if c.connection_id == old.connection_id)
        assert closed.closed_monotonic is not None and closed.close_initiator == "station"

        if result["attributeStatus"] == "Accepted":
            await trio.sleep(0.3)
            assert len(csms.actions(STATION_ID, "BootNotification")) == 1, "Accepted must not reboot"
        [get] = await get_variables(csms, get_item("SecurityCtrlr", "BasicAuthPassword"))
        assert get["attributeStatus"] == "Rejected" and "attributeValue" not in get, get
        assert station.link.online


async def test_TC_A_10_password_update_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_A_10_CS (A01.FR.11/12): a new BasicAuthPassword shorter than 16 characters → Rejected (step 2); the
    station keeps its connection (nothing changed), and when it next connects (step 3; here a reconnect asked of
    its link) it still authenticates with the old password, which the CSMS accepts (step 4; post-scenario
    validation: BasicAuthPassword is still the configured one)."""
    async with booted_station(csms, data_dir) as station:
        [result] = await set_variables(csms, set_item("SecurityCtrlr", "BasicAuthPassword", "short-15-chars!"))
        assert result["attributeStatus"] == "Rejected", result
        await trio.sleep(0.3)
        [old] = csms.connections_snapshot(STATION_ID)
        assert old.is_open, "a rejected password must not make the station reconnect"

        station.link.reconnect("test: next connection")
        new = await csms.trio.wait_for(
            lambda: next(
                (
                    c
                    for c in csms.connections_snapshot(STATION_ID)
                    if c.connection_id > old.connection_id and c.http_status is not None
                ),
                None,
            ),
            10,
            what="the next connection attempt",
        )
        assert (new.http_status, new.auth_ok) == (101, True), new

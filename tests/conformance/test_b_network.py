"""Part 6 B network connection profiles: SetNetworkProfile (TC_B_42 Accepted, TC_B_43 Rejected, TC_B_44 Failed)
and migrating to another profile (TC_B_45 success, TC_B_46 fall-back after NetworkProfileConnectionAttempts,
TC_B_50 a new CSMS behind a new root certificate over TLS), plus the NetworkConfigurationPriority checks and
malformed SetNetworkProfile requests.

Slot 1 is the factory profile from the config's `[csms]`; slots 2 and 3 can be set. A migration needs a reset:
those cases run the station as a process (a Reset re-executes it) against a second LoopbackCsms as the "new"
CSMS. TC_B_50's memory state "CertificateInstalled (new CSMS root)" is set up through the factory CA file
(`csms.ca_file` holding both roots) because this build has no InstallCertificate. Not in this batch: TC_B_47
and TC_B_49 (conditional, C-47/AS-2).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import PASSWORD, StationProcess
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import (
    assert_same_process_reconnected,
    assert_still_running,
    call,
    call_error,
    incarnation,
    incarnations,
    last_connection_id,
    station_proc,
    station_up,
    stop_proc,
    wait_all_reported,
    wait_boot,
    wait_reexec,
    write_config,
)
from tests.harness import make_config


def connection_data(url: str, security_profile: int = 1, **overrides: Any) -> dict[str, Any]:
    return {
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppCsmsUrl": url,
        "messageTimeout": 30,
        "securityProfile": security_profile,
        "ocppInterface": "Wired0",
        **overrides,
    }


async def set_profile(csms: LoopbackCsms, slot: int, data: dict[str, Any]) -> dict[str, Any]:
    return await call(csms, "SetNetworkProfile", {"configurationSlot": slot, "connectionData": data})


async def set_priority(csms: LoopbackCsms, value: str) -> str:
    answer = await call(
        csms,
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "NetworkConfigurationPriority"},
                    "attributeValue": value,
                }
            ]
        },
    )
    return str(answer["setVariableResult"][0]["attributeStatus"])


async def get_value(csms: LoopbackCsms, component: str, variable: str, station: str = STATION_ID) -> str | None:
    answer = await csms.trio.call(
        station,
        "GetVariables",
        {"getVariableData": [{"component": {"name": component}, "variable": {"name": variable}}]},
    )
    [result] = answer["getVariableResult"]
    assert result["attributeStatus"] == "Accepted", result
    return result.get("attributeValue")


@pytest.fixture
def new_csms() -> Iterator[LoopbackCsms]:
    """The CSMS a migration moves to: a second loopback CSMS that knows the station."""
    with LoopbackCsms(passwords={STATION_ID: PASSWORD}, heartbeat_interval=300) as server:
        yield server
        assert server.violations == [], f"OCPP violations seen by the new CSMS: {server.violations}"


# --- SetNetworkProfile ---------------------------------------------------------------------------------------


async def test_TC_B_42_set_network_profile_accepted(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_42 (B09.FR.01): SetNetworkProfile for slot 2 (and 3) with valid connection data (OCPP20, JSON, a ws://
    URL, securityProfile 1, Wired0) → Accepted; the stored slots can then be put in NetworkConfigurationPriority
    (which refuses an empty slot before); the profile survives a power cycle; the current connection is
    untouched (it is used only after a reset)."""
    config = make_config(data_dir, csms)
    async with incarnation(csms, config):
        assert await set_priority(csms, "1,2") == "Rejected"
        connection = last_connection_id(csms)
        for slot in (2, 3):
            answer = await set_profile(csms, slot, connection_data(f"ws://127.0.0.1:9/ocpp{slot}"))
            assert answer["status"] == "Accepted", answer
        assert await set_priority(csms, "1,2,3") == "Accepted"
        assert await get_value(csms, "OCPPCommCtrlr", "ActiveNetworkProfile") == "1"
        assert last_connection_id(csms) == connection and csms.is_connected(STATION_ID)
    mark = csms.mark()
    async with incarnation(csms, config, since=mark):
        assert await get_value(csms, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "1,2,3"
        assert await set_priority(csms, "3,1") == "Accepted"  # slot 3 still holds its profile


REJECTED: list[tuple[str, int, dict[str, Any]]] = [
    ("slot-999", 999, connection_data("ws://127.0.0.1:9/ocpp")),
    ("slot-0", 0, connection_data("ws://127.0.0.1:9/ocpp")),
    ("active-slot-1", 1, connection_data("ws://127.0.0.1:9/ocpp")),
    ("ocpp16", 2, connection_data("ws://127.0.0.1:9/ocpp", ocppVersion="OCPP16")),
    ("soap", 2, connection_data("ws://127.0.0.1:9/ocpp", ocppTransport="SOAP")),
    ("lower-security-profile", 2, connection_data("ws://127.0.0.1:9/ocpp", security_profile=0)),
    ("profile-3-with-ws", 2, connection_data("ws://127.0.0.1:9/ocpp", security_profile=3)),
    ("tls-profile-with-ws", 2, connection_data("ws://127.0.0.1:9/ocpp", security_profile=2)),
    ("not-a-websocket-url", 2, connection_data("http://127.0.0.1:9/ocpp")),
]


@pytest.mark.parametrize(("slot", "data"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
async def test_TC_B_43_set_network_profile_rejected(
    csms: LoopbackCsms, data_dir: Path, slot: int, data: dict[str, Any]
) -> None:
    """TC_B_43_CS (B09.FR.02): configurationSlot 999 — and other data the station cannot use (slot 0, the slot in
    use, another OCPP version or transport, a lower security profile, a URL scheme that does not
    fit the profile) → Rejected; nothing is stored (the slot cannot be put in NetworkConfigurationPriority);
    the station keeps running."""
    async with station_up(csms, data_dir):
        answer = await set_profile(csms, slot, data)
        assert answer["status"] == "Rejected", answer
        if slot in (2, 3):
            assert await set_priority(csms, f"1,{slot}") == "Rejected"
        await assert_still_running(csms)


async def test_TC_B_44_set_network_profile_failed(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_44 (B09.FR.03): a valid profile the station cannot store (its database made read-only for the
    moment: PRAGMA query_only) → SetNetworkProfileResponse Failed, and nothing is half-stored: once storage
    works again the slot is still empty."""
    async with station_up(csms, data_dir) as station:
        await station.storage.run(station.storage.writer.execute, "PRAGMA query_only = ON")
        try:
            answer = await set_profile(csms, 2, connection_data("ws://127.0.0.1:9/ocpp"))
        finally:
            await station.storage.run(station.storage.writer.execute, "PRAGMA query_only = OFF")
        assert answer["status"] == "Failed", answer
        assert await set_priority(csms, "1,2") == "Rejected"


async def test_network_configuration_priority_checks(csms: LoopbackCsms, data_dir: Path) -> None:
    """B10: NetworkConfigurationPriority only names slots that hold a profile: an empty slot, an unknown slot or
    a value that is not a list of slot numbers → Rejected (the value stays "1")."""
    async with station_up(csms, data_dir):
        for value in ("1,3", "4", "2", "one", "1;2", ""):
            assert await set_priority(csms, value) == "Rejected", value
        assert await get_value(csms, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "1"


MALFORMED: list[tuple[str, Any, set[str]]] = [
    ("missing-connection-data", {"configurationSlot": 2}, {"OccurrenceConstraintViolation"}),
    (
        "unknown-interface",
        {"configurationSlot": 2, "connectionData": connection_data("ws://h/o", ocppInterface="Eth9")},
        {"PropertyConstraintViolation"},
    ),
    (
        "url-too-long",
        {"configurationSlot": 2, "connectionData": connection_data("ws://h/" + "o" * 512)},
        {"PropertyConstraintViolation"},
    ),
    (
        "slot-as-string",
        {"configurationSlot": "2", "connectionData": connection_data("ws://h/o")},
        {"TypeConstraintViolation"},
    ),
    (
        "missing-security-profile",
        {
            "configurationSlot": 2,
            "connectionData": {k: v for k, v in connection_data("ws://h/o").items() if k != "securityProfile"},
        },
        {"OccurrenceConstraintViolation"},
    ),
]


@pytest.mark.parametrize(("payload", "codes"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_set_network_profile(csms: LoopbackCsms, data_dir: Path, payload: Any, codes: set[str]) -> None:
    """A SetNetworkProfile breaking its schema gets the CALLERROR of the broken rule, stores nothing, and the
    station keeps running."""
    async with station_up(csms, data_dir):
        assert await call_error(csms, "SetNetworkProfile", payload) in codes
        await assert_still_running(csms)
        assert await set_priority(csms, "1,2") == "Rejected"


# --- migration (a real process: the Reset re-executes it) -------------------------------------------------------


async def migrate(csms: LoopbackCsms, proc: StationProcess, url: str, security_profile: int = 1) -> None:
    """Steps 1-6 of TC_B_45/46/50: SetNetworkProfile slot 2 → Accepted; NetworkConfigurationPriority "2,1" →
    Accepted or RebootRequired; Reset OnIdle → Accepted; the process re-executes itself."""
    answer = await set_profile(csms, 2, connection_data(url, security_profile))
    assert answer["status"] == "Accepted", answer
    assert await set_priority(csms, "2,1") in ("Accepted", "RebootRequired")
    before = incarnations(proc)
    answer = await call(csms, "Reset", {"type": "OnIdle"})
    assert answer["status"] == "Accepted", answer
    await wait_reexec(proc, before)


async def test_TC_B_45_migrate_success(csms: LoopbackCsms, new_csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_45_CS (B09.FR.01, B10.FR.01/04/06): migrate to slot 2 pointing at another CSMS; after the reset the
    same process connects to the new CSMS (Reusable State Booted there: BootNotification RemoteReset, every
    connector reported) and reports ActiveNetworkProfile 2; the old CSMS is not contacted again."""
    config = write_config(data_dir, csms.url)
    with station_proc(config) as proc:
        await wait_boot(csms, 0)
        await wait_all_reported(csms, 0)
        old_connections = len(csms.connections_snapshot(STATION_ID))
        await migrate(csms, proc, new_csms.url)
        boot = await wait_boot(new_csms, 0)
        assert boot["reason"] == "RemoteReset", boot
        await wait_all_reported(new_csms, 0)
        assert_same_process_reconnected(new_csms, proc, 0)
        assert await get_value(new_csms, "OCPPCommCtrlr", "ActiveNetworkProfile") == "2"
        assert len(csms.connections_snapshot(STATION_ID)) == old_connections
        assert await stop_proc(proc) == 0


async def test_TC_B_46_migrate_fallback(csms: LoopbackCsms, new_csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_46_CS (B10.FR.03/04): NetworkProfileConnectionAttempts 2; migrate to slot 2 whose CSMS does not accept
    the connection (HTTP 503); after exactly two attempts there the station falls back to slot 1 and boots on
    the old CSMS again (BootNotification RemoteReset, same PID), ActiveNetworkProfile 1."""
    config = write_config(data_dir, csms.url, variables={"OCPPCommCtrlr.NetworkProfileConnectionAttempts": 2})
    new_csms.refuse_connections(True)
    with station_proc(config) as proc:
        await wait_boot(csms, 0)
        await wait_all_reported(csms, 0)
        mark, connection = csms.mark(), last_connection_id(csms)
        await migrate(csms, proc, new_csms.url)
        boot = await wait_boot(csms, mark)
        assert boot["reason"] == "RemoteReset", boot
        attempts = new_csms.connections_snapshot(STATION_ID)
        assert len(attempts) == 2 and all(a.http_status == 503 for a in attempts), attempts
        assert_same_process_reconnected(csms, proc, connection)
        await wait_all_reported(csms, mark)
        assert await get_value(csms, "OCPPCommCtrlr", "ActiveNetworkProfile") == "1"
        await trio.sleep(0.5)
        assert len(new_csms.connections_snapshot(STATION_ID)) == 2, "it went back to the failing slot"
        assert await stop_proc(proc) == 0


def tls_csms(ca: trustme.CA) -> LoopbackCsms:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return LoopbackCsms(passwords={STATION_ID: PASSWORD}, ssl_context=context, heartbeat_interval=300)


async def test_TC_B_50_migrate_new_csms_new_root(data_dir: Path) -> None:
    """TC_B_50_CS (M05.FR.13; security profile 2): the station runs over TLS to a CSMS whose certificate is signed
    by root 1; the new CSMS's certificate is signed by root 2, installed on the station (here: in the factory CA
    bundle). SetNetworkProfile slot 2 (wss://, securityProfile 2) → Accepted; priority "2,1"; Reset OnIdle →
    Accepted; the station validates the new CSMS's certificate with root 2, connects (same PID) and boots there
    (BootNotification RemoteReset, every connector reported), ActiveNetworkProfile 2."""
    old_root, new_root = trustme.CA(), trustme.CA()
    bundle = data_dir / "csms-roots.pem"
    bundle.write_bytes(old_root.cert_pem.bytes() + new_root.cert_pem.bytes())
    with tls_csms(old_root) as old, tls_csms(new_root) as new:
        assert old.url.startswith("wss://") and new.url.startswith("wss://")
        config = write_config(data_dir, old.url, profile=2)
        text = config.read_text().replace("security_profile = 2", f'security_profile = 2\nca_file = "{bundle}"')
        config.write_text(text)
        with station_proc(config) as proc:
            await wait_boot(old, 0)
            await wait_all_reported(old, 0)
            await migrate(old, proc, new.url, security_profile=2)
            boot = await wait_boot(new, 0)
            assert boot["reason"] == "RemoteReset", boot
            await wait_all_reported(new, 0)
            assert_same_process_reconnected(new, proc, 0)
            assert await get_value(new, "OCPPCommCtrlr", "ActiveNetworkProfile") == "2"
            assert await get_value(new, "SecurityCtrlr", "SecurityProfile") == "2"
            assert await stop_proc(proc) == 0
        assert old.violations == [] and new.violations == []

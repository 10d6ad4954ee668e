"""Part 6 A05 security profile changes: TC_A_19 (upgrade 1 → 2 and 2 → 3, Accepted), TC_A_20 (no CSMS root
certificate: the priority selecting the TLS slot is Rejected), TC_A_22 (a downgrade is Rejected), and the rule
behind them all: once a higher profile has been accepted the station never uses a lower one again — the lower
slots leave NetworkConfigurationPriority, a lower SetNetworkProfile is refused, and with the new CSMS down the
station keeps retrying it rather than falling back to the old plain-WebSocket one.

The upgrade needs a Reset, so TC_A_19 runs the station as a process (the Reset re-executes it). Memory state
"CertificateInstalled" is the factory `csms.ca_file`; for 2 → 3 "RenewChargingStationCertificate" is the
factory `[security]` client certificate, issued by a station CA the TLS CSMS requires.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trio
import trustme

from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import (
    station_proc,
    station_up,
    stop_proc,
    wait_all_reported,
    wait_boot,
    write_config,
)
from tests.conformance.test_b_network import connection_data, get_value, migrate, set_priority, set_profile
from tests.security.tls_lab import server_context, tls_csms

NO_FALLBACK_WAIT = 3.5  # with one attempt per slot, a fall-back would have happened within two back-offs


def root_file(data_dir: Path, ca: trustme.CA, name: str = "csms-root.pem") -> Path:
    path = data_dir / name
    ca.cert_pem.write_to_path(str(path))
    return path


async def test_TC_A_19_upgrade_profile_1_to_2(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_A_19_CS (A05.FR.04/05/06), configured profile 1: SetNetworkProfile (slot 2, wss://, profile 2) →
    Accepted; NetworkConfigurationPriority "2,1" → Accepted or RebootRequired; Reset OnIdle → Accepted; the
    station reconnects with profile 2 (TLS and basic auth) and boots; SecurityProfile is 2 and the priority no
    longer holds slot 1. Then: a profile-1 SetNetworkProfile is Rejected, and with the TLS CSMS gone the station
    retries it and never returns to the ws:// one, even with NetworkProfileConnectionAttempts 1."""
    ca = trustme.CA()
    new = tls_csms(server_context(ca.issue_cert("127.0.0.1")))
    with new:
        config = write_config(
            data_dir,
            csms.url,
            ca_file=root_file(data_dir, ca),
            variables={"OCPPCommCtrlr.NetworkProfileConnectionAttempts": 1},
        )
        with station_proc(config) as proc:
            await wait_boot(csms, 0)
            await wait_all_reported(csms, 0)
            await migrate(csms, proc, new.url, security_profile=2)  # steps 1-6
            boot = await wait_boot(new, 0)  # steps 7-9
            assert boot["reason"] == "RemoteReset", boot
            await wait_all_reported(new, 0)
            [connection] = new.connections_snapshot(STATION_ID)
            assert connection.auth_ok is True, connection
            assert await get_value(new, "SecurityCtrlr", "SecurityProfile") == "2"  # step 11
            assert await get_value(new, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "2"  # step 13

            answer = await set_profile(new, 3, connection_data(csms.url, security_profile=1))
            assert answer["status"] == "Rejected", answer
            old_attempts = len(csms.connections_snapshot(STATION_ID))
            new.stop()
            await trio.sleep(NO_FALLBACK_WAIT)
            assert len(csms.connections_snapshot(STATION_ID)) == old_attempts, "fell back to profile 1"
            assert proc.log().count("CSMS link down") >= 2, proc.log()[-3000:]
            assert await stop_proc(proc) == 0


async def test_TC_A_19_upgrade_profile_2_to_3(data_dir: Path) -> None:
    """TC_A_19_CS, configured profile 2: slot 2 with profile 3 on a CSMS that requires a client certificate from
    the station CA; after the Reset the station connects with its certificate and no basic auth (profile 3),
    boots, reports SecurityProfile 3, and the priority no longer holds slot 1."""
    csms_ca, station_ca = trustme.CA(), trustme.CA()
    leaf = station_ca.issue_cert(STATION_ID)
    cert, key = data_dir / "cs-cert.pem", data_dir / "cs-key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    key.chmod(0o600)
    mutual = server_context(csms_ca.issue_cert("127.0.0.1"))
    mutual.verify_mode = ssl.CERT_REQUIRED
    mutual.load_verify_locations(cadata=station_ca.cert_pem.bytes().decode())
    with (
        tls_csms(server_context(csms_ca.issue_cert("127.0.0.1"))) as old,
        LoopbackCsms(ssl_context=mutual, heartbeat_interval=300) as new,
    ):
        config = write_config(
            data_dir,
            old.url,
            profile=2,
            ca_file=root_file(data_dir, csms_ca),
            extra=f'[security]\nclient_cert_file = "{cert}"\nclient_key_file = "{key}"\n',
        )
        with station_proc(config) as proc:
            await wait_boot(old, 0)
            await wait_all_reported(old, 0)
            await migrate(old, proc, new.url, security_profile=3)
            boot = await wait_boot(new, 0)
            assert boot["reason"] == "RemoteReset", boot
            await wait_all_reported(new, 0)
            [connection] = new.connections_snapshot(STATION_ID)
            assert connection.auth_username is None, "profile 3 sends no basic auth"
            assert await get_value(new, "SecurityCtrlr", "SecurityProfile") == "3"
            assert await get_value(new, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "2"
            assert await stop_proc(proc) == 0


async def test_TC_A_20_no_csms_root_installed(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_A_20_CS (A05.FR.02): profile 1, no CSMS root certificate; SetNetworkProfile of a profile-2 slot is
    Accepted (step 2), but the NetworkConfigurationPriority that would select it is Rejected (step 4)."""
    async with station_up(csms, data_dir):
        answer = await set_profile(csms, 2, connection_data("wss://127.0.0.1:9/ocpp", security_profile=2))
        assert answer["status"] == "Accepted", answer
        assert await set_priority(csms, "2,1") == "Rejected"
        assert await get_value(csms, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "1"


async def test_TC_A_22_downgrade_rejected(data_dir: Path) -> None:
    """TC_A_22_CS (B09.FR.04): connected with security profile 2, a SetNetworkProfile with profile 1 (another
    CSMS URL) → Rejected; nothing is stored, so no priority can select it."""
    ca = trustme.CA()
    with tls_csms(server_context(ca.issue_cert("127.0.0.1"))) as csms:
        async with station_up(csms, data_dir, profile=2, ca_file=root_file(data_dir, ca)):
            answer = await set_profile(csms, 2, connection_data("ws://127.0.0.1:9/ocpp", security_profile=1))
            assert answer["status"] == "Rejected", answer
            assert await set_priority(csms, "2,1") == "Rejected"

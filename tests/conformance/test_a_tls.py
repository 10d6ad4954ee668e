"""Part 6 A security over TLS (Security Profile 2): TC_A_04 (valid server certificate, OCPP's versions and suites),
TC_A_05 (invalid certificate → refused, then InvalidCsmsCertificate once connected), TC_A_06 (TLS below 1.2 →
refused, then InvalidTLSVersion), and beyond Part 6: every bad server — other CA, expired, not yet valid, wrong
host, wildcard, self-signed, TLS 1.1 only, a non-OCPP suite only — refused with its named cause in the log and its
security event, raised once per outage however often the station retried, and no HTTP request (so no password)
ever sent to a server that failed.

The CSMS is the real loopback CSMS over real TLS (tests/security/tls_lab.py); its server context is made bad
first and good afterwards on the same port, as the OCTT does between steps 2 and 5.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from appliance.config import parse
from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import config_text
from appliance.security.tls import OCPP_TLS12_CIPHERS
from tests.conformance.helpers import STATION_ID, wait_all_connectors_reported
from tests.harness import in_thread, running_station, wait_until
from tests.security.tls_lab import (
    BAD,
    CSMS_NAME,
    Bad,
    LoopbackNames,
    ProbeServer,
    all_suites,
    make_good,
    server_context,
    tls_csms,
)


def write_root(data_dir: Path) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = data_dir / "csms-root.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def profile_2(data_dir: Path, url: str, ca_file: Path, **variables: Any) -> Any:
    return parse(config_text(data_dir, url, profile=2, ca_file=ca_file, variables=variables), source="test")


def security_types(csms: LoopbackCsms) -> list[str]:
    return [p["type"] for p in csms.actions(STATION_ID, "SecurityEventNotification")]


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("TLS connection to")]


class Scenario:
    """TC_A_05/06's shape: a bad CSMS first, then the configured one, on the same port."""

    def __init__(self, bad: Bad, data_dir: Path) -> None:
        self.bad = bad
        self.data_dir = data_dir
        self.ca, self.ca_file = write_root(data_dir)
        self.context = server_context(self.ca.issue_cert(bad.host))
        bad.apply(self.context, self.ca, data_dir)

    async def run(self, caplog: pytest.LogCaptureFixture, failures: int = 2, **variables: Any) -> list[str]:
        """Returns the security event types the CSMS received."""
        caplog.set_level(logging.INFO, logger="appliance")
        trio.socket.set_custom_hostname_resolver(LoopbackNames())
        probe = ProbeServer(self.context) if self.bad.plain_server else None
        with contextlib.ExitStack() as stack:
            csms: LoopbackCsms | None = None
            if probe is None:
                csms = stack.enter_context(tls_csms(self.context))
                port = csms.port
            else:
                port = probe.port
            url = f"wss://{self.bad.host}:{port}/ocpp"
            async with running_station(profile_2(self.data_dir, url, self.ca_file, **variables)) as station:
                await in_thread(wait_until, lambda: station.link.backoff.failures >= failures, 15)
                make_good(self.context, self.ca, self.bad.host)
                if probe is not None:
                    assert all(h.error for h in probe.hellos), probe.hellos
                    probe.close()
                    csms = stack.enter_context(tls_csms(self.context, port=port))
                assert csms is not None
                # Nothing reached HTTP: the upgrade request (and its Authorization header) was never sent.
                assert csms.connections_snapshot(STATION_ID) == []
                station.link.reconnect("test: the CSMS shows its configured certificate")
                await wait_all_connectors_reported(csms, timeout=15)
                await csms.trio.wait_for(lambda: self.bad.event in security_types(csms), 10, what=self.bad.event)
                await trio.sleep(0.2)  # a second notification would have arrived by now
                logged = await station.security.log.entries()
                assert [e.type for e in logged if e.type == self.bad.event] == [self.bad.event]
                types = security_types(csms)
        [connection] = csms.connections_snapshot(STATION_ID)
        assert connection.auth_ok is True
        lines = refusals(caplog)
        assert len(lines) >= failures, lines
        assert all(self.bad.cause in line for line in lines), lines
        return types


@pytest.mark.parametrize("suite", [*OCPP_TLS12_CIPHERS, "TLSv1.3"])
async def test_TC_A_04_valid_server_certificate(data_dir: Path, suite: str) -> None:
    """TC_A_04_CS (A00.FR.309/312/313/319/321): over TLS with the configured certificate the station connects,
    sends basic auth (profile 2), boots and reports its connectors. Run once per OCPP TLS 1.2 suite (the CSMS
    allowing only that one: ECDSA certificates for the ECDHE-ECDSA pair, RSA for the plain-RSA pair) and once
    over TLS 1.3, so each suite the tool may pick is proven to work."""
    ca, ca_file = write_root(data_dir)
    rsa = suite.startswith("AES")
    context = server_context(ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA if rsa else trustme.KeyType.ECDSA))
    if suite != "TLSv1.3":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(suite)
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    with tls_csms(context) as csms:
        async with running_station(profile_2(data_dir, csms.url, ca_file)):
            await wait_all_connectors_reported(csms, timeout=15)
            [connection] = csms.connections_snapshot(STATION_ID)
            assert connection.auth_ok is True and connection.accepted


async def test_TC_A_04_station_offers_tls_1_2_and_only_ocpp_suites(data_dir: Path) -> None:
    """TC_A_04 tool validation of step 2: "TLS version 1.2 or above" and OCPP's suites. A probe server that knows
    every suite records the station's offer: exactly OCPP's four TLS 1.2 suites (ECDHE-ECDSA-AES128/256-GCM and
    TLS_RSA_WITH_AES_128/256_GCM), and a TLS 1.2 server is answered with TLS 1.2."""
    ca, ca_file = write_root(data_dir)
    probe = ProbeServer(all_suites(ca.issue_cert("127.0.0.1"), ssl.TLSVersion.TLSv1_2))
    try:
        url = f"wss://127.0.0.1:{probe.port}/ocpp"
        async with running_station(profile_2(data_dir, url, ca_file)):
            await in_thread(wait_until, lambda: probe.hellos, 10)
    finally:
        probe.close()
    hello = probe.hellos[0]
    assert hello.error is None and hello.version == "TLSv1.2", hello
    tls12 = [name for name in hello.offered if not name.startswith("TLS_")]
    assert sorted(tls12) == sorted(OCPP_TLS12_CIPHERS), hello.offered
    assert hello.cipher in OCPP_TLS12_CIPHERS


async def test_TC_A_04_host_name_matches_exactly(data_dir: Path) -> None:
    """A00.FR.313: a DNS name in the certificate equal to the CSMS host (not only an IP address) is accepted."""
    trio.socket.set_custom_hostname_resolver(LoopbackNames())
    ca, ca_file = write_root(data_dir)
    with tls_csms(server_context(ca.issue_cert(CSMS_NAME))) as csms:
        async with running_station(profile_2(data_dir, csms.url.replace("127.0.0.1", CSMS_NAME), ca_file)):
            await wait_all_connectors_reported(csms, timeout=15)


@pytest.mark.parametrize(
    "bad", [b for b in BAD if b.name in ("other-ca", "expired", "wrong-host")], ids=lambda b: b.name
)
async def test_TC_A_05_invalid_server_certificate(data_dir: Path, caplog: pytest.LogCaptureFixture, bad: Bad) -> None:
    """TC_A_05_CS (A00.FR.309/310/311/412-414), for each kind Part 6 names — an unknown certificate, an expired
    one, one for another name — with NetworkProfileConnectionAttempts 2: the station terminates the handshake
    (step 3), connects when the configured certificate is shown (steps 4-13) and then sends one
    SecurityEventNotification InvalidCsmsCertificate (step 14)."""
    types = await Scenario(bad, data_dir).run(caplog, **{"OCPPCommCtrlr.NetworkProfileConnectionAttempts": 2})
    assert types.count("InvalidCsmsCertificate") == 1, types


async def test_TC_A_06_tls_version_too_low(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """TC_A_06_CS (A00.FR.314/316/416/417/419), NetworkProfileConnectionAttempts 1: a CSMS speaking TLS 1.1 only
    is refused (step 3); with TLS 1.2 the station connects and boots (steps 4-13) and sends StartupOfTheDevice
    (step 14) and InvalidTLSVersion (step 16, which this station detects)."""
    [bad] = [b for b in BAD if b.name == "tls-1.1"]
    types = await Scenario(bad, data_dir).run(caplog, **{"OCPPCommCtrlr.NetworkProfileConnectionAttempts": 1})
    assert "StartupOfTheDevice" in types and types.count("InvalidTLSVersion") == 1, types


#: The bad servers TC_A_05/06 above do not already run (they check the same: cause, one event, security log).
BEYOND = [b for b in BAD if b.name not in ("other-ca", "expired", "wrong-host", "tls-1.1")]


@pytest.mark.parametrize("bad", BEYOND, ids=lambda b: b.name)
async def test_bad_server_refused_with_named_cause_and_event(
    data_dir: Path, caplog: pytest.LogCaptureFixture, bad: Bad
) -> None:
    """Beyond Part 6: each bad server is refused with its cause in the log ("certificate not yet valid",
    "wildcard certificate (*.test) refused", "self-signed certificate", "no common cipher suite") on every
    attempt, and its critical security event is raised once for the outage — two refused attempts, one event —
    delivered once the boot is accepted and kept in the security log."""
    types = await Scenario(bad, data_dir).run(caplog)
    assert types.count(bad.event) == 1, types

"""Security Profile 3 over real TLS with client certificates (Advanced Security): TC_A_07, TC_A_11 with the
reconnect on the new certificate, TC_A_21, and the certificate store feeding the TLS trust (TC_M_01's "new
root" used at the next connection).

The CSMS is the loopback CSMS behind a TLS server context from the test CA (`appliance.lab.csms.pki`) that
requires a client certificate chained to that CA; it records the certificate each connection presented.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from appliance.config import Config, parse
from appliance.lab.csms import ConnectionRecord, LoopbackCsms
from appliance.lab.csms.pki import Authority
from appliance.lab.process import PASSWORD, config_text
from appliance.station import Station
from tests.conformance.helpers import STATION_ID, set_item, set_variables, wait_all_connectors_reported
from tests.conformance.test_a_certificates import VARIABLES, check_csr, signed, trigger_sign, trust
from tests.conformance.test_m_certificates import delete, expected_hash
from tests.harness import running_station


@contextlib.contextmanager
def tls_csms(
    authority: Authority, *, client_certificates: bool = True, port: int = 0, passwords: dict[str, str] | None = None
) -> Iterator[LoopbackCsms]:
    context = authority.server_context(client_roots=[authority.root] if client_certificates else None)
    with LoopbackCsms(ssl_context=context, port=port, passwords=passwords) as csms:
        yield csms
        assert csms.violations == []


def station_config(
    data_dir: Path,
    csms: LoopbackCsms,
    authority: Authority,
    *,
    profile: int = 3,
    cert_days: float = 365,
    variables: dict[str, Any] | None = None,
) -> Config:
    """A profile-2/3 station: ca_file = the test CA's root, and (profile 3, or `cert_days` given) a factory
    station certificate from the same CA with CN = the serial number."""
    root_file = data_dir / "csms-root.pem"
    root_file.write_text(authority.root_pem)
    chain, key = authority.issue("CN=SN-1,O=Lab", days=cert_days)
    (data_dir / "cs-cert.pem").write_text(chain)
    (data_dir / "cs-key.pem").write_bytes(key)
    (data_dir / "cs-key.pem").chmod(0o600)
    extra = f'[security]\nclient_cert_file = "{data_dir}/cs-cert.pem"\nclient_key_file = "{data_dir}/cs-key.pem"\n'
    text = config_text(
        data_dir,
        csms.url,
        profile=profile,
        password=None if profile == 3 else PASSWORD,
        variables={**VARIABLES, **(variables or {})},
        extra=extra,
        ca_file=root_file,
    )
    return parse(text, source="test")


@contextlib.asynccontextmanager
async def booted(csms: LoopbackCsms, config: Config) -> AsyncIterator[Station]:
    async with running_station(config) as station:
        await csms.trio.wait_action(STATION_ID, "BootNotification", 15)
        await wait_all_connectors_reported(csms)
        yield station


def presented(connection: ConnectionRecord) -> x509.Certificate:
    assert connection.client_certificate is not None, connection
    return x509.load_der_x509_certificate(connection.client_certificate)


async def test_TC_A_07_client_certificate_valid(data_dir: Path) -> None:
    """TC_A_07_CS (A00.FR.401/402/415/416/422/502/503): at profile 3 the station presents its certificate in
    the TLS handshake (the CSMS requires one chained to its CA) and boots. Tool validations: an X.509 certificate
    with a serial number, subject CN = the station's serial number, an EC key ≥ 224 bits; no basic auth."""
    authority = Authority("A07 Root")
    with tls_csms(authority) as csms:
        config = station_config(data_dir, csms, authority)
        async with booted(csms, config):
            [connection] = csms.connections_snapshot(STATION_ID)
            cert = presented(connection)
            assert cert.serial_number > 0
            assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SN-1"
            assert cert.public_key().key_size >= 224  # type: ignore[union-attr]
            assert cert == x509.load_pem_x509_certificate((data_dir / "cs-cert.pem").read_bytes())
            assert connection.auth_username is None  # profile 3 authenticates by its certificate only


async def test_TC_A_11_renewal_reconnects_with_new_certificate(data_dir: Path) -> None:
    """TC_A_11_CS over TLS (A02.FR.08/09): after CertificateSigned Accepted the station drops the connection and
    connects again presenting the new certificate, which the CSMS accepts; the old one is not used again."""
    authority = Authority("A11 Root", sub_ca=True)
    with tls_csms(authority) as csms:
        csms.set_response("SignCertificate", {"status": "Accepted"})
        async with booted(csms, station_config(data_dir, csms, authority)) as station:
            await trust(csms, authority)
            old = presented(csms.connections_snapshot(STATION_ID)[0])
            csr = check_csr(await trigger_sign(csms))
            chain = authority.sign_csr(csr.public_bytes(serialization.Encoding.PEM).decode())
            assert await signed(csms, chain) == {"status": "Accepted"}
            new = x509.load_pem_x509_certificate(chain.encode())
            await csms.trio.wait_for(
                lambda: (
                    len([c for c in csms.connections_snapshot(STATION_ID) if c.is_open]) == 1
                    and len(csms.connections_snapshot(STATION_ID)) == 2
                ),
                15,
                what="the reconnect",
            )
            first, second = csms.connections_snapshot(STATION_ID)
            assert presented(first) == old and presented(second) == new and second.accepted
            await csms.trio.wait_for(lambda: station.link.online, 10, what="the station online again")


async def test_TC_A_21_no_valid_station_certificate(data_dir: Path) -> None:
    """TC_A_21_CS (A05.FR.03): at profile 2 with a station certificate that has expired, SetNetworkProfile of a
    profile-3 slot is Accepted but the NetworkConfigurationPriority that would use it is Rejected."""
    authority = Authority("A21 Root")
    with tls_csms(authority, client_certificates=False, passwords={STATION_ID: PASSWORD}) as csms:
        config = station_config(data_dir, csms, authority, profile=2, cert_days=-1)
        async with booted(csms, config) as station:
            assert station.identity.current is not None  # present, but expired
            answer = await csms.trio.call(
                STATION_ID,
                "SetNetworkProfile",
                {
                    "configurationSlot": 2,
                    "connectionData": {
                        "ocppVersion": "OCPP20",
                        "ocppTransport": "JSON",
                        "ocppCsmsUrl": csms.url.replace("127.0.0.1", "localhost"),
                        "messageTimeout": 30,
                        "securityProfile": 3,
                        "ocppInterface": "Wired0",
                    },
                },
            )
            assert answer["status"] == "Accepted", answer
            [result] = await set_variables(csms, set_item("OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1"))
            assert result["attributeStatus"] == "Rejected", result


async def test_installed_root_is_trusted_at_the_next_connection(data_dir: Path) -> None:
    """TC_M_01's new root in use: a station whose ca_file holds root A installs root B and deletes A over OCPP;
    when the CSMS comes back with a certificate from B, the next connection verifies it against B."""
    old_authority, new_authority = Authority("Old CSMS Root"), Authority("New CSMS Root")
    with tls_csms(old_authority, client_certificates=False, passwords={STATION_ID: PASSWORD}) as first:
        port = first.port
        config = station_config(data_dir, first, old_authority, profile=2)
        async with running_station(config) as station:
            await first.trio.wait_action(STATION_ID, "BootNotification", 15)
            await trust(first, new_authority)
            assert await delete(first, expected_hash(old_authority.root)) == {"status": "Accepted"}
            first.stop()
            with tls_csms(
                new_authority, client_certificates=False, port=port, passwords={STATION_ID: PASSWORD}
            ) as second:
                connection = await second.trio.wait_connected(STATION_ID, 20)  # no new boot: a reconnect
                assert connection.accepted
                assert [c.subject for c in station.certificate_store.trusted("CSMSRootCertificate")] == [
                    new_authority.root.subject
                ]

"""Part 6 A, the station's own certificate (A02/A03, Advanced Security): TC_A_11, A_14, A_15, A_23 and TC_M_23,
and the renewal before expiry (A03).

The CSMS side signs the station's CSR with a test certificate authority (`appliance.lab.csms.pki`) whose root
the CSMS installed first (CertificateInstalled CSMSRootCertificate), as Part 6's "signed by the provided CSMS
Root certificate". These run over ws:// (security profile 1): the messages are the same as under profile 3; the
reconnect with the new certificate over TLS is in tests/conformance/test_a_profile3.py.
"""

from __future__ import annotations

import itertools
import logging
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from appliance.certs.store import CSMS_ROOT
from appliance.lab.csms import LoopbackCsms
from appliance.lab.csms.pki import Authority
from appliance.station import Station
from tests.conformance.helpers import SLACK, STATION_ID, booted_station, get_value

ORGANIZATION = "Lab Charging Services"
VARIABLES = {
    "SecurityCtrlr.OrganizationName": ORGANIZATION,
    "SecurityCtrlr.CertSigningWaitMinimum": 1,
    "SecurityCtrlr.CertSigningRepeatTimes": 2,
}


async def trust(csms: LoopbackCsms, authority: Authority) -> None:
    answer = await csms.trio.call(
        STATION_ID, "InstallCertificate", {"certificateType": CSMS_ROOT, "certificate": authority.root_pem}
    )
    assert answer["status"] == "Accepted"


async def trigger_sign(csms: LoopbackCsms, *, count: int = 1, since: int = 0, timeout: float = 10) -> str:
    """TriggerMessage SignChargingStationCertificate → Accepted, then the CSR of the SignCertificateRequest."""
    answer = await csms.trio.call(STATION_ID, "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    assert answer == {"status": "Accepted"}
    [request, *_] = await csms.trio.wait_action(STATION_ID, "SignCertificate", timeout, count=count, since=since)
    assert request["certificateType"] == "ChargingStationCertificate"
    return str(request["csr"])


def check_csr(text: str) -> x509.CertificateSigningRequest:
    """Tool validations of step 3: RFC 2986 PEM; EC key ≥ 224 bits (or RSA ≥ 2048); CN = the serial number
    (A00.FR.405), O = SecurityCtrlr.OrganizationName; the CSR's own signature right."""
    assert text.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    csr = x509.load_pem_x509_csr(text.encode())
    assert csr.is_signature_valid
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size >= 224
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SN-1"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == ORGANIZATION
    return csr


async def signed(csms: LoopbackCsms, chain: str) -> dict[str, Any]:
    return await csms.trio.call(
        STATION_ID, "CertificateSigned", {"certificateChain": chain, "certificateType": "ChargingStationCertificate"}
    )


@pytest.fixture
def signing_csms(csms: LoopbackCsms) -> LoopbackCsms:
    csms.set_response("SignCertificate", {"status": "Accepted"})
    return csms


async def renew(csms: LoopbackCsms, station: Station, authority: Authority) -> x509.Certificate:
    """Reusable state RenewChargingStationCertificate; returns the new leaf."""
    mark = csms.mark()
    csr = check_csr(await trigger_sign(csms, since=mark))
    chain = authority.sign_csr(csr.public_bytes(serialization.Encoding.PEM).decode())
    assert await signed(csms, chain) == {"status": "Accepted"}
    leaf = x509.load_pem_x509_certificate(chain.encode())
    assert station.identity.current is not None and station.identity.current.leaf == leaf
    return leaf


async def test_TC_A_11_renew_station_certificate(
    signing_csms: LoopbackCsms, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TC_A_11_CS (A02.FR.02/03/06/08/09, F06.FR.04/05/10): TriggerMessage SignChargingStationCertificate →
    Accepted; SignCertificate with a proper CSR; CertificateSigned of a certificate from that CSR, signed by
    the installed CSMS root (here via a sub-CA, sent along in the chain) → Accepted.

    Beyond the tool's checks: the new certificate and its key are the station's identity (files 0600 in 0700
    directories), survive a restart, CertificateEntries counts it, and the private key never reaches a log."""
    csms = signing_csms
    authority = Authority("Renewal Root", sub_ca=True)
    caplog.set_level(logging.DEBUG)
    async with booted_station(csms, data_dir, variables=VARIABLES) as station:
        await trust(csms, authority)
        leaf = await renew(csms, station, authority)
        identity = station.identity.client_identity()
        assert identity is not None
        chain_file, key_file = identity
        for path in (chain_file, key_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for directory in (key_file.parent, data_dir / "certs"):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        assert key.public_key().public_numbers() == leaf.public_key().public_numbers()  # type: ignore[union-attr]
        assert len(x509.load_pem_x509_certificates(chain_file.read_bytes())) == 2  # leaf + sub-CA as sent
        assert await get_value(csms, "SecurityCtrlr", "CertificateEntries") == "2"
        assert not (data_dir / "certs" / "pending-key.pem").exists()
    key_body = key_file.read_text().splitlines()[1]
    assert all(key_body not in record.getMessage() for record in caplog.records)
    async with booted_station(csms, data_dir, variables=VARIABLES) as station:
        assert station.identity.current is not None and station.identity.current.leaf == leaf
        assert station.identity.client_identity() == identity


def _invalid_chains(authority: Authority, csr_pem: str) -> dict[str, str]:
    stranger = Authority("Unknown CA")
    other_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SN-1")]))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    return {
        "unknown-ca": stranger.sign_csr(csr_pem),
        "other-key": authority.sign_csr(other_csr.public_bytes(serialization.Encoding.PEM).decode()),
        "expired": authority.sign_csr(csr_pem, not_before=datetime.now(UTC) - timedelta(days=10), days=5),
        "not-pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    }


@pytest.mark.parametrize("kind", ["unknown-ca", "other-key", "expired", "not-pem"])
async def test_TC_A_14_invalid_certificate(signing_csms: LoopbackCsms, data_dir: Path, kind: str) -> None:
    """TC_A_14_CS (A02.FR.07, A03.FR.07): CertificateSigned with an invalid certificate → Rejected, then
    SecurityEventNotification InvalidChargingStationCertificate. Invalid as: signed by a CA the station does not
    trust, for another key than the CSR's, expired, not PEM. The station keeps no new identity and asks no more
    (the round is over)."""
    csms = signing_csms
    authority = Authority("A14 Root")
    async with booted_station(csms, data_dir, variables=VARIABLES) as station:
        await trust(csms, authority)
        mark = csms.mark()
        csr = await trigger_sign(csms, since=mark)
        answer = await signed(csms, _invalid_chains(authority, csr)[kind])
        assert answer["status"] == "Rejected", answer
        [event] = await csms.trio.wait_action(
            STATION_ID,
            "SecurityEventNotification",
            5,
            since=mark,
            predicate=lambda p: p["type"] == "InvalidChargingStationCertificate",
        )
        assert event["techInfo"]
        assert station.identity.current is None
        await trio.sleep(1 + SLACK)  # no further SignCertificate: the first retry would have come after 1 s
        assert len(csms.actions(STATION_ID, "SignCertificate", mark)) == 1


async def test_TC_A_15_sign_certificate_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_A_15_CS: SignCertificateResponse Rejected (the loopback CSMS's default) → the TriggerMessage was
    Accepted, and the station does not send the CSR again."""
    async with booted_station(csms, data_dir, variables=VARIABLES):
        mark = csms.mark()
        await trigger_sign(csms, since=mark)
        await trio.sleep(1 + 2 + SLACK)  # past both retry times of an Accepted round
        assert len(csms.actions(STATION_ID, "SignCertificate", mark)) == 1


async def test_TC_A_23_certificate_signed_timeout(signing_csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_A_23_CS (A02.FR.17/18): no CertificateSigned after SignCertificate Accepted → the same CSR is sent
    again after CertSigningWaitMinimum (1 s), then after twice that; CertificateSigned for the CSR of step 3
    is then Accepted.

    Part 6 sets CertSigningRepeatTimes to 1 yet expects two resends; this station counts resends as the
    variable's description says ("Number of times to resend"), so the test sets 2."""
    csms = signing_csms
    authority = Authority("A23 Root")
    async with booted_station(csms, data_dir, variables=VARIABLES) as station:
        await trust(csms, authority)
        mark = csms.mark()
        first = await trigger_sign(csms, since=mark)
        await csms.trio.wait_action(STATION_ID, "SignCertificate", 10, count=3, since=mark)
        requests = [
            f
            for f in csms.frames_snapshot(STATION_ID, mark)
            if f.direction == "in" and f.is_call and f.action == "SignCertificate"
        ]
        assert [r.payload["csr"] for r in requests] == [first] * 3
        gaps = [b.monotonic - a.monotonic for a, b in itertools.pairwise(requests)]
        assert gaps[0] >= 1 - SLACK and gaps[1] >= 2 - SLACK, gaps
        chain = authority.sign_csr(first)
        assert await signed(csms, chain) == {"status": "Accepted"}
        assert station.identity.current is not None


async def test_TC_M_23_station_certificate_cannot_be_deleted(signing_csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_M_23_CS (M04.FR.06): after RenewChargingStationCertificate, DeleteCertificate with the hash data of
    that ChargingStationCertificate → Failed (Part 6 allows NotFound or Failed; Failed tells why), and the
    station keeps using it."""
    csms = signing_csms
    authority = Authority("M23 Root")
    async with booted_station(csms, data_dir, variables=VARIABLES) as station:
        await trust(csms, authority)
        leaf = await renew(csms, station, authority)
        await csms.trio.call(STATION_ID, "GetInstalledCertificateIds", {})
        request = ocsp.OCSPRequestBuilder().add_certificate(leaf, authority.root, hashes.SHA256()).build()
        hash_data = {
            "hashAlgorithm": "SHA256",
            "issuerNameHash": request.issuer_name_hash.hex(),
            "issuerKeyHash": request.issuer_key_hash.hex(),
            "serialNumber": format(leaf.serial_number, "x"),
        }
        answer = await csms.trio.call(STATION_ID, "DeleteCertificate", {"certificateHashData": hash_data})
        assert answer["status"] == "Failed", answer
        assert station.identity.current is not None and station.identity.current.leaf == leaf


async def test_renewal_before_expiry(signing_csms: LoopbackCsms, data_dir: Path) -> None:
    """A03.FR.01: a factory station certificate with less than 30 days left is renewed without being asked:
    SignCertificate follows the accepted boot; after CertificateSigned the new certificate (a year) is used."""
    csms = signing_csms
    authority = Authority("Expiry Root")
    chain, key = authority.issue("CN=SN-1", days=10)
    (data_dir / "cs-cert.pem").write_text(chain)
    (data_dir / "cs-key.pem").write_bytes(key)
    extra = f'[security]\nclient_cert_file = "{data_dir}/cs-cert.pem"\nclient_key_file = "{data_dir}/cs-key.pem"\n'
    async with booted_station(csms, data_dir, variables=VARIABLES, extra=extra) as station:
        assert station.identity.current is not None and station.identity.current.origin == "factory"
        await trust(csms, authority)
        [request] = await csms.trio.wait_action(STATION_ID, "SignCertificate", 10)
        new_chain = authority.sign_csr(check_csr(request["csr"]).public_bytes(serialization.Encoding.PEM).decode())
        assert await signed(csms, new_chain) == {"status": "Accepted"}
        current = station.identity.current
        assert current is not None and current.origin == "renewed"
        assert current.leaf.not_valid_after_utc > datetime.now(UTC) + timedelta(days=300)


async def test_certificate_signed_after_restart_uses_the_pending_key(
    signing_csms: LoopbackCsms, data_dir: Path
) -> None:
    """The CSR's key is on disk (0600) before the CSR goes out: a CertificateSigned that arrives after the
    station restarted still fits it and is Accepted."""
    csms = signing_csms
    authority = Authority("Restart Root")
    async with booted_station(csms, data_dir, variables=VARIABLES):
        await trust(csms, authority)
        csr = await trigger_sign(csms)
        pending = data_dir / "certs" / "pending-key.pem"
        assert stat.S_IMODE(pending.stat().st_mode) == 0o600
    async with booted_station(csms, data_dir, variables=VARIABLES) as station:
        assert await signed(csms, authority.sign_csr(csr)) == {"status": "Accepted"}
        assert station.identity.current is not None and station.identity.current.origin == "renewed"


async def test_certificate_signed_without_a_csr_or_too_large(signing_csms: LoopbackCsms, data_dir: Path) -> None:
    """A CertificateSigned the station never asked for is Rejected with InvalidChargingStationCertificate; one
    over SecurityCtrlr.MaxCertificateChainSize (narrowed to 1,500 characters here) is Rejected with
    TooLargeElement before anything else is looked at."""
    csms = signing_csms
    authority = Authority("Unasked Root")
    leaf_chain, _ = authority.issue("CN=SN-1")
    variables = {**VARIABLES, "SecurityCtrlr.MaxCertificateChainSize": 1500}
    async with booted_station(csms, data_dir, variables=variables) as station:
        await trust(csms, authority)
        mark = csms.mark()
        big = await signed(csms, leaf_chain + " " * 1500)
        assert big["status"] == "Rejected" and big["statusInfo"]["reasonCode"] == "TooLargeElement", big
        answer = await signed(csms, leaf_chain)
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "InvalidCertificate"
        [event] = await csms.trio.wait_action(
            STATION_ID,
            "SecurityEventNotification",
            5,
            since=mark,
            predicate=lambda p: p["type"] == "InvalidChargingStationCertificate",
        )
        assert "no certificate signing request is pending" in event["techInfo"]
        assert station.identity.current is None


async def test_no_renewal_with_more_than_30_days_left(signing_csms: LoopbackCsms, data_dir: Path) -> None:
    """The negative control of A03.FR.01: a factory certificate with 31 days left is not renewed at boot."""
    csms = signing_csms
    authority = Authority("Fresh Root")
    chain, key = authority.issue("CN=SN-1", days=31)
    (data_dir / "cs-cert.pem").write_text(chain)
    (data_dir / "cs-key.pem").write_bytes(key)
    extra = f'[security]\nclient_cert_file = "{data_dir}/cs-cert.pem"\nclient_key_file = "{data_dir}/cs-key.pem"\n'
    async with booted_station(csms, data_dir, variables=VARIABLES, extra=extra) as station:
        assert station.identity.current is not None
        await trio.sleep(1)
        assert csms.actions(STATION_ID, "SignCertificate") == []

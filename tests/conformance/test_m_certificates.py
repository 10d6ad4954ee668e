"""Part 6 M (certificate management, M03/M04/M05): TC_M_01, M_02, M_07, M_12, M_13, M_17, M_18, M_19, M_20,
M_22, plus what Part 6 leaves to the station (AQ-1: the last CSMS root stays; the store's limit; durability;
factory roots; file modes).

The CSMS side is the loopback CSMS over a real WebSocket; the certificates are made with `cryptography`
(`appliance.lab.csms.pki`). The hash data the station reports is checked against values computed
independently, as the OCTT does: `cryptography`'s OCSP CertID of each certificate (RFC 6960), which is what
OCPP's CertificateHashDataType is.
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp

from appliance.certs.store import CSMS_ROOT, MANUFACTURER_ROOT
from appliance.lab.csms import LoopbackCsms
from appliance.lab.csms.pki import certificate, new_key, pem
from appliance.station import Station
from tests.conformance.helpers import STATION_ID, booted_station, get_value

OCSP_HASHES = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}


def root(name: str, **kw: Any) -> x509.Certificate:
    return certificate(name, new_key("ec"), **kw)


def expected_hash(cert: x509.Certificate, algorithm: str = "SHA256") -> dict[str, str]:
    """<HashData from the configured certificate>: the OCSP CertID of a self-signed root."""
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, cert, OCSP_HASHES[algorithm]).build()
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": format(request.serial_number, "x"),
    }


async def install(csms: LoopbackCsms, use: str, cert: x509.Certificate | str) -> dict[str, Any]:
    text = cert if isinstance(cert, str) else pem(cert)
    return await csms.trio.call(STATION_ID, "InstallCertificate", {"certificateType": use, "certificate": text})


async def installed(csms: LoopbackCsms, *uses: str) -> dict[str, Any]:
    payload = {"certificateType": list(uses)} if uses else {}
    return await csms.trio.call(STATION_ID, "GetInstalledCertificateIds", payload)


def entries(answer: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    return [(e["certificateType"], e["certificateHashData"]) for e in answer.get("certificateHashDataChain", [])]


async def delete(csms: LoopbackCsms, hash_data: dict[str, str]) -> dict[str, Any]:
    return await csms.trio.call(STATION_ID, "DeleteCertificate", {"certificateHashData": hash_data})


async def reconfigurations(station: Station) -> list[str | None]:
    """techInfo of the ReconfigurationOfSecurityParameters events in the security log."""
    return [
        e.tech_info for e in await station.security.log.entries() if e.type == "ReconfigurationOfSecurityParameters"
    ]


# --- M05 install -----------------------------------------------------------------------------------------


async def test_TC_M_01_install_csms_root(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_M_01_CS (M05.FR.01/02): CertificateInstalled(CSMSRootCertificate, Root 2) → Accepted; then
    GetInstalledCertificates(CSMSRootCertificate) → Accepted with its hash data. The new root is what the
    station trusts for TLS from the next connection, and CertificateEntries counts it."""
    root2 = root("Lab CSMS Root 2")
    async with booted_station(csms, data_dir) as station:
        assert await install(csms, CSMS_ROOT, root2) == {"status": "Accepted"}
        answer = await installed(csms, CSMS_ROOT)
        assert answer["status"] == "Accepted"
        assert (CSMS_ROOT, expected_hash(root2)) in entries(answer)
        assert station.certificate_store.trusted(CSMS_ROOT) == [root2]
        assert await get_value(csms, "SecurityCtrlr", "CertificateEntries") == "1"
        # installing a certificate is a change of security parameters (A04; non-critical: the security log)
        assert "CSMSRootCertificate installed" in await reconfigurations(station)


async def test_TC_M_02_install_manufacturer_root(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_M_02_CS (M05.FR.01/02): ManufacturerRootCertificate installed and listed; the firmware check's
    `trusted` sees it."""
    mf = root("O=Maker,CN=Maker Firmware Root")
    async with booted_station(csms, data_dir) as station:
        assert (await install(csms, MANUFACTURER_ROOT, mf))["status"] == "Accepted"
        answer = await installed(csms, MANUFACTURER_ROOT)
        assert entries(answer) == [(MANUFACTURER_ROOT, expected_hash(mf))]
        assert station.certificate_store.trusted(MANUFACTURER_ROOT) == [mf]
        assert station.certificate_store.trusted(CSMS_ROOT) == []


def _bad_roots() -> dict[str, str]:
    now = datetime.now(UTC)
    issuer_key = new_key("ec")
    issuer = certificate("Some CA", issuer_key)
    return {
        "expired": pem(root("Expired Root", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))),
        "not-yet-valid": pem(root("Future Root", not_before=now + timedelta(days=1))),
        "not-a-ca": pem(root("Leaf Not CA", ca=False)),
        "not-self-signed": pem(certificate("Sub CA", new_key("ec"), issuer=issuer, issuer_key=issuer_key)),
        "garbage": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        "two-certificates": pem(root("One")) + pem(root("Two")),
    }


async def test_TC_M_07_install_rejected_certificate_invalid(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_M_07_CS (M05.FR.07): an expired CSMSRootCertificate → Rejected, and GetInstalledCertificateIds
    (Accepted, a good root being installed) does not list it. The same for every other kind of unusable root:
    not yet valid, not a CA, not self-signed, not PEM, two certificates in one."""
    good = root("Good Root")
    async with booted_station(csms, data_dir) as station:
        assert (await install(csms, CSMS_ROOT, good))["status"] == "Accepted"
        for kind, text in _bad_roots().items():
            answer = await install(csms, CSMS_ROOT, text)
            assert answer["status"] == "Rejected", (kind, answer)
            assert answer["statusInfo"]["reasonCode"] == "InvalidCertificate", (kind, answer)
        answer = await installed(csms, CSMS_ROOT)
        assert answer["status"] == "Accepted"
        assert entries(answer) == [(CSMS_ROOT, expected_hash(good))]
        assert station.certificate_store.trusted(CSMS_ROOT) == [good]


@pytest.mark.parametrize("use", ["V2GRootCertificate", "MORootCertificate"])
async def test_iso15118_roots_refused_cleanly(csms: LoopbackCsms, data_dir: Path, use: str) -> None:
    """The schema's other root types (ISO 15118) are Rejected with a reason: this station has no Plug & Charge."""
    async with booted_station(csms, data_dir):
        answer = await install(csms, use, root("V2G Root"))
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "UnsupportedParam"
        assert await installed(csms, use) == {"status": "NotFound"}


async def test_store_limit_is_certificate_entries_max(csms: LoopbackCsms, data_dir: Path) -> None:
    """The store holds at most CertificateEntries' maxLimit certificates (here narrowed to 2 by `[limits]`):
    the third install is Failed with OutOfStorage and changes nothing; reinstalling one already there is
    still Accepted (nothing new to store); after a delete there is room again."""
    roots = [root(f"Root {n}") for n in range(3)]
    extra = '[limits]\n"SecurityCtrlr.CertificateEntries" = { max = 2 }\n'
    async with booted_station(csms, data_dir, extra=extra):
        for r in roots[:2]:
            assert (await install(csms, CSMS_ROOT, r))["status"] == "Accepted"
        full = await install(csms, CSMS_ROOT, roots[2])
        assert full["status"] == "Failed" and full["statusInfo"]["reasonCode"] == "OutOfStorage", full
        assert (await install(csms, CSMS_ROOT, roots[0]))["status"] == "Accepted"
        assert len(entries(await installed(csms))) == 2
        assert (await delete(csms, expected_hash(roots[0])))["status"] == "Accepted"
        assert (await install(csms, CSMS_ROOT, roots[2]))["status"] == "Accepted"


# --- M03 get ---------------------------------------------------------------------------------------------


async def test_TC_M_12_13_17_18_get_installed_certificate_ids(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_M_12_CS / M_13_CS (M03.FR.01/03/04): each type alone lists exactly its certificates;
    TC_M_17_CS: both types in one request; TC_M_18_CS: certificateType omitted lists both entries."""
    csms_root, mf_root = root("CSMS Root"), root("Maker Root")
    async with booted_station(csms, data_dir):
        for use, cert in ((CSMS_ROOT, csms_root), (MANUFACTURER_ROOT, mf_root)):
            assert (await install(csms, use, cert))["status"] == "Accepted"
        assert entries(await installed(csms, CSMS_ROOT)) == [(CSMS_ROOT, expected_hash(csms_root))]
        assert entries(await installed(csms, MANUFACTURER_ROOT)) == [(MANUFACTURER_ROOT, expected_hash(mf_root))]
        both = {(CSMS_ROOT, str(expected_hash(csms_root))), (MANUFACTURER_ROOT, str(expected_hash(mf_root)))}
        for answer in (await installed(csms, CSMS_ROOT, MANUFACTURER_ROOT), await installed(csms)):
            assert answer["status"] == "Accepted"
            assert {(use, str(h)) for use, h in entries(answer)} == both


async def test_TC_M_19_no_matching_certificate(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_M_19_CS (M03.FR.02): GetInstalledCertificateIds(MORootCertificate) with none installed → NotFound,
    certificateHashDataChain omitted (also for an empty store and no type)."""
    async with booted_station(csms, data_dir):
        assert await installed(csms) == {"status": "NotFound"}
        assert (await install(csms, CSMS_ROOT, root("CSMS Root")))["status"] == "Accepted"
        assert await installed(csms, "MORootCertificate") == {"status": "NotFound"}


# --- M04 delete ------------------------------------------------------------------------------------------


async def test_TC_M_20_delete_certificate(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_M_20_CS (M04.FR.01/02): the hash data GetInstalledCertificates returned → DeleteCertificate Accepted,
    and the certificate is gone from the list and from the TLS trust. The last CSMS root is kept (AQ-1:
    Failed with a reason), so the station can always verify its CSMS."""
    old, new = root("Old Root"), root("New Root")
    async with booted_station(csms, data_dir) as station:
        for cert in (old, new):
            assert (await install(csms, CSMS_ROOT, cert))["status"] == "Accepted"
        listed = dict((str(h), h) for _, h in entries(await installed(csms, CSMS_ROOT)))
        assert str(expected_hash(old)) in listed
        assert await delete(csms, listed[str(expected_hash(old))]) == {"status": "Accepted"}
        assert entries(await installed(csms, CSMS_ROOT)) == [(CSMS_ROOT, expected_hash(new))]
        assert station.certificate_store.trusted(CSMS_ROOT) == [new]
        last = await delete(csms, expected_hash(new))
        assert last["status"] == "Failed" and "last" in last["statusInfo"]["additionalInfo"], last
        assert entries(await installed(csms, CSMS_ROOT)) == [(CSMS_ROOT, expected_hash(new))]
        assert (await reconfigurations(station)).count("CSMSRootCertificate installed") == 2
        assert (await reconfigurations(station)).count("CSMSRootCertificate deleted") == 1


async def test_delete_by_other_algorithm_and_case(csms: LoopbackCsms, data_dir: Path) -> None:
    """A CSMS may name the certificate with SHA-384 or SHA-512 hash data and upper-case hex with leading zeros
    on the serial: matched all the same (the comparison is case-insensitive, in the request's algorithm)."""
    certs = {alg: root(f"Maker Root {alg}", serial=0x0ABC0 + n) for n, alg in enumerate(("SHA384", "SHA512"))}
    async with booted_station(csms, data_dir):
        for cert in certs.values():
            assert (await install(csms, MANUFACTURER_ROOT, cert))["status"] == "Accepted"
        for alg, cert in certs.items():
            wanted = expected_hash(cert, alg)
            shouted = {
                **wanted,
                "issuerNameHash": wanted["issuerNameHash"].upper(),
                "issuerKeyHash": wanted["issuerKeyHash"].upper(),
                "serialNumber": "000" + wanted["serialNumber"].upper(),
            }
            assert await delete(csms, shouted) == {"status": "Accepted"}, alg
        assert await installed(csms, MANUFACTURER_ROOT) == {"status": "NotFound"}


async def test_TC_M_22_delete_no_matching_certificate(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_M_22_CS (M04.FR.04): hash data of a certificate the station never had → NotFound; nothing changes.
    Right names with another key, or the right certificate hashed with another algorithm than stated, do not
    match either."""
    installed_root = root("Installed Root")
    async with booted_station(csms, data_dir):
        assert (await install(csms, CSMS_ROOT, installed_root))["status"] == "Accepted"
        await installed(csms, CSMS_ROOT)
        assert await delete(csms, expected_hash(root("Unknown Root"))) == {"status": "NotFound"}
        wrong_algorithm = {**expected_hash(installed_root, "SHA256"), "hashAlgorithm": "SHA512"}
        assert await delete(csms, wrong_algorithm) == {"status": "NotFound"}
        assert entries(await installed(csms, CSMS_ROOT)) == [(CSMS_ROOT, expected_hash(installed_root))]


# --- durability, factory roots, file modes ---------------------------------------------------------------


async def test_store_survives_restart_and_factory_roots_import_once(csms: LoopbackCsms, data_dir: Path) -> None:
    """Installed roots are on disk before Accepted: a new station process on the same data directory lists
    them. A factory manufacturer root (`[firmware] manufacturer_root_file`) is imported at the first start;
    once the CSMS deletes it, it stays deleted at the next start although the file is still configured."""
    factory, installed_root, csms_root = root("Factory Maker Root"), root("Installed Maker Root"), root("CSMS")
    factory_file = data_dir / "mfr-root.pem"
    factory_file.write_text(pem(factory))
    extra = f'[firmware]\nmanufacturer_root_file = "{factory_file}"\n'
    async with booted_station(csms, data_dir, extra=extra) as station:
        assert station.certificate_store.trusted(MANUFACTURER_ROOT) == [factory]
        assert (await install(csms, MANUFACTURER_ROOT, installed_root))["status"] == "Accepted"
        assert (await install(csms, CSMS_ROOT, csms_root))["status"] == "Accepted"
        assert await delete(csms, expected_hash(factory)) == {"status": "Accepted"}
    async with booted_station(csms, data_dir, extra=extra) as station:
        assert station.certificate_store.trusted(MANUFACTURER_ROOT) == [installed_root]
        assert station.certificate_store.trusted(CSMS_ROOT) == [csms_root]
        assert {h["serialNumber"] for _, h in entries(await installed(csms))} == {
            format(c.serial_number, "x") for c in (installed_root, csms_root)
        }
        assert await get_value(csms, "SecurityCtrlr", "CertificateEntries") == "2"
        assert stat.S_IMODE((data_dir / "certs").stat().st_mode) == 0o700

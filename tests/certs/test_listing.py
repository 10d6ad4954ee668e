"""`appliance certs`: the field engineer's listing, run as a real process next to a running station."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp

from appliance.certs.store import CSMS_ROOT, MANUFACTURER_ROOT
from appliance.lab.csms import LoopbackCsms
from appliance.lab.csms.pki import Authority, certificate, new_key, pem
from appliance.lab.process import config_text
from tests.conformance.helpers import STATION_ID, booted_station
from tests.harness import REPO


def certs_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "certs", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


async def test_listing_shows_roots_and_station_certificate(csms: LoopbackCsms, data_dir: Path) -> None:
    """Installed roots and the factory station certificate, each with type, subject, expiry, origin and hash
    data equal to the OCSP CertID; as JSON and as a table; no private key material in either."""
    authority = Authority("Listing CSMS Root")
    mf = certificate("O=Maker,CN=Maker Root", new_key("rsa"))
    chain, key = authority.issue("CN=SN-1", days=200)
    (data_dir / "cs-cert.pem").write_text(chain)
    (data_dir / "cs-key.pem").write_bytes(key)
    (data_dir / "cs-key.pem").chmod(0o600)
    extra = f'[security]\nclient_cert_file = "{data_dir}/cs-cert.pem"\nclient_key_file = "{data_dir}/cs-key.pem"\n'
    config_file = data_dir / "station.toml"
    async with booted_station(csms, data_dir, extra=extra) as station:
        config_file.write_text(config_text(data_dir, csms.url, extra=extra))
        for use, text in ((CSMS_ROOT, authority.root_pem), (MANUFACTURER_ROOT, pem(mf))):
            answer = await csms.trio.call(
                STATION_ID, "InstallCertificate", {"certificateType": use, "certificate": text}
            )
            assert answer["status"] == "Accepted"
        leaf = station.identity.current.leaf if station.identity.current else None
        assert leaf is not None
        done = certs_cli("--config", str(config_file), "--json")
        assert done.returncode == 0, done.stderr
        listed = json.loads(done.stdout)["certificates"]
        by_type = {row["certificateType"]: row for row in listed}
        assert set(by_type) == {CSMS_ROOT, MANUFACTURER_ROOT, "ChargingStationCertificate"}
        for use, cert, issuer in (
            (CSMS_ROOT, authority.root, authority.root),
            (MANUFACTURER_ROOT, mf, mf),
            ("ChargingStationCertificate", leaf, authority.root),
        ):
            request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
            row = by_type[use]
            assert row["certificateHashData"] == {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": request.issuer_name_hash.hex(),
                "issuerKeyHash": request.issuer_key_hash.hex(),
                "serialNumber": format(cert.serial_number, "x"),
            }
            assert row["subject"] == cert.subject.rfc4514_string()
            assert row["notAfter"].startswith(cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S"))
        assert by_type[CSMS_ROOT]["origin"] == "csms" and by_type["ChargingStationCertificate"]["origin"] == "factory"
        text = certs_cli("--config", str(config_file))
        assert text.returncode == 0, text.stderr
        assert "ChargingStationCertificate" in text.stdout and "Maker Root" in text.stdout
        assert format(mf.serial_number, "x") in text.stdout
        for out in (done.stdout, text.stdout):
            assert "PRIVATE KEY" not in out


def test_listing_errors_exit_2(data_dir: Path) -> None:
    """No journal yet → exit 2 naming the file; a bad config → exit 2 naming the key."""
    config_file = data_dir / "station.toml"
    config_file.write_text(config_text(data_dir, "ws://127.0.0.1:9/ocpp"))
    done = certs_cli("--config", str(config_file))
    assert done.returncode == 2 and "journal error" in done.stderr and "journal.db" in done.stderr
    only_cert = '[security]\nclient_cert_file = "x"\n'
    config_file.write_text(config_text(data_dir, "ws://127.0.0.1:9/ocpp", extra=only_cert))
    done = certs_cli("--config", str(config_file), "--json")
    assert done.returncode == 2 and "security.client_key_file" in done.stderr

"""A Security Profile 2 station (TLS with basic auth, one of the two profiles the product is certified for)
boots, connects and serves without `cryptography` (~8 MB of RSS), as `tests/test_import_fence.py` proves for
profile 1: the certificate store keeps PEM and fingerprints, OpenSSL takes the CSMS roots as PEM, and the CSMS's
name is read from OpenSSL's decoding of the certificate it verified. `cryptography` comes in only for work on
certificates: importing a factory root the store has not seen (the first start), or an InstallCertificate.

The refusal of a CSMS certificate for another host is part of the proof: the host-name rule (and the
security event it raises) must hold without `cryptography` too, or a lazy import would have bought memory by
checking less.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

from appliance.lab.csms import LoopbackCsms
from appliance.lab.csms.pki import Authority, certificate, new_key, pem
from appliance.lab.process import PASSWORD, config_text
from tests.test_import_fence import HEARTBEAT_INTERVAL, announce, announced, run_fenced_config

HOST = "127.0.0.1"


def serve_as(authority: Authority, context: ssl.SSLContext, host: str) -> None:
    """Give the CSMS's server context (changed in place: OpenSSL applies it to the next handshake) a
    certificate from `authority` for `host`."""
    chain, key = authority.issue(host, hosts=(host,))
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_text(chain)
        key_file.write_bytes(key)
        context.load_cert_chain(cert_file, key_file)


def run_station(config: Path, csms: LoopbackCsms, log_path: Path, exercise: Callable[[], None]) -> str:
    """`appliance run` behind the fence, with `cryptography`'s first import announced in its log; `exercise()`
    runs once it is up, then SIGTERM; the log."""
    return run_fenced_config(config, announce("cryptography"), log_path, exercise)


def test_profile_2_station_imports_cryptography_only_for_a_certificate(tmp_path: Path, data_dir: Path) -> None:
    authority = Authority("Fence TLS Root")
    ca_file = tmp_path / "csms-root.pem"
    ca_file.write_text(authority.root_pem)
    config = tmp_path / "station.toml"
    seen: dict[str, dict[str, str]] = {}

    # First start: the factory root is new to the store, so it is parsed and judged (cryptography loads).
    with LoopbackCsms(passwords={"CS001": PASSWORD}, ssl_context=authority.server_context(HOST)) as csms:
        config.write_text(config_text(data_dir, csms.url, profile=2, ca_file=ca_file))
        first_log = tmp_path / "first.log"

        def first() -> None:
            csms.wait_action("CS001", "StatusNotification", count=2, timeout=30)
            seen["first"] = announced(first_log)

        run_station(config, csms, first_log, first)
    assert list(seen["first"]) == ["cryptography"] and "/appliance/certs/" in seen["first"]["cryptography"], seen

    # Second start: the root is known. First the CSMS shows a certificate for another host (refused, with
    # its security event), then its own; the station serves a CALL; only InstallCertificate loads cryptography.
    context = authority.server_context("other.test")
    with LoopbackCsms(passwords={"CS001": PASSWORD}, ssl_context=context) as csms:
        config.write_text(config_text(data_dir, csms.url, profile=2, ca_file=ca_file))
        second_log = tmp_path / "second.log"
        new_root = pem(certificate("Fence Second Root", new_key("ec")))

        def second() -> None:
            csms.wait_for(lambda: "name mismatch" in second_log.read_text(), 30, what="the refusal for other.test")
            serve_as(authority, context, HOST)
            csms.wait_action("CS001", "StatusNotification", count=2, timeout=30)
            answer = csms.call("CS001", "GetVariables", {"getVariableData": [HEARTBEAT_INTERVAL]})
            assert answer["getVariableResult"][0]["attributeStatus"] == "Accepted"
            csms.wait_action(
                "CS001", "SecurityEventNotification", predicate=lambda p: p["type"] == "InvalidCsmsCertificate"
            )
            seen["served"] = announced(second_log)
            answer = csms.call(
                "CS001", "InstallCertificate", {"certificateType": "CSMSRootCertificate", "certificate": new_root}
            )
            assert answer == {"status": "Accepted"}
            seen["installed"] = announced(second_log)

        log = run_station(config, csms, second_log, second)
        [connection] = csms.connections_snapshot("CS001")
        assert connection.auth_ok is True and csms.url.startswith("wss://")
        assert csms.violations == []
    assert "name mismatch: the certificate is for other.test, the CSMS is 127.0.0.1" in log
    assert seen["served"] == {}, log
    assert list(seen["installed"]) == ["cryptography"], log
    assert "/appliance/certs/" in seen["installed"]["cryptography"], log

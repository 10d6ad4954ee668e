"""The TLS pieces on their own: what the client context allows and trusts, the host-name rule without wildcards,
and the config/start-up checks of Security Profile 3's `[security]` keys and the CSMS root file."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from appliance import preflight
from appliance.config import ConfigError, parse
from appliance.lab.process import config_text
from appliance.security.tls import OCPP_TLS12_CIPHERS, TlsRefused, check_peer_name, client_context


def der(leaf: trustme.LeafCert) -> bytes:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)


def root(ca: trustme.CA) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.cert_pem.bytes())


def test_context_allows_tls_1_2_up_and_only_ocpp_suites() -> None:
    ca = trustme.CA()
    context = client_context([root(ca)], None)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_REQUIRED
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert sorted(tls12) == sorted(OCPP_TLS12_CIPHERS)
    # Exactly the given roots: nothing from the OS trust store.
    assert [int(c["serialNumber"], 16) for c in context.get_ca_certs()] == [root(ca).serial_number]


def test_no_roots_no_tls() -> None:
    with pytest.raises(TlsRefused, match="no CSMS root certificate"):
        client_context([], None)


@pytest.mark.parametrize(
    ("names", "host"),
    [
        (["csms.example.com"], "csms.example.com"),
        (["CSMS.Example.com"], "csms.example.com."),
        (["other.example.com", "csms.example.com"], "csms.example.com"),
        (["*.example.com", "csms.example.com"], "csms.example.com"),  # an exact name counts, the wildcard is unused
        (["127.0.0.1"], "127.0.0.1"),
        (["::1"], "::1"),
    ],
)
def test_exact_names_accepted(names: list[str], host: str) -> None:
    check_peer_name(der(trustme.CA().issue_cert(*names)), host)


@pytest.mark.parametrize(
    ("names", "host", "cause"),
    [
        (["*.example.com"], "csms.example.com", "wildcard certificate (*.example.com) refused"),
        (["other.example.com"], "csms.example.com", "name mismatch: the certificate is for other.example.com"),
        (["csms.example.com"], "127.0.0.1", "name mismatch"),
        (["127.0.0.2"], "127.0.0.1", "name mismatch: the certificate is for 127.0.0.2"),
    ],
)
def test_other_names_and_wildcards_refused(names: list[str], host: str, cause: str) -> None:
    with pytest.raises(TlsRefused) as refused:
        check_peer_name(der(trustme.CA().issue_cert(*names)), host)
    assert cause in refused.value.cause and refused.value.event == "InvalidCsmsCertificate"


def test_common_name_counts_only_without_subject_alt_name() -> None:
    """OCPP's wording is "commonName equals the FQDN": used when the certificate has no subjectAltName."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csms.example.com")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1))
        .not_valid_after(dt.datetime(2030, 1, 1))
    )
    check_peer_name(builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER), "csms.example.com")
    with_san = builder.add_extension(
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]), False
    ).sign(key, hashes.SHA256())
    with pytest.raises(TlsRefused, match="name mismatch"):
        check_peer_name(with_san.public_bytes(Encoding.DER), "csms.example.com")


def _config(tmp_path: Path, profile: int, extra: str = "", ca: Path | None = None) -> str:
    url = "wss://127.0.0.1:9/ocpp" if profile >= 2 else "ws://127.0.0.1:9/ocpp"
    return config_text(
        tmp_path / "data",
        url,
        profile=profile,
        ca_file=ca,
        extra=extra,
        password=None if profile == 3 else "s3cret-password-16",
    )


def test_profile_3_needs_both_security_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    with pytest.raises(ConfigError, match=r"security\.client_cert_file: missing"):
        parse(_config(tmp_path, 3, ca=ca), source="test")
    with pytest.raises(ConfigError, match=r"security\.client_key_file: missing"):
        parse(_config(tmp_path, 3, '[security]\nclient_cert_file = "c.pem"\n', ca), source="test")
    config = parse(
        _config(tmp_path, 3, '[security]\nclient_cert_file = "c.pem"\nclient_key_file = "k.pem"\n', ca), source="test"
    )
    assert config.security.client_identity == (Path("c.pem"), Path("k.pem"))
    assert config.csms.basic_auth_password is None  # profile 3 authenticates by its certificate


def test_start_up_checks_the_client_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("CS001")
    cert, key, other_key = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "other.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.issue_cert("x").private_key_pem.write_to_path(str(other_key))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    def check(cert_file: Path, key_file: Path) -> None:
        text = _config(
            tmp_path,
            3,
            f'[security]\nclient_cert_file = "{cert_file}"\nclient_key_file = "{key_file}"\n',
            tmp_path / "ca.pem",
        )
        preflight.check(parse(text, source="test"))

    check(cert, key)
    absent = re.escape(f"security.client_cert_file: {tmp_path / 'absent.pem'}: no such file")
    with pytest.raises(ConfigError, match=absent):
        check(tmp_path / "absent.pem", key)
    with pytest.raises(ConfigError, match=r"security\.client_key_file: .* not a usable certificate and private key"):
        check(cert, other_key)
    with pytest.raises(ConfigError) as error:
        check(cert, other_key)
    assert "PRIVATE KEY" not in str(error.value)  # the key's path is named, never its content

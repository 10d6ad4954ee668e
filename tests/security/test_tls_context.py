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
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from appliance import preflight
from appliance.config import ConfigError, parse
from appliance.lab.process import config_text
from appliance.security import tls
from appliance.security.tls import OCPP_TLS12_CIPHERS, TlsRefused, check_peer_name, client_context
from tests.security.tls_lab import peer_certificate, server_context


def root(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode("ascii")


def served(leaf: trustme.LeafCert, ca: trustme.CA) -> tuple[bytes, dict]:
    """`leaf` as a client sees it after a handshake: DER and OpenSSL's decoding."""
    return peer_certificate(server_context(leaf), root(ca))


def check(served_cert: tuple[bytes, dict], host: str) -> None:
    """`check_peer_name` on OpenSSL's reading of the names, after checking that `cryptography`'s (the
    fallback) comes to the same verdict in the same words."""
    der, decoded = served_cert
    try:
        check_peer_name(der, host, None)
    except TlsRefused as refused:
        with pytest.raises(TlsRefused) as again:
            check_peer_name(der, host, decoded)
        assert (again.value.cause, again.value.event) == (refused.cause, refused.event)
        raise
    else:
        check_peer_name(der, host, decoded)


def test_context_allows_tls_1_2_up_and_only_ocpp_suites() -> None:
    ca = trustme.CA()
    context = client_context([root(ca)], None)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_REQUIRED
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert sorted(tls12) == sorted(OCPP_TLS12_CIPHERS)
    # Exactly the given roots: nothing from the OS trust store.
    serial = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).serial_number
    assert [int(c["serialNumber"], 16) for c in context.get_ca_certs()] == [serial]


def test_context_takes_several_roots_as_pem() -> None:
    cas = [trustme.CA(), trustme.CA()]
    context = client_context([root(ca) for ca in cas], None)
    assert len(context.get_ca_certs()) == 2


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
        (["2001:db8::1"], "2001:DB8:0::1"),
    ],
)
def test_exact_names_accepted(names: list[str], host: str) -> None:
    ca = trustme.CA()
    check(served(ca.issue_cert(*names), ca), host)


@pytest.mark.parametrize(
    ("names", "host", "cause"),
    [
        (["*.example.com"], "csms.example.com", "wildcard certificate (*.example.com) refused"),
        (["other.example.com"], "csms.example.com", "name mismatch: the certificate is for other.example.com"),
        (["csms.example.com"], "127.0.0.1", "name mismatch"),
        (["127.0.0.2"], "127.0.0.1", "name mismatch: the certificate is for 127.0.0.2"),
        (["::2", "csms.example.com"], "::1", "name mismatch: the certificate is for csms.example.com, ::2"),
    ],
)
def test_other_names_and_wildcards_refused(names: list[str], host: str, cause: str) -> None:
    ca = trustme.CA()
    with pytest.raises(TlsRefused) as refused:
        check(served(ca.issue_cert(*names), ca), host)
    assert cause in refused.value.cause and refused.value.event == "InvalidCsmsCertificate"


def self_signed_server(
    tmp_path: Path, common_name: str, san: list[x509.GeneralName] | None = None
) -> tuple[bytes, dict]:
    """A self-signed server certificate with this common name (and subjectAltName), served and decoded."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1))
        .not_valid_after(dt.datetime(2030, 1, 1))
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
    cert = builder.sign(key, hashes.SHA256())
    chain = tmp_path / "server.pem"
    chain.write_bytes(
        cert.public_bytes(Encoding.PEM) + key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return peer_certificate(context, cert.public_bytes(Encoding.PEM).decode("ascii"))


def test_common_name_counts_only_without_subject_alt_name(tmp_path: Path) -> None:
    """OCPP's wording is "commonName equals the FQDN": used when the certificate has no subjectAltName."""
    check(self_signed_server(tmp_path, "csms.example.com"), "csms.example.com")
    with pytest.raises(TlsRefused, match="name mismatch"):
        check(
            self_signed_server(tmp_path, "csms.example.com", [x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]),
            "csms.example.com",
        )


def test_certificates_openssl_may_not_show_whole_are_read_with_cryptography(tmp_path: Path) -> None:
    """Where OpenSSL's decoding could differ from what the certificate says, `cryptography` reads the names
    (the verdict is then exactly the old one): an address entry of 8 bytes (OpenSSL shows "<invalid>",
    `cryptography` a network), bytes that look like a subjectAltName in a certificate without one, and no
    decoding at all."""
    network = self_signed_server(tmp_path, "csms.example.com", [x509.IPAddress(ipaddress.ip_network("10.0.0.0/24"))])
    assert ("IP Address", "<invalid>") in network[1]["subjectAltName"]
    assert tls._openssl_names(network[1], network[0]) is None
    with pytest.raises(TlsRefused, match=re.escape("the certificate is for 10.0.0.0/24, the CSMS is 10.0.0.1")):
        check(network, "10.0.0.1")

    lookalike = self_signed_server(tmp_path, "csms.example.com\x06\x03U\x1d\x11")
    assert "subjectAltName" not in lookalike[1]
    assert tls._openssl_names(lookalike[1], lookalike[0]) is None
    with pytest.raises(TlsRefused, match="name mismatch"):
        check(lookalike, "csms.example.com")

    plain = self_signed_server(tmp_path, "csms.example.com")
    assert tls._openssl_names(plain[1], plain[0]) == (["csms.example.com"], [])
    assert tls._openssl_names({}, plain[0]) is None


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

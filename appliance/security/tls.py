"""TLS to the CSMS as OCPP prescribes it (Part 2 A00, Security Profiles 2 and 3), and why a handshake failed.

What the context allows, and why:

* TLS 1.2 or 1.3 only (A00.FR.314): a CSMS offering less is refused (event InvalidTLSVersion).
* TLS 1.2 suites: exactly OCPP's list (Part 2 A00, TC_A_04's tool validation):
  TLS_ECDHE_ECDSA_WITH_AES_128/256_GCM_SHA256/384 and TLS_RSA_WITH_AES_128/256_GCM_SHA256/384, the pair the
  certified station offered; a CSMS that only accepts others is refused (event InvalidTLSCipherSuite). TLS 1.3
  uses OpenSSL's AEAD suites (Python's ssl module cannot narrow them; all three are AEAD).
* Trust: only the CSMS root certificates the station holds (`TlsTrust.csms_roots`), never the OS trust store.
* Name: the server certificate must name the CSMS host exactly (DNS subjectAltName, IP address entry, or the
  common name when it has no subjectAltName). Python's own host-name check accepts wildcards, which OCPP does
  not (errata 2025: only with the optional SecurityCtrlr.AllowCSMSTLSWildcards, which this station does not
  offer), so the check is ours (`check_peer_name`), made on the certificate the handshake verified, before a
  single byte (the basic-auth password least of all) is sent. It reads the names from OpenSSL's own decoding of
  that certificate (`getpeercert()`), and from `cryptography`'s only for a certificate that decoding may not
  show whole (see `_openssl_names`): a Profile 2 connection costs no `cryptography` import (~8 MB of RSS).

`TlsTrust` is how the rest of the station supplies what TLS needs, read at every new connection:

* `csms_roots() -> list[str]`: the installed CSMSRootCertificates as PEM text (default: the certificates in
  the config's `csms.ca_file`; the certificate store replaces it with its own). OpenSSL parses them.
* `client_identity() -> (chain PEM file, key PEM file) | None`: the ChargingStationCertificate for Security
  Profile 3 (default: `[security] client_cert_file` / `client_key_file` when the profile is 3; renewal replaces
  it). Both are plain attributes, so a later block rebinds them (`station.tls_trust.csms_roots = store.roots`).

Every refusal is a `TlsRefused` naming its cause ("certificate has expired", "name mismatch …", "the CSMS
offered only TLS versions below 1.2" …) and the security event it calls for, if any.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.certs import pemtext
from appliance.certs.crypto import x509

log = logging.getLogger("appliance.security.tls")

#: OCPP's TLS 1.2 cipher suites in OpenSSL's names (ECDHE-ECDSA pair first, then the plain-RSA pair).
OCPP_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
)

INVALID_CERTIFICATE = "InvalidCsmsCertificate"
INVALID_VERSION = "InvalidTLSVersion"
INVALID_SUITE = "InvalidTLSCipherSuite"

#: OpenSSL verify codes (X509_V_ERR_*) → the cause a person reads.
_VERIFY_CAUSES = {
    2: "unknown CA (issuer certificate not found)",
    7: "certificate signature invalid",
    9: "certificate not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "unknown CA (self-signed certificate in the chain)",
    20: "unknown CA (not issued by an installed CSMS root certificate)",
    21: "unknown CA (leaf signature cannot be verified)",
    23: "certificate revoked",
    24: "invalid CA certificate in the chain",
    26: "certificate not meant for a TLS server",
}
#: OpenSSL reasons of handshake failures that say the protocol version was refused (either side).
_VERSION_REASONS = {
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "WRONG_SSL_VERSION",
    "VERSION_TOO_LOW",
}
#: … and those that say no cipher suite was acceptable to both.
_SUITE_REASONS = {
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "NO_SHARED_CIPHER",
    "NO_CIPHERS_AVAILABLE",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    "WRONG_CIPHER_RETURNED",
}


class TlsRefused(Exception):
    """The TLS connection to the CSMS was refused: `cause` for the log, `event` the security event (or None)."""

    def __init__(self, cause: str, event: str | None) -> None:
        super().__init__(f"TLS refused: {cause}")
        self.cause = cause
        self.event = event


def load_certificates(path: Path) -> list[str]:
    """Every PEM certificate in `path` (the config's ca_file; preflight has checked it is readable), one PEM
    text each; ValueError if a block's base64 is damaged."""
    return [block.pem for block in pemtext.split(path.read_text(encoding="ascii"))[0]]


@dataclass
class TlsTrust:
    """What TLS trusts and presents, asked at every new connection (see the module docstring)."""

    csms_roots: Callable[[], list[str]]
    client_identity: Callable[[], tuple[Path, Path] | None]

    @classmethod
    def from_files(cls, ca_file: Path | None, client: tuple[Path, Path] | None) -> TlsTrust:
        """The factory trust: the config's CA file and, for Security Profile 3, its client certificate."""
        return cls(
            csms_roots=lambda: load_certificates(ca_file) if ca_file is not None else [], client_identity=lambda: client
        )


def client_context(roots: Sequence[str], identity: tuple[Path, Path] | None) -> ssl.SSLContext:
    """An SSLContext for the CSMS connection: OCPP's versions and suites, these roots only, this identity."""
    if not roots:
        raise TlsRefused("no CSMS root certificate installed", None)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no default trust store is loaded into this one
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(":".join(OCPP_TLS12_CIPHERS))
    context.check_hostname = False  # `check_peer_name` instead: Python's check accepts wildcards
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata="\n".join(roots))
    if identity is not None:
        chain, key = identity
        try:
            context.load_cert_chain(chain, key)
        except (OSError, ssl.SSLError) as exc:
            # The key's path is named, never its content.
            raise TlsRefused(f"client certificate {chain} / key {key} unusable: {_reason(exc)}", None) from None
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


#: The DER of the subjectAltName extension's OID (2.5.29.17), to notice one OpenSSL's decoding did not show.
_SAN_OID = bytes.fromhex("0603551d11")

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_peer_name(der: bytes, host: str, decoded: Mapping[str, Any] | None) -> None:
    """Raise TlsRefused unless the verified server certificate names `host` exactly (no wildcard).

    `der` is the certificate (`getpeercert(binary_form=True)`), `decoded` OpenSSL's reading of it
    (`getpeercert()`, a dict once the handshake has verified it).
    """
    try:
        address: _Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    names, addresses = _openssl_names(decoded, der) or _x509_names(der)
    if address is not None:
        if address in addresses or str(address) in names:
            return
    elif host.lower().rstrip(".") in names:
        return
    wildcards = [n for n in names if "*" in n]
    if wildcards and address is None and any(_wildcard_matches(w, host) for w in wildcards):
        raise TlsRefused(
            f"wildcard certificate ({', '.join(wildcards)}) refused: OCPP requires the CSMS's exact name {host}",
            INVALID_CERTIFICATE,
        )
    shown = ", ".join([*names, *(str(a) for a in addresses)]) or "no name"
    raise TlsRefused(f"name mismatch: the certificate is for {shown}, the CSMS is {host}", INVALID_CERTIFICATE)


def _openssl_names(decoded: Mapping[str, Any] | None, der: bytes) -> tuple[list[str], list[_Address]] | None:
    """(DNS names, IP addresses) the certificate is for, as OpenSSL decoded it; None where that decoding may not
    be the whole truth, so `_x509_names` decides as it always did: no decoding at all, a subjectAltName
    extension OpenSSL left out (one it could not decode: the common name must not stand in for it), or an
    address entry that is no IPv4/IPv6 address ("<invalid>")."""
    if not decoded:
        return None
    san = decoded.get("subjectAltName")
    if san is None:
        if _SAN_OID in der:  # also matches a CN-only certificate that merely holds these bytes: then it costs an import
            return None
        # no subjectAltName: the common name is the name (OCPP's "commonName equals the FQDN")
        common = [value for rdn in decoded.get("subject", ()) for kind, value in rdn if kind == "commonName"]
        return [str(n).lower().rstrip(".") for n in common], []
    names: list[str] = []
    addresses: list[_Address] = []
    for kind, value in san:
        if kind == "DNS":
            names.append(str(value).lower().rstrip("."))
        elif kind == "IP Address":
            try:
                addresses.append(ipaddress.ip_address(value))
            except ValueError:
                return None
    return names, addresses


def _x509_names(der: bytes) -> tuple[list[str], list[Any]]:
    """The same from `cryptography`'s parse (which loads it): the reading `_openssl_names` must agree with."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san: x509.SubjectAlternativeName | None = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        san = None
    if san is None:  # no subjectAltName: the common name is the name
        common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return [str(a.value).lower().rstrip(".") for a in common], []
    names = [n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)]
    return names, list(san.get_values_for_type(x509.IPAddress))


def _wildcard_matches(pattern: str, host: str) -> bool:
    """Whether a wildcard name would have matched `host` (only to say why it was refused)."""
    first, _, rest = pattern.partition(".")
    label, _, host_rest = host.lower().rstrip(".").partition(".")
    return rest == host_rest and first.replace("*", "") in label


def classify(exc: BaseException) -> TlsRefused | None:
    """The named cause of a failed TLS handshake (trio wraps the ssl error in BrokenResourceError), or None
    if `exc` is no TLS failure."""
    if isinstance(exc, TlsRefused):
        return exc
    error: BaseException | None = exc
    while error is not None and not isinstance(error, ssl.SSLError):
        error = error.__cause__ or error.__context__
    if error is None:
        return None
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        cause = _VERIFY_CAUSES.get(code, f"certificate refused ({error.verify_message}, code {code})")
        return TlsRefused(cause, INVALID_CERTIFICATE)
    reason = str(error.reason or "")
    if reason in _VERSION_REASONS:
        return TlsRefused(f"protocol version refused ({reason}): the CSMS offers only TLS below 1.2", INVALID_VERSION)
    if reason in _SUITE_REASONS:
        return TlsRefused(f"no common cipher suite ({reason}): the CSMS accepts none of OCPP's", INVALID_SUITE)
    if reason == "UNEXPECTED_EOF_WHILE_READING":
        return TlsRefused("the CSMS closed the connection during the TLS handshake, without saying why", None)
    if reason == "WRONG_VERSION_NUMBER":
        return TlsRefused("the CSMS did not answer with TLS (WRONG_VERSION_NUMBER: plain HTTP on a wss:// port?)", None)
    return TlsRefused(f"handshake failed ({reason or error})", None)

"""PEM certificate text taken apart without `cryptography`: the blocks, their DER and its SHA-256 fingerprint.

Why: a station that trusts a CSMS root (Security Profile 2, or any installed root) needs only the PEM at boot
and at every TLS connection — OpenSSL parses and verifies it inside the handshake — and the store's key for a
certificate is the SHA-256 of its DER. Loading `cryptography` for that costs ~8 MB of RSS. So this module
finds the blocks and decodes their base64, and nothing more: it does not say a certificate is valid. Whatever
must be judged (an install, a factory certificate the store has never seen) still goes through
`appliance.certs.validate.parse_pem`.

`split` is strict where a loose reading could hide a certificate from that judgement: base64 must be exact
(no headers, no stray characters), and `complete` tells the caller whether every BEGIN line in the text was a
certificate block it understood, so a caller can fall back to the full parse when it was not.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass

#: The labels `cryptography.x509.load_pem_x509_certificates` reads as certificates.
_BLOCK = re.compile(r"-----BEGIN (X509 CERTIFICATE|CERTIFICATE)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class PemCertificate:
    """One certificate block: its DER and the block re-written in the standard form (64-column base64)."""

    der: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER, lowercase hex: the certificate store's key (`certificates.fingerprint`)."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def pem(self) -> str:
        body = binascii.b2a_base64(self.der, newline=False).decode("ascii")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def split(text: str) -> tuple[list[PemCertificate], bool]:
    """The certificate blocks in `text`, in order, and whether they are all of it (every `-----BEGIN ` line
    starts one of them). ValueError if a block's base64 is not exact."""
    blocks = [
        PemCertificate(binascii.a2b_base64("".join(match.group(2).split()), strict_mode=True))
        for match in _BLOCK.finditer(text)
    ]
    return blocks, text.count("-----BEGIN ") == len(blocks)

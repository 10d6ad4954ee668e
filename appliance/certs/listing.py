"""`appliance certs [--config PATH] [--json]`: what a field engineer needs to see of the station's certificates
— every installed root and the station's own certificate, with type, subject, expiry, origin and the hash data
a CSMS names it by.

Read-only and safe while the station runs: the store is read through the journal's read-only opening
(`storage.db.open_read_only`), the station certificate from its file. Nothing secret is shown (keys are never
read). Run it as the station's user: the certificate directory is 0700.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.certs import hashdata
from appliance.certs.identity import STATE_KEY
from appliance.certs.validate import CertificateProblem, parse_pem, signed_by, subject_text
from appliance.clock import format_iso
from appliance.config import Config
from appliance.storage.db import DB_NAME, open_read_only

if TYPE_CHECKING:
    from appliance.certs.crypto import x509


def _row(use: str, cert: x509.Certificate, origin: str, issuer: x509.Certificate | None) -> dict[str, Any]:
    data = (
        hashdata.hash_data(cert, issuer.public_key())
        if issuer is not None
        else {
            "hashAlgorithm": hashdata.DEFAULT_ALGORITHM,
            "issuerNameHash": None,
            "issuerKeyHash": None,
            "serialNumber": hashdata.serial_hex(cert),
        }
    )
    return {
        "certificateType": use,
        "subject": subject_text(cert),
        "issuer": cert.issuer.rfc4514_string(),
        "notBefore": format_iso(cert.not_valid_before_utc),
        "notAfter": format_iso(cert.not_valid_after_utc),
        "origin": origin,
        "certificateHashData": data,
    }


def _issuer_of(cert: x509.Certificate, candidates: list[x509.Certificate]) -> x509.Certificate | None:
    return next((c for c in candidates if signed_by(cert, c)), None)


def collect(config: Config) -> list[dict[str, Any]]:
    """Every certificate the station holds; JournalError if the database cannot be read, OSError/
    CertificateProblem for an unreadable station certificate."""
    data_dir = config.station.data_dir
    conn = open_read_only(data_dir / DB_NAME)
    try:
        try:
            rows = conn.execute(
                "SELECT use, pem, origin FROM certificates WHERE deleted_at IS NULL ORDER BY use, installed_at, rowid"
            ).fetchall()
        except sqlite3.OperationalError:  # a journal from before the certificate store existed
            rows = []
        generation = conn.execute("SELECT value FROM station_state WHERE key = ?", (STATE_KEY,)).fetchone()
    finally:
        conn.close()
    listed = []
    roots: list[x509.Certificate] = []
    for use, text, origin in rows:
        cert = parse_pem(text)[0]
        roots.append(cert)
        listed.append(_row(use, cert, origin, cert))
    chain_file, origin = None, "factory"
    if generation is not None:
        chain_file, origin = data_dir / "certs" / "station" / generation[0] / "cert.pem", "renewed"
    elif config.security.client_cert_file is not None:
        chain_file = config.security.client_cert_file
    if chain_file is not None:
        chain = parse_pem(Path(chain_file).read_text(encoding="utf-8"))
        listed.append(_row("ChargingStationCertificate", chain[0], origin, _issuer_of(chain[0], chain[1:] + roots)))
    return listed


def table(listed: list[dict[str, Any]]) -> str:
    """One line per certificate, its hash data indented below it."""
    if not listed:
        return "no certificates installed"
    head = ("TYPE", "SUBJECT", "EXPIRES", "ORIGIN", "SERIAL")
    lines = [
        (r["certificateType"], r["subject"], r["notAfter"], r["origin"], r["certificateHashData"]["serialNumber"])
        for r in listed
    ]
    widths = [max(len(str(x[i])) for x in (head, *lines)) for i in range(len(head))]
    out = ["  ".join(str(v).ljust(w) for v, w in zip(head, widths, strict=True)).rstrip()]
    for row, line in zip(listed, lines, strict=True):
        out.append("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        data = row["certificateHashData"]
        out.append(f"    {data['hashAlgorithm']} issuerNameHash {data['issuerNameHash'] or '(issuer unknown)'}")
        out.append(f"    {data['hashAlgorithm']} issuerKeyHash  {data['issuerKeyHash'] or '(issuer unknown)'}")
    return "\n".join(out)


def render(config: Config, as_json: bool) -> str:
    listed = collect(config)
    return json.dumps({"certificates": listed}, indent=2) if as_json else table(listed)


__all__ = ["CertificateProblem", "collect", "render", "table"]

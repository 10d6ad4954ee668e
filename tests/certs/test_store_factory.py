"""The certificate store's factory import without parsing what it already holds: `pemtext` must give the same
fingerprints and PEM as `cryptography` (or known roots would be imported twice, or stored under another key),
and anything that is not plainly a known certificate must still be parsed and judged as at the first start."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.certs import pemtext
from appliance.certs.store import CSMS_ROOT, CertificateStore, fingerprint, known_only
from appliance.config import ConfigError
from appliance.lab.csms.pki import certificate, key_pem, new_key, pem
from appliance.storage import Storage


def test_pemtext_agrees_with_cryptography() -> None:
    certs = [certificate("EC Root", new_key("ec")), certificate("RSA Root", new_key("rsa"))]
    text = "a comment line\n" + "".join(pem(c) for c in certs)
    blocks, complete = pemtext.split(text)
    assert complete
    assert [b.fingerprint for b in blocks] == [fingerprint(c) for c in certs]
    assert [b.pem for b in blocks] == [pem(c) for c in certs]


def test_only_known_certificate_blocks_skip_the_parse() -> None:
    known, new = pem(certificate("Known", new_key("ec"))), pem(certificate("New", new_key("ec")))
    seen = {pemtext.split(known)[0][0].fingerprint}
    assert known_only(known, seen)
    assert known_only(known.replace("\n", "\r\n"), seen)
    assert not known_only(known + new, seen)  # a root the store has not seen
    assert not known_only(known + key_pem(new_key("ec")).decode(), seen)  # another kind of block
    assert not known_only(known.replace("MI", "M!", 1), seen)  # base64 that is not exact
    assert not known_only("", seen)  # nothing at all: the parse says why


async def open_store(data: Path, factory_file: Path) -> CertificateStore:
    storage = await Storage.open(data)
    try:
        return await CertificateStore.open(storage, {CSMS_ROOT: ("csms.ca_file", factory_file)}, lambda: None)
    finally:
        storage.close()


async def test_a_known_factory_file_is_not_parsed_a_new_or_damaged_one_is(tmp_path: Path) -> None:
    first, second = certificate("First Root", new_key("ec")), certificate("Second Root", new_key("ec"))
    factory_file = tmp_path / "ca.pem"
    factory_file.write_text(pem(first))
    store = await open_store(tmp_path, factory_file)
    assert store.trusted_pem(CSMS_ROOT) == [pem(first)]

    store = await open_store(tmp_path, factory_file)
    [entry] = store.entries()
    assert "cert" not in vars(entry)  # nothing parsed at open: the entry parses on first use
    assert entry.cert == first and "cert" in vars(entry)

    factory_file.write_text(pem(first) + pem(second))  # a station maker ships a new root
    store = await open_store(tmp_path, factory_file)
    assert store.trusted_pem(CSMS_ROOT) == [pem(first), pem(second)]

    truncated = pemtext.split(pem(second))[0][0].der[:-8]
    factory_file.write_text(pem(first) + pemtext.PemCertificate(truncated).pem)  # exact base64, broken DER
    with pytest.raises(ConfigError, match=r"csms\.ca_file: .*ca\.pem: not a PEM X\.509 certificate"):
        await open_store(tmp_path, factory_file)

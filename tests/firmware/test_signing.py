"""Signatures (RSA PKCS#1 v1.5 and ECDSA over SHA-256 of the file), the signing certificate's chain and validity,
and the `appliance firmware pack | sign | verify` commands run as a station maker runs them."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.firmware import signing
from tests.firmware.pki import Manufacturer, key_pem, make_image, pem
from tests.harness import REPO


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_signature_round_trip_and_tamper(tmp_path: Path, kind: str) -> None:
    mfr = Manufacturer(tmp_path)
    signer = mfr.signer(kind)
    path = make_image(tmp_path, "2.0.0")
    signature = signer.sign(path)
    assert signing.verify_signature(signer.cert, signature, path)
    other = mfr.signer(kind)
    assert not signing.verify_signature(other.cert, signature, path)  # another key
    path.write_bytes(path.read_bytes() + b"\0")
    assert not signing.verify_signature(signer.cert, signature, path)  # another file
    assert not signing.verify_signature(signer.cert, "not base64!", path)


def test_chain_to_the_manufacturer_root(tmp_path: Path) -> None:
    mfr, stranger = Manufacturer(tmp_path), Manufacturer(tmp_path, "Other Root")
    now = datetime.datetime.now(datetime.UTC)
    good = mfr.signer()
    signing.check_chain([good.cert], [mfr.root], now)
    with pytest.raises(signing.CertificateProblem, match="does not chain"):
        signing.check_chain([good.cert], [stranger.root], now)
    with pytest.raises(signing.CertificateProblem, match="not valid"):
        signing.check_chain([mfr.signer(days=(-30, -1)).cert], [mfr.root], now)
    with pytest.raises(signing.CertificateProblem, match="no ManufacturerRootCertificate"):
        signing.check_chain([good.cert], [], now)
    with pytest.raises(signing.CertificateProblem, match="not PEM"):
        signing.load_chain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_chain_through_an_intermediate(tmp_path: Path) -> None:
    from tests.firmware.pki import _cert, _key

    mfr = Manufacturer(tmp_path)
    now = datetime.datetime.now(datetime.UTC)
    for is_ca in (True, False):
        key = _key("ec")
        intermediate = _cert("Intermediate", key, mfr.root, mfr.root_key, ca=is_ca)
        leaf_key = _key("rsa")
        leaf = _cert("Leaf", leaf_key, intermediate, key, ca=False)
        chain = signing.load_chain(pem(leaf) + pem(intermediate))
        if is_ca:
            signing.check_chain(chain, [mfr.root], now)
        else:  # a leaf cannot vouch for another certificate
            with pytest.raises(signing.CertificateProblem):
                signing.check_chain(chain, [mfr.root], now)


def _appliance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "firmware", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_cli_pack_sign_verify(tmp_path: Path, kind: str) -> None:
    mfr = Manufacturer(tmp_path)
    signer = mfr.signer(kind)
    (tmp_path / "key.pem").write_bytes(key_pem(signer.key))
    (tmp_path / "cert.pem").write_text(pem(signer.cert))
    payload = tmp_path / "wheels"
    payload.mkdir()
    (payload / "appliance-2.0.0-py3-none-any.whl").write_bytes(b"PK" + bytes(1000))
    image_file = tmp_path / "fw.img"
    packed = _appliance("pack", "--version", "2.0.0", "--payload", str(payload), "--out", str(image_file))
    assert packed.returncode == 0, packed.stderr
    signed = _appliance("sign", "--key", str(tmp_path / "key.pem"), str(image_file))
    assert signed.returncode == 0, signed.stderr
    signature = signed.stdout.strip()
    assert signing.verify_signature(signer.cert, signature, image_file)
    ok = _appliance("verify", "--cert", str(tmp_path / "cert.pem"), "--signature", signature, str(image_file))
    assert ok.returncode == 0 and "2.0.0" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "sig.txt").write_text(signature + "\n")
    from_file = _appliance(
        "verify", "--cert", str(tmp_path / "cert.pem"), "--signature", f"@{tmp_path / 'sig.txt'}", str(image_file)
    )
    assert from_file.returncode == 0
    image_file.write_bytes(image_file.read_bytes()[:-1] + b"!")
    bad = _appliance("verify", "--cert", str(tmp_path / "cert.pem"), "--signature", signature, str(image_file))
    assert bad.returncode == 1 and "INVALID" in bad.stdout


def test_cli_verify_signed_but_not_an_image(tmp_path: Path) -> None:
    mfr = Manufacturer(tmp_path)
    signer = mfr.signer("ec")
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"not an image" * 100)
    (tmp_path / "cert.pem").write_text(pem(signer.cert))
    result = _appliance(
        "verify", "--cert", str(tmp_path / "cert.pem"), "--signature", signer.sign(foreign), str(foreign)
    )
    assert result.returncode == 1 and "not a sound firmware image" in result.stdout

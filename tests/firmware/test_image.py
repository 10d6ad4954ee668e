"""The image format: pack → verify → unpack, and every way an image can be damaged or foreign."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from appliance.firmware import image
from tests.firmware.pki import make_image


def test_pack_verify_unpack_round_trip(tmp_path: Path) -> None:
    path = make_image(tmp_path, "2.0.0", entry_script="#!/bin/sh\nexit 0\n", size=300_000)
    manifest = image.verify(path)
    assert manifest.version == "2.0.0" and manifest.entry == "start"
    assert set(manifest.files) == {"payload/release.bin", "payload/start"}
    dest = tmp_path / "slot"
    dest.mkdir()
    image.unpack(path, dest)
    assert (dest / "payload" / "release.bin").read_bytes() == (tmp_path / "payload-2.0.0" / "release.bin").read_bytes()
    assert (dest / "payload" / "start").stat().st_mode & 0o100  # still executable
    assert image.Manifest.parse((dest / "manifest.json").read_bytes()).version == "2.0.0"


def test_image_without_payload(tmp_path: Path) -> None:
    out = tmp_path / "empty.img"
    image.pack("3.1", out)
    assert image.verify(out).files == {}


def test_one_flipped_byte_in_the_payload_is_found(tmp_path: Path) -> None:
    path = make_image(tmp_path, "2.0.0", size=50_000)
    data = bytearray(path.read_bytes())
    spot = data.find(bytes(range(256)))  # inside release.bin
    data[spot + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(image.ImageError, match="damaged"):
        image.verify(path)
    dest = tmp_path / "slot"
    dest.mkdir()
    with pytest.raises(image.ImageError):
        image.unpack(path, dest)
    assert not (dest / "manifest.json").exists()  # an incomplete slot never looks installed


def test_truncated_image(tmp_path: Path) -> None:
    path = make_image(tmp_path, "2.0.0", size=50_000)
    path.write_bytes(path.read_bytes()[:20_000])
    with pytest.raises(image.ImageError):
        image.verify(path)


def test_a_file_that_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "foreign.bin"
    path.write_bytes(b"\x7fELF" + bytes(5000))
    with pytest.raises(image.ImageError, match="not a firmware image"):
        image.verify(path)


def _tar_with(tmp_path: Path, manifest: dict, members: dict[str, bytes]) -> Path:
    path = tmp_path / "crafted.img"
    with tarfile.open(path, "w") as tar:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _manifest(files: dict) -> dict:
    return {"format": "appliance-firmware", "formatVersion": 1, "version": "9", "entry": None, "files": files}


def test_member_outside_payload_is_refused(tmp_path: Path) -> None:
    import hashlib

    data = b"root::0:0::/:/bin/sh\n"
    info = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    with pytest.raises(image.ImageError, match="outside"):
        image.verify(
            _tar_with(tmp_path, _manifest({"payload/../../etc/passwd": info}), {"payload/../../etc/passwd": data})
        )


def test_unlisted_and_missing_members_are_refused(tmp_path: Path) -> None:
    with pytest.raises(image.ImageError, match="not in the manifest"):
        image.verify(_tar_with(tmp_path, _manifest({}), {"payload/extra": b"x"}))
    with pytest.raises(image.ImageError, match="lacks"):
        image.verify(_tar_with(tmp_path, _manifest({"payload/gone": {"sha256": "0" * 64, "size": 1}}), {}))


def test_wrong_format_version(tmp_path: Path) -> None:
    manifest = _manifest({})
    manifest["formatVersion"] = 2
    with pytest.raises(image.ImageError, match="format version"):
        image.verify(_tar_with(tmp_path, manifest, {}))

"""The firmware image: a tar file whose first member is a manifest naming every other member's digest.

    manifest.json            {"format": "appliance-firmware", "formatVersion": 1, "version": "1.2.0",
                              "created": "…Z", "entry": "bin/start" | null,
                              "files": {"payload/bin/start": {"sha256": "…", "size": 123, "mode": 493}, …}}
    payload/…                the payload (e.g. the wheels or a virtualenv of a new release), any layout

The image checks itself, independently of OCPP's signature (which only proves who made the file): every member
must be a regular file or directory under `payload/`, listed in the manifest with its exact size and SHA-256,
and every listed file must be present. A damaged byte anywhere in a payload file, a truncated image, a tar
member outside `payload/` (`../etc/passwd`), a link or device, or a file that is not an image at all is refused
with an `ImageError` saying why. `entry`, if given, is the program a launcher starts from the installed slot
(README "Firmware update"); without one the slot is data and the station's own code runs it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from appliance.util.deferred import Deferred

if TYPE_CHECKING:
    import tarfile
else:  # only packing and installing an image read tar files (~0.5 MB of RSS a station need not hold)
    tarfile = Deferred("tarfile")

FORMAT = "appliance-firmware"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PAYLOAD = "payload"
#: A manifest larger than this is not ours (it lists files, it does not hold them).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
CHUNK = 1024 * 1024


class ImageError(Exception):
    """The file is not a well-formed, undamaged firmware image."""


@dataclass(frozen=True)
class Manifest:
    version: str
    entry: str | None
    files: dict[str, dict[str, Any]]
    created: str

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT,
                "formatVersion": FORMAT_VERSION,
                "version": self.version,
                "created": self.created,
                "entry": self.entry,
                "files": self.files,
            },
            indent=1,
            sort_keys=True,
        ).encode()

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ImageError(f"the manifest is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ImageError("not an appliance firmware image (manifest format)")
        if data.get("formatVersion") != FORMAT_VERSION:
            raise ImageError(f"image format version {data.get('formatVersion')!r} is not supported")
        version, files, entry = data.get("version"), data.get("files"), data.get("entry")
        if not isinstance(version, str) or not 1 <= len(version) <= 50:
            raise ImageError("the manifest's version must be a string of 1-50 characters")
        if not isinstance(files, dict):
            raise ImageError("the manifest's files must be an object")
        for name, info in files.items():
            _member_path(name)
            if (
                not isinstance(info, dict)
                or not isinstance(info.get("sha256"), str)
                or type(info.get("size")) is not int
                or info["size"] < 0
            ):
                raise ImageError(f"the manifest's entry for {name} needs sha256 and size")
        if entry is not None and (not isinstance(entry, str) or f"{PAYLOAD}/{entry}" not in files):
            raise ImageError(f"the manifest's entry {entry!r} is not one of its files")
        return cls(version, entry, files, str(data.get("created", "")))


def _member_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != PAYLOAD:
        raise ImageError(f"member {name!r} is outside {PAYLOAD}/")
    return path


def _payload_files(payload: Path) -> Iterator[tuple[Path, str]]:
    if payload.is_file():
        yield payload, f"{PAYLOAD}/{payload.name}"
        return
    for path in sorted(payload.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ImageError(f"{path}: only regular files and directories can go into an image")
        if path.is_file():
            yield path, f"{PAYLOAD}/{path.relative_to(payload).as_posix()}"


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def pack(version: str, out: Path, payload: Path | None = None, entry: str | None = None) -> Manifest:
    """Build an image of `version` from `payload` (a file or a directory, optional) into `out`."""
    members = list(_payload_files(payload)) if payload is not None else []
    files = {
        name: {"sha256": _digest(path), "size": path.stat().st_size, "mode": path.stat().st_mode & 0o755}
        for path, name in members
    }
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest = Manifest.parse(Manifest(version, entry, files, created).to_json())  # the same checks as a reader's
    raw = manifest.to_json()
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(raw), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(raw))
        for path, name in members:
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as f:
                tar.addfile(info, f)
    os.replace(tmp, out)
    return manifest


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageError(f"not a firmware image (not a tar file: {exc})") from None


def _read_manifest(tar: tarfile.TarFile) -> Manifest:
    try:
        first = tar.next()
    except (tarfile.TarError, EOFError) as exc:
        raise ImageError(f"damaged image: {exc}") from None
    if first is None or first.name != MANIFEST or not first.isfile() or first.size > MAX_MANIFEST_BYTES:
        raise ImageError(f"not a firmware image (the first member is not {MANIFEST})")
    raw = tar.extractfile(first)
    assert raw is not None
    return Manifest.parse(raw.read())


def _members(tar: tarfile.TarFile, manifest: Manifest) -> Iterator[tuple[tarfile.TarInfo, PurePosixPath]]:
    """The payload members in order, each checked against the manifest (not yet its digest)."""
    seen: set[str] = set()
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ImageError(f"damaged image: {exc}") from None
        if member is None:
            break
        path = _member_path(member.name)
        if member.isdir():
            yield member, path
            continue
        if not member.isfile():
            raise ImageError(f"member {member.name!r} is a link or device; only files and directories are allowed")
        info = manifest.files.get(member.name)
        if info is None or member.name in seen:
            raise ImageError(f"member {member.name!r} is not in the manifest (or appears twice)")
        if member.size != info["size"]:
            raise ImageError(f"member {member.name!r} has {member.size} bytes, the manifest says {info['size']}")
        seen.add(member.name)
        yield member, path
    missing = set(manifest.files) - seen
    if missing:
        raise ImageError(f"the image lacks {len(missing)} file(s) its manifest lists, e.g. {sorted(missing)[0]}")


def _copy_checked(tar: tarfile.TarFile, member: tarfile.TarInfo, expected: str, out: io.BufferedIOBase | None) -> None:
    source = tar.extractfile(member)
    assert source is not None
    sha = hashlib.sha256()
    try:
        while chunk := source.read(CHUNK):
            sha.update(chunk)
            if out is not None:
                out.write(chunk)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ImageError(f"damaged image at {member.name}: {exc}") from None
    if sha.hexdigest() != expected:
        raise ImageError(f"member {member.name!r} is damaged (SHA-256 differs from the manifest)")


def verify(path: Path) -> Manifest:
    """Check the image's own integrity; its manifest, or ImageError."""
    with _open(path) as tar:
        manifest = _read_manifest(tar)
        for member, _ in _members(tar, manifest):
            if member.isfile():
                _copy_checked(tar, member, manifest.files[member.name]["sha256"], None)
    return manifest


def read_manifest(path: Path) -> Manifest:
    """The manifest only (no digests checked): what an installed slot says about itself."""
    with _open(path) as tar:
        return _read_manifest(tar)


def unpack(path: Path, dest: Path) -> Manifest:
    """Extract a verified copy of the image into the empty directory `dest`: each file is written and its digest
    checked in one pass, then fsynced; the manifest is written last, so a slot with a manifest is complete."""
    with _open(path) as tar:
        manifest = _read_manifest(tar)
        for member, rel in _members(tar, manifest):
            target = dest.joinpath(*rel.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                _copy_checked(tar, member, manifest.files[member.name]["sha256"], out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(target, int(manifest.files[member.name].get("mode", 0o644)) & 0o755)
    raw = manifest.to_json()
    with open(dest / MANIFEST, "wb") as out:
        out.write(raw)
        out.flush()
        os.fsync(out.fileno())
    return manifest

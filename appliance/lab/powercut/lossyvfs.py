"""A power-loss model for SQLite: a VFS (on apsw) that knows which bytes have reached stable storage.

Why: a SIGKILL leaves the OS page cache intact, so it cannot tell `synchronous=FULL` from NORMAL or OFF
(research/resilience.md §1.3, measured). To test what a *power cut* does to the journal we need a disk that
forgets what was never fsynced. This module is that disk, in the spirit of SQLite's own crash VFS (test6.c) and
of TH3's snapshot VFS (testing.html §3.3), written here from the description, not copied.

The model, per file SQLite opens (main database, WAL, rollback/super journal; temp files are not tracked):

* Every xWrite / xTruncate goes through to the real file at once: the real file is the *page cache*, what a
  running process sees. The same operation is also appended to the file's list of *unsynced* operations.
* xSync folds the unsynced operations, in order, into the file's *durable image* (what stable storage holds)
  and clears the list. The real fsync is skipped: the durable image is the disk, and skipping makes FULL fast.
* A file's directory entry is durable only after a directory sync. SQLite's unix VFS fsyncs the directory the
  first time it syncs a WAL or journal it opened with SQLITE_OPEN_CREATE (`UNIXFILE_DIRSYNC`); this VFS does the
  same. Nothing dir-syncs a new main database file, which is why `open_station_db` calls `fsync_dir` after
  creating it; the harness calls `Disk.sync_dir()` at that same point.
* xDelete is durable at once (modelled as if followed by a directory sync). SQLite only deletes the WAL on
  the last close, after a full checkpoint; a deletion that "comes back" is the DELETE-journal hazard, not ours.
* The `-shm` wal-index is handled by the inherited unix VFS (shared memory on the real `-shm` file) and is not
  part of the model: a power cut loses it, and SQLite rebuilds it from the WAL.
* The power cut is a snapshot taken just *before* the armed I/O operation (the N-th write/truncate/sync from
  now): per file, the durable image, plus — in the "partial flush" variant — each unsynced operation kept
  independently with probability `keep_fraction`, applied in their original order (the page cache wrote some
  dirty pages back before the power went; writes are whole: no torn sectors, as SQLite's powersafe-overwrite
  assumption allows). A file whose directory entry is not durable survives with the same probability (0 in
  the "drop everything" variant). Everything the connection does after the snapshot is irrelevant: the
  snapshot is what the next boot finds.

The VFS reports only SQLITE_IOCAP_POWERSAFE_OVERWRITE as device characteristics (what the unix VFS reports on
ext4), so SQLite makes no atomic-write or sequential-write assumptions the model does not honour.
"""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import apsw

#: (offset, data) for a write, or the new size for a truncate.
FileOp = tuple[int, bytes] | int

#: The files the model tracks: what must survive. Temp files, sub-journals, transient tables do not survive anyway.
_TRACKED = (
    apsw.SQLITE_OPEN_MAIN_DB | apsw.SQLITE_OPEN_WAL | apsw.SQLITE_OPEN_MAIN_JOURNAL | apsw.SQLITE_OPEN_SUPER_JOURNAL
)
#: The file kinds whose first sync also syncs the directory in SQLite's unix VFS (os_unix.c, unixOpen).
_DIRSYNC_KINDS = apsw.SQLITE_OPEN_WAL | apsw.SQLITE_OPEN_MAIN_JOURNAL | apsw.SQLITE_OPEN_SUPER_JOURNAL

_vfs_names = itertools.count()


def apply_op(image: bytearray, op: FileOp) -> None:
    """Apply one write or truncate to an in-memory file image (a write past the end leaves a zero-filled hole)."""
    if isinstance(op, int):
        if op < len(image):
            del image[op:]
        else:
            image.extend(bytes(op - len(image)))
        return
    offset, data = op
    if offset > len(image):
        image.extend(bytes(offset - len(image)))
    image[offset : offset + len(data)] = data


@dataclass
class TrackedFile:
    """What the model knows about one file: its durable image and the operations since its last sync."""

    durable: bytearray
    pending: list[FileOp] = field(default_factory=list)
    entry_durable: bool = False
    dirsync_pending: bool = False

    def volatile(self) -> bytes:
        """The content a running process sees: the durable image with every unsynced operation applied."""
        image = bytearray(self.durable)
        for op in self.pending:
            apply_op(image, op)
        return bytes(image)


class Disk:
    """The storage model shared by one VFS and its files; also where the power cut is armed and taken.

    `keep_fraction` is the chance that an unsynced operation (or an unsynced directory entry) made it to stable
    storage anyway: 0.0 drops every unsynced write, 0.5 models a partial, reordered writeback.
    """

    def __init__(self, *, keep_fraction: float = 0.0, rng: random.Random | None = None) -> None:
        if not 0.0 <= keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be within 0..1, not {keep_fraction}")
        self.keep_fraction = keep_fraction
        self._rng = rng or random.Random(0)
        self.files: dict[str, TrackedFile] = {}
        #: Mutating I/O operations (write, truncate, sync) on tracked files so far.
        self.io_ops = 0
        self._trip_at: int | None = None
        #: Set by the power cut: path -> the bytes the next boot finds (files absent here do not exist).
        self.image: dict[str, bytes] | None = None
        #: The value of `io_ops` when the cut was taken, and how many unsynced operations it found.
        self.cut_at_io: int | None = None
        self.unsynced_at_cut = 0

    # --- what the VFS reports --------------------------------------------------------------------------------

    def opened(self, path: str, *, existed: bool, dirsync: bool) -> None:
        """A tracked file was opened; a file we have never seen that already existed counts as durable."""
        tracked = self.files.get(path)
        if tracked is None:
            if existed:
                tracked = TrackedFile(bytearray(Path(path).read_bytes()), entry_durable=True)
            else:
                tracked = TrackedFile(bytearray())
            self.files[path] = tracked
        tracked.dirsync_pending = tracked.dirsync_pending or dirsync

    def before_io(self) -> None:
        """Called before every mutating operation: takes the power-cut snapshot when the armed count is reached."""
        if self._trip_at is not None and self.image is None and self.io_ops >= self._trip_at:
            self.image = self.snapshot()
            self.cut_at_io = self.io_ops
            self.unsynced_at_cut = sum(len(t.pending) for t in self.files.values())
        self.io_ops += 1

    def written(self, path: str, offset: int, data: bytes) -> None:
        tracked = self.files.get(path)
        if tracked is not None:  # writes to an unlinked-but-open file can never be found again
            tracked.pending.append((offset, data))

    def truncated(self, path: str, size: int) -> None:
        tracked = self.files.get(path)
        if tracked is not None:
            tracked.pending.append(size)

    def synced(self, path: str) -> None:
        tracked = self.files.get(path)
        if tracked is None:
            return
        for op in tracked.pending:
            apply_op(tracked.durable, op)
        tracked.pending.clear()
        if tracked.dirsync_pending:
            tracked.dirsync_pending = False
            self.sync_dir()

    def deleted(self, path: str) -> None:
        self.files.pop(path, None)

    def sync_dir(self) -> None:
        """fsync of the (single) data directory: every current directory entry becomes durable."""
        for tracked in self.files.values():
            tracked.entry_durable = True

    # --- the power cut ---------------------------------------------------------------------------------------

    def arm(self, after_ios: int) -> None:
        """Cut the power just before the mutating I/O operation `after_ios` operations from now (0 = the next)."""
        if after_ios < 0:
            raise ValueError("after_ios must be >= 0")
        self._trip_at = self.io_ops + after_ios

    def _kept(self) -> bool:
        return self.keep_fraction > 0.0 and self._rng.random() < self.keep_fraction

    def snapshot(self) -> dict[str, bytes]:
        """What stable storage holds if the power goes now (random where `keep_fraction` says so)."""
        image: dict[str, bytes] = {}
        for path, tracked in self.files.items():
            if not tracked.entry_durable and not self._kept():
                continue
            content = bytearray(tracked.durable)
            for op in tracked.pending:
                if self._kept():
                    apply_op(content, op)
            image[path] = bytes(content)
        return image


def write_image(image: dict[str, bytes], directory: Path) -> list[Path]:
    """Materialise a power-cut image as real files (same base names) in `directory`, e.g. for the next boot."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for path, content in sorted(image.items()):
        target = directory / Path(path).name
        target.write_bytes(content)
        written.append(target)
    return written


class LossyFile(apsw.VFSFile):
    """A file of the default (unix) VFS whose mutating operations are reported to the `Disk` model."""

    def __init__(self, disk: Disk, name: str | apsw.URIFilename | None, flags: list[int]) -> None:
        path = name.filename() if isinstance(name, apsw.URIFilename) else name
        existed = path is not None and os.path.exists(path)
        super().__init__("", name, flags)  # "" = inherit the default VFS, including the xShm methods WAL needs
        inflags = flags[0]
        self._disk = disk
        self._path = path if path is not None and inflags & _TRACKED else None
        if self._path is not None:
            dirsync = bool(inflags & _DIRSYNC_KINDS) and bool(inflags & apsw.SQLITE_OPEN_CREATE)
            disk.opened(self._path, existed=existed, dirsync=dirsync)

    def xWrite(self, data: bytes, offset: int) -> None:
        if self._path is None:
            super().xWrite(data, offset)
            return
        self._disk.before_io()
        super().xWrite(data, offset)
        self._disk.written(self._path, offset, bytes(data))

    def xTruncate(self, newsize: int) -> None:
        if self._path is None:
            super().xTruncate(newsize)
            return
        self._disk.before_io()
        super().xTruncate(newsize)
        self._disk.truncated(self._path, newsize)

    def xSync(self, flags: int) -> None:
        if self._path is None:
            super().xSync(flags)
            return
        self._disk.before_io()
        self._disk.synced(self._path)  # the model is the disk: no real fsync needed

    def xDeviceCharacteristics(self) -> int:
        return apsw.SQLITE_IOCAP_POWERSAFE_OVERWRITE


class LossyVFS(apsw.VFS):
    """The VFS to open a connection through (`apsw.Connection(path, vfs=vfs.name)`); unregister when done."""

    def __init__(self, disk: Disk, name: str | None = None) -> None:
        self.disk = disk
        self.name = name or f"lossy-{os.getpid()}-{next(_vfs_names)}"
        super().__init__(self.name, "")

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> LossyFile:
        return LossyFile(self.disk, name, flags)

    def xDelete(self, filename: str, syncdir: bool) -> None:
        super().xDelete(filename, syncdir)
        self.disk.deleted(filename)

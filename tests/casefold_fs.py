"""A case- and normalization-insensitive file system for the tests: a FUSE mount over a
directory, where two names that differ only in letter case or Unicode normalization
(NFC/NFD) are one name, as on macOS's default APFS volumes and on Windows. It keeps the
name a file was created with.

    python tests/casefold_fs.py BACKING MOUNTPOINT     # runs until unmounted

:func:`mounted` starts it, waits for the mount, and unmounts it afterwards; it skips the
test where FUSE is not available (no ``/dev/fuse``, no ``fusermount``, no permission).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _serve(backing: str, mountpoint: str) -> None:
    from fuse import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]

    class CaseFold(Operations):  # type: ignore[misc]
        def __init__(self, root: str) -> None:
            self.root = root

        def _real(self, path: str) -> str:
            """The backing path of ``path``: each part matched to an entry of the same fold."""
            real = self.root
            for part in [p for p in path.split("/") if p]:
                try:
                    names = os.listdir(real)
                except (FileNotFoundError, NotADirectoryError):
                    names = []
                match = next((n for n in names if n == part), None) or next((n for n in names if fold(n) == fold(part)), None)
                real = os.path.join(real, match or part)
            return real

        def _call(self, fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except OSError as e:
                raise FuseOSError(e.errno or errno.EIO) from e

        def access(self, path: str, mode: int) -> None:
            if not os.access(self._real(path), mode):
                raise FuseOSError(errno.EACCES)

        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            st = self._call(os.lstat, self._real(path))
            return {k: getattr(st, k) for k in ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink",
                                                 "st_size", "st_uid", "st_ino")}

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", *self._call(os.listdir, self._real(path))]

        def mkdir(self, path: str, mode: int) -> None:
            self._call(os.mkdir, self._real(path), mode)

        def rmdir(self, path: str) -> None:
            self._call(os.rmdir, self._real(path))

        def unlink(self, path: str) -> None:
            self._call(os.unlink, self._real(path))

        def rename(self, old: str, new: str) -> None:
            self._call(os.replace, self._real(old), self._real(new))

        def chmod(self, path: str, mode: int) -> None:
            self._call(os.chmod, self._real(path), mode)

        def chown(self, path: str, uid: int, gid: int) -> None:
            self._call(os.chown, self._real(path), uid, gid)

        def utimens(self, path: str, times: Any = None) -> None:
            self._call(os.utime, self._real(path), times)

        def truncate(self, path: str, length: int, fh: Any = None) -> None:
            self._call(os.truncate, self._real(path), length)

        def open(self, path: str, flags: int) -> int:
            return int(self._call(os.open, self._real(path), flags))

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            return int(self._call(os.open, self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return bytes(self._call(os.pread, fh, size, offset))

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return int(self._call(os.pwrite, fh, data, offset))

        def flush(self, path: str, fh: int) -> None:
            return None

        def fsync(self, path: str, datasync: int, fh: int) -> None:
            self._call(os.fsync, fh)

        def fsyncdir(self, path: str, datasync: int, fh: Any) -> None:
            return None

        def opendir(self, path: str) -> int:
            if not os.path.isdir(self._real(path)):
                raise FuseOSError(errno.ENOTDIR)
            return 0

        def releasedir(self, path: str, fh: Any) -> None:
            return None

        def release(self, path: str, fh: int) -> None:
            self._call(os.close, fh)

        def statfs(self, path: str) -> dict[str, Any]:
            st = os.statvfs(self._real(path))
            return {k: getattr(st, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                                                 "f_files", "f_flag", "f_frsize", "f_namemax")}

    FUSE(CaseFold(backing), mountpoint, foreground=True, nothreads=True, use_ino=True)


@contextlib.contextmanager
def mounted(tmp: Path) -> Iterator[Path]:
    """A case-insensitive mount in ``tmp``; the test is skipped where FUSE cannot mount."""
    import pytest

    try:
        import fuse  # noqa: F401  (fusepy; it loads libfuse.so.2 when imported)
    except (ImportError, OSError) as e:
        pytest.skip(f"fusepy or libfuse 2 is not available: {e}")
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount") is None:
        pytest.skip("FUSE is not available here (/dev/fuse, fusermount)")
    backing, mnt = tmp / "casefold-backing", tmp / "casefold"
    backing.mkdir()
    mnt.mkdir()
    log = tmp / "casefold.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, __file__, str(backing), str(mnt)], stderr=err)
    deadline = time.monotonic() + 20
    while not os.path.ismount(mnt):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.skip(f"cannot mount a FUSE file system here: {log.read_text(errors='replace').strip()[-300:]}")
        time.sleep(0.05)
    try:
        yield mnt
    finally:
        subprocess.run(["fusermount", "-u", "-z", str(mnt)], check=False, capture_output=True)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])

"""Files in a run directory, read and written by the harness without trusting what is there.

A run directory is writable by the run (its result file lives there), so anything in it may be
a trap laid by the candidate: a symlink to `.overnight/journal.db` or to a protected file that
a later `open(..., "wb")` of the harness would truncate, a hard link to the same, a FIFO that
blocks a reader forever, a sparse file of gigabytes that a `read_text()` pulls into memory, a
directory where a file is expected. The rules here:

- **reading** (`read_capped`): opened with O_NOFOLLOW and O_NONBLOCK, accepted only if it is a
  regular file, read up to a size cap; anything else is `TrapError` with the reason.
- **writing** (`create_fresh`): whatever holds the name is removed first (a link is unlinked,
  never followed; a directory is removed), then the file is created with O_EXCL|O_NOFOLLOW, so
  the harness writes a new inode of its own and never through a name the run prepared.
- **checking** (`traps`): after a run, the harness's record names in its directory must be
  absent or plain regular files with one link; a run that left anything else is `invalid`.

What this does NOT protect against: a run that swaps a name between the harness's check and
its open (the open still refuses links and FIFOs, so the worst case is a refused read), or a
process of the run that is still alive and writes into a file after the harness read it (the
runner kills the whole process tree before it reads anything).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

RESULT_CAP = 1 << 20  # a result file is a small JSON object; 1 MiB is far more than any task writes
TAIL_CAP = 1 << 14  # the log tail the harness shows and parses


class TrapError(OSError):
    """A run-directory file the harness must not use: the message says what it is."""


def _describe(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_capped(path: Path, cap: int = RESULT_CAP, tail: bool = False) -> bytes:
    """The bytes of the regular file `path` (at most `cap`: the last `cap` with `tail`).
    FileNotFoundError when absent; TrapError for a link, FIFO, directory, device, a file of
    several names (a hard link) or, without `tail`, a file over the cap."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TrapError(f"{path.name} is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TrapError(f"{path.name} is {_describe(st.st_mode)}")
        if st.st_nlink > 1:
            raise TrapError(f"{path.name} is a hard link ({st.st_nlink} names)")
        if st.st_size > cap:
            if not tail:
                raise TrapError(f"{path.name} is {st.st_size} bytes (more than {cap})")
            os.lseek(fd, st.st_size - cap, os.SEEK_SET)
        chunks, left = [], cap
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Remove whatever holds the name `path` (file, link, FIFO, directory), following nothing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def create_fresh(path: Path):
    """A new binary file at `path`, opened for writing: what held the name is removed first,
    and the creation is exclusive and follows no link, so nothing the run prepared is written
    through."""
    remove(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "wb")


def write_fresh(path: Path, data: bytes | str) -> None:
    with create_fresh(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def traps(run_dir: Path, names) -> list[str]:
    """What is wrong with the harness's record names in `run_dir` (empty: nothing)."""
    found = []
    for name in names:
        try:
            st = os.lstat(run_dir / name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            found.append(f"{name}: {exc.strerror}")
            continue
        if not stat.S_ISREG(st.st_mode):
            found.append(f"{name} is {_describe(st.st_mode)}")
        elif st.st_nlink > 1:
            found.append(f"{name} is a hard link ({st.st_nlink} names)")
    return found

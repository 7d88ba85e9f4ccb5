"""Who opened the secret files while a run was alive: Linux inotify through ctypes (no new
dependency).

    with Watch([path, ...]) as w:     # before the run's process starts
        ...                           # the run, until every process of it is dead
    w.hits                            # ["opened .overnight/heldout/ab12.bin", ...]

A directory in the list is watched for its files (not recursively); a file, for itself. Each
Watch is its own inotify instance (close-on-exec, never inherited by the run), so concurrent
runs each see every event. inotify says that a file was opened or read, not by whom: every
run alive at the time sees the event, and the harness must not open a watched file itself
while runs are in flight (heldout_store.py keeps the held-out tokens in memory for that). An
overflowing event queue counts as a hit (the events it dropped may have been opens).

What it does not see: a read through a file descriptor opened before the watch started; a read
of another copy of the data (a hard link is the same inode and is seen; a copy is not); and,
where inotify is missing (not Linux, or no instances left), anything: `available()` says why,
and the run goes on unwatched with that reason in its summary.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
from pathlib import Path

IN_ACCESS, IN_OPEN = 0x001, 0x020
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def available() -> str:
    """'' when inotify works here, else why not."""
    if not sys.platform.startswith("linux"):
        return "inotify needs Linux"
    try:
        fd = _lib().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    except (OSError, AttributeError) as exc:
        return f"no inotify in the C library ({exc})"
    if fd < 0:
        return f"inotify_init1 failed ({os.strerror(ctypes.get_errno())})"
    os.close(fd)
    return ""


class Watch:
    def __init__(self, paths: list[Path]):
        self.paths = [Path(p) for p in paths if Path(p).exists()]
        self.fd = -1
        self.wds: dict[int, Path] = {}
        self.hits: list[str] = []
        self.unavailable = ""

    def __enter__(self) -> Watch:
        if not self.paths:
            return self
        self.unavailable = available()
        if self.unavailable:
            return self
        self.fd = _lib().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        for p in self.paths:
            wd = _lib().inotify_add_watch(self.fd, os.fsencode(p), IN_OPEN | IN_ACCESS)
            if wd < 0:
                self.unavailable = f"inotify_add_watch({p}) failed ({os.strerror(ctypes.get_errno())})"
            else:
                self.wds[wd] = p
        return self

    def poll(self) -> list[str]:
        """Read the events queued so far into `hits` (also called by __exit__)."""
        while self.fd >= 0:
            try:
                data = os.read(self.fd, 65536)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                raise
            self._parse(data)
        return self.hits

    def _parse(self, data: bytes) -> None:
        i = 0
        while i + _EVENT.size <= len(data):
            wd, mask, _, n = _EVENT.unpack_from(data, i)
            name = data[i + _EVENT.size : i + _EVENT.size + n].rstrip(b"\0").decode(errors="replace")
            i += _EVENT.size + n
            if mask & IN_Q_OVERFLOW:
                self._hit("the event queue overflowed (many opens or reads)")
                continue
            if mask & IN_IGNORED or mask & IN_ISDIR or wd not in self.wds:
                continue  # a directory listed (globbing finds the name, not the data), or a watch gone
            base = self.wds[wd]
            if base.is_dir() and not name:
                continue  # the directory itself opened for listing
            what = "opened" if mask & IN_OPEN else "read"
            self._hit(f"{what} {base / name if name else base}")

    def _hit(self, text: str) -> None:
        if text not in self.hits:
            self.hits.append(text)

    def __exit__(self, *exc) -> None:
        try:
            self.poll()
        finally:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

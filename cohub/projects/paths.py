"""Paths inside a project's home directory, and nothing outside it.

Every path a caller names (exec's working directory, a file to read or write, a copy's source
and target) goes through ``inside``: it must be relative, must not climb with ``..``, and must
still be inside the home once symlinks are resolved. The last rule is what stops a link the
project made (``ln -s / root``) from carrying a write or read out of the home.

This confines the project API, not the processes a project runs: exec runs arbitrary
commands as the project server's OS user (see runner.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from pathlib import Path

MAX_PATH = 4096
PRIVATE = ".smc"  # the runner's files in a home: the secret token, the server log


def is_private(home: Path, resolved: Path) -> bool:
    """True for ``<home>/.smc`` and what is in it: never copied between projects, since the
    secret token there lets whoever holds it act as the project."""
    return resolved.is_relative_to(home.resolve() / PRIVATE)


class PathRefused(ValueError):
    """A path that is not inside the project's home; the message says why."""


def check_relative(path: object, name: str = "path", *, allow_empty: bool = False) -> str:
    """The path as given, if it is a relative path without ``..``; PathRefused otherwise."""
    if not isinstance(path, str):
        raise PathRefused(f"'{name}' must be a string (a path inside the project)")
    if not path and not allow_empty:
        raise PathRefused(f"'{name}' must be a non-empty path inside the project")
    if len(path) > MAX_PATH or "\x00" in path:
        raise PathRefused(f"'{name}' must be at most {MAX_PATH} characters, without NUL")
    if path.startswith("/") or path.startswith("~"):
        raise PathRefused(f"'{name}' must be relative to the project's home, not {path[:200]!r}")
    if ".." in posixpath.normpath(path or ".").split("/"):
        raise PathRefused(f"'{name}' must not leave the project's home with '..'")
    return path


def inside(home: Path, path: object, name: str = "path", *, allow_empty: bool = False) -> Path:
    """``home/path`` with symlinks resolved, refused unless it is inside ``home``.

    The path need not exist; whatever part of it exists is resolved, so a symlink anywhere
    on the way that points out of the home is caught."""
    rel = check_relative(path, name, allow_empty=allow_empty)
    root = home.resolve(strict=True)
    resolved = (root / rel).resolve(strict=False)
    if resolved != root and not resolved.is_relative_to(root):
        raise PathRefused(f"'{name}' ({rel[:200]!r}) leads outside the project's home (a symlink)")
    return resolved


def kind(mode: int) -> str:
    """What a file of ``st_mode`` is, in words for an error message."""
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "not a regular file"


class NotRegular(PathRefused):
    """A named pipe, socket or device where a regular file was meant: never opened for
    real, since opening a pipe blocks until someone opens the other end."""


def open_regular(path: Path, flags: int, name: str = "path", mode: int = 0o644) -> int:
    """``os.open`` that never blocks on, or hands out, anything but a regular file.

    ``O_NONBLOCK`` makes opening a named pipe return at once (or fail with ENXIO for a
    writer with no reader), ``O_NOFOLLOW`` refuses a symlink at the last component, and
    ``O_NOCTTY`` keeps a terminal from becoming ours; then fstat says what was opened, and
    anything but a regular file is closed and refused (NotRegular). For a regular file the
    descriptor is made blocking again."""
    flags |= os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        # refused before opening: O_TRUNC and opening a device may have effects of their own
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                raise PathRefused(f"'{name}' is a directory, not a file")
            raise NotRegular(f"'{name}' is {kind(st.st_mode)}; only regular files are opened")
    try:
        fd = os.open(path, flags, mode)
    except IsADirectoryError:
        raise PathRefused(f"'{name}' is a directory, not a file") from None
    except OSError as e:
        if e.errno == errno.ELOOP:  # the last component is (or became) a symlink
            raise PathRefused(f"'{name}' is a symlink; refusing to open it") from None
        if e.errno == errno.ENXIO:  # a pipe with no reader, a device with nothing behind
            raise NotRegular(
                f"'{name}' is not a regular file; only regular files are opened"
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"'{name}' is {kind(st.st_mode)}; only regular files are opened")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_for_write(home: Path, path: object, name: str = "path") -> int:
    """A file descriptor for writing ``path`` (created, truncated), its directories made.

    ``O_NOFOLLOW`` refuses a symlink that appears at the last moment, after ``inside``
    checked the path (a project process can race us); a named pipe, socket or device there
    is refused without blocking (``open_regular``)."""
    target = inside(home, path, name)
    if target == home.resolve():
        raise PathRefused(f"'{name}' names the home directory itself, not a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    # the parent may have been swapped meanwhile: check it again once it exists
    inside(home, os.path.relpath(target.parent, home.resolve()), name, allow_empty=True)
    return open_regular(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, name)


def open_for_read(home: Path, path: object, name: str = "path") -> int:
    """A file descriptor for reading ``path``: inside the home, a regular file."""
    return open_regular(inside(home, path, name), os.O_RDONLY, name)

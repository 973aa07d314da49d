"""Copy a file or directory from one project's home into another's, confined to both.

Every destination path is checked with ``paths.inside`` before anything is written, so a
symlink already in the target (``sub -> /etc``) cannot carry the copy out of its home.
Symlinks in the source are recreated as symlinks, never followed: a link to ``/etc`` copies
as that link, not as the contents of /etc.

With isolation the runner (root) copies with the projects' own rights: it reads as the
source project's user and writes as the target's (``isolation.as_user``, this thread only).
A project that swaps a directory for a symlink between our check and our open then reaches
only what its own user may, never the hub's files; and what is written belongs to the target.

Only regular files, directories and symlinks are copied. Named pipes, sockets and devices are
never opened (``paths.open_regular``: opening a pipe would block the copying thread until
someone opened its other end): named as the source or target they are refused, inside a
copied directory they are left out. A copy has a deadline (``deadline``, monotonic time),
checked between files and between chunks, so a huge tree cannot hold a thread forever.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import paths
from .isolation import User, as_user


class CopyTimedOut(TimeoutError):
    """The copy ran past its deadline; what was copied so far stays."""


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise CopyTimedOut("the copy took too long and was stopped; part of it may be copied")


def _copy_file(
    src: Path,
    dst_home: Path,
    dst_rel: str,
    reader: User | None,
    writer: User | None,
    deadline: float | None = None,
) -> int:
    _check(deadline)
    with as_user(reader):
        fd_in = paths.open_regular(src, os.O_RDONLY, "src_path")
    with os.fdopen(fd_in, "rb") as f_in:
        with as_user(writer):
            _target(dst_home, dst_rel)
            fd_out = paths.open_for_write(dst_home, dst_rel, "target_path")
        with os.fdopen(fd_out, "wb") as f_out:
            copied = 0
            while chunk := f_in.read(1 << 20):
                f_out.write(chunk)
                copied += len(chunk)
                _check(deadline)
    return copied


def _copy_link(
    src: Path, dst_home: Path, dst_rel: str, reader: User | None, writer: User | None
) -> None:
    with as_user(reader):
        link = os.readlink(src)
    with as_user(writer):
        dst = _target(dst_home, dst_rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        os.symlink(link, dst)


def _target(dst_home: Path, dst_rel: str) -> Path:
    dst = paths.inside(dst_home, dst_rel, "target_path")
    if paths.is_private(dst_home, dst):
        raise paths.PathRefused(f"'target_path' is inside the project's private {paths.PRIVATE}")
    return dst


def copy_path(
    src_home: Path,
    src_path: str,
    dst_home: Path,
    dst_path: str,
    *,
    reader: User | None = None,
    writer: User | None = None,
    deadline: float | None = None,
) -> int:
    """Copy ``src_path`` of one home to ``dst_path`` of the other (merging into an existing
    directory, replacing files), reading as ``reader`` and writing as ``writer`` (None: as
    this process), until ``deadline`` (``time.monotonic()``; CopyTimedOut after it). Returns
    the number of bytes copied; raises PathRefused (NotRegular for a pipe, socket or device)
    or OSError (FileNotFoundError when the source does not exist)."""
    paths.check_relative(src_path, "src_path")
    with as_user(reader):
        src_root = src_home.resolve(strict=True)
        # the source's directory with symlinks resolved, its last component as named: a
        # source that is a symlink copies as that symlink
        parent = paths.inside(src_home, os.path.dirname(src_path), "src_path", allow_empty=True)
        name = os.path.basename(os.path.normpath(src_path))
        src = parent if name in ("", ".") else parent / name
        if paths.is_private(src_root, src):
            raise paths.PathRefused(f"'src_path' names the project's private {paths.PRIVATE} files")
        if not os.path.lexists(src):
            raise FileNotFoundError(2, "no such file or directory in the source project", src_path)
        is_link, is_dir = src.is_symlink(), src.is_dir()
    with as_user(writer):
        dst = _target(dst_home, dst_path)
    if is_link:
        _copy_link(src, dst_home, dst_path, reader, writer)
        return 0
    if not is_dir:
        return _copy_file(src, dst_home, dst_path, reader, writer, deadline)
    if src == dst or dst.is_relative_to(src):
        raise paths.PathRefused("cannot copy a directory into itself")
    with as_user(reader):  # the whole listing first: reading and writing are different users
        tree = []
        for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
            _check(deadline)
            if Path(dirpath) == src_root and paths.PRIVATE in dirnames:
                dirnames.remove(paths.PRIVATE)  # copying the whole home leaves the secret behind
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            entries = []
            for name in [*filenames, *links]:
                entry = Path(dirpath) / name
                # sockets, fifos and devices are not copied
                kind = "link" if entry.is_symlink() else "file" if entry.is_file() else None
                if kind:
                    entries.append((entry, kind))
            tree.append((dirpath, entries))
    copied = 0
    for dirpath, entries in tree:
        rel_dir = os.path.relpath(dirpath, src)
        target_dir = dst_path if rel_dir == "." else os.path.join(dst_path, rel_dir)
        with as_user(writer):
            _target(dst_home, target_dir).mkdir(parents=True, exist_ok=True)
        for entry, kind in entries:
            rel = os.path.join(target_dir, entry.name)
            if kind == "link":
                _copy_link(entry, dst_home, rel, reader, writer)
                continue
            try:
                copied += _copy_file(entry, dst_home, rel, reader, writer, deadline)
            except paths.NotRegular:
                pass  # a pipe at the source (swapped in after the listing) or the target: left out
    return copied

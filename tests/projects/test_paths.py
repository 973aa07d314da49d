"""Confinement to a project's home: relative paths only, no '..', no symlink out; and copies
between two homes that stay inside both."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from cohub.projects import copying, paths


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    (h / "sub").mkdir(parents=True)
    (h / "sub" / "f.txt").write_text("in")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("out")
    return h


@pytest.mark.parametrize(
    "bad",
    ["/etc/passwd", "../outside/secret", "sub/../../outside", "~/x", "a\x00b", "", "x" * 5000],
)
def test_refused_by_name(home: Path, bad: str) -> None:
    with pytest.raises(paths.PathRefused):
        paths.inside(home, bad)


def test_non_strings_refused(home: Path) -> None:
    for bad in (None, 1, ["a"], {"a": 1}):
        with pytest.raises(paths.PathRefused, match="must be a string"):
            paths.inside(home, bad)


def test_inside_paths_resolve(home: Path) -> None:
    assert paths.inside(home, "sub/f.txt") == (home / "sub" / "f.txt").resolve()
    assert paths.inside(home, "new/dir/file") == (home / "new" / "dir" / "file").resolve()
    assert paths.inside(home, "sub/./x/../f.txt") == (home / "sub" / "f.txt").resolve()
    assert paths.inside(home, "", allow_empty=True) == home.resolve()
    (home / "link-in").symlink_to("sub")
    assert paths.inside(home, "link-in/f.txt") == (home / "sub" / "f.txt").resolve()


def test_symlinks_out_are_refused(home: Path) -> None:
    (home / "out").symlink_to(home.parent / "outside")
    (home / "abs").symlink_to("/etc")
    (home / "sub" / "up").symlink_to("../..")
    for bad in ("out", "out/secret", "out/new-file", "abs/passwd", "sub/up/outside/secret"):
        with pytest.raises(paths.PathRefused, match="outside the project's home"):
            paths.inside(home, bad)


def test_open_for_write_makes_directories_and_refuses_links(home: Path) -> None:
    fd = paths.open_for_write(home, "a/b/c.txt")
    os.write(fd, b"x")
    os.close(fd)
    assert (home / "a" / "b" / "c.txt").read_text() == "x"
    (home / "to-secret").symlink_to(home.parent / "outside" / "secret")
    with pytest.raises(paths.PathRefused):
        paths.open_for_write(home, "to-secret")
    with pytest.raises(paths.PathRefused, match="directory"):
        paths.open_for_write(home, "sub")
    assert (home.parent / "outside" / "secret").read_text() == "out"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    t = tmp_path / "target"
    t.mkdir()
    return t


def test_copy_file_and_tree(home: Path, target: Path) -> None:
    assert copying.copy_path(home, "sub/f.txt", target, "copied.txt") == 2
    assert (target / "copied.txt").read_text() == "in"
    (home / "sub" / "deep").mkdir()
    (home / "sub" / "deep" / "g").write_text("gg")
    (home / "sub" / "rel-link").symlink_to("f.txt")
    copying.copy_path(home, "sub", target, "tree")
    assert (target / "tree" / "f.txt").read_text() == "in"
    assert (target / "tree" / "deep" / "g").read_text() == "gg"
    assert os.readlink(target / "tree" / "rel-link") == "f.txt"


def test_copy_never_follows_source_links_out(home: Path, target: Path) -> None:
    (home / "sub" / "escape").symlink_to(home.parent / "outside")
    copying.copy_path(home, "sub", target, "tree")
    # the link is copied as a link; the outside directory's contents are not copied
    assert (target / "tree" / "escape").is_symlink()
    assert not any(p.name == "secret" and not p.is_symlink() for p in target.rglob("*"))
    with pytest.raises(paths.PathRefused):
        copying.copy_path(home, "../outside/secret", target, "x")
    with pytest.raises(paths.PathRefused):
        copying.copy_path(home, "sub/escape/secret", target, "x")


def test_copy_never_writes_through_target_links(home: Path, target: Path) -> None:
    (target / "tree").mkdir()
    (target / "tree" / "sub").symlink_to(home.parent / "outside")
    (home / "tree" / "sub").mkdir(parents=True)
    (home / "tree" / "sub" / "secret").write_text("overwritten?")
    with pytest.raises(paths.PathRefused):
        copying.copy_path(home, "tree", target, "tree")
    with pytest.raises(paths.PathRefused):
        copying.copy_path(home, "sub/f.txt", target, "/tmp/x")
    with pytest.raises(paths.PathRefused):
        copying.copy_path(home, "sub/f.txt", target, "../escaped")
    assert (home.parent / "outside" / "secret").read_text() == "out"
    assert not (home.parent / "escaped").exists()


def test_copy_leaves_the_private_files_behind(home: Path, target: Path) -> None:
    (home / ".smc").mkdir()
    (home / ".smc" / "secret_token").write_text("token")
    with pytest.raises(paths.PathRefused, match="private"):
        copying.copy_path(home, ".smc/secret_token", target, "stolen")
    with pytest.raises(paths.PathRefused, match="private"):
        copying.copy_path(home, ".smc", target, "stolen")
    copying.copy_path(home, ".", target, "everything")
    assert (target / "everything" / "sub" / "f.txt").exists()
    assert not (target / "everything" / ".smc").exists()
    with pytest.raises(paths.PathRefused, match="private"):
        copying.copy_path(home, "sub/f.txt", target, ".smc/secret_token")


def test_copy_into_itself_and_missing_source(home: Path) -> None:
    with pytest.raises(paths.PathRefused, match="into itself"):
        copying.copy_path(home, "sub", home, "sub/inner")
    with pytest.raises(FileNotFoundError):
        copying.copy_path(home, "nope", home, "x")


def _promptly(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """``fn(*args)`` in a daemon thread, failing (not hanging) if it blocks: opening a named
    pipe for real would wait for its other end forever."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(fn(*args, **kwargs))
        except BaseException as e:  # handed to the test below
            result.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), f"{fn.__name__} blocked"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_pipes_and_sockets_are_never_opened(home: Path, target: Path) -> None:
    os.mkfifo(home / "sub" / "pipe")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(home / "sub" / "sock"))
    try:
        with pytest.raises(paths.NotRegular, match="'src_path' is a named pipe"):
            _promptly(copying.copy_path, home, "sub/pipe", target, "p")
        with pytest.raises(paths.NotRegular, match="'src_path' is a socket"):
            _promptly(copying.copy_path, home, "sub/sock", target, "s")
        with pytest.raises(paths.NotRegular, match="named pipe"):
            _promptly(paths.open_for_read, home, "sub/pipe")
        # in a tree they are left out, the rest copied
        assert _promptly(copying.copy_path, home, "sub", target, "tree") == 2
        assert sorted(p.name for p in (target / "tree").iterdir()) == ["f.txt"]
        # a pipe at the target: refused, even while someone reads its other end (then
        # opening it would succeed at once and the write go into the pipe)
        os.mkfifo(target / "tpipe")
        reader = os.open(target / "tpipe", os.O_RDONLY | os.O_NONBLOCK)
        try:
            with pytest.raises(paths.NotRegular, match="'target_path' is a named pipe"):
                _promptly(copying.copy_path, home, "sub/f.txt", target, "tpipe")
            with pytest.raises(paths.NotRegular, match="named pipe"):
                _promptly(paths.open_for_write, target, "tpipe")
            assert os.read(reader, 10) == b""
        finally:
            os.close(reader)
    finally:
        listener.close()


def test_a_copy_stops_at_its_deadline(home: Path, target: Path) -> None:
    with pytest.raises(copying.CopyTimedOut):
        copying.copy_path(home, "sub", target, "late", deadline=time.monotonic() - 1)
    assert copying.copy_path(home, "sub", target, "ok", deadline=time.monotonic() + 60) == 2

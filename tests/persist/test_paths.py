"""Which storage paths a scope may use (conat.md section 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cohub.conat.errors import BadRequest, PermissionDenied
from cohub.persist.paths import MAX_PATH_LENGTH, check_path, file_for, scope_of

A = "7a052e93-3a89-467b-9cc3-fe6ac5956405"
B = "c9d43118-acb6-4d3b-bd20-2a0b347ecc6e"


def test_scope_is_the_second_subject_token() -> None:
    assert scope_of(f"persist.account-{A}.server.x") == f"account-{A}"
    assert scope_of("persist.hub.id") == "hub"
    with pytest.raises(BadRequest):
        scope_of("other.hub")


@pytest.mark.parametrize(
    "scope, path",
    [
        (f"account-{A}", f"accounts/{A}/log"),
        (f"account-{A}", f"accounts/{A}/deep/er/file.txt"),
        (f"project-{B}", f"projects/{B}/x"),
        ("hub", "anything/at/all"),
        ("hub", f"accounts/{A}/x"),
    ],
)
def test_allowed(scope: str, path: str) -> None:
    assert check_path(scope, path) == path


@pytest.mark.parametrize(
    "path",
    [
        f"accounts/{A}/../{B}/x",  # climbs into another account
        f"accounts/{A}/a/../../../etc",
        "../x",
        f"accounts/{A}/./x",
        f"accounts/{A}//x",
        f"/accounts/{A}/x",  # absolute
        f"accounts/{A}/x/",
        f"accounts/{A}/%2e%2e/%2e%2e/{B}/x",  # encoded
        f"accounts/{A}/%2E%2E/x",
        f"accounts/{B}/x",  # another account's scope
        f"projects/{A}/x",  # the right id under the wrong kind
        f"accounts/{A}",  # the scope root itself
        f"accounts/{A}x/y",
        f"accounts/{A}/a\\..\\b",
        f"accounts/{A}/a\x00b",
        f"accounts/{A}/" + "x" * MAX_PATH_LENGTH,
    ],
)
def test_refused(path: str) -> None:
    with pytest.raises(PermissionDenied):
        check_path(f"account-{A}", path)


@pytest.mark.parametrize("path", [None, 3, ["a"], ""])
def test_wrong_types(path: object) -> None:
    with pytest.raises(BadRequest):
        check_path("hub", path)


def test_unknown_scope_refused() -> None:
    with pytest.raises(PermissionDenied):
        check_path("sys", "x")


def test_symlink_out_of_the_sync_dir_refused(tmp_path: Path) -> None:
    sync = tmp_path / "sync"
    (sync / "accounts").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (sync / "accounts" / A).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionDenied):
        file_for(sync, f"accounts/{A}/x")
    assert file_for(sync, "hub/x") == sync.resolve() / "hub" / "x.db"

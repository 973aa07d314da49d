"""Persist fixtures: a server of our own, with two persist processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Server, start_server, stop_server


@pytest.fixture(scope="module")
def persist_server(
    pg_schema_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of our own (its persist processes get killed): two persist processes."""
    data_dir = tmp_path_factory.mktemp("persist")
    db = pg_schema_url or f"sqlite:///{data_dir / 'cohub.sqlite3'}"
    srv = start_server(data_dir, db, "--persist-count", "2", "--persist-server-id-prefix", "test")
    yield srv
    stop_server(srv)

"""Shared fixtures. Keep each one small and real (no mocks): servers bind 127.0.0.1 and stop on teardown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.http_server import StaticServer


@pytest.fixture
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticServer]:
    """A Range-capable static HTTP server over an empty temp folder (``server.root``); stopped after the test."""
    with StaticServer(tmp_path_factory.mktemp("www")) as server:
        yield server

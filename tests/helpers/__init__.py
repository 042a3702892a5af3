"""Reusable test helpers (real servers, no mocks): ``from tests.helpers.http_server import StaticServer``."""

"""What the ``server`` package adds to har-stream, found through entry points instead of imports.

``server`` builds on ``har_stream`` and never the reverse (tests/test_import_direction.py). So the ``serve``
sub-command and the in-process server that ``bench live``, ``jobs`` and ``cameras`` start belong to the
server package, which declares them in pyproject.toml; ``pip install -e .`` (scripts/setup.sh) registers
them, and here they are looked up by name. Without the server package every other command still runs, and
the missing ones say so in one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, cast

from .errors import ConfigError

COMMANDS_GROUP = "har_stream.commands"  # NAME = "module:add_parser": adds sub-command NAME and sets its func
BENCH_SERVER_GROUP = "har_stream.bench_server"  # "server" = a module that is a ``BenchServer``
# The sub-commands the server package provides, named here only so that their absence is one clear line
# rather than argparse's "invalid choice".
SERVER_COMMANDS = ("serve",)
INSTALL_HINT = ("the server package provides it and is not installed, or its entry points are not registered: "
                "run pip install -e . in the repository (scripts/setup.sh does)")

AddParser = Callable[[argparse._SubParsersAction], None]


@dataclass(frozen=True)
class Command:
    """A sub-command from another package: its ``add_parser``, or why it cannot be had."""

    name: str
    add_parser: AddParser | None
    unavailable: str | None = None


class BenchServer(Protocol):
    """What the benches need from the server package (``server/bench_server.py``)."""

    def local_server(self, model: str | None, device: str, stride: int | None, torch_threads: int | None = None,
                     untrained: bool = False, precision: str = "auto", backend: Any = None,
                     apps: list[Any] | None = None) -> AbstractAsyncContextManager[tuple[str, str]]:
        """A server in this process on a free loopback port; yields (url, description of its model)."""
        ...

    def ice_loopback(self) -> AbstractContextManager[None]:
        """While active, every new ICE agent in this process offers 127.0.0.1 only."""
        ...

    def wire_stats(self, app: Any) -> Any:
        """The Ray backend's wire counters of an app ``local_server`` appended to ``apps``."""
        ...


def discover_commands() -> list[Command]:
    """The sub-commands registered under ``har_stream.commands``, plus an unavailable entry for each of
    ``SERVER_COMMANDS`` that none provides. A module that cannot be imported (a dependency missing) makes its
    command unavailable with the reason, instead of breaking every other command."""
    found: dict[str, Command] = {}
    for point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda p: p.name):
        if point.name in found:
            continue
        try:
            found[point.name] = Command(point.name, cast(AddParser, point.load()))
        except ImportError as err:
            found[point.name] = Command(point.name, None, f"{point.value} could not be imported: {err}")
    for name in SERVER_COMMANDS:
        found.setdefault(name, Command(name, None, INSTALL_HINT))
    return list(found.values())


def bench_server(what: str) -> BenchServer:
    """The server package's in-process server for ``what`` (e.g. "bench live"); a ``ConfigError`` when absent."""
    points = entry_points(group=BENCH_SERVER_GROUP, name="server")
    if not points:
        raise ConfigError(f"{what} starts a server in this process: {INSTALL_HINT}")
    point = next(iter(points))
    try:
        return cast(BenchServer, point.load())
    except ImportError as err:
        raise ConfigError(f"{what} starts a server in this process, and {point.value} could not be imported: "
                          f"{err}") from err

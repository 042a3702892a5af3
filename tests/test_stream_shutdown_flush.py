"""The camera manager's stop with a shared database: its last events are flushed for at most a bound, and a
flush past it is cancelled and awaited, not left running into the event store's own close."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from server.config import ServerConfig
from server.streams import StreamManager


class HangingEvents:
    """An event store whose flush never ends (a database that stopped answering)."""

    def __init__(self) -> None:
        self.flushing = False
        self.cancelled = False

    async def flush(self) -> None:
        self.flushing = True
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Keeper:
    """What ``aclose`` asks of the lease keeper; records whether the flush was over when leases went back."""

    def __init__(self, events: HangingEvents) -> None:
        self.events = events
        self.released_after_cancel: bool | None = None

    async def stop(self) -> None:
        pass

    async def release_all(self) -> None:
        self.released_after_cancel = self.events.cancelled


async def test_a_flush_past_its_bound_is_cancelled_and_awaited(tmp_path: Path) -> None:
    events = HangingEvents()
    config = ServerConfig(home=tmp_path / "home", data_dir=tmp_path / "data", port=0)
    manager = StreamManager(config, models=None, hub=SimpleNamespace(store=events))  # type: ignore[arg-type]
    keeper = Keeper(events)
    manager.keeper = keeper  # type: ignore[assignment]
    await asyncio.wait_for(manager.aclose(), 10)
    assert events.flushing and events.cancelled, "the timed-out flush was left running"
    assert keeper.released_after_cancel is True
    flushes = [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "HangingEvents.flush"]
    assert flushes == []

"""The registry of live peers: admission (``max_peers``), ownership of every peer task, orderly shutdown.

A slot is reserved before the (slow) negotiation starts, so concurrent offers can never overshoot the limit.
A peer leaves the registry only when its task has finished cleaning up, so ``/api/status`` never shows a
peer whose connection, threads or buffers are still alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

from har_stream.errors import OverloadedError

from .errors import NotReadyError
from .peer import Peer

log = logging.getLogger(__name__)


class PeerRegistry:
    def __init__(self, max_peers: int) -> None:
        self.max_peers = max_peers
        self._peers: dict[str, Peer] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._reserved = 0
        self._closing = False

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    @contextlib.contextmanager
    def reserve(self) -> Iterator[None]:
        """Hold one place while a peer negotiates; raises ``OverloadedError`` (429) when all are taken."""
        if self._closing:
            raise NotReadyError("the server is shutting down; connect again once it is back")
        taken = len(self._peers) + self._reserved
        if taken >= self.max_peers:
            raise OverloadedError(f"too many peers: {taken} of {self.max_peers} places are taken; try again when "
                                  "one leaves, or start the server with a higher --max-peers")
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

    def start(self, peer: Peer) -> None:
        """Run a negotiated peer as a task this registry owns (call inside its ``reserve()``)."""
        task = asyncio.get_running_loop().create_task(peer.run(), name=f"peer-{peer.id}")
        self._peers[peer.id] = peer
        self._tasks[peer.id] = task
        task.add_done_callback(lambda t, pid=peer.id: self._forget(pid, t))
        log.info("peer %s connected (model %s); %d of %d places taken", peer.id, peer.lease.model,
                 len(self._peers), self.max_peers)

    def _forget(self, peer_id: str, task: asyncio.Task[None]) -> None:
        self._peers.pop(peer_id, None)
        self._tasks.pop(peer_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("peer %s task failed", peer_id, exc_info=task.exception())

    async def aclose(self, timeout: float) -> None:
        """Close every peer and wait (at most ``timeout``) for their clean-up; refuse new ones from now on."""
        self._closing = True
        tasks = list(self._tasks.values())
        for peer in list(self._peers.values()):
            peer.close("the server is shutting down")
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                log.warning("%s did not finish closing within %.1f s", task.get_name(), timeout)
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def __len__(self) -> int:
        return len(self._peers)

    def status(self) -> list[dict[str, Any]]:
        return [peer.status() for peer in self._peers.values()]

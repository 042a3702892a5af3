"""Action events POSTed as JSON to webhook URLs, retried with backoff, never in recognition's way.

Each URL gets its own bounded queue and one owned delivery task, so a slow or dead receiver holds up only
its own deliveries. ``publish(event)`` is synchronous and never waits: a full queue drops its *oldest*
message (``drop_oldest``, counted in ``dropped``) to make room, so receivers that come back get the latest
news. Messages to one URL go out in order, one at a time (an event's ``start`` before its ``end``).

A delivery is retried on connection errors, timeouts, HTTP 5xx, 408 and 429, waiting ``backoff_s``,
then twice that, and so on up to ``max_backoff_s`` (a numeric ``Retry-After`` is honoured within that cap),
for at most ``max_attempts`` tries; then it counts as ``failed``. Any other status (a 4xx, or a redirect,
which is not followed) fails at once: sending the same body again cannot help.

Each request carries::

    Content-Type: application/json          body: ActionEvent.to_json(snapshot_base)
    X-Har-Stream-Event: start|update|end
    X-Har-Stream-Delivery: <event id>-<seq>  the same on every retry: receivers can drop repeats
    X-Har-Stream-Signature: sha256=<hex>     only with a secret: HMAC-SHA256 of the raw body with the secret

A receiver checks the signature by computing ``hmac.new(secret, body, sha256).hexdigest()`` over the bytes it
received and comparing in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from har_stream.backoff import capped_delay
from har_stream.errors import ConfigError
from har_stream.events import DEFAULT_SNAPSHOT_BASE, ActionEvent, iso_utc, utc_now
from har_stream.queues import put_drop_oldest
from har_stream.sources.urls import redact

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429})
SIGNATURE_HEADER = "X-Har-Stream-Signature"
EVENT_HEADER = "X-Har-Stream-Event"
DELIVERY_HEADER = "X-Har-Stream-Delivery"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookSettings:
    """``urls``: http(s) receivers. ``snapshot_base``: where the JSON says snapshots are (use the server's
    public URL, e.g. ``http://host:8000/api/events``, when receivers run elsewhere)."""

    urls: tuple[str, ...] = ()
    secret: str | None = None
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    queue_size: int = 100
    snapshot_base: str = DEFAULT_SNAPSHOT_BASE

    def __post_init__(self) -> None:
        object.__setattr__(self, "urls", tuple(self.urls))
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"webhook URL {redact(url)!r} must be an http:// or https:// URL with a host")
        if len(set(self.urls)) != len(self.urls):
            raise ConfigError("a webhook URL is listed twice; give each receiver once")
        if self.secret is not None and not self.secret:
            raise ConfigError("the webhook secret must not be empty (leave it out to send unsigned requests)")
        if not self.timeout_s > 0:
            raise ConfigError(f"webhook timeout must be positive seconds (got {self.timeout_s})")
        if self.max_attempts < 1:
            raise ConfigError(f"webhook attempts must be at least 1 (got {self.max_attempts})")
        if not (self.backoff_s > 0 and self.max_backoff_s >= self.backoff_s):
            raise ConfigError(f"webhook backoff must be positive and at most its cap (got {self.backoff_s} s, cap "
                              f"{self.max_backoff_s} s)")
        if self.queue_size < 1:
            raise ConfigError(f"webhook queue size must be at least 1 (got {self.queue_size})")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        return capped_delay(attempt, self.backoff_s, self.max_backoff_s)


@dataclass(frozen=True)
class DeliveryStats:
    """One receiver's counters. ``retried`` counts extra tries; ``failed`` messages given up on; ``dropped``
    messages pushed out of a full queue (or published after close)."""

    url: str  # shown_urls(): scheme, host and port; path, query and credentials hidden
    delivered: int
    failed: int
    retried: int
    dropped: int
    queued: int
    last_error: str | None
    last_error_at: datetime | None
    last_delivered_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "delivered": self.delivered, "failed": self.failed, "retried": self.retried,
                "dropped": self.dropped, "queued": self.queued, "last_error": self.last_error,
                "last_error_at": iso_utc(self.last_error_at), "last_delivered_at": iso_utc(self.last_delivered_at)}


def shown_urls(urls: Sequence[str]) -> list[str]:
    """Each receiver's URL as stats, metrics and logs show it: scheme, host and port only, its path and query
    hidden as ``/…``. Chat and automation webhooks carry their secret in the path or query (``/services/T0/B0/xyz``,
    ``?token=``), and /metrics and /api/events/status must not hand it out. Receivers that would look alike are
    told apart by their position in the list (``#2``), so every metric series stays distinct."""
    shown = []
    for url in urls:
        parts = urlsplit(redact(url))
        hidden = "/…" if parts.path not in ("", "/") or parts.query else ""
        shown.append(f"{parts.scheme}://{parts.netloc}{hidden}")
    return [f"{s} #{i + 1}" if shown.count(s) > 1 else s for i, s in enumerate(shown)]


class _Target:
    def __init__(self, url: str, shown: str, queue_size: int) -> None:
        self.url = url
        self.shown = shown
        self.queue: asyncio.Queue[ActionEvent] = asyncio.Queue(queue_size)
        self.task: asyncio.Task[None] | None = None
        self.delivered = self.failed = self.retried = self.dropped = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.last_delivered_at: datetime | None = None

    def stats(self) -> DeliveryStats:
        return DeliveryStats(self.shown, self.delivered, self.failed, self.retried, self.dropped,
                             self.queue.qsize(), self.last_error, self.last_error_at, self.last_delivered_at)


class WebhookDispatcher:
    """Owns one delivery task per URL and an ``aiohttp.ClientSession`` (unless one is given).

    Use ``async with WebhookDispatcher(settings):`` or ``await start()`` / ``await aclose()``. Events published
    before ``start`` wait in the queues.
    """

    def __init__(self, settings: WebhookSettings, *, session: aiohttp.ClientSession | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self._targets = [_Target(url, shown, settings.queue_size)
                         for url, shown in zip(settings.urls, shown_urls(settings.urls))]
        self._closed = False

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))
        for target in self._targets:
            if target.task is None:
                target.task = asyncio.create_task(self._run(target), name=f"webhook-{target.shown}")

    async def __aenter__(self) -> WebhookDispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, drain_timeout_s: float = 0.0) -> None:
        """Stop: give queued deliveries up to ``drain_timeout_s`` to finish, then cancel and wait for the tasks,
        and close the session if this dispatcher made it."""
        self._closed = True
        if drain_timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), drain_timeout_s)
        tasks = [t.task for t in self._targets if t.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for target in self._targets:
            target.task = None
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def publish(self, event: ActionEvent) -> None:
        """Queue ``event`` for every URL; returns at once. Full queues drop their oldest message."""
        for target in self._targets:
            if self._closed:
                target.dropped += 1
                continue
            target.dropped += put_drop_oldest(target.queue, event)

    async def flush(self) -> None:
        """Wait until every message queued so far is delivered or given up on."""
        await asyncio.gather(*(t.queue.join() for t in self._targets))

    def stats(self) -> tuple[DeliveryStats, ...]:
        return tuple(t.stats() for t in self._targets)

    # -- delivery -------------------------------------------------------------------------------------------

    async def _run(self, target: _Target) -> None:
        while True:
            event = await target.queue.get()
            try:
                await self._deliver(target, event)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a bug here must not end this receiver's deliveries
                log.exception("webhook %s: delivering event %s failed unexpectedly", target.shown, event.id)
                self._failure(target, f"{type(err).__name__}: {err}")
                target.failed += 1
            finally:
                target.queue.task_done()

    def _failure(self, target: _Target, error: str) -> None:
        target.last_error, target.last_error_at = error, self._clock()

    async def _deliver(self, target: _Target, event: ActionEvent) -> None:
        settings = self.settings
        assert self._session is not None, "start() the dispatcher before it delivers"
        body = json.dumps(event.to_json(settings.snapshot_base), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", EVENT_HEADER: event.phase,
                   DELIVERY_HEADER: f"{event.id}-{event.seq}"}
        if settings.secret is not None:
            headers[SIGNATURE_HEADER] = sign(settings.secret, body)
        for attempt in range(1, settings.max_attempts + 1):
            wait: float | None = None
            try:
                async with self._session.post(target.url, data=body, headers=headers, allow_redirects=False,
                                              timeout=aiohttp.ClientTimeout(total=settings.timeout_s)) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        target.delivered += 1
                        target.last_delivered_at = self._clock()
                        return
                    error = f"HTTP {resp.status} {resp.reason or ''}".strip()
                    retry = resp.status >= 500 or resp.status in RETRY_STATUSES
                    wait = _retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                retry = True
            self._failure(target, error)
            if not retry or attempt == settings.max_attempts:
                target.failed += 1
                log.warning("webhook %s: gave up on event %s (%s) after %d attempt(s): %s", target.shown,
                            event.id, event.phase, attempt, error)
                return
            target.retried += 1
            delay = settings.delay(attempt) if wait is None else min(max(wait, 0.0), settings.max_backoff_s)
            await asyncio.sleep(delay)


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds; HTTP dates and junk are ignored (the backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None

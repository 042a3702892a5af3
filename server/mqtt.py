"""Action events published to an MQTT broker, one topic per stream, never in recognition's way.

Optional: only built when a broker is configured. Uses ``aiomqtt`` (asyncio client over the Eclipse
``paho-mqtt`` protocol engine): it runs on the server's event loop, confirms QoS 1 publishes (waits for the
broker's PUBACK) and reports disconnects as exceptions.

- **Topic**: ``<prefix>/<stream>/events`` (``har-stream/door-cam/events``); characters MQTT gives meaning to in a
  topic (``/ + #``) are replaced by ``_`` in the stream's name, so one stream is one topic level.
- **Payload**: ``ActionEvent.to_json(snapshot_base)`` as UTF-8 JSON; QoS 1 by default (at least once:
  receivers may see a message twice after a reconnect, and can tell by ``id`` and ``seq``).
- **Never blocking**: ``publish(event)`` only puts into a bounded queue (``drop_oldest``, counted). One owned
  task connects, publishes in order and, when the broker is down or drops the connection, reconnects with
  exponential backoff (``backoff_s`` doubling up to ``max_backoff_s``). The message being sent when the
  connection failed is sent again after reconnecting, up to ``max_attempts`` times, then counted ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from har_stream.backoff import capped_delay
from har_stream.errors import ConfigError
from har_stream.events import DEFAULT_SNAPSHOT_BASE, ActionEvent, iso_utc, utc_now
from har_stream.queues import put_drop_oldest
from har_stream.sources.urls import redact

log = logging.getLogger(__name__)

_TOPIC_UNSAFE = re.compile(r"[/+#\x00]")


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to publish. Build from a URL with ``MqttSettings.from_url``."""

    host: str
    port: int = 1883
    topic_prefix: str = "har-stream"
    qos: int = 1
    retain: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    tls: bool = False
    keepalive_s: int = 30
    timeout_s: float = 10.0
    queue_size: int = 100
    max_attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    snapshot_base: str = DEFAULT_SNAPSHOT_BASE

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("the MQTT broker needs a host name")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"MQTT port must be between 1 and 65535 (got {self.port})")
        prefix = self.topic_prefix.strip("/")
        if not prefix or "+" in prefix or "#" in prefix or "\x00" in prefix:
            raise ConfigError(f"MQTT topic prefix {self.topic_prefix!r} must be non-empty, without + or #")
        object.__setattr__(self, "topic_prefix", prefix)
        if self.qos not in (0, 1, 2):
            raise ConfigError(f"MQTT QoS must be 0, 1 or 2 (got {self.qos})")
        if self.keepalive_s < 1 or not self.timeout_s > 0:
            raise ConfigError("MQTT keepalive and timeout must be positive seconds")
        if self.queue_size < 1 or self.max_attempts < 1:
            raise ConfigError("MQTT queue size and attempts must be at least 1")
        if not (self.backoff_s > 0 and self.max_backoff_s >= self.backoff_s):
            raise ConfigError(f"MQTT backoff must be positive and at most its cap (got {self.backoff_s} s, cap "
                              f"{self.max_backoff_s} s)")

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> MqttSettings:
        """``mqtt://[user:password@]host[:port][/topic-prefix]``; ``mqtts://`` for TLS (port 8883 by default).
        ``kw`` sets the other fields."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"MQTT broker {redact(url)!r} must be an mqtt:// or mqtts:// URL with a host")
        if parts.query or parts.fragment or url.endswith(("?", "#")):
            raise ConfigError(f"MQTT broker {redact(url)!r} must not have a query or fragment (# or ?); give "
                              "mqtt://host[:port][/topic-prefix]")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"MQTT broker {redact(url)!r} has a bad port") from None
        tls = parts.scheme == "mqtts"
        fields: dict[str, Any] = {"host": parts.hostname, "port": port or (8883 if tls else 1883), "tls": tls,
                                  "username": unquote(parts.username) if parts.username else None,
                                  "password": unquote(parts.password) if parts.password else None}
        if parts.path.strip("/"):
            fields["topic_prefix"] = unquote(parts.path)
        return cls(**{**fields, **kw})

    def topic(self, stream: str) -> str:
        return f"{self.topic_prefix}/{_TOPIC_UNSAFE.sub('_', stream) or '_'}/events"

    def delay(self, attempt: int) -> float:
        return capped_delay(attempt, self.backoff_s, self.max_backoff_s)

    @property
    def broker(self) -> str:
        """The broker as shown in stats and logs (no credentials)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class MqttStats:
    broker: str
    connected: bool
    published: int
    failed: int
    dropped: int
    queued: int
    connects: int
    connect_failures: int
    last_error: str | None
    last_error_at: datetime | None
    last_published_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"broker": self.broker, "connected": self.connected, "published": self.published,
                "failed": self.failed, "dropped": self.dropped, "queued": self.queued, "connects": self.connects,
                "connect_failures": self.connect_failures, "last_error": self.last_error,
                "last_error_at": iso_utc(self.last_error_at), "last_published_at": iso_utc(self.last_published_at)}


class MqttPublisher:
    """Owns one connection task. ``async with MqttPublisher(settings):`` or ``await start()`` / ``aclose()``."""

    def __init__(self, settings: MqttSettings, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self._clock = clock
        self._queue: asyncio.Queue[ActionEvent] = asyncio.Queue(settings.queue_size)
        self._pending: ActionEvent | None = None  # taken from the queue, not yet acknowledged
        self._pending_attempts = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._connected = False
        self._published = self._failed = self._dropped = self._connects = self._connect_failures = 0
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._last_published_at: datetime | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.settings.broker}")

    async def __aenter__(self) -> MqttPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, drain_timeout_s: float = 0.0) -> None:
        """Give queued messages up to ``drain_timeout_s``, then cancel the connection task and wait for it."""
        self._closed = True
        if self._task is None:
            return
        if drain_timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), drain_timeout_s)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        self._connected = False

    def publish(self, event: ActionEvent) -> None:
        """Queue ``event`` for its stream's topic; returns at once. A full queue drops its oldest message."""
        if self._closed:
            self._dropped += 1
            return
        self._dropped += put_drop_oldest(self._queue, event)

    async def flush(self) -> None:
        """Wait until every message queued so far is acknowledged or given up on."""
        await self._queue.join()

    def stats(self) -> MqttStats:
        return MqttStats(self.settings.broker, self._connected, self._published, self._failed, self._dropped,
                         self._queue.qsize() + (self._pending is not None), self._connects, self._connect_failures,
                         self._last_error, self._last_error_at, self._last_published_at)

    # -- the connection task ---------------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(s.host, s.port, username=s.username, password=s.password, identifier=s.client_id,
                              keepalive=s.keepalive_s, timeout=s.timeout_s,
                              tls_context=ssl.create_default_context() if s.tls else None)

    def _error(self, error: str) -> None:
        self._last_error, self._last_error_at = error, self._clock()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                async with self._client() as client:
                    self._connected, failures = True, 0
                    self._connects += 1
                    log.info("MQTT: connected to %s", self.settings.broker)
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._watch(client), name="mqtt-watch")
                        group.create_task(self._send(client), name="mqtt-send")
            except* aiomqtt.MqttError as errors:
                error = f"MqttError: {errors.exceptions[0]}"
                if self._connected:
                    log.warning("MQTT: lost %s: %s", self.settings.broker, error)
                else:
                    self._connect_failures += 1
                    log.debug("MQTT: cannot reach %s: %s", self.settings.broker, error)
                self._error(error)
            except* Exception as errors:  # e.g. a TLS handshake failing outside paho's own error mapping
                first = errors.exceptions[0]
                log.warning("MQTT: %s: unexpected %s: %s", self.settings.broker, type(first).__name__, first)
                self._error(f"{type(first).__name__}: {first}")
            finally:
                self._connected = False
            failures += 1
            await asyncio.sleep(self.settings.delay(failures))

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Nothing is subscribed, so this only ends by raising ``MqttError`` when the connection drops."""
        async for _ in client.messages:
            pass
        raise aiomqtt.MqttError("the broker closed the connection")

    async def _send(self, client: aiomqtt.Client) -> None:
        s = self.settings
        while True:
            if self._pending is None:
                self._pending, self._pending_attempts = await self._queue.get(), 0
            event = self._pending
            payload = json.dumps(event.to_json(s.snapshot_base), separators=(",", ":")).encode()
            self._pending_attempts += 1
            try:
                await client.publish(s.topic(event.stream), payload, qos=s.qos, retain=s.retain, timeout=s.timeout_s)
            except aiomqtt.MqttError as err:
                if self._pending_attempts >= s.max_attempts:
                    self._give_up(f"MqttError: {err}")
                raise
            except (ValueError, TypeError) as err:  # paho refused the message itself: resending cannot help
                self._error(f"{type(err).__name__}: {err}")
                self._give_up(str(err))
                continue
            self._pending = None
            self._published += 1
            self._last_published_at = self._clock()
            self._queue.task_done()

    def _give_up(self, error: str) -> None:
        assert self._pending is not None
        log.warning("MQTT: gave up on event %s (%s) after %d attempts: %s", self._pending.id, self._pending.phase,
                    self._pending_attempts, error)
        self._pending = None
        self._failed += 1
        self._queue.task_done()


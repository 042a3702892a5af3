"""Where action events go: the event store always, webhooks and MQTT when configured, and the live pages.

One ``publish`` for the stream manager to call (synchronous, never blocking: each destination has its own
bounded queue), one owner for the destinations' lifetimes.
"""

from __future__ import annotations

import logging
from typing import Any

from har_stream.events import ActionEvent

from .config import ServerConfig
from .event_store import EventRetention, EventStore
from .mqtt import MqttPublisher, MqttSettings
from .webhooks import WebhookDispatcher, WebhookSettings

log = logging.getLogger(__name__)


class EventHub:
    """``await start()`` before the first event, ``await aclose()`` after the last."""

    def __init__(self, config: ServerConfig, store: EventStore | None = None) -> None:
        snapshots = f"{config.public_url.rstrip('/')}/api/events" if config.public_url else "/api/events"
        self.store = store or EventStore(config.data_path, EventRetention(max_age_days=config.event_retention_days))
        self.webhooks = WebhookDispatcher(WebhookSettings(urls=config.webhooks, secret=config.webhook_secret,
                                                          snapshot_base=snapshots)) if config.webhooks else None
        self.mqtt = MqttPublisher(MqttSettings.from_url(config.mqtt_url, snapshot_base=snapshots)) \
            if config.mqtt_url else None

    async def start(self) -> None:
        interrupted = await self.store.open()
        if interrupted:
            log.info("%d action event(s) left open by the last run were closed as interrupted", interrupted)
        if self.webhooks is not None:
            await self.webhooks.start()
        if self.mqtt is not None:
            await self.mqtt.start()

    def publish(self, event: ActionEvent) -> None:
        self.store.publish(event)
        if self.webhooks is not None:
            self.webhooks.publish(event)
        if self.mqtt is not None:
            self.mqtt.publish(event)

    async def aclose(self) -> None:
        for closer in (self.mqtt, self.webhooks):
            if closer is not None:
                await closer.aclose(drain_timeout_s=1.0)
        await self.store.aclose()

    def stats(self) -> dict[str, Any]:
        """Delivery figures for ``/api/events/status``."""
        return {"store": self.store.stats().to_json(),
                "webhooks": [s.to_json() for s in self.webhooks.stats()] if self.webhooks else [],
                "mqtt": self.mqtt.stats().to_json() if self.mqtt else None}

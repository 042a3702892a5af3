"""Typed application keys: app state lives on the ``web.Application``, never in module globals."""

from __future__ import annotations

import weakref

from aiohttp import web
from prometheus_client import CollectorRegistry

from .config import ServerConfig
from .event_hub import EventHub
from .jobs import JobManager
from .models_service import ModelService
from .peers import PeerRegistry
from .streams import StreamManager

CONFIG = web.AppKey("config", ServerConfig)
MODELS = web.AppKey("models", ModelService)
PEERS = web.AppKey("peers", PeerRegistry)
JOBS = web.AppKey("jobs", JobManager)
EVENTS = web.AppKey("events", EventHub)
STREAMS = web.AppKey("streams", StreamManager)
WEBSOCKETS = web.AppKey("websockets", weakref.WeakSet[web.WebSocketResponse])  # closed on shutdown
METRICS = web.AppKey("metrics", CollectorRegistry)  # the app's own Prometheus registry (server/metrics.py)

"""Typed application keys: app state lives on the ``web.Application``, never in module globals."""

from __future__ import annotations

from aiohttp import web

from .config import ServerConfig
from .models_service import ModelService
from .peers import PeerRegistry

CONFIG = web.AppKey("config", ServerConfig)
MODELS = web.AppKey("models", ModelService)
PEERS = web.AppKey("peers", PeerRegistry)

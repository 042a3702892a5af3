"""What a camera is, as a user gives it: in ``POST /api/streams`` or in the config file's ``[[cameras]]`` tables.

One parser for both, so a camera that the API refuses is refused at start too, with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from har_stream.errors import ConfigError
from har_stream.sources.urls import redact

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "srt")
FIELDS = ("name", "url", "model", "labels", "custom_labels", "stride", "fps", "label_filter", "min_event_s")
MAX_STRIDE = 64


@dataclass(frozen=True)
class CameraSpec:
    """A camera to watch. ``url`` may hold credentials: show ``safe_url``, never ``url``."""

    name: str
    url: str
    model: str | None = None
    labels: str | None = None
    custom_labels: tuple[str, ...] | None = None
    stride: int | None = None
    fps: float | None = None
    label_filter: tuple[str, ...] = ()  # events only for these labels; empty: every label
    min_event_s: float | None = None  # an action must hold this long to open an event; None: the server's

    @property
    def safe_url(self) -> str:
        return redact(self.url)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.safe_url, "model": self.model, "labels": self.labels,
                "custom_labels": list(self.custom_labels) if self.custom_labels else None, "stride": self.stride,
                "fps": self.fps, "label_filter": list(self.label_filter), "min_event_s": self.min_event_s}


def parse_camera(data: Any, where: str = "the request") -> CameraSpec:
    """A ``CameraSpec`` from JSON/TOML values; ``ConfigError`` (400) naming the field and what to fix."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a camera must be an object with at least name and url")
    unknown = set(data) - set(FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown camera field(s) {', '.join(sorted(map(str, unknown)))}; known: "
                          f"{', '.join(FIELDS)}")

    def text(key: str, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise ConfigError(f"{where}: camera {key} is missing")
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{where}: camera {key} must be a string")
        return value.strip()

    def strings(key: str) -> tuple[str, ...] | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = [v for v in re.split(r"[,\n]", value) if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{where}: camera {key} must be a list of label strings")
        return tuple(" ".join(v.split()) for v in value)

    def number(key: str, kind: type, low: float, high: float) -> Any:
        value = data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: camera {key} must be a number")
        try:
            out = kind(value)
        except (ValueError, OverflowError):
            raise ConfigError(f"{where}: camera {key} must be a number, got {value!r}") from None
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: camera {key} must be a whole number, got {value!r}")
        if not low <= out <= high:
            raise ConfigError(f"{where}: camera {key} must be between {low:g} and {high:g}, got {value!r}")
        return out

    name = text("name", required=True)
    assert name is not None
    if not NAME.match(name):
        raise ConfigError(f"{where}: camera name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                          "(it is part of URLs and MQTT topics)")
    url = text("url", required=True)
    assert url is not None
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise ConfigError(f"{where}: camera url {redact(url)!r} must be an {', '.join(SCHEMES)} URL with a host")
    return CameraSpec(
        name=name, url=url, model=text("model"), labels=text("labels"), custom_labels=strings("custom_labels"),
        stride=number("stride", int, 1, MAX_STRIDE), fps=number("fps", float, 0.5, 60),
        label_filter=strings("label_filter") or (), min_event_s=number("min_event_s", float, 0.0, 3600))

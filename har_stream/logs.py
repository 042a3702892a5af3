"""Log set-up for every command: text lines for people, or one JSON object per line (``--log-format json``) for
log collectors, each line with the stream, peer and job it is about.

Why a context variable for the ids: a peer's, camera's or job's whole life is one task, so setting the id once
where that task starts (``log_context``) tags every line it logs, and every line of the tasks it starts (they
copy the context), without threading an id through every call. ``extra={"job": ...}`` on one call tags one
line (and wins over the context). Threads started with ``threading.Thread`` do not inherit the context; their
messages name what they are about themselves.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType

from .errors import ConfigError

LOG_FORMATS = ("text", "json")
LOG_FORMAT_ENV = "HAR_STREAM_LOG_FORMAT"
LOG_IDS = ("stream", "peer", "job")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Context-local, not global: each task sees the ids of the stream/peer/job it runs (an immutable mapping).
_IDS: ContextVar[Mapping[str, str]] = ContextVar("har_stream_log_ids", default=MappingProxyType({}))


def log_context(**ids: str) -> None:
    """Tag every log line of the current task (and of the tasks it starts from now on) with these ids."""
    unknown = set(ids) - set(LOG_IDS)
    if unknown:
        raise ValueError(f"unknown log ids {sorted(unknown)}; use {', '.join(LOG_IDS)}")
    _IDS.set(MappingProxyType({**_IDS.get(), **ids}))


def record_ids(record: logging.LogRecord) -> dict[str, str]:
    """The ids a log line is about: the task's context, overridden by the call's ``extra=``."""
    ids = dict(_IDS.get())
    for key in LOG_IDS:
        value = getattr(record, key, None)
        if value is not None:
            ids[key] = str(value)
    return ids


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ["stream", "peer", "job"], ["exc"]}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **record_ids(record),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with ``[peer=… job=…]`` after the message when the line has ids."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        ids = record_ids(record)
        return f"{text} [{' '.join(f'{k}={v}' for k, v in ids.items())}]" if ids else text


def resolve_log_format(option: str | None, env: Mapping[str, str] | None = None) -> str:
    """``--log-format``, else ``$HAR_STREAM_LOG_FORMAT``, else text."""
    env = os.environ if env is None else env
    value = (option or env.get(LOG_FORMAT_ENV) or "text").strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"log format must be one of {', '.join(LOG_FORMATS)} (got {value!r} from "
                          f"{'--log-format' if option else LOG_FORMAT_ENV}); fix it")
    return value


def configure_logging(level: int, log_format: str) -> None:
    """One stderr handler on the root logger, in ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler])

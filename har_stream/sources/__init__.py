"""Frame sources: where frames come from (files, URLs, cameras), behind one ``FrameSource`` interface.

``open_source(spec)`` picks the source for a user's input:

* a local path (or ``file://``) → ``AvSource`` on the file;
* an ``rtsp://``, ``rtmp://``, ``srt://``, ``udp://`` ... URL → ``AvSource`` on the stream (live);
* an ``http(s)://`` URL whose path ends in a video extension or ``.m3u8`` → ``AvSource`` directly: FFmpeg
  streams direct files (Range reads) and HLS itself, and skipping yt-dlp saves its ≈0.5 s page probe;
* any other ``http(s)://`` URL is a page → resolved by yt-dlp (in the decode thread, during ``open()``),
  then streamed by ``AvSource`` with the headers yt-dlp gives;
* a ``resolver`` given by the caller decides for every http(s) and live-scheme URL, at every open: the
  server's jobs resolve first, to vet the address the media really comes from, and its cameras check their
  host again at each reconnect.

Nothing is downloaded whole first.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from ..errors import InputError
from .av_stream import LIVE_SCHEMES, AvSource
from .base import FrameSource, Prepare, SourceStats, ThreadedSource
from .resolve import ResolvedMedia, resolve_url, resolve_url_async

__all__ = [
    "AvSource",
    "FrameSource",
    "Prepare",
    "ResolvedMedia",
    "SourceStats",
    "ThreadedSource",
    "is_direct_media_url",
    "open_source",
    "resolve_url",
    "resolve_url_async",
]

DIRECT_MEDIA_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
    ".ogv", ".3gp", ".wmv", ".m3u8",
})


def is_direct_media_url(url: str) -> bool:
    """True for an http(s) URL whose path names a video file or an HLS playlist (no page to resolve)."""
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and PurePosixPath(parts.path).suffix.lower() in \
        DIRECT_MEDIA_EXTENSIONS


def open_source(spec: str | os.PathLike[str], **kw: Any) -> FrameSource:
    """The right (unopened) source for a path or URL; ``kw`` go to ``AvSource`` (sample_fps, prepare, ...)."""
    spec = os.fspath(spec)
    scheme = urlsplit(spec).scheme.lower()
    if (scheme in ("http", "https") or scheme in LIVE_SCHEMES) and kw.get("resolver") is not None:  # caller's
        return AvSource(spec, **kw)
    kw.pop("resolver", None)
    if len(scheme) <= 1 or scheme == "file" or scheme in LIVE_SCHEMES or is_direct_media_url(spec):
        return AvSource(spec, **kw)
    if scheme in ("http", "https"):
        timeout = float(kw.get("open_timeout", 20.0))
        return AvSource(spec, resolver=lambda url: resolve_url(url, timeout=timeout), **kw)
    raise InputError(f"unsupported URL scheme {scheme!r} in {spec}; give a file path or an http(s), rtsp, "
                     "rtmp, srt or udp URL")

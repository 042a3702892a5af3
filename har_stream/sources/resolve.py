"""Turn a page URL (YouTube, Vimeo, any page with a ``<video>``) into a media URL PyAV can stream, via yt-dlp.

Only the URL and the HTTP headers the site expects are resolved here; nothing is downloaded. The media is
then streamed by PyAV (``AvSource``) with those headers. A page with several videos resolves to the first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import yt_dlp
from yt_dlp.utils import YoutubeDLError

from ..errors import SourceUnreachableError

log = logging.getLogger(__name__)

# A single file that holds video (no separate audio+video formats that would need merging).
FORMAT = "best[vcodec!=none]/best"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class ResolvedMedia:
    """A media URL ready for PyAV, with what yt-dlp learnt about it."""

    url: str
    title: str | None
    http_headers: dict[str, str] = field(default_factory=dict)
    is_live: bool = False
    duration: float | None = None
    options: dict[str, str] = field(default_factory=dict)  # more FFmpeg options, e.g. a guard's http_proxy

    def ffmpeg_options(self) -> dict[str, str]:
        """What ``av.open`` needs to fetch ``url`` as yt-dlp would (its HTTP headers, through the same proxy)."""
        out = dict(self.options)
        if self.http_headers:
            out["headers"] = "".join(f"{k}: {v}\r\n" for k, v in self.http_headers.items())
        return out


class _QuietLog:
    """yt-dlp's logger hook: its chatter goes to our debug log, never to the terminal."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug
    warning = debug
    error = debug


def resolve_url(url: str, *, timeout: float = 20, proxy: str | None = None,
                options: dict[str, str] | None = None) -> ResolvedMedia:
    """Resolve ``url`` with yt-dlp (blocking; ``timeout`` bounds each network read).

    ``proxy``: every request yt-dlp makes (redirects included) goes through this HTTP proxy, e.g. the
    server's guard (``server/fetch_proxy.py``); ``options`` are FFmpeg options the result carries on (the same
    proxy, for the media fetch). Raises ``SourceUnreachableError`` with yt-dlp's reason when the page cannot
    be fetched or holds no video.
    """
    params: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noplaylist": True,
        "playlist_items": "1",
        "format": FORMAT,
        "socket_timeout": timeout,
        "skip_download": True,
        "cachedir": False,
        "logger": _QuietLog(),
    }
    if proxy is not None:
        params["proxy"] = proxy
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=False)
    except YoutubeDLError as exc:
        raise SourceUnreachableError(f"cannot resolve {url}: {clean_message(str(exc))}; "
                                     "check that the URL opens a page with a playable video") from exc
    media = _pick(info, dict(options or {}))
    if media is None:
        raise SourceUnreachableError(f"cannot resolve {url}: the page has no playable video; "
                                     "give a direct video URL or a page with one video")
    return media


async def resolve_url_async(url: str, *, timeout: float = 20, proxy: str | None = None) -> ResolvedMedia:
    """``resolve_url`` in a worker thread, so the event loop keeps running while yt-dlp fetches pages."""
    return await asyncio.to_thread(resolve_url, url, timeout=timeout, proxy=proxy)


def clean_message(text: str) -> str:
    """yt-dlp's error text as one plain line: no colour codes, no "ERROR: " prefix."""
    text = _ANSI.sub("", text).strip()
    text = re.sub(r"^ERROR:\s*", "", text)
    return " ".join(text.split())


def _pick(info: dict[str, Any] | None, options: dict[str, str]) -> ResolvedMedia | None:
    """The media of a single-video result, or of the first playable entry of a playlist."""
    if not info:
        return None
    if info.get("_type") in ("playlist", "multi_video"):
        for entry in info.get("entries") or ():
            media = _pick(entry, options)
            if media is not None:
                return media
        return None
    fmt: dict[str, Any] = info
    if not info.get("url"):  # merged formats: take the part that holds video
        videos = [f for f in info.get("requested_formats") or () if f.get("vcodec") not in (None, "none")]
        if not videos or not videos[0].get("url"):
            return None
        fmt = videos[0]
    duration = info.get("duration")
    return ResolvedMedia(
        url=str(fmt["url"]),
        title=info.get("title"),
        http_headers={str(k): str(v) for k, v in (fmt.get("http_headers") or info.get("http_headers") or {}).items()},
        is_live=bool(info.get("is_live")) or info.get("live_status") == "is_live",
        duration=float(duration) if duration is not None else None,
        options=options,
    )

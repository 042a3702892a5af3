"""The URL guard for one camera: its first hop checked when it is added and when it starts, and every hop of an
HTTP(S) camera (redirects, HLS segments, a page's media) checked by its own ``GuardProxy`` for its whole life.

Cameras use the camera policy (``AddressPolicy.for_cameras``): LAN and loopback are allowed, since cameras
live there; link-local (cloud metadata), unspecified, multicast and reserved addresses are refused unless
``--allow-private-urls`` or ``allow_hosts``. RTSP/RTMP/SRT cameras have no proxy: their host is checked again
at every (re)connect, just before FFmpeg resolves it itself, so a name that changes its answer is caught at the
next reconnect but not in the moment between the two lookups; RTSP redirects inside FFmpeg are not seen
(docs/security.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

from har_stream.errors import InputError, SourceUnreachableError
from har_stream.sources import ResolvedMedia, is_direct_media_url, resolve_url

from .config import ServerConfig
from .fetch_proxy import GuardProxy
from .url_guard import AddressPolicy, PrivateAddressError, check_url, parse_allowed_hosts

Resolver = Callable[[str], ResolvedMedia]


def camera_policy(config: ServerConfig) -> AddressPolicy:
    return AddressPolicy.for_cameras(config.allow_private_urls, parse_allowed_hosts(config.allow_hosts))


async def check_camera_url(url: str, policy: AddressPolicy) -> None:
    """400 for a camera whose host is refused. A name that does not resolve now is let through: a camera may
    be switched off, and the reconnecting source says so and retries."""
    try:
        await asyncio.to_thread(check_url, url, policy, syntax=False)
    except InputError as err:
        if "cannot resolve" not in str(err):
            raise


class CameraGuard:
    """``await start()`` → FFmpeg options and a resolver for the camera's source; ``await aclose()`` at its end."""

    def __init__(self, url: str, policy: AddressPolicy, name: str) -> None:
        self.url = url
        self.policy = policy
        self.name = name
        self.proxy: GuardProxy | None = None

    async def start(self) -> tuple[dict[str, str], Resolver | None]:
        await check_camera_url(self.url, self.policy)
        if not self.policy.checks:
            return {}, None
        if urlsplit(self.url).scheme.lower() not in ("http", "https"):
            return {}, self._recheck
        self.proxy = await GuardProxy(self.policy, f"camera {self.name}").__aenter__()
        options = self.proxy.ffmpeg_options()
        proxy_url, policy = self.proxy.url, self.policy

        def resolve(url: str) -> ResolvedMedia:  # the decode thread, at each (re)connect
            if is_direct_media_url(url):
                return ResolvedMedia(url=url, title=None, options=options)
            media = resolve_url(url, proxy=proxy_url, options=options)
            check_url(media.url, policy)
            return media
        return options, resolve

    def _recheck(self, url: str) -> ResolvedMedia:
        """RTSP/RTMP/SRT: the host checked again at each (re)connect (the decode thread; blocking DNS)."""
        try:
            check_url(url, self.policy, syntax=False)
        except PrivateAddressError as err:
            raise SourceUnreachableError(str(err)) from None  # the camera says why, and retries later
        except InputError:
            pass  # a name that does not resolve now: FFmpeg says so in its own words
        return ResolvedMedia(url=url, title=None, is_live=True)

    def refusal(self) -> str | None:
        """Why the newest refused hop was refused (shown while the camera is not live)."""
        last = self.proxy.last_refusal() if self.proxy is not None else None
        return last.message() if last is not None else None

    async def aclose(self) -> None:
        if self.proxy is not None:
            await self.proxy.aclose()
            self.proxy = None

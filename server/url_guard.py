"""Which URLs an analysis job may fetch: http(s) only, and by default nothing on this machine or its networks.

Why: a job makes the server fetch a URL a visitor typed. Without this check anyone who can reach the page
could make the server read its own loopback services, the cloud metadata address or the LAN behind it
(server-side request forgery). Names are resolved and every address they resolve to is checked; a job checks
again when it runs and checks the media URL yt-dlp resolves a page to. Not covered: HTTP redirects followed
inside FFmpeg or yt-dlp, and DNS answers that change between the check and the fetch.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from har_stream.errors import InputError
from har_stream.sources.urls import redact

from .errors import BadRequestError

MAX_URL_CHARS = 4096
SCHEMES = ("http", "https")


class PrivateAddressError(BadRequestError):
    """The URL points at loopback, a private network or another address the server will not fetch."""


def check_url_syntax(url: str) -> str:
    """The URL, stripped, if it is an absolute http(s) URL with a host; else a 400 saying why."""
    url = url.strip()
    if not url:
        raise BadRequestError("url is empty; give an http(s) URL of a video or of a page with one")
    if len(url) > MAX_URL_CHARS:
        raise BadRequestError(f"url is longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise BadRequestError(f"url must start with http:// or https:// (got {parts.scheme or 'no'} scheme); "
                              "to analyse a file on your machine, upload it")
    try:
        parts.port
    except ValueError:
        raise BadRequestError(f"url {redact(url)} has an invalid port") from None
    if not parts.hostname:
        raise BadRequestError(f"url {redact(url)} has no host name")
    return url


def check_public_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL whose host is or resolves to a non-public address (blocking: it may query DNS)."""
    url = check_url_syntax(url)
    host = urlsplit(url).hostname or ""
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as err:
        raise InputError(f"cannot resolve the host {host!r} of the URL ({err}); check the URL") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise PrivateAddressError(
                f"refusing to fetch {redact(url)}: {host} is a {_kind(address)} address ({address}); the server "
                "only fetches public URLs unless started with --allow-private-urls")


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private-network"
    return "non-public"

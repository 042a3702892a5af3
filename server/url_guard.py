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
        address = _embedded_ipv4(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        if not address.is_global or address.is_multicast:
            raise PrivateAddressError(
                f"refusing to fetch {redact(url)}: {host} is a {_kind(address)} address ({address}); the server "
                "only fetches public URLs unless started with --allow-private-urls")


NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address
                   ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4, IPv4-compatible): that is where packets
    end up, so that is what is checked."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or (address in IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private-network"
    return "non-public"

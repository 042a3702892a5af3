"""Which addresses the server may fetch from: the policy of jobs' URLs and of cameras' URLs, checked on every hop.

Why: a job makes the server fetch a URL a visitor typed. Without this check anyone who can reach the page
could make the server read its own loopback services, the cloud metadata address (169.254.169.254) or the
LAN behind it (server-side request forgery). Names are resolved and every address they resolve to is checked,
whatever form the address was written in (``2130706433``, ``0x7f000001``, ``127.1``, ``::ffff:127.0.0.1``,
NAT64 and 6to4 forms: the resolver turns them into the address the packets go to, and that is checked).

The first hop is checked here when a job is submitted; every later hop (HTTP redirects that FFmpeg or yt-dlp
follow, HLS segment URLs, the media URL yt-dlp finds) is checked by ``GuardProxy`` (``fetch_proxy.py``), which
all of a job's or camera's HTTP(S) requests go through. What stays uncovered is written in docs/security.md.

Two policies:

* **jobs** fetch public addresses only, unless ``--allow-private-urls``; ``allow_hosts`` names exceptions
  (an address or network, optionally with a port: ``10.0.0.5``, ``10.0.0.0/24``, ``127.0.0.1:8554``);
* **cameras** may also be on a private LAN (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) or on loopback
  (a restreamer such as mediamtx on this machine): watching cameras on a LAN is what they are for, and adding
  one is an operator's act. Link-local (cloud metadata, fe80::), unspecified, multicast and reserved
  addresses are refused for cameras too, unless ``--allow-private-urls`` or ``allow_hosts``.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from har_stream.errors import ConfigError, InputError
from har_stream.sources.urls import redact

from .errors import BadRequestError

__all__ = ["AddressPolicy", "AllowedHost", "PrivateAddressError", "check_url", "check_url_syntax",
           "parse_allowed_hosts", "redact"]

MAX_URL_CHARS = 4096
SCHEMES = ("http", "https")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
LAN = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                                "fc00::/7"))


class PrivateAddressError(BadRequestError):
    """The URL points at loopback, a private network or another address the server will not fetch."""


@dataclass(frozen=True)
class AllowedHost:
    """An exception to the policy: an address or network, and optionally the one port allowed on it."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    def matches(self, address: IPAddress, port: int | None) -> bool:
        return address in self.network and (self.port is None or self.port == port)


@dataclass(frozen=True)
class AddressPolicy:
    """What one kind of fetch may reach. ``refusal()`` says why an address is refused, or None."""

    allow_private: bool = False  # everything (--allow-private-urls)
    allow_lan: bool = False  # private networks and loopback too (cameras)
    allowed: tuple[AllowedHost, ...] = ()

    @classmethod
    def for_jobs(cls, allow_private: bool, allowed: tuple[AllowedHost, ...] = ()) -> AddressPolicy:
        return cls(allow_private=allow_private, allowed=allowed)

    @classmethod
    def for_cameras(cls, allow_private: bool, allowed: tuple[AllowedHost, ...] = ()) -> AddressPolicy:
        return cls(allow_private=allow_private, allow_lan=True, allowed=allowed)

    @property
    def checks(self) -> bool:
        """False when nothing is ever refused (then no proxy is needed)."""
        return not self.allow_private

    def refusal(self, address: IPAddress, port: int | None) -> str | None:
        """None when ``address:port`` may be fetched; else what kind of address it is ("a link-local address")."""
        if self.allow_private or any(a.matches(address, port) for a in self.allowed):
            return None
        target = embedded_ipv4(address)
        if target.is_global and not target.is_multicast:
            return None
        if self.allow_lan and (target.is_loopback or any(target in net for net in LAN
                                                         if net.version == target.version)):
            return None
        return f"a {kind(target)} address ({target})"


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


def check_url(url: str, policy: AddressPolicy, *, syntax: bool = True) -> None:
    """Refuse a URL whose host is or resolves to an address ``policy`` refuses (blocking: it may query DNS).
    ``syntax=False`` skips the http(s)-only check (camera URLs: rtsp, rtmp, srt ... too)."""
    if syntax:
        url = check_url_syntax(url)
    if not policy.checks:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    for address in resolve(host):
        why = policy.refusal(address, port)
        if why is not None:
            raise PrivateAddressError(refusal_message(redact(url), host, why))


def refusal_message(shown: str, host: str, why: str) -> str:
    return (f"refusing to fetch {shown}: {host} is {why}; the server only fetches public URLs unless started "
            "with --allow-private-urls (or the address is listed in --allow-hosts)")


def resolve(host: str) -> list[IPAddress]:
    """Every address ``host`` resolves to (blocking)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as err:
        raise InputError(f"cannot resolve the host {host!r} of the URL ({err}); check the URL") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def parse_allowed_hosts(entries: tuple[str, ...]) -> tuple[AllowedHost, ...]:
    """``allow_hosts`` entries: ``ADDRESS``, ``NETWORK/BITS``, ``ADDRESS:PORT`` or ``[IPv6]:PORT``."""
    out = []
    for entry in entries:
        text, port = entry.strip(), None
        if text.startswith("["):  # [v6] or [v6]:port
            inner, _, rest = text[1:].partition("]")
            text = inner
            if rest:
                port = _port(entry, rest.removeprefix(":"))
        elif text.count(":") == 1:  # v4:port
            text, raw = text.split(":")
            port = _port(entry, raw)
        try:
            out.append(AllowedHost(ipaddress.ip_network(text, strict=False), port))
        except ValueError:
            raise ConfigError(f"allow_hosts entry {entry!r} is not an address or network (such as 10.0.0.5, "
                              "10.0.0.0/24, 127.0.0.1:8554 or [::1]:8080); names are not accepted") from None
    return tuple(out)


def _port(entry: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"allow_hosts entry {entry!r} has an invalid port")
    return int(raw)


def embedded_ipv4(address: IPAddress) -> IPAddress:
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


def kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private-network"
    return "non-public"

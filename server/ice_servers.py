"""STUN/TURN servers for the server's WebRTC peers, written as one string each so they fit an option, an
environment variable (comma-separated) and a TOML list alike.

Form: ``stun:HOST[:PORT]``, ``turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]`` (also ``stuns:``/``turns:``).
The user and password are taken out of the URL (percent-decode them to write ``:`` or ``@``), because aiortc
wants the standard URL (RFC 7064/7065) and the credentials apart. Why a server needs them at all: behind NAT its
own host candidates are unreachable from a browser elsewhere; STUN adds the public address, TURN a relay.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from har_stream.errors import ConfigError

SCHEMES = ("stun", "stuns", "turn", "turns")


@dataclass(frozen=True)
class IceServer:
    url: str  # without credentials: turn:host:3478?transport=udp
    username: str | None = None
    credential: str | None = None

    def __str__(self) -> str:  # for logs: never the password
        return self.url if self.username is None else f"{self.url} (user {self.username})"


def parse_ice_server(text: str) -> IceServer:
    """One ``ice_servers`` entry → an ``IceServer``; a ConfigError says what a valid entry looks like."""
    def bad(why: str) -> ConfigError:
        shown = f"{text.partition(':')[0]}:…@{text.rpartition('@')[2]}" if "@" in text else text  # no password
        return ConfigError(f"ice_servers entry {shown!r}: {why}; write stun:HOST[:PORT] or "
                           "turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]")

    scheme, colon, rest = text.strip().partition(":")
    if not colon or scheme.lower() not in SCHEMES:
        raise bad(f"the scheme must be one of {', '.join(SCHEMES)}")
    scheme = scheme.lower()
    if rest.startswith("//"):
        raise bad("no // after the scheme")
    userinfo, at, address = rest.rpartition("@")
    username = credential = None
    if at:
        user, colon, password = userinfo.partition(":")
        if not user or not colon or not password:
            raise bad("credentials must be USER:PASSWORD before the @")
        username, credential = unquote(user), unquote(password)
    host = address.partition("?")[0]
    if not host or host.startswith(":") or any(ch in host for ch in "/@ "):
        raise bad("it has no host")
    if host.startswith("["):  # [IPv6]:port
        port = host.partition("]")[2].removeprefix(":")
    else:
        port = host.partition(":")[2]
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise bad(f"port {port!r} is not a port number")
    if "?" in address and address.partition("?")[2] not in ("transport=udp", "transport=tcp"):
        raise bad("the only query allowed is ?transport=udp or ?transport=tcp")
    if scheme.startswith("turn") and username is None:
        raise bad("a TURN server needs a user name and password")
    if scheme.startswith("stun") and username is not None:
        raise bad("a STUN server takes no credentials")
    return IceServer(url=f"{scheme}:{address}", username=username, credential=credential)

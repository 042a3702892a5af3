"""Which host addresses the server's ICE agents offer, and its STUN/TURN servers.

aioice gathers every address of every interface except loopback, so a peer on the same machine (a test
client, a local headless browser, a machine without network) could never connect (``ice_loopback``), and on a
host with several networks (docker bridges, VPNs) it offers addresses a browser cannot reach (``ice_interfaces``:
only these addresses or interfaces). Both work by replacing ``aioice.ice.get_host_addresses``; the patch is
process-wide, so it is applied as a context that restores what it replaced, and nests.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Iterator

import aioice.ice
import ifaddr
from aiortc import RTCConfiguration, RTCIceServer

from har_stream.errors import ConfigError

from .ice_servers import IceServer, parse_ice_server


@contextlib.contextmanager
def ice_host_addresses(addresses: Iterable[str]) -> Iterator[None]:
    """While active, every new ICE agent in this process gathers exactly ``addresses`` (of the families it
    asks for)."""
    fixed = tuple(addresses)

    def chosen(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (use_ipv6 if ":" in a else use_ipv4)]

    previous = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = chosen
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = previous


@contextlib.contextmanager
def ice_loopback() -> Iterator[None]:
    """While active, every new ICE agent in this process gathers 127.0.0.1 only."""
    with ice_host_addresses(["127.0.0.1"]):
        yield


def resolve_interfaces(entries: Iterable[str]) -> list[str]:
    """``ice_interfaces`` entries (IP addresses, or interface names such as eth0) → the addresses to offer.
    An unknown name fails the start and lists the names this machine has."""
    adapters = {a.nice_name: a for a in ifaddr.get_adapters()}
    out: list[str] = []
    for entry in entries:
        try:
            out.append(str(ipaddress.ip_address(entry)))
            continue
        except ValueError:
            pass
        adapter = adapters.get(entry)
        if adapter is None:
            raise ConfigError(f"ice_interfaces: {entry!r} is neither an IP address nor an interface of this machine "
                              f"(it has {', '.join(sorted(adapters)) or 'none'})")
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                out.append(ip.ip)
            elif ip.ip[2] == 0:  # IPv6 with no scope id: link-local ones cannot be offered usefully
                out.append(ip.ip[0])
    return list(dict.fromkeys(out))


def rtc_configuration(servers: Iterable[str | IceServer] = ()) -> RTCConfiguration:
    """The RTCConfiguration for the server's peers: the configured STUN/TURN servers, or none at all (aiortc's
    default would ask a public STUN server, which a server on a closed network cannot reach)."""
    parsed = [s if isinstance(s, IceServer) else parse_ice_server(s) for s in servers]
    return RTCConfiguration(iceServers=[RTCIceServer(urls=s.url, username=s.username, credential=s.credential)
                                        for s in parsed])

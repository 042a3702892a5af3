"""``ice_servers`` (STUN/TURN) and ``ice_interfaces``: parsed with clear errors, and used by the server's peers.

A real STUN server on 127.0.0.1 (a few lines over aioice's message codec) proves the configured server is
asked when the server answers an offer; the answer's host candidates are exactly the configured addresses.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aioice import stun

from har_stream.errors import ConfigError
from server.config import ServerConfig, load_config
from server.ice import resolve_interfaces, rtc_configuration
from server.ice_servers import IceServer, parse_ice_server
from server.keys import STREAMS
from tests.helpers.webrtc_client import live_server
from tests.test_server_errors import offer_sdp


def test_ice_server_entries_and_their_errors() -> None:
    assert parse_ice_server("stun:stun.example:3478") == IceServer("stun:stun.example:3478")
    turn = parse_ice_server("turn:me%40home:p%3Ass@turn.example:3478?transport=tcp")
    assert turn == IceServer("turn:turn.example:3478?transport=tcp", "me@home", "p:ss")
    assert "p:ss" not in str(turn)  # logs show the user, never the password
    assert parse_ice_server("turns:u:p@[2001:db8::1]:5349").url == "turns:[2001:db8::1]:5349"
    for entry, why in [("http://stun.example", "scheme must be one of"), ("turn:turn.example", "needs a user name"),
                       ("stun:u:p@stun.example", "takes no credentials"), ("stun:", "no host"),
                       ("stun:h:70000", "not a port"), ("turn:user@h", "USER:PASSWORD"),
                       ("stun:h?x=1", "only query"), ("stun://h", "no //")]:
        with pytest.raises(ConfigError, match=why) as err:
            parse_ice_server(entry)
        assert "p@" not in str(err.value) or entry.startswith("stun:u")  # no password echoed back
    with pytest.raises(ConfigError, match="needs a user name"):
        load_config({}, env={"HAR_STREAM_ICE_SERVERS": "stun:a.example, turn:b.example"})
    config = load_config({"ice_servers": ["stun:a.example"]},
                         env={"HAR_STREAM_ICE_INTERFACES": "127.0.0.1,lo"})
    assert config.ice_servers == ("stun:a.example",) and config.ice_interfaces == ("127.0.0.1", "lo")


def test_rtc_configuration_carries_the_credentials() -> None:
    configuration = rtc_configuration(["stun:a.example:3478", "turn:u:secret@b.example:3478?transport=udp"])
    servers = configuration.iceServers
    assert [(s.urls, s.username, s.credential) for s in servers] == [
        ("stun:a.example:3478", None, None), ("turn:b.example:3478?transport=udp", "u", "secret")]
    assert rtc_configuration().iceServers == []  # none: not aiortc's default public STUN server


def test_interfaces_resolve_to_addresses() -> None:
    assert resolve_interfaces(["127.0.0.1"]) == ["127.0.0.1"]
    assert "127.0.0.1" in resolve_interfaces(["lo"])
    with pytest.raises(ConfigError, match=r"'no-such-nic' is neither an IP address nor an interface .*\blo\b"):
        resolve_interfaces(["no-such-nic"])


class StunServer(asyncio.DatagramProtocol):
    """Answers STUN binding requests with the sender's address, and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        if message.message_method != stun.Method.BINDING or message.message_class != stun.Class.REQUEST:
            return
        self.requests += 1
        reply = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                             transaction_id=message.transaction_id)
        reply.attributes["XOR-MAPPED-ADDRESS"] = addr
        assert self.transport is not None
        self.transport.sendto(bytes(reply), addr)


@pytest.fixture
async def stun_server() -> AsyncIterator[tuple[StunServer, int]]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        StunServer, local_addr=("127.0.0.1", 0))
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def host_candidates(sdp: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ (\S+) \d+ typ host", sdp)}


@pytest.mark.usefixtures("one_torch_thread")
async def test_the_servers_peers_ask_the_configured_stun_server_and_offer_the_configured_addresses(
        stun_server: tuple[StunServer, int], tiny_checkpoint: Path, tmp_path: Path) -> None:
    stun_protocol, stun_port = stun_server
    config = ServerConfig(model=str(tiny_checkpoint), offline=True, home=tmp_path / "home", port=0,
                          ice_servers=(f"stun:127.0.0.1:{stun_port}",), ice_interfaces=("127.0.0.1",))
    async with live_server(config) as live:
        assert live.app[STREAMS].viewers.ice_servers == config.ice_servers  # the camera viewers' peers too
        status, answer = await live.post("/api/webrtc/offer",
                                         json={"sdp": await offer_sdp(video=True, channel=True), "type": "offer"})
        assert status == 200, answer
        assert stun_protocol.requests >= 1  # the server's peer asked our STUN server while gathering
        assert "typ srflx" in answer["sdp"]  # and offers what it learnt
        assert host_candidates(answer["sdp"]) == {"127.0.0.1"}  # only the configured address, no other NIC

"""A forward HTTP proxy on 127.0.0.1 that checks every hop of one fetch (a job's or a camera's).

Why a proxy: FFmpeg follows HTTP redirects and fetches HLS segment URLs itself, and yt-dlp follows redirects
while it resolves a page; neither lets a caller check where each request goes. Both can be told to use an
HTTP proxy (FFmpeg's ``http_proxy`` option, which its HLS demuxer hands on to segment requests; yt-dlp's
``proxy``), so every request of a fetch arrives here first. The proxy resolves the host once, checks every
address with the fetch's ``AddressPolicy``, and connects only to addresses it checked (each in turn until one
answers), so a DNS answer that changes between check and connect (rebinding) cannot slip through either. A
refused hop is answered 403 and remembered (``refusals``), so the job or camera can say which hop was refused
and why.

Plain ``http://`` requests arrive in absolute form and are forwarded with ``Connection: close`` (one request
per connection); ``https://`` arrives as ``CONNECT host:port`` and is tunnelled after the check (the proxy
never sees inside TLS, but every redirect is a new request, so a new ``CONNECT``).

One ``GuardProxy`` per fetch: its own port, its own refusals, closed with the job or camera that owns it.

FFmpeg skips its ``http_proxy`` for hosts listed in the ``no_proxy`` environment variable (cloud images often
list ``localhost,127.0.0.1,169.254.169.254`` there), which would let a redirect to exactly those addresses go
around the guard. So the first guarded fetch removes ``no_proxy``/``NO_PROXY`` from the server's environment
(logged once); nothing else in the server fetches through a proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .url_guard import AddressPolicy, IPAddress

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]  # (host, port) → addresses, most preferred first

HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
CHUNK = 64 * 1024
MAX_REFUSALS = 8  # policy: keep the newest
HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive", "te", "upgrade"}
# What FFmpeg may open for a guarded URL: HTTP(S) through the proxy, and HLS's AES decryption. Not file:
# (a remote playlist naming local files) and not rtmp/rtsp/udp (which would bypass the proxy).
FFMPEG_PROTOCOLS = "http,https,tls,tcp,crypto,httpproxy"


@dataclass(frozen=True)
class Refusal:
    """A hop the proxy refused: where it wanted to go, and why."""

    target: str  # host:port as asked
    reason: str  # "a link-local address (169.254.169.254)"

    def message(self) -> str:
        return (f"refusing to follow the fetch to {self.target}: it is {self.reason} (a redirect or a link in the "
                "fetched media leads there); the server only fetches public URLs unless started with "
                "--allow-private-urls (or the address is listed in --allow-hosts)")


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class GuardProxy:
    """``async with GuardProxy(policy) as proxy``: ``proxy.url`` goes to FFmpeg/yt-dlp; stopped on exit."""

    def __init__(self, policy: AddressPolicy, name: str = "fetch", resolver: Resolver | None = None) -> None:
        self.policy = policy
        self.name = name
        self.resolver = resolver or system_resolver  # tests give names of their own
        self.refusals: deque[Refusal] = deque(maxlen=MAX_REFUSALS)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ffmpeg_options(self) -> dict[str, str]:
        return {"http_proxy": self.url, "protocol_whitelist": FFMPEG_PROTOCOLS}

    async def __aenter__(self) -> GuardProxy:
        drop_no_proxy()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=HEAD_LIMIT)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in tuple(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    def last_refusal(self) -> Refusal | None:
        return self.refusals[-1] if self.refusals else None

    # -- one client connection ----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                await _answer(writer, 400, "malformed request line")
                return
            method, target, version = parts
            try:
                if method == "CONNECT":
                    host, port = _split_authority(target, 443)
                    up_reader, upstream = await self._connect(host, port, target)
                    writer.write(f"{version} 200 Connection established\r\n\r\n".encode("latin-1"))
                    await writer.drain()
                else:
                    url = urlsplit(target)
                    if url.scheme.lower() != "http" or not url.hostname:
                        await _answer(writer, 400, "the proxy takes absolute http:// URLs and CONNECT only")
                        return
                    port = url.port or 80
                    up_reader, upstream = await self._connect(url.hostname, port, f"{url.hostname}:{port}")
                    path = url.path or "/"
                    if url.query:
                        path += "?" + url.query
                    headers = [h for h in lines[1:] if h and h.split(":", 1)[0].strip().lower() not in HOP_HEADERS]
                    upstream.write((f"{method} {path} {version}\r\n" + "".join(h + "\r\n" for h in headers)
                                    + "Connection: close\r\n\r\n").encode("latin-1"))
                    await upstream.drain()
            except _Refused as refused:
                self.refusals.append(refused.refusal)
                log.warning("%s: refused a hop to %s: %s", self.name, refused.refusal.target, refused.refusal.reason)
                await _answer(writer, 403, refused.refusal.message())
                return
            except (OSError, TimeoutError, ValueError) as err:
                await _answer(writer, 502, f"cannot reach {target}: {err}")
                return
            await _relay(reader, writer, up_reader, upstream)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not take the server down: this connection ends, others go on
            log.exception("%s: proxy connection failed", self.name)
        finally:
            for w in (upstream, writer):
                if w is not None:
                    w.close()
            self._handlers.discard(task)

    async def _connect(self, host: str, port: int, target: str
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Resolve ``host`` once, check every address, then connect to each checked one in turn until one
        answers (a name with an unreachable first address still works, as it would for a browser)."""
        addresses: list[IPAddress] = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await self.resolver(host, port)]
        if not addresses:
            raise OSError(f"{host} has no address")
        for address in addresses:
            why = self.policy.refusal(address, port)
            if why is not None:
                raise _Refused(Refusal(target, why))
        failures: list[str] = []
        for address in dict.fromkeys(addresses):  # each once, in the resolver's order
            try:
                return await asyncio.wait_for(asyncio.open_connection(str(address), port), CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as err:
                failures.append(f"{address}: {err or type(err).__name__}")
        raise OSError(f"no address of {host} answered ({'; '.join(failures)})")


async def system_resolver(host: str, port: int) -> list[str]:
    """``host``'s addresses as the system resolves them, in its order of preference."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=1)  # SOCK_STREAM
    return [str(info[4][0]) for info in infos]


def drop_no_proxy() -> None:
    """Remove ``no_proxy``/``NO_PROXY`` from this process's environment: FFmpeg would bypass the guard for them."""
    for name in ("no_proxy", "NO_PROXY"):
        value = os.environ.pop(name, None)
        if value is not None:
            log.warning("removed %s=%r from the environment: FFmpeg would fetch those hosts around the URL guard",
                        name, value)


def _split_authority(target: str, default_port: int) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
    return host, int(port) if port else default_port


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    body = (message + "\n").encode("utf-8")
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1") + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                 up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:
    """Copy bytes both ways until either side ends; then both are closed by the caller."""
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(CHUNK):
                dst.write(data)
                await dst.drain()

    tasks = [asyncio.ensure_future(pipe(client_r, up_w)), asyncio.ensure_future(pipe(up_r, client_w))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def guarded(policy: AddressPolicy, name: str) -> AsyncIterator[GuardProxy | None]:
    """A proxy for one fetch when ``policy`` can refuse anything; None when it never refuses."""
    if not policy.checks:
        yield None
        return
    async with GuardProxy(policy, name) as proxy:
        yield proxy

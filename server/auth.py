"""Who may use the server: the token, the session cookie, the Origin and Host checks, CORS, the failure limit.

One middleware decides for every request, so a route added later is protected without remembering to be:
only the pages, their static files, the sign-in routes and ``/healthz`` are public (``PUBLIC_PATHS``; the
pages must load to ask for the token). With a token configured, everything else needs
``Authorization: Bearer <token>`` or the session cookie that ``POST /api/auth/login`` sets (browsers cannot put
headers on websockets, ``<video>`` or ``<img>``; the cookie reaches all three). Without a token (the default,
on loopback only: ``check_exposure``) nothing is asked, as before.

Independent of the token: a state-changing request or websocket from another site's page (its ``Origin``) is
refused, so a page elsewhere cannot drive a server on 127.0.0.1 through the user's browser; and a server bound
to loopback answers only to loopback names (``Host``), so a page whose name was rebound to 127.0.0.1 (DNS
rebinding) cannot read it either. docs/security.md says what this covers and what not.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from har_stream.errors import ConfigError

from .config import ServerConfig
from .errors import BadRequestError, ForbiddenError, TooManyAttemptsError, UnauthorizedError
from .json_body import read_json

log = logging.getLogger(__name__)

SESSION_COOKIE = "har_stream_session"
SESSION_MAX_AGE_S = 30 * 24 * 3600  # a page asks once a month at most
FAILURE_WINDOW_S = 60.0
MAX_TRACKED_CLIENTS = 4096  # addresses remembered by the failure limit; the oldest is forgotten first
# canonical route paths anyone may request: the pages (they ask for the token), sign-in, and liveness
PUBLIC_PATHS = frozenset({"/", "/analyse", "/cameras", "/events", "/static/{path}",
                          "/api/auth", "/api/auth/login", "/api/auth/logout", "/healthz"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CORS_METHODS = "GET, POST, DELETE"
CORS_HEADERS = "Authorization, Content-Type"


# -- configuration checks -----------------------------------------------------------------------------------

def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses: what only this machine can reach."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_origin_list(origins: Iterable[str]) -> None:
    """``cors_origins`` entries must be bare origins (scheme://host[:port]), as browsers send them."""
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.fragment or parts.username:
            raise ConfigError(f"cors_origins entry {origin!r} is not an origin; write scheme://host[:port], e.g. "
                              "https://dashboard.example:8443")


def read_token(config: ServerConfig) -> str | None:
    """The token: ``token``, or the first line of ``token_file``, or None (no authentication)."""
    if config.token is not None:
        return config.token.strip()
    if config.token_file is None:
        return None
    try:
        lines = config.token_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"token file {config.token_file} could not be read ({err}); point --token-file at a "
                          "readable file holding the token") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise ConfigError(f"token file {config.token_file} is empty; write the token on its first line")
    return token


def check_exposure(config: ServerConfig) -> None:
    """Refuse to listen beyond this machine without a token, unless told that something else protects it."""
    if is_loopback_host(config.host) or config.insecure_no_auth:
        return
    if config.token is None and config.token_file is None:
        raise ConfigError(
            f"refusing to listen on {config.host} without a token: anyone who can reach the port could upload "
            "files, start jobs, add cameras (making the server open any URL) and watch every camera. Give a token "
            "with --token, --token-file or HAR_STREAM_TOKEN (docs/security.md), or pass --insecure-no-auth if "
            "something else (a firewall, a proxy with its own login) protects the port")


# -- the failure limit --------------------------------------------------------------------------------------

IPV6_CLIENT_PREFIX = 64  # an IPv6 host is usually given a whole /64 and may use a new address per connection


def client_key(client: str) -> str:
    """Whom a failure counts against: an IPv4 address as it is (an IPv4-mapped IPv6 one as its IPv4 address),
    an IPv6 address as its /64, so rotating addresses inside one's own /64 does not reset the limit; anything
    that is not an address (a test's name, "unknown") as it is."""
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


@dataclass
class FailureLimiter:
    """At most ``max_failures`` wrong tokens per client (``client_key``: an address, or an IPv6 /64) in
    ``window_s``; past that, ``retry_after`` says how long the client must wait. Policy when ``max_clients``
    clients are tracked: the one whose last failure is oldest is forgotten."""

    max_failures: int
    window_s: float = FAILURE_WINDOW_S
    max_clients: int = MAX_TRACKED_CLIENTS
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def retry_after(self, client: str) -> float | None:
        times = self._failures.get(client_key(client))
        if times is None or len(times) < self.max_failures:
            return None
        wait = times[0] + self.window_s - self.clock()
        return wait if wait > 0 else None

    def failed(self, client: str) -> None:
        key = client_key(client)
        times = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
        times.append(self.clock())
        self._failures[key] = times  # now the newest
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client_key(client), None)

    def __len__(self) -> int:
        return len(self._failures)


# -- the policy ---------------------------------------------------------------------------------------------

@dataclass
class Authenticator:
    """What ``auth_middleware`` checks, built once from the config (the token file is read at start)."""

    token: str | None
    limiter: FailureLimiter
    cors_origins: frozenset[str] = frozenset()
    own_origins: frozenset[str] = frozenset()  # public_url's origin: this server under another name
    loopback_only: bool = False  # bound to loopback: answer to loopback names (and public_url's) only
    own_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: ServerConfig) -> Authenticator:
        public = urlsplit(config.public_url) if config.public_url else None
        token = read_token(config)
        if token is not None and len(token) < 16:
            log.warning("the token is %d characters long; a random one of 32 or more is much harder to guess",
                        len(token))
        return cls(token=token, limiter=FailureLimiter(config.auth_max_failures),
                   cors_origins=frozenset(o.rstrip("/") for o in config.cors_origins),
                   own_origins=frozenset({f"{public.scheme}://{public.netloc}"} if public and public.netloc else ()),
                   loopback_only=is_loopback_host(config.host),
                   own_hosts=frozenset({public.hostname} if public and public.hostname else ()))

    @property
    def session(self) -> str:
        """The session cookie's value: derived from the token (a new token ends old sessions), never the token
        itself, and too long to guess, so wrong cookies need no rate limit."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"har-stream session v1", hashlib.sha256).hexdigest()

    def has_session(self, request: web.Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE)
        return self.token is not None and cookie is not None and hmac.compare_digest(cookie.encode(),
                                                                                     self.session.encode())

    def check_token(self, client: str, candidate: str) -> None:
        """Accept ``candidate`` or raise 401; a client with too many recent failures gets 429 before any
        comparison, so guessing is limited to ``max_failures`` a minute per address."""
        assert self.token is not None
        wait = self.limiter.retry_after(client)
        if wait is not None:
            raise TooManyAttemptsError(f"too many wrong tokens from {client_key(client)}; try again in "
                                       f"{math.ceil(wait)} s",
                                       {"Retry-After": str(math.ceil(wait))})
        if hmac.compare_digest(candidate.encode(), self.token.encode()):
            self.limiter.succeeded(client)
            return
        self.limiter.failed(client)
        log.warning("wrong token from %s", client)
        raise UnauthorizedError("wrong token; use the token the server was started with (--token, "
                                "HAR_STREAM_TOKEN or --token-file)", _challenge())

    def authenticate(self, request: web.Request) -> None:
        if self.has_session(request):
            return
        header = request.headers.get(hdrs.AUTHORIZATION)
        if header is None:
            headers = _challenge()
            if SESSION_COOKIE in request.cookies:  # from an old token: drop it, so the page asks again
                headers["Set-Cookie"] = f"{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
            raise UnauthorizedError("this server needs its token: send the header Authorization: Bearer <token>, "
                                    "or enter the token on one of its pages", headers)
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise UnauthorizedError("the Authorization header must be: Bearer <token>", _challenge())
        self.check_token(request.remote or "unknown", value.strip())

    def check_origin(self, request: web.Request) -> None:
        """Refuse state changes and websockets that another site's page started (a missing Origin passes:
        scripts and curl send none, and they still need the token when there is one)."""
        if request.method not in UNSAFE_METHODS and not _is_upgrade(request):
            return
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return
        origin = origin.rstrip("/")
        if origin in self.cors_origins or origin in self.own_origins:
            return
        if origin != "null" and urlsplit(origin).netloc.lower() == request.host.lower():
            return
        what = "websocket" if _is_upgrade(request) else request.method
        raise ForbiddenError(f"refused a {what} from a page of {origin}: only this server's own pages may change "
                             "things or open websockets here (add that origin to cors_origins to allow it)")

    def check_host(self, request: web.Request) -> None:
        """On loopback, refuse requests addressed to another name: a page whose domain was re-pointed at
        127.0.0.1 (DNS rebinding) would otherwise be same-origin with this server in the browser."""
        if not self.loopback_only:
            return
        try:
            name = urlsplit(f"//{request.host}").hostname or ""
        except ValueError:
            name = ""
        if is_loopback_host(name) or name in self.own_hosts:
            return
        raise ForbiddenError(f"this server listens on loopback and answers to localhost, 127.0.0.1 or [::1] only, "
                             f"not to {request.host!r}; if a proxy forwards it under that name, set public_url")

    def preflight(self, request: web.Request) -> web.Response | None:
        """A CORS preflight from an allowed origin → its answer; anything else is not ours to answer."""
        origin = (request.headers.get(hdrs.ORIGIN) or "").rstrip("/")
        if origin not in self.cors_origins or hdrs.ACCESS_CONTROL_REQUEST_METHOD not in request.headers:
            return None
        return web.Response(status=204, headers={
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin, hdrs.ACCESS_CONTROL_ALLOW_METHODS: CORS_METHODS,
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: CORS_HEADERS, hdrs.ACCESS_CONTROL_MAX_AGE: "600",
            hdrs.VARY: "Origin"})


def _challenge() -> dict[str, str]:
    return {hdrs.WWW_AUTHENTICATE: 'Bearer realm="har-stream"'}


def _is_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def _is_public(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is None or resource.canonical in PUBLIC_PATHS  # None: no such route, its 404/405 follows


AUTH = web.AppKey("auth", Authenticator)


@web.middleware
async def auth_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Inside ``error_middleware``, so every refusal is the usual JSON ``{"error": ...}``."""
    auth = request.app[AUTH]
    auth.check_host(request)
    auth.check_origin(request)
    if request.method == "OPTIONS" and (answer := auth.preflight(request)) is not None:
        return answer
    if auth.token is not None and not _is_public(request):
        auth.authenticate(request)
    return await handler(request)


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = (request.headers.get(hdrs.ORIGIN) or "").rstrip("/")
    if origin and origin in request.app[AUTH].cors_origins:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = "Retry-After, Location"
        response.headers.add(hdrs.VARY, "Origin")


# -- the sign-in routes -------------------------------------------------------------------------------------

async def auth_status(request: web.Request) -> web.Response:
    """``GET /api/auth``: does this server want a token, and does this browser hold a session?"""
    auth = request.app[AUTH]
    return web.json_response({"required": auth.token is not None,
                              "authenticated": auth.token is None or auth.has_session(request)})


async def login(request: web.Request) -> web.Response:
    """``POST /api/auth/login`` ``{"token": "..."}`` → the session cookie (HttpOnly, SameSite=Strict, Secure
    under TLS); a wrong token counts against the address like a wrong Bearer header."""
    auth = request.app[AUTH]
    hint = 'send {"token": "<the server\'s token>"} as JSON'
    body = await read_json(request, hint)  # guarded: deep nesting is a 400, never a RecursionError
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise BadRequestError(hint)
    if auth.token is None:
        return web.json_response({"required": False, "authenticated": True})
    auth.check_token(request.remote or "unknown", token.strip())
    response = web.json_response({"required": True, "authenticated": True})
    response.set_cookie(SESSION_COOKIE, auth.session, max_age=SESSION_MAX_AGE_S, path="/", httponly=True,
                        samesite="Strict", secure=request.secure)
    return response


async def logout(request: web.Request) -> web.Response:
    """``POST /api/auth/logout``: forget this browser's session cookie."""
    response = web.json_response({"authenticated": False})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def setup_auth(app: web.Application, config: ServerConfig) -> None:
    """Attach the policy and its routes (the middleware itself is listed in ``create_app``)."""
    app[AUTH] = Authenticator.from_config(config)
    app.on_response_prepare.append(_cors_headers)
    app.router.add_get("/api/auth", auth_status)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/logout", logout)
    if app[AUTH].token is not None:
        log.info("authentication: a token is required on the API, offers, websockets and media")


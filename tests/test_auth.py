"""The token, the session cookie, the failure limit, the Origin/Host checks and CORS, through the real server.

Every route of the app's router is enumerated, so a route added later is covered without editing this file:
only the pages, their static files, the sign-in routes and /healthz may answer without the token (``PUBLIC``).
"""

from __future__ import annotations

import re
import urllib.error
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.auth import SESSION_COOKIE, FailureLimiter
from server.config import ServerConfig
from tests.helpers.clips import run_cli
from tests.helpers.serve_cli import serve_cli
from tests.helpers.webrtc_client import LiveServer, live_server

TOKEN = "test-token-0123456789abcdef"
# (method, canonical path) that answer without a token; nothing else may
PUBLIC = {(m, p) for m in ("GET", "HEAD") for p in ("/", "/analyse", "/cameras", "/events", "/static/{path}",
                                                     "/api/auth", "/healthz")}
PUBLIC |= {("POST", "/api/auth/login"), ("POST", "/api/auth/logout")}
DUMMY = {"path": "js/api.js", "id": "0123456789abcdef", "name": "no-such-camera", "file": "result.json"}


def config(tmp_path: Path, checkpoint: Path, **kw: Any) -> ServerConfig:
    return ServerConfig(model=str(checkpoint), offline=True, home=tmp_path / "home", data_dir=tmp_path / "data",
                        port=0, **kw)


@pytest.fixture
async def server(tiny_checkpoint: Path, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(config(tmp_path, tiny_checkpoint, token=TOKEN, auth_max_failures=1000)) as live:
        yield live


def fill(canonical: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: DUMMY[m.group(1)], canonical)


async def status_of(session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]) -> int:
    kw: dict[str, Any] = {"headers": headers}
    if method in ("POST", "DELETE"):
        kw["json"] = {}
    async with session.request(method, url, **kw) as response:
        if response.status == 401:
            assert method == "HEAD" or "error" in await response.json(), url
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        return response.status


async def login_cookie(live: LiveServer, token: str = TOKEN) -> tuple[int, str | None, str]:
    async with live.session.post(live.url + "/api/auth/login", json={"token": token}) as response:
        return response.status, response.cookies.get(SESSION_COOKIE) and response.cookies[SESSION_COOKIE].value, \
            response.headers.get("Set-Cookie", "")


async def test_every_route_refuses_a_missing_or_wrong_token_and_accepts_the_right_one(server: LiveServer) -> None:
    _, session_value, _ = await login_cookie(server)
    assert session_value and TOKEN not in session_value  # the cookie is derived from the token, not the token
    routes = [(r.method, r.resource.canonical) for r in server.app.router.routes() if r.resource is not None]
    assert ("POST", "/api/webrtc/offer") in routes and ("GET", "/api/jobs/{id}/{file}") in routes
    protected = [(m, p) for m, p in routes if (m, p) not in PUBLIC]
    assert len(protected) >= 25
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        for method, canonical in routes:
            url = server.url + fill(canonical)
            if (method, canonical) in PUBLIC:
                assert await status_of(session, method, url, {}) != 401, (method, canonical)
                continue
            refused = {
                "none": await status_of(session, method, url, {}),
                "wrong bearer": await status_of(session, method, url, {"Authorization": "Bearer wrong-token"}),
                "basic": await status_of(session, method, url, {"Authorization": f"Basic {TOKEN}"}),
                "wrong cookie": await status_of(session, method, url, {"Cookie": f"{SESSION_COOKIE}=forged"}),
                "token as cookie": await status_of(session, method, url, {"Cookie": f"{SESSION_COOKIE}={TOKEN}"}),
            }
            assert set(refused.values()) == {401}, (method, canonical, refused)
            bearer = await status_of(session, method, url, {"Authorization": f"Bearer {TOKEN}"})
            cookie = await status_of(session, method, url, {"Cookie": f"{SESSION_COOKIE}={session_value}"})
            assert bearer not in (401, 403, 429) and cookie not in (401, 403, 429), (method, canonical, bearer, cookie)


async def test_websockets_need_the_token_too(server: LiveServer) -> None:
    _, session_value, _ = await login_cookie(server)
    sockets = sorted({r.resource.canonical for r in server.app.router.routes()
                      if r.resource is not None and r.resource.canonical.endswith("/ws")})
    assert {"/api/jobs/{id}/ws", "/api/streams/ws"} <= set(sockets)  # and any added later
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        for path in sockets:
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Cookie": f"{SESSION_COOKIE}=nope"}):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(server.url + fill(path), headers=headers)
                assert refused.value.status == 401, (path, headers)
        url = server.url + "/api/streams/ws"
        for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"Cookie": f"{SESSION_COOKIE}={session_value}"}):
            async with session.ws_connect(url, headers=headers) as ws:
                assert (await ws.receive_json(timeout=10))["streams"] == []


async def test_login_sets_a_strict_httponly_cookie_and_logout_drops_it(server: LiveServer) -> None:
    assert await server.get("/api/auth") == (200, {"required": True, "authenticated": False})
    status, value, _ = await login_cookie(server, "wrong")
    assert (status, value) == (401, None)
    status, value, set_cookie = await login_cookie(server)
    assert status == 200 and value
    attributes = {a.strip().split("=")[0].lower() for a in set_cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes and "secure" not in attributes  # plain http
    assert "SameSite=Strict" in set_cookie
    headers = {"Cookie": f"{SESSION_COOKIE}={value}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), headers=headers) as session:
        async with session.get(server.url + "/api/jobs") as reply:
            assert reply.status == 200 and (await reply.json())["jobs"] == []
        async with session.get(server.url + "/api/auth") as reply:
            assert await reply.json() == {"required": True, "authenticated": True}
        async with session.post(server.url + "/api/auth/logout") as reply:
            assert reply.status == 200 and reply.cookies[SESSION_COOKIE].value == ""
    async with server.session.post(server.url + "/api/auth/login", data=b"not json") as reply:
        assert reply.status == 400 and "token" in (await reply.json())["error"]


async def test_wrong_tokens_are_rate_limited_per_address(tiny_checkpoint: Path, tmp_path: Path) -> None:
    async with live_server(config(tmp_path, tiny_checkpoint, token=TOKEN, auth_max_failures=3)) as live:
        _, session_value, _ = await login_cookie(live)  # a session taken before the attack
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            async def get(headers: dict[str, str]) -> aiohttp.ClientResponse:
                async with session.get(live.url + "/api/jobs", headers=headers) as reply:
                    await reply.read()
                    return reply

            missing = [(await get({})).status for _ in range(5)]  # no token at all: nothing guessed, not counted
            assert missing == [401] * 5
            wrong = [(await get({"Authorization": f"Bearer guess-{i}"})).status for i in range(3)]
            assert wrong == [401, 401, 401]
            blocked = await get({"Authorization": "Bearer guess-4"})
            assert blocked.status == 429 and 0 < int(blocked.headers["Retry-After"]) <= 60
            # while blocked even the right token is not compared (else guessing would go on), nor a login ...
            assert (await get({"Authorization": f"Bearer {TOKEN}"})).status == 429
            status, _, _ = await login_cookie(live)
            assert status == 429
            # ... but a session cookie (far too long to guess) keeps working
            assert (await get({"Cookie": f"{SESSION_COOKIE}={session_value}"})).status == 200


def test_the_failure_limit_forgets_old_failures_and_bounds_its_memory() -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=2, window_s=60.0, max_clients=3, clock=lambda: now[0])
    limiter.failed("a")
    assert limiter.retry_after("a") is None
    limiter.failed("a")
    assert limiter.retry_after("a") == 60.0
    now[0] = 30.0
    assert limiter.retry_after("a") == 30.0
    now[0] = 60.5
    assert limiter.retry_after("a") is None  # the window passed
    for client in ("b", "c", "d", "e"):
        limiter.failed(client)
    assert len(limiter) == 3  # "a", the oldest, was forgotten first
    limiter.failed("c")
    limiter.succeeded("c")
    assert limiter.retry_after("c") is None


def test_ipv6_clients_are_limited_by_their_64_so_rotating_addresses_does_not_help() -> None:
    """An IPv6 host is usually handed a whole /64 and may pick any address in it per connection: the limit
    counts the /64. IPv4 stays per address, and an IPv4-mapped IPv6 address counts as its IPv4 address."""
    limiter = FailureLimiter(max_failures=3, window_s=60.0, clock=lambda: 0.0)
    for i in range(3):  # three guesses, each from a new address of the same /64
        limiter.failed(f"2001:db8:1:2::{i + 1:x}")
    assert limiter.retry_after("2001:db8:1:2:ffff:ffff:ffff:ffff") == 60.0  # any address of that /64: blocked
    assert limiter.retry_after("2001:db8:1:3::1") is None  # the next /64 is someone else
    limiter.succeeded("2001:db8:1:2::abcd")  # the right token from the /64 clears it
    assert limiter.retry_after("2001:db8:1:2::1") is None
    for _ in range(3):
        limiter.failed("::ffff:10.0.0.7")
    assert limiter.retry_after("10.0.0.7") == 60.0 and limiter.retry_after("10.0.0.8") is None
    assert len(limiter) == 1


async def test_cross_site_requests_and_websockets_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """No token (loopback, the default): another site's page still cannot POST or open a websocket."""
    async with live_server(config(tmp_path, tiny_checkpoint)) as live:
        evil = {"Origin": "http://evil.example"}
        async with live.session.post(live.url + "/api/jobs/0123456789abcdef/cancel", headers=evil) as reply:
            assert reply.status == 403 and "refused a POST from a page of http://evil.example" in \
                (await reply.json())["error"]
        async with live.session.delete(live.url + "/api/streams/x", headers={"Origin": "null"}) as reply:
            assert reply.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await live.session.ws_connect(live.url + "/api/streams/ws", headers=evil)
        assert refused.value.status == 403
        own = {"Origin": live.url}
        async with live.session.post(live.url + "/api/jobs/0123456789abcdef/cancel", headers=own) as reply:
            assert reply.status == 404  # same origin: on to the handler
        async with live.session.post(live.url + "/api/jobs/0123456789abcdef/cancel") as reply:
            assert reply.status == 404  # no Origin (curl, scripts): on to the handler
        async with live.session.get(live.url + "/api/jobs", headers=evil) as reply:
            assert reply.status == 200 and "Access-Control-Allow-Origin" not in reply.headers  # no CORS
        # a page whose name was rebound to 127.0.0.1 (DNS rebinding) is same-origin in the browser: Host says it
        port = live.url.rsplit(":", 1)[1]
        async with live.session.get(live.url + "/api/jobs", headers={"Host": f"evil.example:{port}"}) as reply:
            assert reply.status == 403 and "loopback" in (await reply.json())["error"]
        async with live.session.get(live.url + "/api/jobs", headers={"Host": f"localhost:{port}"}) as reply:
            assert reply.status == 200
        async with live.session.get(live.url + "/", headers={"Host": f"evil.example:{port}"}) as reply:
            assert reply.status == 403


async def test_cors_only_for_configured_origins(tiny_checkpoint: Path, tmp_path: Path) -> None:
    dash = "https://dash.example:8443"
    async with live_server(config(tmp_path, tiny_checkpoint, token=TOKEN, cors_origins=(dash,))) as live:
        preflight = {"Origin": dash, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization, content-type"}
        async with live.session.options(live.url + "/api/jobs", headers=preflight) as reply:
            assert reply.status == 204
            assert reply.headers["Access-Control-Allow-Origin"] == dash
            assert "Authorization" in reply.headers["Access-Control-Allow-Headers"]
        async with live.session.options(live.url + "/api/jobs", headers={**preflight, "Origin": "https://x.example"}
                                        ) as reply:
            assert reply.status != 204 and "Access-Control-Allow-Origin" not in reply.headers
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with live.session.get(live.url + "/api/jobs", headers={**bearer, "Origin": dash}) as reply:
            assert reply.status == 200 and reply.headers["Access-Control-Allow-Origin"] == dash
        async with live.session.post(live.url + "/api/jobs/0123456789abcdef/cancel",
                                     headers={**bearer, "Origin": dash}) as reply:
            assert reply.status == 404  # an allowed origin passes the Origin check
        async with live.session.get(live.url + "/api/jobs", headers={"Origin": dash}) as reply:
            assert reply.status == 401  # CORS never replaces the token
            assert reply.headers["Access-Control-Allow-Origin"] == dash  # so the page can read the refusal


def test_token_settings_from_environment_file_and_their_errors(tmp_path: Path) -> None:
    from har_stream.errors import ConfigError
    from server.auth import read_token
    from server.config import load_config

    assert load_config({}, env={"HAR_STREAM_TOKEN": "abc"}).token == "abc"
    file = tmp_path / "token"
    file.write_text("from-a-file\n")
    assert read_token(load_config({}, env={"HAR_STREAM_TOKEN_FILE": str(file)})) == "from-a-file"
    assert read_token(load_config({"token_file": file}, env={})) == "from-a-file"
    with pytest.raises(ConfigError, match="not both"):
        load_config({"token_file": file}, env={"HAR_STREAM_TOKEN": "abc"})
    with pytest.raises(ConfigError, match="could not be read"):
        read_token(load_config({"token_file": tmp_path / "missing"}, env={}))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_token(load_config({"token_file": tmp_path / "empty"}, env={}))
    with pytest.raises(ConfigError, match="is not an origin"):
        load_config({}, env={"HAR_STREAM_CORS_ORIGINS": "https://ok.example,https://bad.example/path"})
    assert load_config({}, env={"HAR_STREAM_CORS_ORIGINS": "https://a.example, http://b:81"}).cors_origins == \
        ("https://a.example", "http://b:81")


def test_serve_refuses_a_public_address_without_a_token(cli_env: dict[str, str]) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "0", env=cli_env, timeout=60)
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert message.startswith("har-stream: error: refusing to listen on 0.0.0.0 without a token")
    assert "--token" in message and "--insecure-no-auth" in message and "\n" not in message



def test_which_addresses_need_a_token() -> None:
    from har_stream.errors import ConfigError
    from server.auth import check_exposure
    from server.config import load_config

    for host in ("127.0.0.1", "127.3.4.5", "::1", "localhost"):
        check_exposure(load_config({"host": host}, env={}))  # this machine only: no token needed
    for host in ("0.0.0.0", "::", "192.168.1.20", "my-server.lan"):
        with pytest.raises(ConfigError, match=f"refusing to listen on {host} without a token"):
            check_exposure(load_config({}, env={"HAR_STREAM_HOST": host}))
        check_exposure(load_config({"host": host}, env={"HAR_STREAM_TOKEN": TOKEN}))
        check_exposure(load_config({"host": host, "insecure_no_auth": True}, env={}))


@pytest.mark.parametrize("extra", [["--insecure-no-auth"], ["--token", TOKEN]], ids=["insecure-no-auth", "token"])
def test_serve_starts_on_a_public_address_with_a_token_or_when_told(extra: list[str], cli_env: dict[str, str],
                                                                    tiny_checkpoint: Path) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"} if "--token" in extra else {}
    with serve_cli(["--host", "0.0.0.0", "--port", "0", "--model", str(tiny_checkpoint), *extra], cli_env,
                   headers=headers) as served:
        assert served.bound == "0.0.0.0"
        if headers:
            with pytest.raises(urllib.error.HTTPError) as refused:
                served.get_json("/api/jobs")
            assert refused.value.code == 401

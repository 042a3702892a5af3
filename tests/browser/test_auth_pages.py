"""The pages on a server started with ``--token``, in a real headless Chromium (inside ``unshare -n``).

The analysis page must ask for the token in its dialog (a wrong one is refused with the server's words), then
work: models listed, the past-jobs list answered. The session cookie it got must be invisible to scripts
(HttpOnly) and carry the cameras page's websocket, with no second prompt. The live page's WebRTC offer works
after its sign-in (the fake webcam gets labels), and the events page then lists with the same cookie.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import inside
from tests.browser.live_server import LiveServer, free_port

pytestmark = pytest.mark.private_network  # each test runs inside `unshare -n` (netns.py)

TOKEN = "browser-test-token-0123456789"


@pytest.fixture
def token_server(request: pytest.FixtureRequest, tiny_checkpoint: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer | None]:
    if not inside(request):
        yield None
        return
    folder = tmp_path_factory.mktemp("serve-token")
    server = LiveServer(port=free_port(), home=folder / "home", log=folder / "serve.log", token=TOKEN,
                        args=("--model", str(tiny_checkpoint), "--clip-threshold", "0", "--data-dir",
                              str(folder / "data"), "--token", TOKEN))
    request.node.har_servers = [server]
    yield server.start()
    server.stop()


def test_the_pages_ask_for_the_token_once_and_then_work(token_server: LiveServer, chromium,  # type: ignore[no-untyped-def]
                                                         change_clip: Path, artifacts_dir: Path) -> None:
    browser = chromium()
    api = browser.new_context().request  # a script with the token (Bearer) submits a job first
    reply = api.post(token_server.url + "api/jobs", headers={"Authorization": f"Bearer {TOKEN}"},
                     multipart={"video": {"name": "clip.mp4", "mimeType": "video/mp4",
                                          "buffer": change_clip.read_bytes()}})
    assert reply.status == 202, reply.text()
    assert api.get(token_server.url + "api/jobs").status == 401  # the same without it
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(token_server.url + "analyse")

    dialog = page.locator('[data-testid="auth-dialog"]')
    dialog.wait_for(state="visible", timeout=20_000)
    page.fill('[data-testid="auth-token"]', "not-the-token")
    page.click('[data-testid="auth-submit"]')
    page.wait_for_function("document.querySelector('[data-testid=auth-error]').textContent.includes('wrong token')",
                           timeout=10_000)
    page.screenshot(path=str(artifacts_dir / "auth-dialog.png"))
    page.fill('[data-testid="auth-token"]', TOKEN)
    page.click('[data-testid="auth-submit"]')
    dialog.wait_for(state="hidden", timeout=10_000)

    # the requests refused before the sign-in were sent again: the models are listed, the job too
    page.wait_for_function("document.querySelector('[data-testid=model-select]').value !== ''", timeout=30_000)
    page.locator('[data-testid="job-row"]').first.wait_for(timeout=30_000)
    assert page.locator('[data-testid="job-row"]').count() == 1
    assert page.locator('[data-testid="auth-dialog"]').count() == 1  # one dialog, however many requests were refused
    assert "har_stream_session" not in page.evaluate("document.cookie")  # HttpOnly: scripts cannot read it
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["har_stream_session"]["httpOnly"] and cookies["har_stream_session"]["sameSite"] == "Strict"

    # another page of the same server: no prompt, and the websocket opens with the cookie
    page.goto(token_server.url + "cameras")
    page.wait_for_function("document.querySelector('[data-testid=feed-badge]').dataset.transport === 'websocket'",
                           timeout=30_000)
    assert not page.locator('[data-testid="auth-dialog"]').is_visible()
    page.screenshot(path=str(artifacts_dir / "auth-cameras-signed-in.png"))
    assert errors == []


def test_the_live_page_and_the_events_page_work_with_the_token(  # type: ignore[no-untyped-def]
        token_server: LiveServer, chromium, fake_webcam: Path, artifacts_dir: Path) -> None:
    """The WebRTC offer is an API route too: after the sign-in the live page's offer carries the cookie and the
    fake webcam gets labels; the events page then loads its list with the same cookie, without asking again."""
    page = chromium(camera=fake_webcam).new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    statuses: dict[str, list[int]] = {"offer": [], "events": []}

    def seen(response) -> None:  # type: ignore[no-untyped-def]
        path = response.url.split("?", 1)[0]
        if path.endswith("/api/webrtc/offer"):
            statuses["offer"].append(response.status)
        elif path.endswith("/api/events"):
            statuses["events"].append(response.status)

    page.on("response", seen)
    page.goto(token_server.url)
    page.locator('[data-testid="auth-dialog"]').wait_for(state="visible", timeout=20_000)
    page.fill('[data-testid="auth-token"]', TOKEN)
    page.click('[data-testid="auth-submit"]')
    page.locator('[data-testid="auth-dialog"]').wait_for(state="hidden", timeout=10_000)
    page.wait_for_function("document.querySelector('[data-testid=model-select]').value !== ''", timeout=30_000)
    page.click('[data-testid="start"]')
    page.wait_for_function("document.querySelector('[data-testid=current-label]').dataset.window", timeout=45_000)
    assert page.locator('[data-testid="current-label"]').inner_text().strip() != ""  # a label arrived
    assert statuses["offer"] == [200], statuses
    page.screenshot(path=str(artifacts_dir / "auth-live-signed-in.png"))

    page.goto(token_server.url + "events")
    page.wait_for_function("document.querySelector('[data-testid=events-count]')?.dataset.total !== undefined",
                           timeout=30_000)
    assert statuses["events"] and set(statuses["events"]) == {200}, statuses
    assert not page.locator('[data-testid="auth-dialog"]').is_visible()
    page.screenshot(path=str(artifacts_dir / "auth-events-signed-in.png"))
    assert errors == []

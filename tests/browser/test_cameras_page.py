"""The cameras and events pages in a real headless Chromium, against the real ``har-stream serve`` (tiny model,
offline) watching a real RTSP camera (GStreamer, looping a clip of a square going left then right).

The camera is added through the page's form; its tile must go live with a label the clip shows, over a video
that really plays (relayed by the server over WebRTC), show the top 5 on hover and on click, and go away
when it is removed through the page. The server's own words show for a refused camera. The events the camera
recorded must then list on the events page, filtered by the camera and by label, with snapshots that load,
and a row must open its snapshot and JSON. Each test runs inside ``unshare -n`` (see netns.py); screenshots
land in test-artifacts/.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import WEBCAM_LABELS

pytestmark = pytest.mark.private_network  # each test runs inside `unshare -n` (netns.py)

NAME = "yard"
LIVE_TIMEOUT_MS = 60_000  # add → live with a label is a few seconds here; slack for a busy 2-core CI machine
EVENTS_TIMEOUT_S = 60.0
# The clip's windows are "moving left" / "moving right", and "holding still" where one straddles a turn
# (the square goes and comes back: no net motion). "moving up" is the one motion it never has.
CLIP_LABELS = {*WEBCAM_LABELS, "holding still"}

TILE = f'[data-testid="camera-tile"][data-name="{NAME}"]'

TILE_STATE = f"""() => {{
  const tile = document.querySelector('{TILE}');
  if (!tile) return null;
  const q = (id) => tile.querySelector(`[data-testid="${{id}}"]`);
  const video = q("camera-video");
  return {{
    state: tile.dataset.state, label: tile.dataset.label, viewer: tile.dataset.viewer, video: tile.dataset.video,
    badge: q("camera-state").textContent.trim(), shown: q("camera-label").textContent.trim(),
    confidence: q("camera-confidence").textContent.trim(), raw: q("camera-raw-label").textContent.trim(),
    reconnects: q("camera-reconnects").textContent.trim(),
    url: q("camera-url").textContent.trim(), message_hidden: q("camera-video-message").hidden,
    message: q("camera-video-message").textContent.trim(), place: q("camera-video-message").dataset.place,
    picture: q("camera-stage").dataset.picture, retry: q("camera-retry").textContent.trim(),
    ready: video.readyState, time: video.currentTime, width: video.videoWidth, height: video.videoHeight,
  }};
}}"""

TOP5 = f"""() => [...document.querySelectorAll('{TILE} [data-testid="top5-row"]')].map((row) => ({{
  label: row.dataset.label, value: Number(row.dataset.value),
  pct: row.querySelector('[data-testid="top5-pct"]').textContent.trim(),
  fill: row.querySelector(".top5-fill").getBoundingClientRect().width,
  track: row.querySelector(".top5-bar").getBoundingClientRect().width,
}}))"""

# Counts the frames the tile's video presents (requestVideoFrameCallback): proof that pictures arrive.
COUNT_FRAMES = f"""() => {{
  const video = document.querySelector('{TILE} [data-testid="camera-video"]');
  window.__frames = 0;
  const tick = () => {{ window.__frames += 1; video.requestVideoFrameCallback(tick); }};
  video.requestVideoFrameCallback(tick);
}}"""

# Keeps every RTCPeerConnection the page makes in window.__pcs, so the test can break one.
KEEP_PEERS = """(() => {
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})();"""

# The video's connection ends under the page (what a failed network does to it): closed, and said so.
BREAK_PEER = """() => { const pc = window.__pcs.at(-1); pc.close();
  pc.dispatchEvent(new Event("connectionstatechange")); return window.__pcs.length; }"""

ROWS = """() => [...document.querySelectorAll('[data-testid="event-row"]')].map((row) => ({
  id: row.dataset.eventId, label: row.dataset.label, stream: row.dataset.stream, state: row.dataset.state,
}))"""

THUMBS_LOADED = """() => { const imgs = [...document.querySelectorAll('[data-testid="event-thumb"]')];
  return imgs.length > 0 && imgs.some((img) => img.complete && img.naturalWidth > 0); }"""


def open_page(browser: Any, url: str, init_script: str | None = None) -> Any:
    """A fresh page on ``url`` with its uncaught errors collected in ``page.js_errors``."""
    # Reduced motion: bars are drawn without transitions, so what is measured is what is shown.
    page = browser.new_page(viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
    page.js_errors = []
    page.on("pageerror", lambda err: page.js_errors.append(str(err)))
    if init_script:
        page.add_init_script(init_script)
    page.goto(url)
    return page


def text(page: Any, testid: str) -> str:
    return page.locator(f'[data-testid="{testid}"]').inner_text().strip()


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_for_events(server: Any, stream: str) -> list[dict[str, Any]]:
    """The camera's events once at least one has closed with a snapshot (an action held, then changed)."""
    deadline = time.monotonic() + EVENTS_TIMEOUT_S
    while True:
        events = server.get_json(f"/api/events?stream={stream}")["events"]
        if any(e["state"] == "closed" and e["snapshot"] for e in events):
            return events
        assert time.monotonic() < deadline, f"no closed event with a snapshot for {stream}: {events}"
        time.sleep(0.5)


def add_camera(page: Any, name: str, url: str) -> None:
    page.fill('[data-testid="camera-name-input"]', name)
    page.fill('[data-testid="camera-url-input"]', url)
    page.click('[data-testid="add-submit"]')


def test_a_camera_added_on_the_page_plays_live_with_labels_and_its_events_list(
        streams_server: Any, chromium: Any, rtsp_camera: Any, artifacts_dir: Path) -> None:
    models = streams_server.get_json("/api/models")
    page = open_page(chromium(), streams_server.url + "cameras", init_script=KEEP_PEERS)
    page.wait_for_function("document.querySelector('[data-testid=model-select]').value !== ''")
    assert page.locator('[data-testid="model-select"]').input_value() == models["default"]
    page.wait_for_function("document.querySelector('[data-testid=feed-badge]').dataset.transport === 'websocket'",
                           timeout=10_000)
    assert page.locator('[data-testid="cameras-empty"]').is_visible()
    assert page.locator('[data-testid="nav-cameras"]').get_attribute("aria-current") == "page"

    # Adding it through the form: the tile appears at once and goes live with a label of the clip.
    add_camera(page, NAME, rtsp_camera.url)
    page.wait_for_selector(TILE, timeout=10_000)
    assert page.locator('[data-testid="add-error"]').is_hidden()
    assert page.locator('[data-testid="cameras-empty"]').is_hidden()
    page.wait_for_function(f"(() => {{ const t = document.querySelector('{TILE}'); return t.dataset.state === 'live'"
                           f" && {json.dumps(list(WEBCAM_LABELS))}.includes(t.dataset.label); }})()",
                           timeout=LIVE_TIMEOUT_MS)
    tile = page.evaluate(TILE_STATE)
    assert tile["badge"] == "live" and tile["shown"] == tile["label"], tile
    assert re.fullmatch(r"\d{1,3}%", tile["confidence"]) or \
        re.fullmatch(r"latest window: .+ \d{1,3}%", tile["raw"]), tile
    assert tile["reconnects"] == "0 reconnects", tile
    assert tile["url"] == rtsp_camera.url_without_credentials, tile
    page.wait_for_function(f"document.querySelector('[data-testid=add-status]').textContent === "
                           f"'Added {NAME}: it went live.'", timeout=10_000)  # the line follows the camera

    # The relayed video really plays: frames decode (readyState ≥ 2), its clock advances, new frames show.
    page.wait_for_function(f"(() => {{ const v = document.querySelector('{TILE} [data-testid=camera-video]');"
                           " return v.readyState >= 2 && v.currentTime > 0; })()", timeout=LIVE_TIMEOUT_MS)
    start = page.evaluate(TILE_STATE)["time"]
    page.evaluate(COUNT_FRAMES)
    page.wait_for_function(f"document.querySelector('{TILE} [data-testid=camera-video]').currentTime > {start + 1}",
                           timeout=20_000)
    page.wait_for_function("window.__frames >= 10", timeout=20_000)
    tile = page.evaluate(TILE_STATE)
    assert (tile["width"], tile["height"]) == (320, 240), tile  # the camera's own size (under 640: not scaled)
    assert tile["viewer"] == "connected" and tile["video"] == "playing" and tile["message_hidden"], tile
    camera = streams_server.get_json(f"/api/streams/{NAME}")
    assert camera["viewers"] == 1 and camera["state"] == "live", camera

    # Over a while the label follows the clip: both motions show, each for a stretch.
    page.evaluate(f"""() => {{ const tile = document.querySelector('{TILE}'); window.__labels = [];
      new MutationObserver(() => window.__labels.push(tile.dataset.label))
        .observe(tile, {{ attributes: true, attributeFilter: ["data-label"] }}); }}""")
    page.wait_for_function(f"{json.dumps(list(WEBCAM_LABELS))}.every((l) => window.__labels.includes(l))",
                           timeout=LIVE_TIMEOUT_MS)
    assert set(page.evaluate("window.__labels")) <= CLIP_LABELS | {"moving up", ""}, page.evaluate("window.__labels")

    # The top 5: shown while the pointer is over the video, and pinned by a click.
    panel = page.locator(f'{TILE} [data-testid="camera-top5-panel"]')
    assert panel.is_hidden()
    page.hover(f'{TILE} [data-testid="camera-stage"]')
    panel.wait_for(state="visible", timeout=5_000)
    rows = page.evaluate(TOP5)
    assert len(rows) == 4, rows  # the tiny model has four classes
    values = [row["value"] for row in rows]
    assert values == sorted(values, reverse=True) and abs(sum(values) - 1.0) < 0.02, rows
    assert {row["label"] for row in rows} == {"moving left", "moving right", "moving up", "holding still"}, rows
    for row in rows:  # each bar is drawn to scale
        assert row["fill"] <= row["track"] and abs(row["fill"] / row["track"] - row["value"]) < 0.03, row
        assert row["pct"] == f"{round(row['value'] * 100)}%", row
    page.mouse.move(5, 5)
    panel.wait_for(state="hidden", timeout=5_000)
    page.click(f'{TILE} [data-testid="camera-top5-toggle"]')
    panel.wait_for(state="visible", timeout=5_000)
    page.mouse.move(5, 5)
    assert panel.is_visible()  # pinned: stays after the pointer leaves
    assert page.locator(f'{TILE} [data-testid="camera-top5-toggle"]').get_attribute("aria-expanded") == "true"
    page.screenshot(path=str(artifacts_dir / "browser-cameras.png"), full_page=True)

    # The camera drops off the network and comes back on the same address: the tile says it is reconnecting,
    # then live again with one reconnect counted, and the video shows new frames again.
    # While it is down the tile says so, but never "No picture" over a picture that shows: over the last
    # picture received, a note in the corner says it is that.
    page.evaluate(f"""() => {{ const tile = document.querySelector('{TILE}'); window.__notes = [];
      const note = () => window.__notes.push([tile.querySelector('[data-testid=camera-video-message]').textContent,
        tile.querySelector('[data-testid=camera-stage]').dataset.picture]);
      new MutationObserver(note).observe(tile, {{ subtree: true, childList: true, characterData: true,
        attributes: true, attributeFilter: ["data-picture", "hidden"] }}); }}""")
    # The picture must be showing before the camera drops, so that what is drawn over it is always checked.
    page.wait_for_function(f"document.querySelector('{TILE}').dataset.video === 'playing'", timeout=30_000)
    rtsp_camera.kill()
    page.wait_for_function(f"document.querySelector('{TILE}').dataset.state === 'reconnecting'", timeout=30_000)
    page.locator(f'{TILE} [data-testid="camera-video-message"]').wait_for(state="visible", timeout=5_000)
    page.wait_for_timeout(2_000)  # the frames stop: the picture freezes
    down = page.evaluate(TILE_STATE)
    page.screenshot(path=str(artifacts_dir / "browser-cameras-reconnecting.png"), full_page=True)
    assert down["video"] == "playing", down  # the last picture stays on screen ...
    assert down["place"] == "corner" and down["picture"] == "frozen", down  # ... with a note in the corner
    assert down["message"].startswith("Last picture received"), down
    assert "failed tr" not in down["retry"] or "to reconnect" in down["retry"], down
    rtsp_camera.start()  # the same port and path
    page.wait_for_function(f"(() => {{ const t = document.querySelector('{TILE}'); return t.dataset.state === 'live'"
                           f" && t.dataset.label !== ''; }})()", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate(TILE_STATE)["reconnects"] == "1 reconnect"
    notes = page.evaluate("window.__notes")
    assert notes and all(not text.startswith("No picture") for text, picture in notes if picture != "no"), notes
    page.evaluate("window.__frames = 0")
    page.wait_for_function("window.__frames >= 10", timeout=30_000)
    page.wait_for_function(f"document.querySelector('{TILE}').dataset.video === 'playing'", timeout=10_000)
    page.locator(f'{TILE} [data-testid="camera-video-message"]').wait_for(state="hidden", timeout=10_000)

    # The video's own connection fails while the camera stays live: the page offers again, and it plays again.
    peers = page.evaluate(BREAK_PEER)
    page.wait_for_function(f"document.querySelector('{TILE}').dataset.viewer !== 'connected'", timeout=5_000)
    page.wait_for_function(f"window.__pcs.length > {peers} && "
                           f"document.querySelector('{TILE}').dataset.viewer === 'connected'", timeout=30_000)
    page.evaluate("window.__frames = 0")
    page.wait_for_function("window.__frames >= 10", timeout=30_000)
    assert page.evaluate(TILE_STATE)["state"] == "live"

    # A camera the server refuses: its own words on the page (409: the name is taken), nothing added.
    status, body = post_json(streams_server.url + "api/streams", {"name": NAME, "url": rtsp_camera.url})
    assert status == 409, body
    add_camera(page, NAME, rtsp_camera.url)
    page.wait_for_selector('[data-testid="add-error"]:not([hidden])', timeout=10_000)
    assert text(page, "add-error") == body["error"]
    assert text(page, "add-status") == ""  # no earlier "Added …" beside a new error
    status, body = post_json(streams_server.url + "api/streams", {"name": "bad", "url": "ftp://example.com/x"})
    assert status == 400, body
    add_camera(page, "bad", "ftp://example.com/x")
    page.wait_for_function("document.querySelector('[data-testid=add-error]').textContent === "
                           f"{json.dumps(body['error'])}", timeout=10_000)
    assert [c["name"] for c in streams_server.get_json("/api/streams")["streams"]] == [NAME]
    assert page.locator('[data-testid="camera-tile"]').count() == 1

    # Events: the camera ran long enough for some to close.
    events = wait_for_events(streams_server, NAME)
    assert {e["label"] for e in events} & set(WEBCAM_LABELS), events

    # Removing it through the page: a second click confirms; the tile goes, and so does the camera.
    remove = page.locator(f'{TILE} [data-testid="camera-remove"]')
    remove.click()
    assert remove.inner_text() == f"Remove {NAME}?"
    remove.click()
    page.wait_for_selector(TILE, state="detached", timeout=10_000)
    assert streams_server.get_json("/api/streams")["streams"] == []
    page.locator('[data-testid="cameras-empty"]').wait_for(state="visible", timeout=5_000)
    page.wait_for_timeout(1_000)  # a late push must not bring the tile back
    assert page.locator('[data-testid="camera-tile"]').count() == 0
    assert page.js_errors == []

    # The events page, filtered by the camera: every event, newest first, as the API lists them.
    events = streams_server.get_json(f"/api/events?stream={NAME}&limit=25")  # all closed now: stable
    assert events["total"] > 0 and all(e["state"] == "closed" for e in events["events"]), events
    page = open_page(chromium(), streams_server.url + "events")
    page.fill('[data-testid="filter-stream"]', NAME)
    page.click('[data-testid="filters-apply"]')
    page.wait_for_function(f"new URLSearchParams(location.search).get('stream') === '{NAME}'", timeout=5_000)
    page.wait_for_function(f"document.querySelector('[data-testid=events-count]').dataset.total === "
                           f"'{events['total']}'", timeout=10_000)
    rows = page.evaluate(ROWS)
    assert [(r["id"], r["label"], r["stream"]) for r in rows] == \
        [(e["id"], e["label"], e["stream"]) for e in events["events"]], rows
    assert {r["label"] for r in rows} & set(WEBCAM_LABELS), rows
    page.wait_for_function(THUMBS_LOADED, timeout=10_000)

    # A row opens its snapshot, large, and the event's JSON.
    first = next(e for e in events["events"] if e["snapshot"])
    page.click(f'[data-testid="event-row"][data-event-id="{first["id"]}"]')
    page.locator('[data-testid="detail-panel"]').wait_for(state="visible", timeout=5_000)
    page.wait_for_function("(() => { const img = document.querySelector('[data-testid=detail-snapshot]');"
                           " return img.complete && img.naturalWidth > 0; })()", timeout=10_000)
    assert json.loads(text(page, "detail-json")) == first
    assert first["label"] in text(page, "detail-title")
    page.screenshot(path=str(artifacts_dir / "browser-events.png"), full_page=True)

    # Filtering by label too: only that label's events.
    label = first["label"]
    page.fill('[data-testid="filter-label"]', label)
    page.click('[data-testid="filters-apply"]')
    expected = streams_server.get_json(f"/api/events?stream={NAME}&label={urllib.parse.quote(label)}&limit=25")
    page.wait_for_function(f"document.querySelector('[data-testid=events-count]').dataset.total === "
                           f"'{expected['total']}'", timeout=10_000)
    assert [r["id"] for r in page.evaluate(ROWS)] == [e["id"] for e in expected["events"]]
    # ...and open events only: none, now that the camera is gone; the page says so.
    page.select_option('[data-testid="filter-state"]', "open")
    page.wait_for_function("document.querySelector('[data-testid=events-count]').dataset.total === '0'",
                           timeout=10_000)
    assert page.locator('[data-testid="events-empty"]').is_visible()
    assert text(page, "events-empty") == "No events match these filters."
    assert page.js_errors == []


def test_without_the_websocket_the_page_polls_and_shows_a_camera_it_cannot_reach(
        streams_server: Any, chromium: Any, artifacts_dir: Path) -> None:
    from tests.helpers.rtsp_server import closed_port_url

    page = chromium().new_page(viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
    page.js_errors = []
    page.on("pageerror", lambda err: page.js_errors.append(str(err)))
    refused: list[str] = []

    def refuse(ws: Any) -> None:
        refused.append(ws.url)
        ws.close()  # as a proxy that does not pass websockets would

    page.route_web_socket(re.compile(r"/api/streams/ws$"), refuse)
    page.goto(streams_server.url + "cameras")
    page.wait_for_function("document.querySelector('[data-testid=feed-badge]').dataset.transport === 'poll'",
                           timeout=10_000)
    assert refused and refused[0].endswith("/api/streams/ws"), refused
    assert text(page, "feed-badge") == "updates every second"

    # Nothing listens at its address: the tile says it is reconnecting, and why, and counts the tries.
    url = closed_port_url()
    add_camera(page, "gone", url)
    tile = '[data-testid="camera-tile"][data-name="gone"]'
    page.wait_for_function(f"document.querySelector('{tile}')?.dataset.state === 'reconnecting' && "
                           f"!document.querySelector('{tile} [data-testid=camera-error]').hidden", timeout=30_000)
    camera = streams_server.get_json("/api/streams/gone")
    assert camera["state"] == "reconnecting" and camera["error"], camera
    assert page.locator(f'{tile} [data-testid="camera-state"]').inner_text().strip().lower() == "reconnecting"
    page.wait_for_function(f"document.querySelector('{tile} [data-testid=camera-retry]').textContent"
                           ".includes('failed tr')", timeout=10_000)
    # Never live: no "0 reconnects" beside the failed tries, which are tries to connect.
    assert page.locator(f'{tile} [data-testid="camera-reconnects"]').inner_text().strip() == "not live yet"
    retry = page.locator(f'{tile} [data-testid="camera-retry"]').inner_text()
    assert re.search(r"\d+ failed tr(y|ies) to connect", retry), retry
    assert text(page, "add-status") == ""  # the camera has an error now: no "Added …: it is connecting." beside it
    assert page.locator(f'{tile} [data-testid="camera-error"]').inner_text().strip()
    assert page.locator(f'{tile} [data-testid="camera-video-message"]').is_visible()
    assert page.locator(f'{tile} [data-testid="camera-overlay"]').is_hidden()  # no label without a picture
    assert page.locator(tile).get_attribute("data-viewer") == "idle"  # no video offer for a camera not live
    page.screenshot(path=str(artifacts_dir / "browser-cameras-unreachable.png"), full_page=True)

    remove = page.locator(f'{tile} [data-testid="camera-remove"]')
    remove.click()
    remove.click()
    page.wait_for_selector(tile, state="detached", timeout=10_000)
    assert streams_server.get_json("/api/streams")["streams"] == []
    assert page.locator('[data-testid="feed-badge"]').get_attribute("data-transport") == "poll"
    assert page.js_errors == []

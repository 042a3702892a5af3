"""The analysis page in a real headless Chromium, against the real ``har-stream serve`` (tiny model, offline).

A synthetic clip that moves left, then holds still is uploaded through the page's file input. The page must
follow the job, then show the two actions on its timeline in that order and split near the true change, a
top-5 chart drawn to scale, a table of windows, seek where the timeline or a row is clicked, keep the label
over the video in step with playback, offer downloads that answer, and reopen the job after a reload and from
the past-jobs list. Also: the server's own message for a file that is not a video (415), a URL it will not
fetch (400) and an upload over its size limit (413); a failed job's error; and polling when the job's
websocket cannot be used. Each test runs inside ``unshare -n`` (see netns.py); screenshots land in
test-artifacts/.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.clips import CHANGE_AT, check_labels_and_boundary

pytestmark = pytest.mark.private_network  # each test runs inside `unshare -n` (netns.py)

FPS = 15.0  # the clip's rate, and the tiny model's
STRIDE = 4  # set in the page's form, so the option travels too
RESULT_TIMEOUT_MS = 90_000  # upload → result is about a second here; slack for a busy 2-core CI machine

BANDS = """() => {
  const track = document.querySelector('[data-testid="timeline"]').getBoundingClientRect();
  return [...document.querySelectorAll('[data-testid="timeline-band"]')].map((band) => {
    const box = band.getBoundingClientRect();
    return { label: band.dataset.label, start: Number(band.dataset.start), end: Number(band.dataset.end),
             confidence: Number(band.dataset.confidence), colour: getComputedStyle(band).backgroundColor,
             left: (box.left - track.left) / track.width, width: box.width / track.width };
  });
}"""

CHART = """() => ({
  segment: Number(document.querySelector('[data-testid="top5"]').dataset.segment),
  rows: [...document.querySelectorAll('[data-testid="top5-row"]')].map((row) => ({
    label: row.dataset.label, value: Number(row.dataset.value),
    pct: row.querySelector('[data-testid="top5-pct"]').textContent.trim(),
    fill: row.querySelector(".top5-fill").getBoundingClientRect().width,
    track: row.querySelector(".top5-bar").getBoundingClientRect().width,
  })),
})"""

# Every (label, media time) the overlay shows while the video plays: data-time changes with each update.
RECORD_OVERLAY = """() => {
  const overlay = document.querySelector('[data-testid="overlay"]');
  const label = document.querySelector('[data-testid="overlay-label"]');
  window.__shown = [];
  new MutationObserver(() => window.__shown.push([label.textContent, Number(overlay.dataset.time)]))
    .observe(overlay, { attributes: true, attributeFilter: ["data-time"] });
}"""

VIDEO_TIME = "document.querySelector('[data-testid=video]').currentTime"


def open_page(browser, url: str):  # type: ignore[no-untyped-def]
    """A fresh page on ``url`` with its uncaught errors collected in ``page.js_errors``."""
    page = browser.new_page(viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
    page.js_errors = []
    page.on("pageerror", lambda err: page.js_errors.append(str(err)))
    page.goto(url)
    page.wait_for_function("document.querySelector('[data-testid=model-select]').value !== ''")
    return page


def text(page, testid: str) -> str:  # type: ignore[no-untyped-def]
    return page.locator(f'[data-testid="{testid}"]').inner_text().strip()


def wait_finished(page) -> str:  # type: ignore[no-untyped-def]
    """Wait until the open job ends; its state ("done" once the result view is drawn)."""
    page.wait_for_function("['done', 'failed', 'cancelled'].includes("
                           "document.querySelector('[data-testid=stage]').dataset.state)", timeout=RESULT_TIMEOUT_MS)
    return page.locator('[data-testid="stage"]').get_attribute("data-state")


def wait_video_still(page) -> None:  # type: ignore[no-untyped-def]
    """The player shows the frame at its position and has data beyond it (no loading spinner): screenshots."""
    page.wait_for_function("(() => { const v = document.querySelector('[data-testid=video]');"
                           " return v.readyState >= 3 && !v.seeking; })()", timeout=20_000)


def upload(page, clip: Path) -> str:  # type: ignore[no-untyped-def]
    """Choose ``clip`` in the file input, press Analyse; the new job's id (from the address)."""
    page.set_input_files('[data-testid="file-input"]', str(clip))
    assert clip.name in text(page, "file-name")
    page.click('[data-testid="analyse"]')
    page.wait_for_function("location.hash.startsWith('#job=')", timeout=30_000)
    return page.evaluate("new URLSearchParams(location.hash.slice(1)).get('job')")


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def click_timeline_at(page, t: float, duration: float) -> None:  # type: ignore[no-untyped-def]
    timeline = page.locator('[data-testid="timeline"]')
    box = timeline.bounding_box()
    timeline.click(position={"x": box["width"] * t / duration, "y": box["height"] / 2})


def test_uploaded_clip_shows_its_actions_and_can_be_explored(jobs_server, chromium, change_clip: Path,
                                                           artifacts_dir: Path) -> None:
    page = open_page(chromium(), jobs_server.url + "analyse")
    assert text(page, "job-badge") == "no job open"
    page.click('[data-testid="advanced"] summary')
    # No CLIP on this server (offline, none imported): the typed-labels box is disabled and says why.
    page.wait_for_function("document.querySelector('[data-testid=custom-labels-hint]').dataset.clip === 'missing'",
                           timeout=10_000)
    assert page.locator('[data-testid="custom-labels"]').is_disabled()
    assert "CLIP is not available" in text(page, "custom-labels-hint")
    assert "har-stream weights import" in text(page, "custom-labels-hint")
    page.fill('[data-testid="stride"]', str(STRIDE))
    job_id = upload(page, change_clip)
    page.screenshot(path=str(artifacts_dir / "browser-analyse-uploaded.png"), full_page=True)
    state = wait_finished(page)
    assert state == "done", text(page, "error")
    assert page.locator('[data-testid="stage"]').get_attribute("data-transport") == "websocket"
    assert text(page, "job-badge") == "done"

    job = jobs_server.get_json(f"/api/jobs/{job_id}")
    assert job["source"]["name"] == change_clip.name and job["options"]["stride"] == STRIDE
    result = job["result"]
    check_labels_and_boundary(result, STRIDE, FPS)  # the analysis is right; now the page must show it so
    duration = result["duration"]

    # The timeline: one band per action, left → still, split within a stride of the true change, to scale.
    bands = page.evaluate(BANDS)
    assert [b["label"] for b in bands] == [e["label"] for e in result["timeline"]], bands
    assert bands[0]["label"] == "moving left" and bands[-1]["label"] == "holding still", bands
    boundary = min((b["start"] for b in bands[1:]), key=lambda s: abs(s - CHANGE_AT))
    assert abs(boundary - CHANGE_AT) <= STRIDE / FPS, bands
    for band, entry in zip(bands, result["timeline"]):
        assert band["start"] == pytest.approx(entry["start"]) and band["end"] == pytest.approx(entry["end"])
        assert band["left"] == pytest.approx(entry["start"] / duration, abs=0.01), band
        assert band["width"] == pytest.approx((entry["end"] - entry["start"]) / duration, abs=0.01), band
    colours = {b["label"]: b["colour"] for b in bands}
    assert all(colours[b["label"]] == b["colour"] for b in bands)  # one colour per label
    assert len(set(colours.values())) == len(colours), colours
    legend = page.locator('[data-testid="legend-item"]').evaluate_all("items => items.map(i => i.dataset.label)")
    assert legend == list(dict.fromkeys(b["label"] for b in bands))

    # The table: one row per window, as the result has them.
    rows = page.locator('[data-testid="segment-row"]').evaluate_all(
        "rows => rows.map(r => [r.dataset.label, Number(r.dataset.start)])")
    segments = result["segment_predictions"]
    assert rows == [[s["label"], pytest.approx(s["start"])] for s in segments]

    # The top-5 chart of the window under the playhead (at 0: the first), each bar to scale.
    chart = page.evaluate(CHART)
    assert chart["segment"] == 0, chart
    top5 = segments[0]["top5"]
    assert len(chart["rows"]) == min(5, len(top5)) == 4, chart  # the tiny model has four classes
    assert [[r["label"], r["value"]] for r in chart["rows"]] == [[n, pytest.approx(p)] for n, p in top5]
    for row in chart["rows"]:
        assert row["fill"] <= row["track"] and abs(row["fill"] / row["track"] - row["value"]) < 0.03, row
        assert row["pct"] == f"{round(row['value'] * 100)}%", row
    assert text(page, "overlay-label") == "moving left"

    # Hovering a band says what it is.
    box = page.locator('[data-testid="timeline"]').bounding_box()
    first = bands[0]
    page.locator('[data-testid="timeline"]').hover(
        position={"x": box["width"] * (first["start"] + first["end"]) / 2 / duration, "y": box["height"] / 2})
    tooltip = page.locator('[data-testid="timeline-tooltip"]')
    tooltip.wait_for(state="visible", timeout=5_000)
    assert first["label"] in tooltip.inner_text() and f"{round(first['confidence'] * 100)}%" in tooltip.inner_text()

    # Clicking the timeline seeks there; the overlay and the chart follow.
    tolerance = duration / box["width"] * 2 + 0.02  # a click lands on a whole pixel
    for band in (bands[-1], bands[0]):
        target = (band["start"] + band["end"]) / 2
        click_timeline_at(page, target, duration)
        page.wait_for_function(f"Math.abs({VIDEO_TIME} - {target}) < {tolerance}", timeout=10_000)
        page.wait_for_function(f"document.querySelector('[data-testid=overlay-label]').textContent === "
                               f"{json.dumps(band['label'])}", timeout=5_000)
        chart = page.evaluate(CHART)
        shown = segments[chart["segment"]]
        assert shown["start"] - tolerance <= target <= shown["end"] + tolerance, (target, shown)
        assert chart["rows"][0]["label"] == shown["top5"][0][0], chart

    # Clicking a row seeks to its window's start and charts that window.
    last = len(segments) - 1
    page.locator('[data-testid="segment-row"]').nth(last).click()
    page.wait_for_function(f"Math.abs({VIDEO_TIME} - {segments[last]['start']}) < 0.02", timeout=10_000)
    assert page.evaluate(CHART)["segment"] == last
    assert page.locator('[data-testid="segment-row"]').nth(last).get_attribute("aria-current") == "true"
    # The overlay's headline is the smoothed segment; the charted window, when its own label differs, is named
    # as such below it, and the chart's heading says it is one window before smoothing.
    headline = text(page, "overlay-label")
    assert any(e["label"] == headline and e["start"] - 1e-3 <= segments[last]["start"] <= e["end"] + 1e-3
               for e in result["timeline"]), (headline, result["timeline"])
    window_line = page.locator('[data-testid="overlay-window"]')
    if segments[last]["label"] == headline:
        assert window_line.is_hidden()
    else:
        assert window_line.inner_text().strip().startswith(f"window {last + 1} alone: {segments[last]['label']} ")
    assert "before smoothing" in text(page, "top5-title")
    wait_video_still(page)
    page.wait_for_timeout(1_000)  # only for the picture: the player's loading spinner fades out after a moment
    page.screenshot(path=str(artifacts_dir / "browser-analyse-result.png"), full_page=True)

    # Playing: the overlay shows, for every frame it was drawn at, the action of that moment.
    page.evaluate("document.querySelector('[data-testid=video]').currentTime = 0")
    page.evaluate(RECORD_OVERLAY)
    page.evaluate("document.querySelector('[data-testid=video]').muted = true")
    page.evaluate("document.querySelector('[data-testid=video]').play()")
    page.wait_for_function("document.querySelector('[data-testid=video]').ended", timeout=30_000)
    shown = page.evaluate("window.__shown")
    runs = [label for i, (label, _) in enumerate(shown) if i == 0 or shown[i - 1][0] != label]
    assert runs[0] == "moving left" and runs[-1] == "holding still", shown
    band_labels = iter(b["label"] for b in bands)
    assert all(label in band_labels for label in runs), (runs, bands)  # in the bands' order, none made up
    for label, t in shown:
        expected = {b["label"] for b in bands if b["start"] - 1e-3 <= t <= b["end"] + 1e-3}
        assert label in expected, (label, t, bands)

    # Downloads answer, and hold the result.
    links = {name: page.locator(f'[data-testid="download-{name}"]').get_attribute("href")
             for name in ("json", "csv", "annotated")}
    assert all(links.values()), links
    status, body = fetch(jobs_server.url + links["json"].lstrip("/"))
    assert status == 200 and json.loads(body)["segment_predictions"] == segments
    status, body = fetch(jobs_server.url + links["csv"].lstrip("/"))
    assert status == 200 and body.decode().splitlines()[0].startswith("start,end,label,confidence"), body[:200]
    status, body = fetch(jobs_server.url + links["annotated"].lstrip("/"))
    assert status == 200 and body[4:8] == b"ftyp", body[:16]  # an mp4
    assert page.locator('[data-testid="video"]').get_attribute("src") == job["links"]["media"]

    # A reload reopens the job from the address; the past-jobs list reopens it too.
    page.reload()
    assert wait_finished(page) == "done"
    assert [b["label"] for b in page.evaluate(BANDS)] == [b["label"] for b in bands]
    page.goto(jobs_server.url + "analyse")
    row = page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')
    row.wait_for(timeout=10_000)
    assert row.get_attribute("data-state") == "done" and change_clip.name in row.inner_text()
    assert text(page, "job-badge") == "no job open" and page.locator('[data-testid="timeline-block"]').is_hidden()
    row.locator('[data-testid="job-open"]').click()
    assert wait_finished(page) == "done"
    assert page.evaluate("location.hash") == f"#job={job_id}"
    assert [b["label"] for b in page.evaluate(BANDS)] == [b["label"] for b in bands]
    assert "current" in (row.get_attribute("class") or "")

    # Deleting it removes it from the server and the page.
    row.locator('[data-testid="job-delete"]').click()
    row.wait_for(state="detached", timeout=10_000)
    assert fetch(jobs_server.url + f"api/jobs/{job_id}")[0] == 404
    page.wait_for_function("document.querySelector('[data-testid=stage]').dataset.state === 'idle'", timeout=5_000)
    assert page.evaluate("location.hash") == ""
    assert page.js_errors == []


def test_a_file_that_is_not_a_video_shows_the_servers_message(jobs_server, chromium, tmp_path: Path,
                                                             artifacts_dir: Path) -> None:
    page = open_page(chromium(), jobs_server.url + "analyse")

    # Nothing chosen: the page says what to do and sends nothing.
    page.click('[data-testid="analyse"]')
    page.wait_for_selector('[data-testid="error"]:not([hidden])[data-kind="input"]', timeout=5_000)
    assert "Choose a video file" in text(page, "error")

    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list, not a video\n")
    jobs_before = jobs_server.get_json("/api/jobs")["jobs"]
    # What the server says about this file, asked directly, is what the page must show.
    direct = page.request.post(jobs_server.url + "api/jobs", multipart={
        "video": {"name": notes.name, "mimeType": "text/plain", "buffer": notes.read_bytes()}})
    assert direct.status == 415, direct.text()
    message = direct.json()["error"]

    page.set_input_files('[data-testid="file-input"]', str(notes))
    page.click('[data-testid="analyse"]')
    page.wait_for_selector('[data-testid="error"]:not([hidden])[data-kind="upload"]', timeout=20_000)
    assert text(page, "error") == message
    assert text(page, "status") == "The server did not accept the job."
    assert page.locator('[data-testid="stage"]').get_attribute("data-state") == "idle"
    assert page.locator('[data-testid="analyse"]').is_enabled()  # the user can choose another file
    assert page.evaluate("location.hash") == ""
    page.screenshot(path=str(artifacts_dir / "browser-analyse-not-a-video.png"), full_page=True)

    # A URL the server will not fetch (loopback; this server does not allow private URLs): its 400 text.
    url = "http://127.0.0.1:9/clip.mp4"
    direct = page.request.post(jobs_server.url + "api/jobs", data={"url": url})
    assert direct.status == 400, direct.text()
    page.fill('[data-testid="url-input"]', url)
    assert page.locator('[data-testid="file-name"]').is_hidden()  # typing a URL drops the chosen file
    page.click('[data-testid="analyse"]')
    page.wait_for_function("document.querySelector('[data-testid=error]').textContent === "
                           f"{json.dumps(direct.json()['error'])}", timeout=20_000)
    assert jobs_server.get_json("/api/jobs")["jobs"] == jobs_before  # nothing was queued
    assert page.js_errors == []


def test_a_job_that_fails_shows_its_error(jobs_server, chromium, change_clip: Path, tmp_path: Path,
                                          artifacts_dir: Path) -> None:
    page = open_page(chromium(), jobs_server.url + "analyse")
    damaged = tmp_path / "damaged.mp4"  # an mp4 cut short: taken as a video, then the decoder gives up
    damaged.write_bytes(change_clip.read_bytes()[:3000])
    job_id = upload(page, damaged)
    assert wait_finished(page) == "failed"
    job = jobs_server.get_json(f"/api/jobs/{job_id}")
    assert job["state"] == "failed" and job["error"], job
    assert page.locator('[data-testid="error"]').get_attribute("data-kind") == "job-failed"
    assert text(page, "error") == f"The analysis failed: {job['error']}"
    assert text(page, "job-badge") == "failed" and page.locator('[data-testid="timeline-block"]').is_hidden()
    page.screenshot(path=str(artifacts_dir / "browser-analyse-failed.png"), full_page=True)
    row = page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')
    row.wait_for(timeout=10_000)
    assert row.get_attribute("data-state") == "failed" and job["error"] in row.inner_text()
    row.locator('[data-testid="job-delete"]').click()
    row.wait_for(state="detached", timeout=10_000)
    assert page.js_errors == []


def test_an_upload_over_the_size_limit_shows_the_servers_413(server_factory, chromium, tmp_path: Path) -> None:
    server = server_factory("--data-dir", str(tmp_path / "jobs"), "--max-upload-mb", "0.25").start()
    page = open_page(chromium(), server.url + "analyse")
    # Over the limit, but not by more than the form's allowance: refused while it streams in, not up front.
    big = tmp_path / "big.mp4"
    big.write_bytes(bytes(300 * 1024))
    direct = page.request.post(server.url + "api/jobs", multipart={
        "video": {"name": big.name, "mimeType": "video/mp4", "buffer": big.read_bytes()}})
    assert direct.status == 413, direct.text()
    page.set_input_files('[data-testid="file-input"]', str(big))
    page.click('[data-testid="analyse"]')
    page.wait_for_selector('[data-testid="error"]:not([hidden])[data-kind="upload"]', timeout=20_000)
    assert text(page, "error") == direct.json()["error"]
    assert server.get_json("/api/jobs")["jobs"] == []
    assert page.js_errors == []


def test_progress_falls_back_to_polling_without_the_websocket(jobs_server, chromium, change_clip: Path) -> None:
    page = open_page(chromium(), jobs_server.url + "analyse")
    refused: list[str] = []

    def refuse(ws) -> None:  # type: ignore[no-untyped-def]
        refused.append(ws.url)
        ws.close()  # as a proxy that does not pass websockets would

    page.route_web_socket(re.compile(r"/api/jobs/[0-9a-f]+/ws$"), refuse)
    job_id = upload(page, change_clip)
    assert wait_finished(page) == "done", text(page, "error")
    assert refused and refused[0].endswith(f"/api/jobs/{job_id}/ws"), refused
    assert page.locator('[data-testid="stage"]').get_attribute("data-transport") == "poll"
    assert page.locator('[data-testid="timeline-band"]').count() >= 2
    page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"] [data-testid="job-delete"]').click()
    page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]').wait_for(state="detached", timeout=10_000)
    assert page.js_errors == []

"""The live page in a real headless Chromium, against the real ``har-stream serve`` (tiny model, offline).

The fake webcam plays a synthetic clip of a motion the test-trained model knows; the page must show that
label over the video with a top-5 chart and latency figures. Also: the messages for a denied / missing
camera and for the server's errors, and reconnecting when the server goes away and comes back.
Each test runs inside ``unshare -n`` (see netns.py); screenshots land in test-artifacts/.
"""

from __future__ import annotations

import glob
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.browser.conftest import WEBCAM_LABELS

pytestmark = pytest.mark.private_network  # each test runs inside `unshare -n` (netns.py)

STRIDE = 4  # the live test's stride, asked for on the page
LABEL_TIMEOUT_MS = 45_000  # offer → first label is ≈ 1.2 s here; slack for a busy 2-core CI machine

# Every label event the page shows, in order (its data-window changes with each one; the text only when the
# label does).
RECORD_LABELS = """() => {
  const el = document.querySelector('[data-testid="current-label"]');
  window.__labels = [];
  new MutationObserver(() => window.__labels.push(el.textContent))
    .observe(el, { attributes: true, attributeFilter: ["data-window"] });
}"""


SNAPSHOT = """() => {
  const q = (id) => document.querySelector(`[data-testid="${id}"]`);
  const t = (id) => q(id).textContent.trim();
  const figures = {};
  for (const id of ["latency-last", "latency-p50", "latency-p95", "rtt", "fps-in", "windows-per-s",
                    "stride-effective", "frames-received", "frames-dropped"]) figures[id] = t(id);
  return {
    label: t("current-label"), raw: q("current-label").dataset.raw, confidence: t("current-confidence"),
    window_label: q("window-label").hidden ? "" : t("window-label"), kind: t("label-kind"), source: t("label-source"),
    source_attr: q("label-source").dataset.source, status: t("status"), session_info: t("session-info"),
    stage_message_hidden: q("stage-message").hidden, figures,
    top5: [...document.querySelectorAll('[data-testid="top5-row"]')].map((row) => ({
      label: row.dataset.label, value: Number(row.dataset.value),
      pct: row.querySelector('[data-testid="top5-pct"]').textContent.trim(),
      fill: row.querySelector(".top5-fill").getBoundingClientRect().width,
      track: row.querySelector(".top5-bar").getBoundingClientRect().width,
    })),
  };
}"""


def open_page(browser, url: str):  # type: ignore[no-untyped-def]
    """A fresh page on ``url`` with its uncaught errors collected in ``page.js_errors``."""
    # Reduced motion: the page then draws bars without transitions, so what is measured is what is shown.
    page = browser.new_page(viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
    page.js_errors = []
    page.on("pageerror", lambda err: page.js_errors.append(str(err)))
    page.goto(url)
    page.wait_for_function("document.querySelector('[data-testid=model-select]').options.length > 0 "
                           "&& document.querySelector('[data-testid=model-select]').value !== ''")
    return page


def text(page, testid: str) -> str:  # type: ignore[no-untyped-def]
    return page.locator(f'[data-testid="{testid}"]').inner_text().strip()


def wait_state(page, state: str, timeout: float = LABEL_TIMEOUT_MS) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(f"document.querySelector('[data-testid=status]').dataset.state === '{state}'",
                           timeout=timeout)


def wait_error(page, kind: str | None = None, timeout: float = 20_000) -> str:  # type: ignore[no-untyped-def]
    selector = '[data-testid="error"]:not([hidden])' + (f'[data-kind="{kind}"]' if kind else "")
    page.wait_for_selector(selector, timeout=timeout)
    return text(page, "error")


def test_page_labels_the_fake_webcam(live_server, chromium, fake_webcam: Path, artifacts_dir: Path) -> None:
    models = live_server.get_json("/api/models")
    # Stride 4 (the page's ?stride=): about 8 windows each way, so each action shows in windows in a row even
    # when a busy CI machine makes the server widen the stride for a while (adaptive stride) or drops a frame.
    page = open_page(chromium(camera=fake_webcam), f"{live_server.url}?stride={STRIDE}")
    assert page.locator('[data-testid="model-select"]').input_value() == models["default"]
    page.evaluate(RECORD_LABELS)

    page.click('[data-testid="start"]')
    page.wait_for_selector('[data-testid="warmup"]', state="visible", timeout=LABEL_TIMEOUT_MS)  # hello came
    assert re.fullmatch(r"\d+ / 16 frames", text(page, "warmup-count")), text(page, "warmup-count")
    assert text(page, "connection") in ("connected · warming up", "live")  # live: the first label came already
    # The clip slides left then right, looped (≈ 8 windows each way): each action must show for windows in a
    # row. A window centred on a turn sees the square go and come back (no net motion), which the model reads
    # as "holding still"; "moving up", the one motion the clip never has, must hardly ever show.
    page.wait_for_function("window.__labels.length >= 12", timeout=LABEL_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('[data-testid=fps-in]').textContent !== '–' && "
                           "document.querySelector('[data-testid=rtt]').textContent !== '–'", timeout=10_000)
    page.wait_for_function(f"{list(WEBCAM_LABELS)!r}.includes("
                           "document.querySelector('[data-testid=current-label]').textContent)", timeout=10_000)
    page.screenshot(path=str(artifacts_dir / "browser-live-page.png"), full_page=True)

    shown = page.evaluate("window.__labels")
    runs = Counter(label for label, next_label in zip(shown, shown[1:]) if label == next_label)
    assert all(runs[label] for label in WEBCAM_LABELS), f"labels shown, in order: {shown}"
    assert Counter(shown)["moving up"] <= len(shown) // 6, f"labels shown, in order: {shown}"

    view = page.evaluate(SNAPSHOT)  # one read: labels keep arriving while we look
    assert view["status"] == "Live." and view["stage_message_hidden"]
    assert view["source"] == "model" and view["source_attr"] == "model", view  # --clip-threshold 0: no CLIP
    rows = view["top5"]
    assert len(rows) == 4, rows  # the tiny model has four classes
    values = [row["value"] for row in rows]
    assert values == sorted(values, reverse=True) and abs(sum(values) - 1.0) < 0.02, rows
    # The headline is the smoothed label and says so; the top 5 is the newest window's, whose own label is
    # the secondary line ("this window: …") whenever it differs from the headline.
    assert view["kind"] == "steady label", view
    assert rows[0]["label"] == view["raw"], view
    if view["raw"] == view["label"]:
        assert view["window_label"] == "" and view["confidence"] == rows[0]["pct"], view
    else:  # no figure beside the headline: the window's own label and figure are the secondary line
        assert view["window_label"] == f"this window: {view['raw']} {rows[0]['pct']}", view
        assert view["confidence"] == "", view
    for row in rows:  # each bar is drawn to scale
        assert row["fill"] <= row["track"] and abs(row["fill"] / row["track"] - row["value"]) < 0.03, row

    figures = view["figures"]
    for key in ("latency-last", "latency-p50", "latency-p95"):
        assert re.fullmatch(r"\d+ ms|\d+(\.\d)? s", figures[key]), figures
    assert re.fullmatch(r"\d+ ms", figures["rtt"]), figures
    assert float(figures["fps-in"]) > 0 and float(figures["windows-per-s"]) >= 0, figures
    # the stride windows close at: the one asked for, or "N (adaptive, asked 4)" while the server has widened it
    assert re.fullmatch(rf"{STRIDE}|\d+ \(adaptive, asked {STRIDE}\)", figures["stride-effective"]), figures
    assert int(figures["frames-received"].replace(",", "")) > 0, figures
    assert re.fullmatch(r"\d+", figures["frames-dropped"].replace(",", "")), figures
    assert "window 16" in view["session_info"] and f"stride {STRIDE}" in view["session_info"], view

    status = live_server.get_json("/api/status")
    assert status["peers"] == 1 and status["streams"][0]["frames_received"] > 0

    page.click('[data-testid="stop"]')
    wait_state(page, "idle", timeout=5_000)
    assert page.evaluate("document.querySelector('[data-testid=video]').srcObject === null")  # camera off
    assert page.locator('[data-testid="start"]').is_enabled()
    deadline = time.monotonic() + 15
    while live_server.get_json("/api/status")["peers"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_server.get_json("/api/status")["peers"] == 0  # closing the page's peer ends the server's
    assert page.js_errors == []


def test_page_explains_a_denied_or_missing_camera(live_server, chromium, fake_webcam: Path,
                                                  artifacts_dir: Path) -> None:
    # Permission denied: no fake-UI flag, so headless Chromium refuses the camera (NotAllowedError).
    page = open_page(chromium(camera=fake_webcam, allow_camera=False), live_server.url)
    page.click('[data-testid="start"]')
    message = wait_error(page, "denied")
    assert "denied" in message and "Start camera again" in message
    assert page.locator('[data-testid="start"]').is_enabled()  # the user can try again
    page.screenshot(path=str(artifacts_dir / "browser-camera-denied.png"))
    assert live_server.get_json("/api/status")["peers"] == 0  # nothing was sent to the server
    assert page.js_errors == []

    if glob.glob("/dev/video*"):
        pytest.skip("this machine has a real camera, so 'no camera' cannot be shown here (denied was checked)")
    # Allowed, but no camera at all (no fake device): NotFoundError.
    page = open_page(chromium(camera=None), live_server.url)
    page.click('[data-testid="start"]')
    message = wait_error(page, "missing")
    assert "No camera was found" in message
    assert page.js_errors == []


def test_page_shows_the_servers_error_text(live_server, chromium, fake_webcam: Path, artifacts_dir: Path) -> None:
    browser = chromium(camera=fake_webcam)

    # A model the server does not know (a stale link): the server's own message, then back to idle.
    page = open_page(browser, live_server.url + "?model=no-such-model")
    assert page.locator('[data-testid="model-select"]').input_value() == "no-such-model"
    assert "not in this server's list" in text(page, "model-status")
    page.click('[data-testid="start"]')
    message = wait_error(page, "server")
    assert "no-such-model" in message
    assert text(page, "status") == "Stopped after an error."
    assert page.evaluate("document.querySelector('[data-testid=video]').srcObject === null")  # camera off
    assert page.locator('[data-testid="start"]').is_enabled()
    page.screenshot(path=str(artifacts_dir / "browser-server-error.png"))

    # A model the server lists as missing (offline, empty cache): the page shows its import command, and
    # starting with it shows the server's refusal.
    missing = [m for m in live_server.get_json("/api/models")["models"] if m["status"] == "missing"]
    assert missing, "offline with an empty cache, the server must list some model as missing"
    name = missing[0]["name"]
    page.select_option('[data-testid="model-select"]', name)
    assert f"har-stream weights import {name}" in text(page, "model-status")
    page.click('[data-testid="start"]')
    page.wait_for_function(
        f"document.querySelector('[data-testid=error]').textContent.includes({name!r})"
        " && document.querySelector('[data-testid=status]').dataset.state === 'error'", timeout=20_000)
    assert "har-stream weights import" in text(page, "error")

    # Labels that cannot be used are refused before anything is sent (once CLIP is ready the box is enabled).
    page.wait_for_function("document.querySelector('[data-testid=custom-labels-hint]').dataset.clip === 'ready'",
                           timeout=60_000)
    page.fill('[data-testid="custom-labels"]', "waving")
    page.click('[data-testid="start"]')
    assert "at least two labels" in wait_error(page, "input")
    assert live_server.get_json("/api/status")["peers"] == 0
    assert page.js_errors == []


def test_page_reconnects_when_the_server_comes_back(server_factory, chromium, fake_webcam: Path,
                                                     artifacts_dir: Path) -> None:
    server = server_factory().start()
    page = open_page(chromium(camera=fake_webcam), server.url)
    # This server has no CLIP (offline, none imported): the typed-labels box is disabled and says why.
    page.wait_for_function("document.querySelector('[data-testid=custom-labels-hint]').dataset.clip === 'missing'",
                           timeout=10_000)
    assert page.locator('[data-testid="custom-labels"]').is_disabled()
    hint = text(page, "custom-labels-hint")
    assert "CLIP is not available" in hint and "har-stream weights import" in hint, hint
    page.click('[data-testid="start"]')
    wait_state(page, "live")
    first_peer = page.locator('[data-testid="session-info"]').get_attribute("data-peer-id")

    server.stop()  # SIGTERM: the server closes its peers and exits
    wait_state(page, "reconnecting", timeout=20_000)
    assert "Reconnecting" in wait_error(page, "connection")
    assert page.locator('[data-testid="stop"]').is_enabled()  # still running: the camera stays on
    page.screenshot(path=str(artifacts_dir / "browser-reconnecting.png"))

    server.start()  # same port, as after a restart
    wait_state(page, "live")
    assert page.locator('[data-testid="error"]').is_hidden()
    assert page.locator('[data-testid="session-info"]').get_attribute("data-peer-id") != first_peer
    assert server.get_json("/api/status")["peers"] == 1
    assert page.js_errors == []


def test_typed_labels_switch_the_page_to_clip_and_back(live_server, chromium, fake_webcam: Path) -> None:
    page = open_page(chromium(camera=fake_webcam), live_server.url)
    # CLIP loads after the default model; the page follows /api/models until it is ready.
    page.wait_for_function("document.querySelector('[data-testid=custom-labels-hint]').dataset.clip === 'ready'",
                           timeout=60_000)
    typed = ["waving a hand", "clapping", "jumping jacks"]
    page.fill('[data-testid="custom-labels"]', "waving a hand\nclapping, jumping jacks\nclapping")  # one repeat
    assert page.locator('[data-testid="label-set-select"]').is_disabled()  # the typed labels win
    assert "3 labels" in text(page, "custom-labels-hint")
    page.click('[data-testid="start"]')
    wait_state(page, "live")

    # A random tiny CLIP cannot tell motions apart; what matters is that it chose among the typed labels.
    view = page.evaluate(SNAPSHOT)
    assert view["source_attr"] == "clip" and view["source"] == "CLIP", view
    assert view["label"] in typed and {row["label"] for row in view["top5"]} == set(typed), view

    # Clearing the labels while running offers "Apply changes": a new peer on the model's own labels.
    page.fill('[data-testid="custom-labels"]', "")
    page.click('[data-testid="apply"]')
    page.wait_for_function("document.querySelector('[data-testid=label-source]').dataset.source === 'model'",
                           timeout=LABEL_TIMEOUT_MS)
    view = page.evaluate(SNAPSHOT)
    assert view["label"] not in typed and len(view["top5"]) == 4, view
    assert page.locator('[data-testid="apply"]').is_hidden()
    assert page.js_errors == []

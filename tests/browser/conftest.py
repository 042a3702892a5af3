"""Fixtures for the browser tests: a real headless Chromium with a fake webcam, the real ``har-stream serve``.

Every test here is marked ``private_network`` and runs inside ``unshare -n`` (see netns.py): outside a
namespace its body is replaced by the outcome of a child pytest run inside one, and the fixtures below that
start processes (servers, browsers) yield None there, so nothing starts twice. Without root / ``unshare``, or
without /usr/bin/chromium, the tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from har_stream.synthetic import MOTIONS, make_background, render
from tests.browser import netns
from tests.browser.live_server import LiveServer, free_port
from tests.helpers.clips import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--no-sandbox", "--disable-gpu", "--allow-loopback-in-peer-connection", "--disable-quic",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
)

# The fake webcam: a square sliding left across the frame, then right back to where it started, wholly in
# frame (the tiny model learnt in-frame motion at 0.35-0.6 frame widths per second). Chromium loops the file;
# going there and back makes the loop seamless, so every window shows real motion: left, right, or a turn.
WEBCAM_SIZE = (320, 240)
WEBCAM_FPS = 15
WEBCAM_LABELS = ("moving left", "moving right")
WEBCAM_LEG_FRAMES = 32  # 2.13 s each way
WEBCAM_SPEED = 0.35
WEBCAM_START = (0.78, 0.3)  # the square's side is 0.19 of the width: x runs 0.78 → 0.03 → 0.78


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{netns.MARKER}: runs only inside a private network namespace "
                                       "(re-runs itself under `unshare -n` when it is not in one)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip before any fixture starts (or trains) anything when the test cannot run here."""
    if item.get_closest_marker(netns.MARKER) is None:
        return
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium, or run scripts/setup.sh --test)")
    if netns.needs_delegation(item) and (why := netns.cannot_isolate()) is not None:
        pytest.skip(why)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Outside a namespace, a ``private_network`` test's body is its outcome in the child run."""
    if not netns.needs_delegation(pyfuncitem):
        return None
    netns.run_in_child(pyfuncitem)
    return True


def inside(request: pytest.FixtureRequest) -> bool:
    """Fixtures that start processes do so only where test bodies really run."""
    return not netns.needs_delegation(request.node) if isinstance(request.node, pytest.Item) \
        else netns.in_private_network()


# -- artifacts, the fake webcam -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where screenshots are kept: $HAR_STREAM_TEST_ARTIFACTS (scripts/test.sh sets it) or test-artifacts/."""
    folder = Path(os.environ.get("HAR_STREAM_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_y4m(path: Path, frames: np.ndarray, fps: int) -> Path:
    """RGB frames → a y4m file (yuv420p) with ffmpeg: the format Chromium's fake camera plays (and loops)."""
    height, width = frames.shape[1:3]
    command = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-r", str(fps), "-i", "-", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, input=frames.tobytes(), check=True, capture_output=True, timeout=60)
    return path


@pytest.fixture(scope="session")
def fake_webcam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A y4m clip the tiny model knows: the square slides left, then right back to its start (seamless loop)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg); it writes the fake webcam's y4m file")
    assert set(WEBCAM_LABELS) <= set(MOTIONS)
    rng = np.random.default_rng(11)
    width, height = WEBCAM_SIZE
    background = make_background(width, height, rng)
    colour = (150, 220, 240)
    x, y = WEBCAM_START
    legs = []
    for label in WEBCAM_LABELS:
        legs.append(render(label, WEBCAM_LEG_FRAMES, width=width, height=height, fps=WEBCAM_FPS,
                           speed=WEBCAM_SPEED, start=(x, y), colour=colour, background=background))
        x += MOTIONS[label][0] * WEBCAM_SPEED * WEBCAM_LEG_FRAMES / WEBCAM_FPS
    assert abs(x - WEBCAM_START[0]) < 1e-9  # back where it started: no jump when Chromium loops
    return write_y4m(tmp_path_factory.mktemp("webcam") / "left-right.y4m", np.concatenate(legs), WEBCAM_FPS)


# -- the real server ----------------------------------------------------------------------------------------

ServerFactory = Callable[..., LiveServer]


def _tiny_server(tiny_checkpoint: Path, folder: Path, *extra: str) -> LiveServer:
    return LiveServer(port=free_port(), home=folder / "home", log=folder / "serve.log",
                      args=("--model", str(tiny_checkpoint), "--clip-threshold", "0", *extra))


@pytest.fixture
def server_factory(request: pytest.FixtureRequest, tiny_checkpoint: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory | None]:
    """Make (not start) servers of the tiny model with extra options; each one is stopped after the test.

    Outside the namespace it yields None; ``tiny_checkpoint`` is still trained there, once, for the child.
    """
    made: list[LiveServer] = []
    request.node.har_servers = made  # for the failure report (see pytest_runtest_makereport)

    def make(*extra: str) -> LiveServer:
        made.append(_tiny_server(tiny_checkpoint, tmp_path_factory.mktemp("serve"), *extra))
        return made[-1]

    yield make if inside(request) else None
    for server in made:
        server.stop()


@pytest.fixture(scope="module")
def live_server(request: pytest.FixtureRequest, tiny_checkpoint: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer | None]:
    """One running server of the tiny model (offline, loopback ICE) with a tiny random CLIP for typed labels
    (never a fallback: --clip-threshold 0), shared by the module's tests, which leave it with no peer; None
    outside the namespace."""
    if not inside(request):
        yield None
        return
    from tests.helpers.tiny_clip import make_tiny_clip

    folder = tmp_path_factory.mktemp("serve")
    server = _tiny_server(tiny_checkpoint, folder, "--clip-model", str(make_tiny_clip(folder / "tiny-clip")))
    request.node.har_servers = [server]
    yield server.start()
    server.stop()


# -- the browser --------------------------------------------------------------------------------------------

@pytest.fixture
def chromium(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any] | None]:
    """``launch(camera=Y4M|None, allow_camera=True)`` → a Playwright Browser; all are closed after the test.

    ``allow_camera`` answers the permission prompt with "allow" (--use-fake-ui-for-media-stream); without
    it headless Chromium denies the camera. ``camera`` is the fake webcam's file; None means no camera at all.
    """
    if not inside(request):
        yield None
        return
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        browsers: list[Any] = []

        def launch(camera: Path | None = None, allow_camera: bool = True) -> Any:
            args = list(CHROMIUM_FLAGS)
            if allow_camera:
                args.append("--use-fake-ui-for-media-stream")
            if camera is not None:
                args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"]
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
            browsers.append(browser)
            return browser

        request.node.har_browsers = browsers  # for the failure report (see pytest_runtest_makereport)
        yield launch
        for browser in browsers:
            browser.close()


# -- failure reports ----------------------------------------------------------------------------------------

PAGE_STATE = """() => Object.fromEntries(["status", "error", "current-label", "connection", "model-status",
  "custom-labels-hint", "session-info"].map((id) => [id, document.querySelector(`[data-testid="${id}"]`)
  ?.textContent.trim()]))"""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure, add what the pages showed and the servers' logs to the failure text (the child's junit
    report carries that text to the outer run, where it is all there is to read)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return

    def add(title: str, content: str) -> None:
        if hasattr(report.longrepr, "addsection"):
            report.longrepr.addsection(title, content)
        else:
            report.sections.append((title, content))

    for index, browser in enumerate(getattr(item, "har_browsers", ())):
        for context in browser.contexts:
            for page in context.pages:
                try:
                    state = page.evaluate(PAGE_STATE)
                except Exception as err:  # a closed page or browser: say so, report the rest
                    state = f"(unreadable: {err})"
                add(f"page of browser {index}: {page.url}", str(state))
    for node in item.listchain():
        for server in getattr(node, "har_servers", ()):
            add(f"har-stream serve log (port {server.port})", server.log_text())


# -- the analysis page's server -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jobs_server(request: pytest.FixtureRequest, tiny_checkpoint: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer | None]:
    """One server of the tiny model that keeps its analysis jobs in a fresh folder (--data-dir), shared by
    the module's tests; None outside the namespace."""
    if not inside(request):
        yield None
        return
    folder = tmp_path_factory.mktemp("serve-jobs")
    server = _tiny_server(tiny_checkpoint, folder, "--data-dir", str(folder / "jobs"))
    request.node.har_servers = [server]
    yield server.start()
    server.stop()


# -- the cameras and events pages' server and camera --------------------------------------------------------

@pytest.fixture(scope="module")
def streams_server(request: pytest.FixtureRequest, tiny_checkpoint: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer | None]:
    """One server of the tiny model that watches cameras and keeps their events in a fresh folder
    (--data-dir), shared by the module's tests; None outside the namespace."""
    if not inside(request):
        yield None
        return
    folder = tmp_path_factory.mktemp("serve-streams")
    server = _tiny_server(tiny_checkpoint, folder, "--ice-loopback", "--data-dir", str(folder / "data"))
    request.node.har_servers = [server]
    yield server.start()
    server.stop()


@pytest.fixture
def rtsp_camera(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A real RTSP camera (GStreamer, tests/helpers/rtsp_server.py) looping the fake webcam's clip: the square
    goes left, then right, seamlessly. Skips when GStreamer's RTSP server is missing; None outside the
    namespace."""
    if not inside(request):
        yield None
        return
    from tests.browser.camera_clip import left_right_frames
    from tests.helpers.rtsp_server import RtspServer

    with RtspServer.from_frames(left_right_frames(), fps=WEBCAM_FPS) as camera:
        yield camera

"""A real RTSP camera for tests: GStreamer's RTSP server in a subprocess, looping a clip on 127.0.0.1.

The server runs under the SYSTEM ``/usr/bin/python3``, where Debian's python3-gi and the GStreamer RTSP
server bindings live (the project's venv has neither). The test process decodes the clip with PyAV into raw
RGB frames once; the server pushes them through ``appsrc`` in a seamless loop at the clip's frame rate,
encoded with ``x264enc tune=zerolatency`` (a keyframe every second), so any client can join at any time and
sees a real-time H.264 stream, exactly like an IP camera. Each client gets its own pipeline, starting at the
clip's first frame.

    server = RtspServer(clip_path)            # or RtspServer.from_frames(rgb_frames, fps=15)
    with server:                              # start(): picks a free port, waits until a frame decodes
        url = server.url                      # rtsp://127.0.0.1:<port>/cam
        server.kill()                         # the camera drops off the network (SIGKILL)
        server.restart()                      # back on the same port and path, ready again
        server.pause(); server.resume()       # a hung camera (SIGSTOP / SIGCONT): TCP stays open, no data
    # stop() on exit: the process is killed and reaped, its raw-frame file removed

``credentials=("user", "secret")`` makes the server demand RTSP Basic authentication; ``url`` then carries
them (``rtsp://user:secret@127.0.0.1:<port>/cam``) and ``url_without_credentials`` does not.

``require_rtsp_server()`` skips the calling test with the reason and the install command when GStreamer's
RTSP server or python3-gi is missing (``scripts/setup.sh --test`` installs them); ``RtspServer.start`` calls
it. ``motion_loop(label)`` makes frames the tests' tiny model knows (a square doing ``label`` in frame, then
starting over; ``clean_window`` tells the windows that do not straddle the jump), and ``closed_port_url()``
an address where nothing answers. A fixture, for a test module:

    @pytest.fixture
    def camera() -> Iterator[RtspServer]:
        with RtspServer.from_frames(motion_loop("moving left"), fps=15) as server:
            yield server

Run as a script (by the system python) it is the server itself: ``/usr/bin/python3 rtsp_server.py serve ...``.
This module imports only the standard library at the top, so that both interpreters can load it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

SYSTEM_PYTHON = Path("/usr/bin/python3")
INSTALL_HINT = ("apt-get install -y gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi "
                "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav "
                "(or scripts/setup.sh --test)")
# What the server needs: the RTSP server bindings, and the elements of its pipeline.
_PROBE = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
          "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
          "missing = [e for e in ('appsrc', 'videoconvert', 'x264enc', 'rtph264pay') "
          "if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))")


class RtspUnavailable(RuntimeError):
    """GStreamer's RTSP server cannot run on this machine (the message says what to install)."""


def rtsp_server_missing() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing; the GStreamer RTSP test server runs with the system python"
    try:
        probe = subprocess.run([str(SYSTEM_PYTHON), "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot run {SYSTEM_PYTHON}: {err}"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer RTSP server or python3-gi is not installed ({last}); {INSTALL_HINT}"
    if probe.stdout.strip():
        return f"GStreamer elements missing: {probe.stdout.strip()}; {INSTALL_HINT}"
    return None


_missing_cache: list[str | None] = []


def require_rtsp_server() -> None:
    """Skip the calling test (pytest) when the RTSP server cannot run here; checked once per process."""
    if not _missing_cache:
        _missing_cache.append(rtsp_server_missing())
    if _missing_cache[0] is not None:
        import pytest

        pytest.skip(_missing_cache[0])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url(path: str = "cam") -> str:
    """An rtsp URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    return f"rtsp://127.0.0.1:{free_port()}/{path}"


def motion_loop(label: str, *, frames: int = 32, fps: float = 15.0, width: int = 160, height: int = 120,
                speed: float = 0.35, seed: int = 11) -> np.ndarray:
    """RGB frames of a square doing ``label`` (``har_stream.synthetic.MOTIONS``) wholly in frame for
    ``frames`` frames (2.1 s by default); looped, it jumps back to its start. The tiny test model learnt in-frame
    motion at 0.35-0.6 frame sizes per second, so windows that do not straddle the jump are ``label``."""
    import numpy as np

    from har_stream.synthetic import MOTIONS, make_background, render

    dx, dy = MOTIONS[label]
    start = (0.78 if dx < 0 else 0.03 if dx > 0 else 0.4, 0.74 if dy < 0 else 0.3)
    rng = np.random.default_rng(seed)
    return render(label, frames, width=width, height=height, fps=fps, speed=speed, start=start,
                  colour=(150, 220, 240), background=make_background(width, height, rng))


# A leftward pass of ``motion_loop`` starts its square at 0.78 of the width, further right than the tiny test
# model's training clips ever start one (0.73, ``start_inside``): its first 3 frames lie outside what the model
# learnt, and a window starting on them may read "holding still" even on the raw frames (probed on this machine).
LEFT_PASS_UNTRAINED_FRAMES = 3


def clean_window(start: float, end: float, *, loop_frames: int = 32, fps: float = 15.0, skip: int = 0) -> bool:
    """True when a label window [start, end) lies within one pass of a ``motion_loop`` (no jump back in it) and
    starts at least ``skip`` frames into that pass.

    Times are seconds from the first frame of a connection, as a source stamps them (``SourceInfo``'s clock):
    each client gets its own pipeline, which starts at the clip's first frame.
    """
    first, last = int(round(start * fps)), int(round(end * fps)) - 1
    return first // loop_frames == last // loop_frames and first % loop_frames >= skip


class RtspServer:
    """A looping RTSP camera at ``rtsp://127.0.0.1:<port>/<path>`` (see the module docstring)."""

    def __init__(self, video: Path | str, *, path: str = "cam", port: int | None = None,
                 credentials: tuple[str, str] | None = None, ready_timeout: float = 20.0) -> None:
        self.video = Path(video)
        self.path = path.strip("/")
        self.port = port
        self.credentials = credentials
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[str] | None = None
        self._frames: np.ndarray | None = None
        self._fps: float | None = None
        self._raw: Path | None = None
        self._width = self._height = 0
        self._workdir: Path | None = None
        self._log: Path | None = None
        self.starts = 0

    @classmethod
    def from_frames(cls, frames: np.ndarray, fps: float, **kw: Any) -> RtspServer:
        """Serve (n, height, width, 3) uint8 RGB frames in a loop at ``fps`` (no file needed)."""
        server = cls(Path("<frames>"), **kw)
        server._frames, server._fps = frames, float(fps)
        return server

    # -- addresses ----------------------------------------------------------------------------------------

    @property
    def url_without_credentials(self) -> str:
        if self.port is None:
            raise RuntimeError("the RTSP server has no port yet; start() it first")
        return f"rtsp://127.0.0.1:{self.port}/{self.path}"

    @property
    def url(self) -> str:
        """The camera's URL, with the credentials in it when the server demands them."""
        bare = self.url_without_credentials
        if self.credentials is None:
            return bare
        user, password = self.credentials
        return bare.replace("rtsp://", f"rtsp://{user}:{password}@", 1)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- life -----------------------------------------------------------------------------------------------

    def start(self) -> RtspServer:
        """Start serving (a free port the first time, the same port after), then wait until it is ready."""
        require_rtsp_server()
        if self.running:
            return self
        if self._raw is None:
            self._prepare_frames()
        if self.port is None:
            self.port = free_port()
        assert self._workdir is not None and self._raw is not None
        self.starts += 1
        self._log = self._workdir / f"server-{self.starts}.log"
        command = [str(SYSTEM_PYTHON), str(Path(__file__).resolve()), "serve", "--port", str(self.port),
                   "--path", self.path, "--raw", str(self._raw), "--width", str(self._width),
                   "--height", str(self._height), "--fps", repr(self._fps)]
        env = dict(os.environ)
        if self.credentials is not None:  # in the environment, not argv: ps shows argv
            env["RTSP_TEST_USER"], env["RTSP_TEST_PASSWORD"] = self.credentials
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):  # the venv's modules are not the system's
            env.pop(var, None)
        with open(self._log, "w") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, text=True)
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Return once a real client (PyAV, RTSP over TCP) decodes a frame from the server."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.ready_timeout)
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"the RTSP server exited with code {self._returncode()}: {self.log_text()}")
            try:
                if self._decodes_a_frame():
                    return
            except Exception as err:  # noqa: BLE001 - not ready yet: refused, 404 until the mount exists...
                last = err
            time.sleep(0.1)
        raise RuntimeError(f"the RTSP server at {self.url_without_credentials} was not ready within "
                           f"{self.ready_timeout:g} s (last error: {last}); log: {self.log_text()}")

    def kill(self) -> None:
        """The camera vanishes: SIGKILL (no RTSP TEARDOWN; open TCP connections are reset). Idempotent."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with _suppress_lookup():
                os.kill(process.pid, signal.SIGCONT)  # a paused process cannot die until it runs again
            process.kill()
        process.wait(timeout=10)

    def restart(self) -> RtspServer:
        """Kill (if running) and start again on the same port and path."""
        self.kill()
        return self.start()

    def pause(self) -> None:
        """The camera hangs: SIGSTOP. Connections stay open, no byte flows, new connections get no answer."""
        if not self.running:
            raise RuntimeError("the RTSP server is not running")
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self.running:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Kill the server and remove its files. Safe to call more than once, and after a failed start."""
        self.kill()
        self.process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = self._raw = None

    def log_text(self) -> str:
        """The server's output so far (for failure messages)."""
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")[-2000:]

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- helpers ------------------------------------------------------------------------------------------

    def _prepare_frames(self) -> None:
        """Decode the clip (PyAV, test process) into one raw RGB file the server loops over."""
        import numpy as np

        frames, fps = self._frames, self._fps
        if frames is None:
            frames, fps = _decode_rgb(self.video)
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[3] != 3 or len(frames) == 0:
            raise ValueError(f"need (n, height, width, 3) RGB frames, got shape {frames.shape}")
        self._height, self._width = int(frames.shape[1]), int(frames.shape[2])
        self._fps = float(fps or 15.0)
        self._workdir = Path(tempfile.mkdtemp(prefix="har-rtsp-"))
        self._raw = self._workdir / "frames.rgb"
        self._raw.write_bytes(frames.tobytes())

    def _decodes_a_frame(self) -> bool:
        import av

        options = {"rtsp_transport": "tcp", "analyzeduration": "200000", "probesize": "32768"}
        with av.open(self.url, options=options, timeout=(3.0, 3.0)) as container:
            for _ in container.decode(video=0):
                return True
        return False

    def _returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode


class _suppress_lookup:
    """``contextlib.suppress(ProcessLookupError)`` without importing contextlib twice in the server."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        return exc_type is not None and issubclass(exc_type, ProcessLookupError)


def _decode_rgb(video: Path) -> tuple[np.ndarray, float]:
    import av
    import numpy as np

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"{video} has no decodable video frame")
    return np.stack(frames), float(rate) if rate else 15.0


# -- the server process (system python, GStreamer) ----------------------------------------------------------

def serve(argv: list[str]) -> int:
    """``serve --port P --path cam --raw FILE --width W --height H --fps F``: serve until killed."""
    parser = argparse.ArgumentParser(prog="rtsp_server.py serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="cam")
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--fps", type=float, required=True)
    args = parser.parse_args(argv)

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    data = args.raw.read_bytes()
    size = args.width * args.height * 3
    frames = [data[i:i + size] for i in range(0, len(data) - size + 1, size)]
    fps_n, fps_d = _fraction(args.fps)
    duration = Gst.util_uint64_scale(Gst.SECOND, fps_d, fps_n)
    gop = max(1, round(args.fps))
    launch = (f"( appsrc name=src is-live=true format=time do-timestamp=false "
              f"caps=video/x-raw,format=RGB,width={args.width},height={args.height},framerate={fps_n}/{fps_d} "
              f"! videoconvert ! video/x-raw,format=I420 "
              f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=800 "
              f"! rtph264pay name=pay0 pt=96 config-interval=1 )")

    def on_configure(factory: Any, media: Any) -> None:
        src = media.get_element().get_child_by_name("src")
        state = {"n": 0}

        def need_data(appsrc: Any, _length: int) -> None:
            n = state["n"]
            buffer = Gst.Buffer.new_wrapped(frames[n % len(frames)])
            buffer.pts = buffer.dts = n * duration
            buffer.duration = duration
            state["n"] = n + 1
            appsrc.emit("push-buffer", buffer)

        src.connect("need-data", need_data)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)
    factory.connect("media-configure", on_configure)
    user, password = os.environ.get("RTSP_TEST_USER"), os.environ.get("RTSP_TEST_PASSWORD")
    if user is not None and password is not None:
        _require_basic_auth(Gst, GstRtspServer, server, factory, user, password)
    server.get_mount_points().add_factory("/" + args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", flush=True)
        return 1
    print(f"serving rtsp://127.0.0.1:{args.port}/{args.path} ({len(frames)} frames at {args.fps:g} fps)",
          flush=True)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, lambda: loop.quit() or False)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, lambda: loop.quit() or False)
    loop.run()
    return 0


def _require_basic_auth(gst: Any, rtsp: Any, server: Any, factory: Any, user: str, password: str) -> None:
    auth = rtsp.RTSPAuth()
    token = rtsp.RTSPToken()
    token.set_string(rtsp.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
    auth.add_basic(rtsp.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = rtsp.RTSPPermissions()
    permissions.add_role_from_structure(gst.Structure.new_from_string(
        f"user, {rtsp.RTSP_PERM_MEDIA_FACTORY_ACCESS}=(boolean)true, "
        f"{rtsp.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT}=(boolean)true"))
    factory.set_permissions(permissions)


def _fraction(fps: float) -> tuple[int, int]:
    from fractions import Fraction

    f = Fraction(fps).limit_denominator(1001)
    return f.numerator, f.denominator


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(serve(sys.argv[2:]))
    print("usage: /usr/bin/python3 rtsp_server.py serve --port P --path cam --raw FILE --width W --height H "
          "--fps F", file=sys.stderr)
    sys.exit(2)

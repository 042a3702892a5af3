"""A fake IP camera for benchmarks: a real RTSP stream in its own process, costing next to no CPU.

Why not ``ffmpeg -rtsp_flags listen`` alone: FFmpeg's RTSP *muxer* is always a client (it publishes with
ANNOUNCE/RECORD to a server); ``listen`` only exists for its demuxer, so FFmpeg cannot serve a stream to a
player by itself (tried with FFmpeg 5.1: the output fails with "Connection refused"). So each camera is two
small processes: ``ffmpeg -re -stream_loop -1 -i clip.mp4 -c copy -f rtsp`` does the camera's work (reads a
pre-encoded H.264 clip in real time, packs RTP, loops forever, no encoding), and publishes to this module's
RTSP relay, which serves that stream to players (DESCRIBE/SETUP/PLAY, RTP over TCP interleaved). The relay
only copies bytes. A player joins at the next keyframe, as it would on a camera.

The relay prints a line per event on stdout for the process that started it: ``listening PORT``,
``ffmpeg PID``, ``recording`` (the clip is streaming), and ``clock N T`` for the N-th player: ``T`` is the
wall-clock time (``time.time()``) at which the camera sends the frame at stream time 0 of that player's
stream (its first packet, a keyframe), so it sends the frame at stream time ``t`` at ``T + t``. Why not
simply the time that first packet left: FFmpeg's ``-re`` paces packets to the wall clock, but any one packet
can leave late (a keyframe is large; the loop seeks back to the clip's start), so a single stamp can be off by
a few frames. A packet never leaves early, so ``T`` is the earliest of "sent at, less its RTP time since the
first packet" over every packet so far; a new line comes whenever it moves earlier (by 0.5 ms or more).

    python -m har_stream.bench.rtsp_camera clip.mp4 [--ffmpeg-log FILE]     # rtsp://127.0.0.1:PORT/cam

``RtspCamera`` starts and stops one from async code. This module imports only the standard library, so a
camera starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

MAX_VIEWER_BUFFER = 4 * 1024 * 1024  # bytes queued for a player that does not read: drop that player
RTP_CLOCK_HZ = 90_000  # H.264 over RTP
H264_IDR, H264_SPS, H264_STAP_A, H264_FU_A = 5, 7, 24, 28


def keyframe_starts(rtp: bytes) -> bool:
    """True when an H.264 RTP packet (RFC 6184) begins a keyframe: an IDR slice, or SPS (alone or
    aggregated), or the first fragment of an IDR slice."""
    if len(rtp) < 13:
        return False
    offset = 12 + 4 * (rtp[0] & 0x0F)
    if rtp[0] & 0x10:  # header extension
        if len(rtp) < offset + 4:
            return False
        offset += 4 + 4 * int.from_bytes(rtp[offset + 2:offset + 4], "big")
    payload = rtp[offset:]
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (H264_IDR, H264_SPS):
        return True
    if nal == H264_STAP_A and len(payload) > 3:
        return payload[3] & 0x1F in (H264_IDR, H264_SPS)
    if nal == H264_FU_A and len(payload) > 1:
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == H264_IDR
    return False


@dataclass
class Viewer:
    """A player that sent PLAY: it gets the publisher's packets on its own interleaved channels."""

    number: int
    writer: asyncio.StreamWriter
    channels: dict[int, int] = field(default_factory=dict)  # publisher's channel → this player's
    started: bool = False
    last_ts: int = 0  # the latest RTP timestamp sent
    since_first: int = 0  # RTP ticks since the first packet (unwrapped)
    clock: float = float("inf")  # when the camera sends stream time 0 (see the module docstring)

    def sent(self, rtp: bytes, now: float) -> None:
        """Note a video packet sent at ``now``; says when ``clock`` moved earlier."""
        ts = int.from_bytes(rtp[4:8], "big")
        if self.started:
            self.since_first += (ts - self.last_ts + 2**31) % 2**32 - 2**31  # wraps every 13 h at 90 kHz
        self.started, self.last_ts = True, ts
        clock = now - self.since_first / RTP_CLOCK_HZ
        if clock < self.clock - 0.0005:
            self.clock = clock
            print(f"clock {self.number} {clock:.6f}", flush=True)


class Relay:
    """One camera: the publisher's SDP and packets, passed to the players."""

    def __init__(self) -> None:
        self.sdp: bytes | None = None
        self.viewers: list[Viewer] = []
        self._session = itertools.count(1)
        self._viewers = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._closing = False

    @property
    def connections(self) -> int:
        """Connections being served now (publisher and players)."""
        return len(self._connections)

    async def start(self, host: str = "127.0.0.1") -> int:
        """Listen on a free port of ``host``; returns the port."""
        self._server = await asyncio.start_server(self._accept, host, 0)
        return int(self._server.sockets[0].getsockname()[1])

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Own each connection's task. Why not hand ``serve`` to ``start_server`` itself: asyncio then makes a
        task that nobody can await, and on Python 3.11 its done-callback raises (and logs a traceback) when that
        task is cancelled, which ``asyncio.run`` does to every task left at exit. A connection accepted while
        the relay closes is closed here, before any task exists for it."""
        if self._closing:
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self.serve(reader, writer), name="rtsp-relay-connection")
        self._connections[task] = writer
        task.add_done_callback(self._connections.pop)

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting, drop every connection (their readers see EOF, so ``serve`` returns by itself), and
        wait for their tasks; one still running after ``grace`` seconds is cancelled and awaited."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        await asyncio.sleep(0)  # let connections accepted just before close() reach _accept (it closes them)
        for writer in self._connections.values():
            writer.transport.abort()  # not close(): a player that stopped reading would hold it open
        tasks = set(self._connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        viewer: Viewer | None = None
        pending: dict[int, int] = {}  # SETUP before PLAY: the publisher's channel → this player's
        publisher = False
        try:
            while True:
                first = await reader.readexactly(1)
                if first == b"$":  # interleaved binary data
                    head = await reader.readexactly(3)
                    data = await reader.readexactly(int.from_bytes(head[1:3], "big"))
                    if publisher:
                        self._forward(head[0], data)
                    continue  # a player's RTCP receiver reports: nothing to do
                request = first + await reader.readuntil(b"\r\n\r\n")
                lines = request.decode("latin-1").split("\r\n")
                method, url = (lines[0].split(" ") + ["", ""])[:2]
                headers = {k.strip().lower(): v.strip()
                           for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                extra: dict[str, str] = {}
                status = "200 OK"
                if method == "OPTIONS":
                    extra["Public"] = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER"
                elif method == "ANNOUNCE":
                    publisher, self.sdp = True, body
                elif method == "DESCRIBE":
                    if self.sdp is None:
                        status = "404 Not Found"
                    else:
                        extra.update({"Content-Base": url.rstrip("/") + "/", "Content-Type": "application/sdp"})
                elif method == "SETUP":
                    transport = headers.get("transport", "")
                    if "interleaved=" not in transport:
                        status = "461 Unsupported Transport"  # TCP only; the player then asks for TCP
                    else:
                        low = int(transport.split("interleaved=")[1].split("-")[0].split(";")[0])
                        track = len(pending) // 2
                        pending.update({2 * track: low, 2 * track + 1: low + 1})
                        extra["Transport"] = transport
                elif method == "PLAY":
                    viewer = Viewer(next(self._viewers), writer, dict(pending))
                    self.viewers.append(viewer)
                elif method == "RECORD":
                    print("recording", flush=True)
                elif method == "TEARDOWN":
                    self._reply(writer, headers, status, extra, b"")
                    break
                self._reply(writer, headers, status, extra,
                            self.sdp if method == "DESCRIBE" and self.sdp is not None else b"",
                            session=method in ("SETUP", "PLAY", "RECORD"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            if viewer is not None and viewer in self.viewers:
                self.viewers.remove(viewer)
            writer.close()  # the publisher's end is ffmpeg's: main() sees it exit

    def _reply(self, writer: asyncio.StreamWriter, headers: dict[str, str], status: str, extra: dict[str, str],
               body: bytes, session: bool = False) -> None:
        lines = [f"RTSP/1.0 {status}", f"CSeq: {headers.get('cseq', '0')}"]
        if session:
            session_id = headers.get("session", "").split(";")[0] or str(next(self._session))
            lines.append(f"Session: {session_id};timeout=60")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _forward(self, channel: int, data: bytes) -> None:
        for viewer in tuple(self.viewers):
            if viewer.writer.is_closing() or viewer.writer.transport.get_write_buffer_size() > MAX_VIEWER_BUFFER:
                self.viewers.remove(viewer)
                viewer.writer.close()
                continue
            if not viewer.started and (channel % 2 or not keyframe_starts(data)):
                continue  # a player starts at a keyframe, as on a camera
            target = viewer.channels.get(channel)
            if target is not None:
                viewer.writer.write(b"$" + bytes((target,)) + len(data).to_bytes(2, "big") + data)
                if channel % 2 == 0 and len(data) >= 12:
                    viewer.sent(data, time.time())


async def main(clip: Path, ffmpeg_log: Path | None) -> int:
    relay = Relay()
    port = await relay.start()
    print(f"listening {port}", flush=True)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("error ffmpeg is not installed", flush=True)
        await relay.close()
        return 2
    log = open(ffmpeg_log, "wb") if ffmpeg_log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-an", "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", f"rtsp://127.0.0.1:{port}/cam"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    print(f"ffmpeg {process.pid}", flush=True)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    watcher = loop.run_in_executor(None, process.wait)
    try:
        await asyncio.wait({stop, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if process.poll() is None:
            process.kill()
        await watcher
        await relay.close()
        if log is not subprocess.DEVNULL:
            log.close()
    return 0 if stop.done() else 1


class CameraError(RuntimeError):
    """A bench camera did not start (the message says why, with ffmpeg's last words)."""


class RtspCamera:
    """One looping camera process (relay + ffmpeg) at ``url``; ``clocks`` has, per player that connected, when
    the camera sends that player's stream time 0 (wall clock, see the module docstring). ``async with`` starts
    it (ready to play) and stops it."""

    def __init__(self, clip: Path, folder: Path, name: str = "cam", start_timeout: float = 20.0) -> None:
        self.clip = clip
        self.name = name
        self.log = folder / f"{name}-ffmpeg.log"
        self.start_timeout = start_timeout
        self.url = ""
        self.pids: tuple[int, ...] = ()  # the relay's and ffmpeg's
        self.clocks: dict[int, float] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", __name__, str(self.clip), "--ffmpeg-log", str(self.log),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
        assert self._process.stdout is not None
        port = ffmpeg = None
        try:
            async with asyncio.timeout(self.start_timeout):
                while (line := (await self._process.stdout.readline()).decode().split()) != ["recording"]:
                    if not line:
                        raise CameraError(f"camera {self.name} stopped before streaming: {self._last_words()}")
                    if line[0] == "listening":
                        port = int(line[1])
                    elif line[0] == "ffmpeg":
                        ffmpeg = int(line[1])
                    elif line[0] == "error":
                        raise CameraError(f"camera {self.name}: {' '.join(line[1:])}")
        except TimeoutError:
            raise CameraError(f"camera {self.name} did not stream within {self.start_timeout:g} s: "
                              f"{self._last_words()}") from None
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.pids = (self._process.pid,) + ((ffmpeg,) if ffmpeg else ())
        self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"bench-camera-{self.name}")

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        while line := (await self._process.stdout.readline()).decode().split():
            if line[0] == "clock":
                self.clocks[int(line[1])] = float(line[2])

    def _last_words(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else "no message from ffmpeg"

    async def stop(self) -> None:
        """SIGTERM (the relay kills its ffmpeg), SIGKILL after 5 s; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.returncode is None:
                process.terminate()
                try:
                    async with asyncio.timeout(5.0):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()
            for pid in self.pids[1:]:  # ffmpeg, should the relay have died without killing it
                with contextlib.suppress(OSError):
                    if b"ffmpeg" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def __aenter__(self) -> RtspCamera:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


def cli() -> int:
    parser = argparse.ArgumentParser(description="a looping RTSP camera: ffmpeg + a relay (benchmarks)")
    parser.add_argument("clip", type=Path, help="an H.264 mp4, streamed as it is (no encoding)")
    parser.add_argument("--ffmpeg-log", type=Path, default=None, help="where ffmpeg's errors go")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main(args.clip, args.ffmpeg_log))
    return 0


if __name__ == "__main__":
    sys.exit(cli())

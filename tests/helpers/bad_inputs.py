"""The bad-input corpus, made on the spot (never committed): broken and hostile files, bodies, SDP and servers.

Each maker writes a real file with FFmpeg/PyAV or plain bytes. The files that claim absurd sizes are real
small videos whose headers were patched: an uncompressed QuickTime file whose sample description says
16000×16000 pixels (FFmpeg takes raw video's size from that header), and an H.264 mp4 whose time-to-sample
table and duration fields claim weeks. ``SilentTcpServer`` accepts connections and
never answers (an RTSP camera that hangs).
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path
from types import TracebackType

from tests.helpers.media import make_mp4, truncated_copy

__all__ = [
    "SilentTcpServer", "absurd_dimensions", "absurd_duration", "audio_only", "deep_json", "huge_json",
    "multipart", "random_bytes", "subtitles_only", "truncated_mp4", "unsupported_codec", "zero_bytes",
]


def _ffmpeg(*args: str) -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg is not installed; apt-get install -y ffmpeg")
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=60)


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def random_bytes(path: Path, size: int = 64 * 1024, seed: int = 13) -> Path:
    """Noise with a video name: the content, not the name, must decide."""
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def truncated_mp4(path: Path) -> Path:
    """An mp4 cut at 60 %, its index (moov, at the end) lost: FFmpeg cannot read even its header."""
    whole = make_mp4(path.with_name(path.stem + "-whole.mp4"), frames=45, fps=15.0)
    return truncated_copy(whole, path, keep=0.6)


def _box(data: bytes | bytearray, path: list[str]) -> int:
    """Offset of the ISO-BMFF box at ``path`` (e.g. moov/trak/tkhd); stsd's entries follow its 8-byte header."""
    start, end, offset = 0, len(data), -1
    for name in path:
        i = start
        while i + 8 <= end:
            size, kind = struct.unpack(">I4s", bytes(data[i:i + 8]))
            if kind.decode("latin-1") == name:
                break
            i += size
        else:
            raise KeyError(f"no {name} box in {'/'.join(path)}")
        offset, start, end = i, i + 8 + (8 if name == "stsd" else 0), i + size
    return offset


def absurd_dimensions(path: Path, width: int = 16000, height: int = 16000) -> Path:
    """A 64×48 uncompressed QuickTime clip whose sample description claims ``width``×``height``."""
    raw = path.with_name(path.stem + "-raw.mov")
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=10", "-t", "1", "-c:v", "rawvideo", "-pix_fmt", "uyvy422",
            str(raw))
    data = bytearray(raw.read_bytes())
    entry = _box(data, ["moov", "trak", "mdia", "minf", "stbl", "stsd"]) + 16  # the first sample entry
    struct.pack_into(">HH", data, entry + 32, width, height)  # VisualSampleEntry: 24 bytes after its header
    path.write_bytes(bytes(data))
    return path


def absurd_duration(path: Path) -> Path:
    """A real 2 s H.264 mp4 whose headers claim about 36 hours: every frame's duration in the time-to-sample
    table (stts) is 2^26 ticks, and the movie, track, media and edit-list durations (mvhd, tkhd, mdhd, elst)
    are 2^31-1 ticks (FFmpeg takes the length from the edit list and the frame durations)."""
    clip = make_mp4(path.with_name(path.stem + "-clip.mp4"), frames=30, fps=15.0)
    data = bytearray(clip.read_bytes())
    for box, offset in ((["moov", "mvhd"], 24), (["moov", "trak", "tkhd"], 28), (["moov", "trak", "mdia", "mdhd"], 24),
                        (["moov", "trak", "edts", "elst"], 16)):
        struct.pack_into(">I", data, _box(data, box) + offset, 0x7FFFFFFF)  # version 0 boxes: 32-bit durations
    stts = _box(data, ["moov", "trak", "mdia", "minf", "stbl", "stts"])
    (entries,) = struct.unpack(">I", bytes(data[stts + 12:stts + 16]))
    for n in range(entries):  # (sample_count, sample_delta) pairs
        struct.pack_into(">I", data, stts + 16 + 8 * n + 4, 1 << 26)
    path.write_bytes(bytes(data))
    return path


def audio_only(path: Path) -> Path:
    """An AAC tone in an mp4: a container FFmpeg reads, with no video in it."""
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(path))
    return path


def unsupported_codec(path: Path) -> Path:
    """A Matroska file of A64 multicolour video: FFmpeg has an encoder for it and no decoder."""
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=320x200:r=10", "-t", "1", "-c:v", "a64multi", str(path))
    return path


def subtitles_only(path: Path) -> Path:
    """A Matroska file holding one subtitle stream and nothing else."""
    srt = path.with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nnot a video\n", encoding="utf-8")
    _ffmpeg("-i", str(srt), "-c:s", "srt", str(path))
    return path


def deep_json(depth: int = 100_000) -> bytes:
    """``[[[[…]]]]``: a few hundred KB that sends Python's recursive JSON parser past its recursion limit."""
    return b"[" * depth + b"]" * depth


def huge_json(size: int = 2 * 2**20) -> bytes:
    """A flat, valid JSON object far over any request limit."""
    return b'{"url": "https://example.com/x.mp4", "pad": "' + b"x" * size + b'"}'


def multipart(filename: bytes, content: bytes, field: bytes = b"video", boundary: bytes = b"b0undary"
              ) -> tuple[bytes, str]:
    """A multipart body with the file name exactly as given (NUL, backslashes and all: no client quoting)."""
    body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + field + b"\"; filename=\""
            + filename + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--"
            + boundary + b"--\r\n")
    return body, f"multipart/form-data; boundary={boundary.decode()}"


class SilentTcpServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (a camera that hangs after connecting)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-tcp", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)  # held open, never answered

    def __enter__(self) -> SilentTcpServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()

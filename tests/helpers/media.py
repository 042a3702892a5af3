"""Real test media made on the spot with PyAV and ffmpeg: clips, HLS playlists, pages, damaged files.

Every frame of ``make_mp4`` is different (a square sweeps across a gradient, plus a frame counter band), so
an encoder cannot collapse the clip to a few bytes and a truncated copy really loses frames.
"""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_mp4(
    path: Path,
    *,
    frames: int = 90,
    fps: float = 30.0,
    size: tuple[int, int] = (160, 120),
    gop: int | None = None,
    faststart: bool = False,
    audio: bool = False,
) -> Path:
    """An H.264 mp4 of exactly ``frames`` frames at ``fps`` and ``size`` (width, height).

    ``gop`` sets the keyframe interval (frames; default: half a second) so HLS can cut segments;
    ``faststart`` puts the index first (as web servers want), so a cut tail still leaves decodable frames;
    ``audio`` adds a sine AAC track that sources must ignore.
    """
    width, height = size
    rate = Fraction(fps).limit_denominator(1001)
    path = Path(path)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = gop or max(1, round(fps / 2))
        video.options = {"preset": "ultrafast", "bf": "0"}
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_picture(i, frames, width, height), format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            _add_tone(out, sound, seconds=frames / fps)
    return path


def make_hls(mp4: Path, folder: Path, *, segment_s: float = 1.0) -> Path:
    """A VOD HLS playlist (``index.m3u8`` + ``.ts`` segments) cut from ``mp4`` without re-encoding."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    playlist = folder / "index.m3u8"
    subprocess.run(
        [_ffmpeg(), "-loglevel", "error", "-y", "-i", str(mp4), "-c", "copy", "-f", "hls",
         "-hls_time", f"{segment_s:g}", "-hls_playlist_type", "vod", str(playlist)],
        check=True, timeout=60,
    )
    return playlist


def make_video_page(path: Path, video_src: str, *, title: str = "A clip") -> Path:
    """An HTML page that plays ``video_src`` in a ``<video>`` element (what yt-dlp's generic extractor finds)."""
    path = Path(path)
    path.write_text(
        f"<!doctype html><html><head><title>{title}</title></head>"
        f'<body><h1>{title}</h1><video src="{video_src}" controls></video></body></html>\n',
        encoding="utf-8",
    )
    return path


def make_page_without_video(path: Path) -> Path:
    """An HTML page with no media at all: yt-dlp cannot resolve it."""
    path = Path(path)
    path.write_text("<!doctype html><html><head><title>No video</title></head><body><p>Nothing to play."
                    "</p></body></html>\n", encoding="utf-8")
    return path


def truncated_copy(src: Path, dst: Path, *, keep: float = 0.5) -> Path:
    """A copy of ``src`` holding only its first ``keep`` fraction of bytes (a cut download)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def make_text_file(path: Path, text: str = "This is a text file, not a video.\n" * 20) -> Path:
    """A non-video file (give it a video extension to check content, not names, decides)."""
    Path(path).write_text(text, encoding="utf-8")
    return Path(path)


def _picture(i: int, n: int, width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = (x * 255 // max(width - 1, 1) + i * 3) % 256
    img[..., 1] = (y * 255 // max(height - 1, 1)) % 256
    img[..., 2] = (i * 255 // max(n - 1, 1)) % 256
    side = max(4, height // 4)
    left = (i * (width - side)) // max(n - 1, 1)
    top = (height - side) // 2
    img[top:top + side, left:left + side] = 255
    rng = np.random.default_rng(i)  # texture that changes every frame, so every frame costs bytes
    img[: height // 8] = rng.integers(0, 256, size=(height // 8, width, 3), dtype=np.uint8)
    return img


def _add_tone(out: av.container.OutputContainer, stream: av.AudioStream, *, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    samples = int(rate * seconds)
    t = np.arange(samples) / rate
    pcm = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    frame = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    for packet in stream.encode(frame):
        out.mux(packet)
    out.mux(stream.encode(None))


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg is not installed; apt-get install -y ffmpeg")
    return exe

"""Files, HTTP(S)/HLS URLs and RTSP/RTMP cameras, decoded with PyAV (FFmpeg) in the source's own thread.

Media is streamed (HTTP Range reads, HLS segments one by one), never downloaded whole first. Only the first
video stream is decoded; audio and data streams are ignored.

Errors are ``InputError`` children with one-line messages:

* a missing file → ``InputError("no such file: ...")``; not a video or no video stream → ``NotVideoError``;
* a file cut short or damaged: if FFmpeg cannot even read its header (e.g. an mp4 whose index sat in the cut
  tail) → ``InputError`` at ``open()``; if decoding fails midway the frames decoded before the failure are
  delivered first, then ``frames()`` raises ``InputError`` naming the second at which decoding stopped.
  Decoding stops at the first error (no skipping over damage), so results never silently miss a stretch;
* a stream with no decodable frame at all → ``NotVideoError``;
* an unreachable, failing or silent server → ``SourceUnreachableError`` naming the host and the reason.

``realtime=True`` (watched streams) paces media that does not pace itself - a file, a file over HTTP, an HLS
VOD playlist - to its own frame rate, as ``ffmpeg -re`` does (``pacing.Pacer``, in the decode thread). Sources
that arrive at their own rate are never paced: RTSP/RTMP/SRT/UDP..., live HLS, a page yt-dlp says is live.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator, Mapping
from contextlib import closing
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av
import av.container

from ..errors import InputError, NotVideoError, SourceUnreachableError
from ..frame_queue import Policy
from ..types import SourceInfo
from .base import Prepare, ThreadedSource
from .hwdecode import check_hwdecode, open_decoding
from .pacing import Pacer
from .resolve import ResolvedMedia
from .urls import redact

# Network schemes that are always live (an HTTP/HLS URL is live when it has no known duration).
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp"})

# The first bytes of container formats; a local file that starts like one but fails to open is damaged.
_ISO_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


class AvSource(ThreadedSource):
    """Decodes a local file or a media URL. ``resolver`` (e.g. yt-dlp) first turns a page URL into media."""

    def __init__(
        self,
        url_or_path: str | os.PathLike[str],
        *,
        sample_fps: float | None = None,
        prepare: Prepare | None = None,
        policy: Policy | None = None,
        queue_size: int = 32,
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        options: Mapping[str, str] | None = None,
        resolver: Callable[[str], ResolvedMedia] | None = None,
        realtime: bool = False,
        hwdecode: str = "none",  # NVDEC: none, auto, cuda (hwdecode.py)
    ) -> None:
        check_hwdecode(hwdecode)
        self._hwdecode = hwdecode
        self.decoding = "software"  # once open: "cuda (NVDEC)", or "software (why not NVDEC)"
        self.spec = os.fspath(url_or_path)
        self.shown = redact(self.spec)  # what messages and SourceInfo say: never the URL's credentials
        parts = urlsplit(self.spec)
        self._scheme = parts.scheme.lower() if len(parts.scheme) > 1 else ""  # "C:" is a drive, not a scheme
        self._host = parts.netloc.rsplit("@", 1)[-1] if self._scheme else ""
        self._path = self.spec[len("file://"):] if self._scheme == "file" else self.spec  # when local
        super().__init__(
            self._host or Path(self.spec).name or "source",
            sample_fps=sample_fps,
            prepare=prepare,
            policy=policy,
            queue_size=queue_size,
            join_timeout=read_timeout + 1.0,
        )
        self._open_timeout = open_timeout
        self._read_timeout = read_timeout
        self._options = dict(options or {})
        self._resolver = resolver
        self._container: av.container.InputContainer | None = None
        self._stream: av.VideoStream | None = None
        self.resolved: ResolvedMedia | None = None
        self._realtime = realtime
        self.paced = False  # set at open: True when frames are held back to their timestamps

    @property
    def is_network(self) -> bool:
        return self._scheme not in ("", "file")

    # -- decode thread --------------------------------------------------------------------------------

    def _open_blocking(self) -> SourceInfo:
        target, options, live = self._target()
        started = time.monotonic()
        try:
            container, self.decoding = open_decoding(target, options=options, hwdecode=self._hwdecode, name=self.shown,
                                                     timeout=(self._open_timeout, self._read_timeout))
        except (av.FFmpegError, OSError) as exc:
            raise self._open_error(exc, time.monotonic() - started) from exc
        self._container = container
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise NotVideoError(f"{self.shown} has no video stream ({kinds}); give a file or URL with video")
        stream = self._stream = container.streams.video[0]
        if stream.codec_context is None:  # PyAV has no decoder for it (e.g. a64_multi, VC-2 in some builds)
            raise NotVideoError(f"{self.shown}: its video codec cannot be decoded by this FFmpeg build; convert it "
                                "to H.264 (an mp4) first")
        stream.thread_type = "AUTO"
        self_paced = live or (container.format.name == "hls" and container.duration is None)  # live HLS
        self.paced = self._realtime and not self_paced
        live = live or (self.is_network and container.duration is None)
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return SourceInfo(
            url=self.shown,
            width=ctx.width,
            height=ctx.height,
            fps=float(rate) if rate else 0.0,
            duration=None if live else _duration(container, stream),
            frame_count=None if live or not stream.frames else stream.frames,
            live=live,
            codec=ctx.name,
        )

    def _decode_blocking(self) -> Generator[av.VideoFrame, None, None]:
        frames = self._decode_frames()
        if not self.paced:
            return frames
        return self._pace(frames)

    def _pace(self, frames: Generator[av.VideoFrame, None, None]) -> Generator[av.VideoFrame, None, None]:
        """``frames`` at their own rate (see ``pacing``); ends early when the source is stopped."""
        pacer = Pacer(self._stop)
        with closing(frames):
            for frame in frames:
                t = frame.time
                if not pacer.wait(None if t is None or math.isnan(t) else t):
                    return
                yield frame

    def _decode_frames(self) -> Generator[av.VideoFrame, None, None]:
        assert self._container is not None and self._stream is not None and self.info is not None
        stream, live = self._stream, self.info.live
        decoded = 0
        try:
            for packet in self._container.demux(stream):
                if packet.is_corrupt and not live:
                    # A cut or damaged file. Threaded decoders hide the error such a packet causes, so
                    # check the demuxer's flag: deliver the frames still buffered, then report.
                    for frame in stream.decode(None):
                        frame.time_base = stream.time_base  # a flush leaves it unset
                        decoded += 1
                        yield frame
                    raise self._decode_error(None, decoded)
                for frame in packet.decode():
                    decoded += 1
                    yield frame
        except (av.FFmpegError, OSError) as exc:
            raise self._decode_error(exc, decoded) from exc
        if decoded == 0:
            raise NotVideoError(f"{self.shown}: no video frame could be decoded; the file is empty or damaged")

    def _close_blocking(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._stream = None  # its codec context holds the decoder's threads until it is freed (the soak test saw them)

    # -- helpers --------------------------------------------------------------------------------------

    def _target(self) -> tuple[str, dict[str, str], bool]:
        """What to hand to ``av.open``: the path or (resolved) URL, its options, and whether it is live."""
        options = dict(self._options)
        if self._scheme in ("rtsp", "rtsps"):
            options.setdefault("rtsp_transport", "tcp")
        if not self.is_network:
            path = self._path
            if not os.path.exists(path):
                raise InputError(f"no such file: {path}; check the path")
            if os.path.isdir(path):
                raise InputError(f"{path} is a folder, not a video file; give the path of a video file")
            return path, options, False
        if self._resolver is None:
            return self.spec, options, self._scheme in LIVE_SCHEMES
        media = self.resolved = self._resolver(self.spec)
        for key, value in media.ffmpeg_options().items():  # its headers, and a guard's proxy
            options.setdefault(key, value)
        return media.url, options, media.is_live

    def _open_error(self, exc: BaseException, elapsed: float) -> InputError:
        reason = _reason(exc)
        if not self.is_network:
            if isinstance(exc, PermissionError):
                return InputError(f"cannot read {self.shown}: permission denied; check the file's permissions")
            if isinstance(exc, FileNotFoundError):
                return InputError(f"no such file: {self.shown}; check the path")
            if isinstance(exc, av.InvalidDataError) and looks_like_container(self._path):
                return InputError(f"{self.shown} is truncated or damaged: FFmpeg cannot read it ({reason}); "
                                  "re-export or re-download the file")
            return NotVideoError(f"{self.shown} is not a video FFmpeg can read ({reason}); "
                                 "give an mp4, mkv, webm, avi or mov file")
        where = self._host or self.shown
        if isinstance(exc, (av.ExitError, TimeoutError)) or elapsed >= 0.9 * self._open_timeout:
            return SourceUnreachableError(f"cannot reach {where}: no answer within {self._open_timeout:g} s; "
                                          "check the URL and that the server is up")
        if isinstance(exc, (av.HTTPClientError, av.HTTPServerError)):
            return SourceUnreachableError(f"{where} refused {self.shown}: {reason}; check the URL")
        if isinstance(exc, av.InvalidDataError):
            return NotVideoError(f"{self.shown} did not return a video FFmpeg can read ({reason}); "
                                 "give a direct video URL or a page yt-dlp supports")
        return SourceUnreachableError(f"cannot reach {where}: {reason}; check the URL and that the server is up")

    def _decode_error(self, exc: BaseException | None, decoded: int) -> InputError:
        at = self.last_pts or 0.0
        reason = "the data ends mid-frame or is damaged" if exc is None else _reason(exc)
        if self.is_network and exc is not None and not isinstance(exc, av.InvalidDataError):
            return SourceUnreachableError(f"lost {self._host or self.shown} after {at:.2f} s of video: {reason}; "
                                          "check the server and try again")
        if decoded == 0:
            return NotVideoError(f"{self.shown}: no video frame could be decoded ({reason}); "
                                 "the file is damaged or not a video")
        return InputError(f"{self.shown} is truncated or damaged: decoding failed after {at:.2f} s "
                          f"({decoded} frames; {reason}); re-export or re-download it to analyse the rest")


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if container.duration is not None:
        return container.duration / av.time_base
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * Fraction(stream.time_base))
    return None


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words for an error, without the file name PyAV appends."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0]


def looks_like_container(path: str) -> bool:
    """True when the file starts like a video container (so an open failure means damage, not a non-video)."""
    try:
        with open(path, "rb") as f:
            head = f.read(192)
    except OSError:
        return False
    return (
        head[4:8] in _ISO_BMFF_BOXES
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or head[:4] == b"\x1aE\xdf\xa3"  # Matroska / WebM
        or head[:3] == b"FLV"
        or head[:4] == b"OggS"
        or head[:4] == b"\x00\x00\x01\xba"  # MPEG program stream
        or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47)  # MPEG transport stream
    )

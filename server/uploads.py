"""Receiving a job's request: a multipart form streamed to disk under a size cap, or a small JSON body.

Why streamed: an upload can be gigabytes. It goes chunk by chunk into a temp file in the job's own folder and
is refused (413) the moment it passes ``max_bytes``, whatever ``Content-Length`` claimed. The client's file
name is only ever shown, never used as a path: the file is saved as ``input.<known video extension>``.
"""

from __future__ import annotations

import asyncio
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import unquote

import av
import av.container
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from har_stream.errors import NotVideoError
from har_stream.sources import DIRECT_MEDIA_EXTENSIONS
from har_stream.sources.av_stream import looks_like_container

from .errors import BadRequestError, PayloadTooLargeError
from .json_body import read_json

FILE_FIELDS = ("video", "file")
MAX_FIELD_BYTES = 64 * 1024  # all text fields together (custom labels are the longest)
MAX_FIELDS = 32
CHUNK_BYTES = 256 * 1024
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and text fields around the file
PART_FILE = ".upload.part"

# What browsers play in a <video> element, by container: anything else is converted for the page's player.
BROWSER_CODECS = {"mp4": {"h264", "av1", "vp9"}, "webm": {"vp8", "vp9", "av1"}, "ogg": {"theora"}}


@dataclass(frozen=True)
class ReceivedUpload:
    path: Path  # the temp file in the job's folder
    filename: str  # the client's name, cleaned, for display
    size: int


@dataclass(frozen=True)
class ReceivedRequest:
    fields: dict[str, Any] = field(default_factory=dict)
    upload: ReceivedUpload | None = None


@dataclass(frozen=True)
class Probe:
    """What the upload check learnt: is it a video, and can a browser play it as it is."""

    readable: bool
    browser_playable: bool
    codec: str | None = None
    container: str | None = None  # "mp4", "webm" or "ogg" when a browser plays it as it is
    width: int = 0
    height: int = 0
    duration: float | None = None  # seconds, as the container's header says


@dataclass(frozen=True)
class InputLimits:
    """The largest video a job takes (``max_input_duration_s``, ``max_input_side``)."""

    max_duration_s: float
    max_side: int

    def check(self, found: Probe, shown: str) -> None:
        """413 for a video over a limit, before any analysis: a header claiming 60000×60000 pixels or ten years
        is refused on its word, as a real one of that size would be."""
        if max(found.width, found.height) > self.max_side:
            raise InputTooLargeError(
                f"{shown} is {found.width}×{found.height} pixels; this server analyses videos up to {self.max_side} "
                "pixels wide or tall (max_input_side, --max-input-side); scale it down first")
        if found.duration is not None and found.duration > self.max_duration_s:
            raise InputTooLargeError(
                f"{shown} lasts {found.duration:.0f} s; this server analyses videos up to {self.max_duration_s:g} s "
                "long (max_input_duration_s, --max-input-duration); cut it into parts first")


class InputTooLargeError(PayloadTooLargeError):
    """A video longer or larger than the server's limits (413), said before any analysis."""


async def receive(request: web.Request, folder: Path, *, max_bytes: int) -> ReceivedRequest:
    """The request's fields (and file, saved into ``folder``): multipart form, URL-encoded form or JSON object."""
    kind = request.content_type
    if kind == "application/json":  # 413 past the app's body limit; 400 when not JSON or nested too deeply
        body = await read_json(request, "send {\"url\": \"https://…\"} or a multipart form with a video file")
        if not isinstance(body, dict):
            raise BadRequestError("the JSON body must be an object such as {\"url\": \"https://…\"}")
        return ReceivedRequest(fields=body)
    if kind == "application/x-www-form-urlencoded":  # `curl -d url=…`: text fields only, small
        form = await request.post()
        return ReceivedRequest(fields={k: v for k, v in form.items() if isinstance(v, str)})
    if kind != "multipart/form-data":
        raise BadRequestError(f"send a multipart/form-data form with a `video` file (or a `url` field), or a JSON "
                              f"body with `url`; got Content-Type {kind or 'none'}")
    if request.content_length is not None and request.content_length > max_bytes + FORM_OVERHEAD_BYTES:
        raise _too_large(max_bytes)
    fields: dict[str, Any] = {}
    upload: ReceivedUpload | None = None
    text_bytes = 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                raise BadRequestError("nested or unnamed form parts are not supported; send flat form fields")
            if part.name in FILE_FIELDS:
                if upload is not None:
                    raise BadRequestError("send one video per job (the form has more than one file field)")
                upload = await _save_file(part, folder, max_bytes)
            else:
                if len(fields) >= MAX_FIELDS:
                    raise BadRequestError(f"the form has more than {MAX_FIELDS} text fields; a job needs a few")
                fields[part.name] = await _read_text(part)
                text_bytes += len(fields[part.name])
                if text_bytes > MAX_FIELD_BYTES:
                    raise BadRequestError(f"the form's text fields add up to more than {MAX_FIELD_BYTES // 1024} "
                                          "KiB; a job's options are a few hundred bytes")
    except (ValueError, HttpProcessingError) as err:  # aiohttp's words for a malformed multipart body
        reason = getattr(err, "message", None) or str(err)  # e.g. a NUL byte in a part's header
        raise BadRequestError(f"the multipart form is malformed ({str(reason).splitlines()[0][:200]})") from None
    return ReceivedRequest(fields=fields, upload=upload)


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the upload is larger than the server's limit of {max_bytes / 2**20:g} MiB; "
                                "cut the video or ask the operator to raise --max-upload-mb")


async def _read_text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(8192):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise BadRequestError(f"form field {part.name!r} is longer than {MAX_FIELD_BYTES // 1024} KiB")
    try:
        return data.decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise BadRequestError(f"form field {part.name!r} is not UTF-8 text") from None


async def _save_file(part: BodyPartReader, folder: Path, max_bytes: int) -> ReceivedUpload:
    path = folder / PART_FILE
    size = 0
    out: BinaryIO = await asyncio.to_thread(path.open, "wb")
    try:
        while chunk := await part.read_chunk(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            await asyncio.to_thread(out.write, chunk)
    finally:
        await asyncio.to_thread(out.close)
    if size == 0:
        raise BadRequestError("the uploaded file is empty; choose a video file")
    return ReceivedUpload(path, display_name(part.filename), size)


def display_name(filename: str | None) -> str:
    """The client's file name as text to show: its last path component, printable, at most 200 characters.
    Percent-escapes are decoded first (some clients, aiohttp's among them, quote the name that way)."""
    name = unquote(filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:200] or "upload"


def stored_name(filename: str) -> str:
    """The name an upload is kept under in its job folder: ``input`` plus a known video extension."""
    suffix = PurePosixPath(filename).suffix.lower()
    return f"input{suffix}" if suffix in DIRECT_MEDIA_EXTENSIONS and suffix != ".m3u8" else "input.video"


def probe(path: Path) -> Probe:
    """Open the file with FFmpeg (blocking). Not a container at all → unreadable; a damaged container is
    readable (its job fails later with the decoder's reason)."""
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
                raise NotVideoError(f"the upload has no video stream ({kinds}); choose a video file")
            stream = container.streams.video[0]
            if stream.codec_context is None:  # FFmpeg knows the codec but this build has no decoder for it
                raise NotVideoError("the upload's video codec cannot be decoded by this server's FFmpeg; convert it "
                                    "to H.264 (an mp4) first")
            codec = stream.codec_context.name
            formats = set(container.format.name.split(","))
            pix_fmt = stream.codec_context.pix_fmt or ""
            playable = next((fmt for fmt, codecs in BROWSER_CODECS.items() if fmt in formats and codec in codecs
                             and pix_fmt in ("yuv420p", "yuvj420p")), None)
            return Probe(True, playable is not None, codec, playable, *_size(container, stream))
    except av.FFmpegError as err:
        if looks_like_container(os.fspath(path)):
            return Probe(True, False)
        raise NotVideoError(f"the upload is not a video FFmpeg can read ({_first_line(err)}); choose an mp4, "
                            "webm, mkv, mov or avi file") from None


def probe_url(url: str, options: dict[str, str], timeout: float = 20.0) -> Probe | None:
    """What FFmpeg's header says of a URL's video (blocking), or None when it cannot be opened: the analysis
    that follows reports that with its own words."""
    try:
        with av.open(url, options=options, timeout=timeout) as container:
            if not container.streams.video or container.streams.video[0].codec_context is None:
                return None  # the analysis says why, in its own words
            stream = container.streams.video[0]
            return Probe(True, False, stream.codec_context.name, None, *_size(container, stream))
    except (av.FFmpegError, OSError):
        return None


def _size(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[int, int, float | None]:
    ctx = stream.codec_context
    duration = None
    if container.duration is not None:
        duration = container.duration / av.time_base
    elif stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    return int(ctx.width or 0), int(ctx.height or 0), duration


def _first_line(err: BaseException) -> str:
    return str(getattr(err, "strerror", None) or err).splitlines()[0]

"""Burn an offline result into its video: the current action in a box, and a timeline bar along the bottom.

The output is what a person can watch to check a result at a glance, so it re-decodes the input (file or URL)
and writes an H.264 mp4 that any browser plays. The overlay is rendered with Pillow once per change of label
(not per frame) and alpha-blended into each frame with numpy, so annotating costs little more than a
decode + encode. ``write_playable_video`` is the same encoder without the overlay: a copy that any browser
plays, for sources that are not (AVI, MPEG-4 Part 2, streams).
"""

from __future__ import annotations

import bisect
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw, ImageFont

from .errors import HarStreamError, InputError, NotVideoError
from .fileutil import publish
from .export import label_color
from .types import Segment, TimelineEntry

Progress = Callable[[int, int | None], None]

FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/System/Library/Fonts/Supplemental/Arial Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
)
OPEN_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 30.0
BOX_RGBA = (0, 0, 0, 160)
BAR_EMPTY_RGB = (40, 40, 40)
BAR_FUTURE_DIM = 0.4
CRF = 23
PRESET = "veryfast"

# AVColorSpace codes of frames → the matrix swscale should use for them.
_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_AVCOL_SPC_BT709, _AVCOL_SPC_SMPTE170M, _AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG, _UNSPECIFIED = 1, 6, 1, 2, 2

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def load_font(size: int) -> Font:
    """A bold TrueType font at ``size`` px if the system has one, else Pillow's built-in scalable font."""
    for path in FONT_CANDIDATES:
        if os.path.exists(path):
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    return ImageFont.load_default(size=size)


@dataclass(frozen=True, eq=False)
class _Patch:
    """A pre-rendered RGBA overlay, stored ready for ``dst = dst * (1 - a) + premultiplied``."""

    x: int
    y: int
    keep: np.ndarray  # (h, w, 1) float32, 1 - alpha
    premultiplied: np.ndarray  # (h, w, 3) float32, rgb * alpha

    @classmethod
    def from_image(cls, img: Image.Image, x: int, y: int) -> _Patch:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        return cls(x, y, 1.0 - alpha, rgba[..., :3] * alpha)

    def apply(self, frame: np.ndarray) -> None:
        h, w = self.keep.shape[:2]
        region = frame[self.y:self.y + h, self.x:self.x + w]
        blended = region * self.keep + self.premultiplied
        region[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _text_width(font: Font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(math.ceil(right - left))


def _fit_text(font: Font, text: str, max_w: int) -> str:
    """Cut ``text`` with '...' until it is at most ``max_w`` px wide in ``font``."""
    if _text_width(font, text) <= max_w:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits with the dots
        mid = (lo + hi + 1) // 2
        if _text_width(font, text[:mid].rstrip() + "...") <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "..."


class _OverlayPainter:
    """Renders the label box (per label change) and the timeline bar (once) for one video size."""

    def __init__(self, width: int, height: int, timeline: Sequence[TimelineEntry], total_s: float) -> None:
        self.width, self.height = width, height
        self.margin = max(4, round(height * 0.025))
        self.pad = max(3, round(height * 0.02))
        self.big_size = int(min(120, max(12, round(height * 0.07))))
        self.small_size = max(9, round(self.big_size * 0.55))
        self.small = load_font(self.small_size)
        self.bar_h = max(4, round(height / 90))
        self.total_s = max(total_s, 1e-6)
        self.bar, self.bar_dim = self._render_bar(timeline)

    def _render_bar(self, timeline: Sequence[TimelineEntry]) -> tuple[np.ndarray, np.ndarray]:
        bar = np.empty((self.bar_h, self.width, 3), dtype=np.uint8)
        bar[...] = BAR_EMPTY_RGB
        for entry in timeline:
            x0 = max(0, int(round(entry.start / self.total_s * self.width)))
            x1 = min(self.width, int(round(entry.end / self.total_s * self.width)))
            if x1 > x0:
                bar[:, x0:x1] = label_color(entry.label)
        return bar, (bar * BAR_FUTURE_DIM).astype(np.uint8)

    def draw_bar(self, frame: np.ndarray, t: float) -> None:
        """Played part in full colour, the rest dimmed, a white playhead at ``t``."""
        x = min(self.width, max(0, int(round(t / self.total_s * self.width))))
        rows = frame[self.height - self.bar_h:self.height]
        rows[:, :x] = self.bar[:, :x]
        rows[:, x:] = self.bar_dim[:, x:]
        head = max(1, self.bar_h // 3)
        rows[:, max(0, x - head // 2 - 1):min(self.width, x + (head + 1) // 2)] = 255

    def label_patch(self, entry: TimelineEntry | None, segment: Segment | None) -> _Patch | None:
        """The box: big white ``label  91%`` (the timeline's action) over the window's top-3 in small text.

        A window refined by CLIP is marked ``[clip]``. Returns None when there is nothing to show or no room.
        """
        if entry is None:
            return None
        stripe = max(3, self.pad // 2)
        max_text_w = self.width - 2 * self.margin - 2 * self.pad - stripe
        if max_text_w < 8:
            return None
        big_text, big = self._fit_big(f"{entry.label}  {entry.confidence * 100:.0f}%", max_text_w)
        lines: list[tuple[str, Font]] = [(big_text, big)]
        if segment is not None:
            parts = [f"{name} {p * 100:.0f}%" for name, p in segment.prediction.top5[:3]]
            small_text = " \u00b7 ".join(parts) or segment.prediction.label
            if segment.prediction.source == "clip":  # first, so that cutting a long line keeps it
                small_text = "[clip] " + small_text
            lines.append((_fit_text(self.small, small_text, max_text_w), self.small))

        gap = max(2, self.pad // 2)
        boxes = [font.getbbox(text) for text, font in lines]
        text_w = max(int(math.ceil(b[2])) for b in boxes)
        heights = [int(math.ceil(b[3] - b[1])) for b in boxes]
        box_w = min(self.width - 2 * self.margin, stripe + 2 * self.pad + text_w)
        box_h = min(self.height - 2 * self.margin - self.bar_h,
                    2 * self.pad + sum(heights) + gap * (len(lines) - 1))
        if box_h < 4:
            return None

        box = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(box)
        draw.rounded_rectangle((0, 0, box_w - 1, box_h - 1), radius=max(2, self.pad // 2), fill=BOX_RGBA)
        draw.rectangle((0, 0, stripe - 1, box_h - 1), fill=(*label_color(entry.label), 255))
        text_layer = Image.new("RGBA", box.size, (0, 0, 0, 0))
        tdraw = ImageDraw.Draw(text_layer)
        y = self.pad
        for (text, font), bb, h, colour in zip(lines, boxes, heights, ((255, 255, 255, 255), (215, 215, 215, 255)),
                                                strict=False):
            tdraw.text((stripe + self.pad, y - bb[1]), text, font=font, fill=colour)
            y += h + gap
        return _Patch.from_image(Image.alpha_composite(box, text_layer), self.margin, self.margin)

    def _fit_big(self, text: str, max_w: int) -> tuple[str, Font]:
        """Shrink the big font (down to the small size) before cutting the text, so labels stay whole."""
        size = self.big_size
        while True:
            font = load_font(size)
            if _text_width(font, text) <= max_w or size <= self.small_size:
                return _fit_text(font, text, max_w), font
            size = max(self.small_size, int(size * 0.85))


class _Lookup:
    """Which timeline entry and which window belong to a time ``t`` (both lists may be unsorted)."""

    def __init__(self, timeline: Sequence[TimelineEntry], segments: Sequence[Segment]) -> None:
        self.timeline = sorted(timeline, key=lambda e: e.start)
        self.starts = [e.start for e in self.timeline]
        self.segments = sorted(segments, key=lambda s: (s.start + s.end) / 2)
        self.mids = [(s.start + s.end) / 2 for s in self.segments]

    def entry(self, t: float) -> int:
        """Index of the last entry that started at or before ``t`` (held through gaps and past the end); -1."""
        return bisect.bisect_right(self.starts, t + 1e-6) - 1

    def segment(self, t: float) -> int:
        """Index of the window whose centre is nearest ``t``, if it covers ``t``; else -1."""
        i = bisect.bisect_left(self.mids, t)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self.mids)),
                   key=lambda j: abs(self.mids[j] - t), default=-1)
        if best >= 0 and self.segments[best].start - 1e-6 <= t <= self.segments[best].end + 1e-6:
            return best
        return -1


def _rate(stream: av.video.stream.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate).limit_denominator(1001)
    return Fraction(25)


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def write_annotated_video(
    source: str | Path,
    out_path: Path,
    segments: Sequence[Segment],
    timeline: Sequence[TimelineEntry],
    *,
    progress: Progress | None = None,
    options: Mapping[str, str] | None = None,
) -> Path:
    """Re-decode ``source`` and write ``out_path`` (H.264 mp4) with the result burned into every frame.

    Blocking (decode + encode): call it from a worker thread. Same fps as the input (written at a constant
    rate), same size rounded down to even (yuv420p needs it); audio and other streams are dropped. The label
    shown at a frame is the timeline entry that started last at or before that frame's time (held through
    gaps and to the end of the video); the small line under it is the top-3 of the window centred nearest it.
    ``progress(done, total)`` is called every few frames (``total`` is None when the input does not say);
    an exception raised from it aborts the job. The file appears only when complete: it is written to a temp
    file next to ``out_path`` and renamed; on failure the temp file is removed and ``InputError`` raised.
    ``options`` go to FFmpeg when opening ``source`` (e.g. HTTP headers).
    """
    return _encode_to(source, out_path, "annotating", lambda src, tmp: _annotate(
        src, tmp, segments, timeline, progress, options, overlay=True))


def write_playable_video(source: str | Path, out_path: Path, *, progress: Progress | None = None,
                         options: Mapping[str, str] | None = None) -> Path:
    """``source`` re-encoded as a plain H.264 mp4 (faststart, yuv420p): what a browser's player can seek in.

    Same contract as ``write_annotated_video`` (blocking, atomic, progress, errors), without the overlay."""
    return _encode_to(source, out_path, "converting", lambda src, tmp: _annotate(
        src, tmp, (), (), progress, options, overlay=False))


def _encode_to(source: str | Path, out_path: Path, doing: str, encode: Callable[[str, Path], None]) -> Path:
    """Run ``encode(src, tmp)`` into a temp file next to ``out_path``, then rename it into place."""
    out_path = Path(out_path)
    src = str(source)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.stem}.", suffix=".part.mp4")
        os.close(fd)
    except OSError as err:
        raise InputError(f"cannot write {out_path}: {err.strerror or err}; "
                         "check that the folder exists and is writable") from err
    tmp = Path(tmp_name)
    try:
        encode(src, tmp)
        publish(tmp, out_path)
    except HarStreamError:
        tmp.unlink(missing_ok=True)
        raise
    except (av.FFmpegError, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{doing} {src} failed: {err}; check the input plays and the output folder "
                         "has space") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


class _H264Writer:
    """libx264 into mp4 at a constant rate; RGB frames in, tagged with the input's colour matrix."""

    def __init__(self, path: Path, rate: Fraction, width: int, height: int, first: av.VideoFrame) -> None:
        self.rate = rate
        # decode with the input's own matrix (untagged: HD means BT.709); encode as BT.709 or BT.601 and say so
        self.src_matrix = _MATRIX.get(first.colorspace, 1 if height >= 720 else 5)
        self.matrix = 1 if self.src_matrix == 1 else 5
        self.to_yuv = VideoReformatter()
        self.count = 0
        self.container = av.open(str(path), "w", format="mp4", container_options={"movflags": "+faststart"})
        try:
            self.stream = self.container.add_stream("libx264", rate=rate,
                                                    options={"crf": str(CRF), "preset": PRESET})
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
            cc = self.stream.codec_context
            cc.colorspace = _AVCOL_SPC_BT709 if self.matrix == 1 else _AVCOL_SPC_SMPTE170M
            cc.color_range = _AVCOL_RANGE_MPEG
            if first.color_primaries != _UNSPECIFIED:
                cc.color_primaries = first.color_primaries
            if first.color_trc != _UNSPECIFIED:
                cc.color_trc = first.color_trc
        except BaseException:
            self.container.close()
            raise

    def write(self, rgb: np.ndarray) -> None:
        yuv = self.to_yuv.reformat(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuv420p",
                                   src_colorspace=self.matrix, dst_colorspace=self.matrix,
                                   src_color_range=_AVCOL_RANGE_JPEG, dst_color_range=_AVCOL_RANGE_MPEG)
        yuv.pts, yuv.time_base = self.count, 1 / self.rate
        self.container.mux(self.stream.encode(yuv))
        self.count += 1

    def finish(self) -> None:
        self.container.mux(self.stream.encode(None))

    def close(self) -> None:
        self.container.close()


def _annotate(src: str, tmp: Path, segments: Sequence[Segment], timeline: Sequence[TimelineEntry],
              progress: Progress | None, options: Mapping[str, str] | None, *, overlay: bool) -> None:
    try:
        container = av.open(src, options=dict(options or {}), timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"cannot open video {src}: {err}; check the path or URL") from err
    with container:
        if not container.streams.video:
            raise NotVideoError(f"{src} has no video stream; pass a video file or URL")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = _rate(stream)
        media_s = _duration_s(container, stream)
        total = stream.frames or (round(media_s * float(rate)) if media_s else None)
        every = max(1, (total or 2500) // 100)
        t0 = (float(stream.start_time * stream.time_base)
              if stream.start_time is not None and stream.time_base else None)
        bar_s = max([media_s or 0.0, *(e.end for e in timeline), *(s.end for s in segments)])
        lookup = _Lookup(timeline, segments)
        to_rgb = VideoReformatter()
        painter: _OverlayPainter | None = None
        writer: _H264Writer | None = None
        key: tuple[int, int] | None = None
        patch: _Patch | None = None
        try:
            for frame in container.decode(stream):
                if writer is None:  # size and colour tags are known for sure only now
                    w, h = frame.width - frame.width % 2, frame.height - frame.height % 2
                    if w < 2 or h < 2:
                        raise NotVideoError(f"{src} has {frame.width}x{frame.height} frames: too small to encode")
                    painter = _OverlayPainter(w, h, lookup.timeline, bar_s)
                    writer = _H264Writer(tmp, rate, w, h, frame)
                    t0 = (frame.time or 0.0) if t0 is None else t0
                assert painter is not None
                t = frame.time - t0 if frame.time is not None else writer.count / float(rate)
                rgb = to_rgb.reformat(frame, format="rgb24", src_colorspace=writer.src_matrix,
                                      src_color_range=frame.color_range or _AVCOL_RANGE_MPEG).to_ndarray()
                arr = np.ascontiguousarray(rgb[:painter.height, :painter.width])
                if overlay:
                    now = (lookup.entry(t), lookup.segment(t))
                    if now != key:
                        key = now
                        patch = painter.label_patch(lookup.timeline[now[0]] if now[0] >= 0 else None,
                                                    lookup.segments[now[1]] if now[1] >= 0 else None)
                    if patch is not None:
                        patch.apply(arr)
                    painter.draw_bar(arr, t)
                writer.write(arr)
                if progress is not None and writer.count % every == 0:
                    progress(writer.count, total)
            if writer is None:
                raise NotVideoError(f"no video frame could be decoded from {src}; check that it plays")
            writer.finish()
            if progress is not None and writer.count % every != 0:
                progress(writer.count, total)
        finally:
            if writer is not None:
                writer.close()

"""Annotated video writer: real PyAV encode/decode of synthetic and (when present) real clips."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import web

from har_stream.annotate import write_annotated_video
from har_stream.errors import InputError
from har_stream.export import label_color
from har_stream.types import Prediction, Segment, Source, TimelineEntry

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BASKETBALL = DATA / "videos" / "ucf101_Basketball__v_Basketball_g01_c01.avi"

GREY = 128
FPS = 16
# same confidence on purpose: the two boxes may differ only by the label text (and its colour stripe)
TIMELINE = (TimelineEntry("waving", 0.0, 2.0, 0.8), TimelineEntry("jumping jack", 2.0, 4.0, 0.8))
BOX = (slice(4, 22), slice(4, 60))  # inside the label box at 160x120 (margin 4 px, 12 px text)
CLEAR = (slice(50, 100), slice(0, 160))  # far from the box and the bar
BAR_ROW = 118  # the bar covers the last 4 rows


def _make_video(path: Path, *, width: int = 160, height: int = 120, frames: int = 64,
                codec: str = "libx264", pix_fmt: str = "yuv420p") -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        img = np.full((height, width, 3), GREY, dtype=np.uint8)
        for _ in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def _decode(path: Path) -> tuple[list[np.ndarray], Fraction, tuple[int, int]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(s)]
        return frames, s.average_rate, (s.width, s.height)


@pytest.fixture(scope="module")
def grey_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_video(tmp_path_factory.mktemp("src") / "grey.mp4")


@pytest.fixture(scope="module")
def annotated(grey_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    calls: list[tuple[int, int | None]] = []
    out = tmp_path_factory.mktemp("out") / "annotated.mp4"
    assert write_annotated_video(grey_mp4, out, (), TIMELINE, progress=lambda d, t: calls.append((d, t))) == out
    return out, calls


def test_output_keeps_frames_fps_and_size(annotated: tuple[Path, list]) -> None:
    out, calls = annotated
    frames, rate, size = _decode(out)
    assert abs(len(frames) - 64) <= 1
    assert rate == FPS
    assert size == (160, 120)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].format.name == "yuv420p"
        assert not c.streams.audio
    assert sorted(p.name for p in out.parent.iterdir()) == ["annotated.mp4"]  # temp file renamed away
    assert calls and calls[-1] == (64, 64)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_overlay_drawn_in_box_and_nowhere_else(annotated: tuple[Path, list]) -> None:
    frames, _, _ = _decode(annotated[0])
    for frame in (frames[8], frames[40]):
        box = frame[BOX]
        assert np.abs(box - GREY).mean() > 30  # dark box over grey
        assert (box.min(axis=2) > 200).sum() > 20  # white text pixels inside it
        assert np.abs(frame[CLEAR] - GREY).mean() < 3  # the picture is untouched elsewhere
        assert np.abs(frame[40:100, 100:160] - GREY).max() < 12


def test_each_label_renders_its_own_text(annotated: tuple[Path, list]) -> None:
    frames, _, _ = _decode(annotated[0])
    first, later_first, second = frames[8], frames[24], frames[40]  # t = 0.5 s, 1.5 s, 2.5 s
    text = (BOX[0], slice(10, 150))  # right of the label's colour stripe
    assert np.abs(first[text] - later_first[text]).mean() < 3  # same entry: same overlay
    assert np.abs(first[text] - second[text]).mean() > 8  # "waving" vs "jumping jack"


def test_bar_coloured_per_label_and_dimmed_ahead(annotated: tuple[Path, list]) -> None:
    frames, _, _ = _decode(annotated[0])
    waving, jumping = np.array(label_color("waving")), np.array(label_color("jumping jack"))
    late = frames[56]  # t = 3.5 s: both entries already played
    assert np.abs(late[BAR_ROW, 20] - waving).max() < 40
    assert np.abs(late[BAR_ROW, 100] - jumping).max() < 40
    early = frames[8]  # t = 0.5 s: the second entry is still ahead, drawn dimmed
    assert np.abs(early[BAR_ROW, 130] - jumping * 0.4).max() < 40
    assert np.abs(early[BAR_ROW, 130] - jumping).max() > 50


def test_window_line_uses_segments(grey_mp4: Path, tmp_path: Path) -> None:
    def seg(start: float, label: str, source: Source) -> Segment:
        return Segment(start, start + 1.0, Prediction(label, 0.8, ((label, 0.8), ("other", 0.1)), source))

    segments = [seg(0.0, "waving", "model"), seg(1.0, "waving", "clip"), seg(2.0, "jumping jack", "model")]
    with_segments, without = tmp_path / "with.mp4", tmp_path / "without.mp4"
    write_annotated_video(grey_mp4, with_segments, segments, TIMELINE)
    write_annotated_video(grey_mp4, without, (), TIMELINE)
    a, _, _ = _decode(with_segments)
    b, _, _ = _decode(without)
    lower_box = (slice(22, 34), slice(4, 156))  # the small second line under the label
    assert np.abs(a[8][lower_box] - b[8][lower_box]).mean() > 8
    assert np.abs(a[8][lower_box] - a[24][lower_box]).mean() > 3  # "[clip]" marks the refined window


def test_odd_size_is_rounded_down_to_even(tmp_path: Path) -> None:
    src = _make_video(tmp_path / "odd.avi", width=161, height=121, frames=8, codec="rawvideo", pix_fmt="rgb24")
    out = write_annotated_video(src, tmp_path / "odd.mp4", (), TIMELINE)
    frames, rate, size = _decode(out)
    assert size == (160, 120) and rate == FPS and len(frames) == 8


@pytest.mark.parametrize("name", ["missing.mp4", "not_a_video.mp4"])
def test_bad_input_raises_input_error_and_leaves_nothing(tmp_path: Path, name: str) -> None:
    src_dir, out_dir = tmp_path / "src", tmp_path / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    if name == "not_a_video.mp4":
        (src_dir / name).write_text("this is text, not a video\n" * 50)
    with pytest.raises(InputError, match=name):
        write_annotated_video(src_dir / name, out_dir / "x.mp4", (), TIMELINE)
    assert list(out_dir.iterdir()) == []


def test_missing_output_folder_raises_input_error(grey_mp4: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder"):
        write_annotated_video(grey_mp4, tmp_path / "nope" / "x.mp4", (), TIMELINE)


def test_progress_exception_aborts_and_cleans_up(grey_mp4: Path, tmp_path: Path) -> None:
    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int | None) -> None:
        if done >= 10:
            raise Cancelled

    with pytest.raises(Cancelled):
        write_annotated_video(grey_mp4, tmp_path / "x.mp4", (), TIMELINE, progress=cancel)
    assert list(tmp_path.iterdir()) == []


async def test_url_input_in_a_worker_thread(grey_mp4: Path, tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_static("/media", grey_mp4.parent)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/media/{grey_mp4.name}"
        out = await asyncio.to_thread(write_annotated_video, url, tmp_path / "from_url.mp4", (), TIMELINE)
        frames, rate, size = _decode(out)
        assert abs(len(frames) - 64) <= 1 and rate == FPS and size == (160, 120)
        with pytest.raises(InputError, match="missing.mp4"):
            await asyncio.to_thread(write_annotated_video, url.replace(grey_mp4.name, "missing.mp4"),
                                    tmp_path / "x.mp4", (), TIMELINE)
    finally:
        await runner.cleanup()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from_url.mp4"]


@pytest.mark.skipif(not BASKETBALL.exists(), reason=f"real test media not found at {BASKETBALL}")
def test_real_clip_keeps_timing_and_picture(tmp_path: Path) -> None:
    timeline = (TimelineEntry("Basketball", 0.0, 2.5, 0.88), TimelineEntry("Basketball Dunk", 2.5, 4.7, 0.51))
    out = write_annotated_video(BASKETBALL, tmp_path / "basketball.mp4", (), timeline)
    src, src_rate, src_size = _decode(BASKETBALL)
    got, rate, size = _decode(out)
    assert len(got) == len(src) == 141
    assert rate == src_rate == Fraction(30000, 1001)
    assert size == src_size == (320, 240)
    for i in (5, 70, 140):  # same frame, same place: only re-encoding loss outside the overlay
        assert np.abs(got[i][100:220, 40:280] - src[i][100:220, 40:280]).mean() < 8
        assert np.abs(got[i][6:30, 6:120] - src[i][6:30, 6:120]).mean() > 20

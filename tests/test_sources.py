"""Frame sources on real media: files made here, the shared real clips, and a real local HTTP server.

URLs are served by ``tests.helpers.http_server.StaticServer`` (Range requests); pages are resolved by the
real yt-dlp and streams decoded by the real PyAV. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import csv
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from har_stream.errors import ConfigError, InputError, NotVideoError, SourceUnreachableError
from har_stream.sources import AvSource, is_direct_media_url, open_source, resolve_url_async
from har_stream.sources.resolve import clean_message
from har_stream.types import DecodedFrame, SourceInfo
from tests.helpers.http_server import StaticServer
from tests.helpers.media import (
    make_hls,
    make_mp4,
    make_page_without_video,
    make_text_file,
    make_video_page,
    truncated_copy,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FPS, FRAMES = 30, 90
FAST = 3.0  # seconds: every error must be reported at least this quickly


@dataclass(frozen=True)
class Media:
    root: Path
    clip: Path  # 90 frames, 30 fps, 160x120, index at the end (ffmpeg's default layout)
    web: Path  # the same frames with the index first (+faststart) and an audio track
    long: Path  # 300 frames, for stopping midway


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    root = tmp_path_factory.mktemp("media")
    clip = make_mp4(root / "clip.mp4", frames=FRAMES, fps=FPS)
    web = make_mp4(root / "web.mp4", frames=FRAMES, fps=FPS, faststart=True, audio=True)
    long = make_mp4(root / "long.mp4", frames=300, fps=FPS)
    make_hls(web, root / "hls")
    make_video_page(root / "page.html", "web.mp4", title="Clip page")
    make_page_without_video(root / "empty.html")
    return Media(root, clip, web, long)


@pytest.fixture(scope="module")
def server(media: Media) -> Iterator[StaticServer]:
    with StaticServer(media.root) as srv:
        yield srv


async def _read(spec: str | Path, **kw: object) -> tuple[SourceInfo, list[DecodedFrame], object]:
    async with open_source(spec, **kw) as source:  # type: ignore[arg-type]
        info = await source.open()
        frames = [f async for f in source.frames()]
    return info, frames, source.stats


def _decode_thread_alive(name_part: str) -> bool:
    return any(t.name.startswith("har-decode-") and name_part in t.name for t in threading.enumerate())


# -- local files -------------------------------------------------------------------------------------------


async def test_file_info_frames_and_timestamps(media: Media) -> None:
    info, frames, stats = await _read(media.clip)
    assert info == SourceInfo(url=str(media.clip), width=160, height=120, fps=30.0, duration=3.0,
                              frame_count=90, live=False, codec="h264")
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [f.pts for f in frames] == pytest.approx([i / FPS for i in range(FRAMES)])
    assert frames[0].pts == 0.0
    assert all(f.image is None for f in frames)  # no prepare given
    assert all(isinstance(f.frame, av.VideoFrame) and f.frame.width == 160 for f in frames)
    arrivals = [f.arrival for f in frames]
    assert arrivals == sorted(arrivals)
    assert (stats.frames_decoded, stats.frames_sampled, stats.dropped) == (90, 90, 0)
    assert not _decode_thread_alive("clip.mp4")


async def test_file_sampled_to_15_fps(media: Media) -> None:
    _, frames, stats = await _read(media.clip, sample_fps=15)
    assert [f.index for f in frames] == list(range(0, FRAMES, 2))
    assert [f.pts for f in frames] == pytest.approx([i / 15 for i in range(45)])
    assert (stats.frames_decoded, stats.frames_sampled) == (90, 45)


async def test_29_97_fps_file_sampled_to_15(tmp_path: Path) -> None:
    clip = make_mp4(tmp_path / "ntsc.mp4", frames=120, fps=30000 / 1001)
    info, frames, _ = await _read(clip, sample_fps=15)
    assert info.fps == pytest.approx(29.97, abs=0.001)
    # torchvision's VideoClips keeps source frame floor(j * 29.97 / 15) for slot j: 0, 1, 3, 5, ..., 117 (60
    # frames); the live sampler keeps the same and also fills the last partial slot with frame 119.
    assert [f.index for f in frames] == [0, *range(1, 120, 2)]
    assert frames[-1].pts == pytest.approx(119 * 1001 / 30000)


async def test_prepare_runs_in_the_decode_thread_only_for_kept_frames(media: Media) -> None:
    threads: list[str] = []

    def prepare(frame: av.VideoFrame) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return frame.to_ndarray(width=32, height=24, format="rgb24")

    _, frames, stats = await _read(media.clip, sample_fps=10, prepare=prepare)
    assert len(frames) == len(threads) == stats.frames_sampled == 30
    loop_thread = threading.current_thread().name
    assert set(threads) == {"har-decode-clip.mp4"} and loop_thread not in threads
    assert all(f.image is not None and f.image.shape == (24, 32, 3) and f.image.dtype == np.uint8
               for f in frames)


async def test_close_mid_stream_stops_and_joins_the_decode_thread(media: Media) -> None:
    source = AvSource(media.long, queue_size=2)
    await source.open()
    taken = 0
    async for _ in source.frames():
        taken += 1
        if taken == 3:
            break  # the consumer stops reading; the decoder is blocked on the full queue
    assert _decode_thread_alive("long.mp4")
    started = time.monotonic()
    await source.close()
    assert time.monotonic() - started < 1.0
    assert not _decode_thread_alive("long.mp4")
    assert source.stats.frames_decoded < 10  # it stopped instead of decoding all 300 frames


async def test_drop_oldest_keeps_the_newest_frames_and_counts_drops(media: Media) -> None:
    source = AvSource(media.clip, policy="drop_oldest", queue_size=4)
    await source.open()
    deadline = time.monotonic() + 5
    while _decode_thread_alive("clip.mp4"):  # nobody reads until the decoder has finished
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    frames = [f async for f in source.frames()]
    await source.close()
    assert [f.index for f in frames] == [86, 87, 88, 89]
    assert source.stats.dropped == 86


async def test_file_url(media: Media) -> None:
    info, frames, _ = await _read(media.clip.as_uri())
    assert len(frames) == FRAMES and info.url == media.clip.as_uri()


async def test_audio_track_is_ignored(media: Media) -> None:
    info, frames, _ = await _read(media.web)
    assert len(frames) == FRAMES and info.frame_count == FRAMES


def _labels() -> list[dict[str, str]]:
    labels = DATA / "labels.csv"
    if not labels.is_file():
        return []
    with labels.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not (DATA / "videos").is_dir(), reason=f"real clips not present: {DATA / 'videos'}")
@pytest.mark.parametrize("row", _labels(), ids=lambda r: Path(r["file"]).stem)
async def test_real_footage_decodes_fully(row: dict[str, str]) -> None:
    info, frames, stats = await _read(DATA / row["file"])
    assert len(frames) == stats.frames_decoded == int(row["frames_decoded"])
    assert info.frame_count == int(row["frames_decoded"])
    assert info.duration == pytest.approx(float(row["duration_s"]), abs=0.01)
    assert info.fps == pytest.approx(float(row["fps"]), abs=0.01)
    assert (info.width, info.height, info.codec) == (int(row["width"]), int(row["height"]), row["codec"])
    assert frames[0].pts == 0.0
    assert frames[-1].pts + 1 / info.fps == pytest.approx(info.duration, abs=0.02)


# -- URLs over a real local HTTP server ---------------------------------------------------------------------


async def test_direct_mp4_over_http_streams_with_range_requests(media: Media, server: StaticServer) -> None:
    _, local, _ = await _read(media.web)
    before = len(server.requests)
    info, frames, _ = await _read(server.url("web.mp4"))
    assert len(frames) == len(local) == FRAMES
    assert (frames[0].pts, frames[-1].pts) == pytest.approx((local[0].pts, local[-1].pts))
    assert info.duration == 3.0 and not info.live
    ranges = [r.range for r in server.requests[before:] if r.path == "/web.mp4"]
    assert ranges and all(r and r.startswith("bytes=") for r in ranges)


async def test_direct_mp4_with_index_at_end_over_http(media: Media, server: StaticServer) -> None:
    _, frames, _ = await _read(server.url("clip.mp4"))
    assert len(frames) == FRAMES


async def test_hls_playlist(media: Media, server: StaticServer) -> None:
    info, frames, _ = await _read(server.url("hls/index.m3u8"))
    assert len(frames) == FRAMES
    assert frames[0].pts == 0.0  # HLS segments start at 1.4 s of MPEG-TS time; pts counts from the first frame
    assert frames[-1].pts == pytest.approx((FRAMES - 1) / FPS)
    assert info.duration == pytest.approx(3.0, abs=0.05) and not info.live


async def test_html_page_with_video_is_resolved_by_yt_dlp(media: Media, server: StaticServer) -> None:
    url = server.url("page.html")
    source = open_source(url)
    async with source:
        info = await source.open()
        frames = [f async for f in source.frames()]
    assert isinstance(source, AvSource) and source.resolved is not None
    assert source.resolved.url == server.url("web.mp4")
    assert (source.resolved.title or "").startswith("Clip page")  # yt-dlp numbers a page's videos: "(1)"
    assert source.resolved.http_headers.get("Referer") == url
    assert info.url == url
    assert len(frames) == FRAMES
    assert frames[-1].pts == pytest.approx((FRAMES - 1) / FPS)


async def test_direct_media_urls_skip_yt_dlp(server: StaticServer) -> None:
    assert is_direct_media_url(server.url("web.mp4")) and is_direct_media_url(server.url("hls/index.m3u8"))
    assert not is_direct_media_url(server.url("page.html"))
    source = open_source(server.url("web.mp4"))
    async with source:
        await source.open()
    assert isinstance(source, AvSource) and source.resolved is None


async def test_resolve_url_handles_mp4_hls_and_page(server: StaticServer) -> None:
    mp4 = await resolve_url_async(server.url("web.mp4"), timeout=5)
    hls = await resolve_url_async(server.url("hls/index.m3u8"), timeout=5)
    page = await resolve_url_async(server.url("page.html"), timeout=5)
    assert mp4.url == page.url == server.url("web.mp4")
    assert hls.url == server.url("hls/index.m3u8")
    assert not (mp4.is_live or hls.is_live or page.is_live)
    assert "User-Agent" in page.http_headers


# -- errors: the right class, a clear one-line message, quickly ----------------------------------------------


async def _fails(spec: str | Path, error: type[Exception], *patterns: str) -> str:
    started = time.monotonic()
    with pytest.raises(error) as caught:
        await _read(spec, open_timeout=2, read_timeout=2)
    assert time.monotonic() - started < FAST
    message = str(caught.value)
    assert "\n" not in message and "ERROR:" not in message and "\x1b" not in message
    for pattern in patterns:
        assert pattern in message, message
    return message


async def test_missing_file(tmp_path: Path) -> None:
    await _fails(tmp_path / "nope.mp4", InputError, "no such file", "nope.mp4")
    with pytest.raises(InputError) as caught:
        await _read(tmp_path / "nope.mp4")
    assert type(caught.value) is InputError


async def test_text_file_named_mp4(tmp_path: Path) -> None:
    await _fails(make_text_file(tmp_path / "notes.mp4"), NotVideoError, "notes.mp4", "not a video")


async def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    audio = tmp_path / "tone.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    str(audio)], check=True, timeout=30)
    await _fails(audio, NotVideoError, "no video stream", "audio")


async def test_truncated_mp4_without_its_index(media: Media, tmp_path: Path) -> None:
    cut = truncated_copy(media.clip, tmp_path / "cut.mp4")  # the index (moov) was in the lost half
    with pytest.raises(InputError, match="truncated or damaged") as caught:
        await _read(cut)
    assert type(caught.value) is InputError  # damaged, not "not a video"


@pytest.mark.parametrize("where", ["file", "http"])
async def test_truncated_mp4_yields_decodable_frames_then_reports(
    media: Media, server: StaticServer, where: str
) -> None:
    cut = truncated_copy(media.web, media.root / "web_cut.mp4")
    spec = cut if where == "file" else server.url("web_cut.mp4")
    source = open_source(spec)
    frames: list[DecodedFrame] = []
    with pytest.raises(InputError, match=r"truncated or damaged: decoding failed after \d+\.\d\d s") as caught:
        async with source:
            async for frame in source.frames():
                frames.append(frame)
    assert 10 < len(frames) < FRAMES
    assert f"after {frames[-1].pts:.2f} s ({len(frames)} frames" in str(caught.value)
    assert [f.index for f in frames] == list(range(len(frames)))


async def test_url_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await _fails(f"http://127.0.0.1:{port}/clip.mp4", SourceUnreachableError, f"127.0.0.1:{port}", "refused")
    await _fails(f"http://127.0.0.1:{port}/watch?v=1", SourceUnreachableError, "cannot resolve", "refused")


async def test_http_404(server: StaticServer) -> None:
    await _fails(server.url("missing.mp4"), SourceUnreachableError, "404", server.host)
    await _fails(server.url("missing.html"), SourceUnreachableError, "cannot resolve", "404")


async def test_page_yt_dlp_cannot_resolve(server: StaticServer) -> None:
    await _fails(server.url("empty.html"), SourceUnreachableError, "cannot resolve", "Unsupported URL")


async def test_silent_server_times_out() -> None:
    with socket.socket() as sock:  # accepts connections, never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        port = sock.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(SourceUnreachableError, match=f"cannot reach 127.0.0.1:{port}: no answer within 1 s"):
            await _read(f"http://127.0.0.1:{port}/clip.mp4", open_timeout=1, read_timeout=1)
        assert time.monotonic() - started < 2.5


async def test_cancelled_open_then_close_ends_the_thread() -> None:
    with socket.socket() as sock:  # accepts connections, never answers: open() hangs until its timeout
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        source = AvSource(f"http://127.0.0.1:{sock.getsockname()[1]}/hang.mp4", open_timeout=1, read_timeout=1)
        opening = asyncio.create_task(source.open())
        await asyncio.sleep(0.1)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        await source.close()
        assert not _decode_thread_alive("127.0.0.1")


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="queue policy"):
        AvSource("clip.mp4", policy="newest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least 1"):
        AvSource("clip.mp4", queue_size=0)
    with pytest.raises(ConfigError, match="positive"):
        AvSource("clip.mp4", sample_fps=0)


def test_unsupported_scheme() -> None:
    with pytest.raises(InputError, match="unsupported URL scheme 'gopher'"):
        open_source("gopher://example.org/clip.mp4")


def test_clean_message_makes_one_plain_line() -> None:
    raw = "\x1b[0;31mERROR:\x1b[0m [generic] page: Unable to download webpage:\n  HTTP Error 404: Not Found"
    assert clean_message(raw) == "[generic] page: Unable to download webpage: HTTP Error 404: Not Found"

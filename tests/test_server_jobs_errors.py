"""Bad input to the jobs API: each gets a clear status and message, leaves no file behind, and the server keeps
serving everyone else."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from har_stream.synthetic import write_motion_clip
from tests.helpers.clips import CHANGE_SCRIPT, check_labels_and_boundary
from tests.helpers.http_server import StaticServer
from tests.helpers.jobs import finished, job_files, jobs_client, jobs_config, submit, upload
from tests.helpers.media import make_mp4, make_page_without_video, make_text_file, truncated_copy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


async def error_of(response: aiohttp.ClientResponse) -> tuple[int, str]:
    body = await response.json()
    assert set(body) == {"error"} and "Traceback" not in body["error"], body
    return response.status, body["error"]


async def test_uploads_that_are_not_videos_are_refused_and_nothing_is_kept(
        tiny_checkpoint: Path, change_clip: Path, tmp_path: Path) -> None:
    config = jobs_config(tiny_checkpoint, tmp_path)
    async with jobs_client(config) as client:
        status, error = await error_of(await upload(client, make_text_file(tmp_path / "notes.mp4")))
        assert status == 415 and "not a video" in error
        empty = tmp_path / "empty.mp4"
        empty.write_bytes(b"")
        status, error = await error_of(await upload(client, empty))
        assert status == 400 and "empty" in error
        assert job_files(config) == [] and list((config.data_path / "jobs").iterdir()) == []

        # path tricks in the file name: shown cleaned, stored as input.mp4 in the job's own folder
        job = await submit(client, change_clip, filename="../../../../tmp/evil.mp4", annotate="false")
        assert job["source"]["name"] == "evil.mp4"
        assert (await finished(client, job["id"]))["state"] == "done"
        assert "input.mp4" in {Path(p).name for p in job_files(config)}
        assert all(p.startswith(job["id"] + "/") for p in job_files(config))
        assert not Path("/tmp/evil.mp4").exists()


async def test_damaged_videos_fail_their_job_with_the_decoders_reason(
        tiny_checkpoint: Path, change_clip: Path, tmp_path: Path) -> None:
    whole = make_mp4(tmp_path / "moov_at_end.mp4", frames=60, fps=15.0)
    cut_header = truncated_copy(whole, tmp_path / "cut.mp4", keep=0.6)  # its index (moov) was at the end
    cut_frames = truncated_copy(change_clip, tmp_path / "cut_frames.mp4", keep=0.5)
    config = jobs_config(tiny_checkpoint, tmp_path)
    async with jobs_client(config) as client:
        for clip in (cut_header, cut_frames):
            job = await finished(client, (await submit(client, clip))["id"])
            assert job["state"] == "failed" and "truncated or damaged" in job["error"], job["error"]
            assert job["error"].startswith(clip.name) and str(config.data_path) not in job["error"]
            assert "result" not in job and job["links"]["media"] is None
            assert job_files(config) == []  # a failed job keeps no files
            await client.delete(f"/api/jobs/{job['id']}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_urls_that_cannot_be_fetched_fail_with_a_reason_and_private_ones_are_refused(
        tiny_checkpoint: Path, change_clip: Path, tmp_path: Path, http_server: StaticServer) -> None:
    make_page_without_video(http_server.root / "empty.html")
    (http_server.root / "clip.mp4").write_bytes(change_clip.read_bytes())
    async with jobs_client(jobs_config(tiny_checkpoint, tmp_path / "a")) as client:  # the default: refused
        for url in (http_server.url("clip.mp4"), "http://localhost:8080/x.mp4", "http://10.1.2.3/x.mp4",
                    "http://[::1]/x.mp4", "http://169.254.169.254/latest/meta-data/",
                    "http://[64:ff9b::a00:1]/x.mp4", "http://[2002:a00:1::]/x.mp4", "http://2130706433/x.mp4",
                    "http://user:secret@127.0.0.1/x.mp4"):
            status, error = await error_of(await client.post("/api/jobs", json={"url": url}))
            assert status == 400 and "refusing" in error and "--allow-private-urls" in error, error
            assert "secret" not in error
        for url, why in (("ftp://example.com/x.mp4", "http"), ("http://", "host"), ("", "no video"), ("  ", "url is empty"),
                         ("http://example.com:99999/", "invalid port")):
            status, error = await error_of(await client.post("/api/jobs", json={"url": url}))
            assert status == 400 and why in error, error

    config = jobs_config(tiny_checkpoint, tmp_path / "b", allow_private_urls=True)
    async with jobs_client(config) as client:
        dead = await submit_url(client, f"http://127.0.0.1:{closed_port()}/clip.mp4")
        page = await submit_url(client, http_server.url("empty.html"))
        missing = await submit_url(client, http_server.url("gone.mp4"))
        for job_id, reason in ((dead, "cannot reach"), (page, "cannot resolve"), (missing, "404")):
            job = await finished(client, job_id)
            assert job["state"] == "failed" and reason in job["error"], job["error"]
        good = await finished(client, await submit_url(client, http_server.url("clip.mp4"), annotate=False))
        check_labels_and_boundary(good["result"], stride=4)  # the server kept serving
        assert job_files(config) == sorted(f"{good['id']}/{n}" for n in ("playable.mp4", "result.csv",
                                                                         "result.json"))


async def submit_url(client: aiohttp.ClientSession, url: str, **options: object) -> str:
    response = await client.post("/api/jobs", json={"url": url, **options})
    body = await response.json()
    assert response.status == 202, body
    return str(body["id"])


async def test_an_upload_over_the_limit_is_refused_while_it_streams(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = jobs_config(tiny_checkpoint, tmp_path, max_upload_mb=0.25)
    sent = 0
    chunk = b"\0" * 65536

    async def endless() -> AsyncIterator[bytes]:  # chunked: the server cannot know the size up front
        nonlocal sent
        yield (b"--B\r\nContent-Disposition: form-data; name=\"video\"; filename=\"big.mp4\"\r\n"
               b"Content-Type: video/mp4\r\n\r\n")
        for _ in range(2000):  # 125 MiB if nobody stops it
            sent += len(chunk)
            yield chunk
            await asyncio.sleep(0)

    async with jobs_client(config) as client:
        try:
            response = await client.post("/api/jobs", data=endless(),
                                         headers={"Content-Type": "multipart/form-data; boundary=B"})
            status, error = await error_of(response)
            assert status == 413 and "0.25 MiB" in error
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            pass  # the server may close before the client reads the answer; what matters is below
        assert sent < 20 * 2**20, f"the client sent {sent} bytes before being stopped"
        # a declared size over the limit is refused before any of the body is read
        status, error = await error_of(await client.post(
            "/api/jobs", data=b"x" * (2 * 2**20), headers={"Content-Type": "multipart/form-data; boundary=B"}))
        assert status == 413 and "larger than" in error
        assert job_files(config) == [] and list((config.data_path / "jobs").iterdir()) == []
        assert (await client.get("/api/health")).status == 200


async def test_bad_requests_and_a_full_queue_get_clear_errors(
        tiny_checkpoint: Path, change_clip: Path, tmp_path: Path) -> None:
    long_clip = write_motion_clip(tmp_path / "long.mp4", CHANGE_SCRIPT * 12, seed=3, speed=0.4, start=(0.75, 0.3))
    config = jobs_config(tiny_checkpoint, tmp_path, max_queued_jobs=1)
    async with jobs_client(config) as client:
        cases = [
            (await upload(client, change_clip, stride="0"), 400, "stride must be between"),
            (await upload(client, change_clip, stride="abc"), 400, "stride must be an integer"),
            (await upload(client, change_clip, clip_threshold="2"), 400, "clip_threshold"),
            (await upload(client, change_clip, model="no-such-model"), 400, "unknown model"),
            (await upload(client, change_clip, labels="nope"), 400, "unknown label set"),
            (await upload(client, change_clip, colour="red"), 400, "unknown field(s) colour"),
            (await upload(client, change_clip, url="http://example.com/x.mp4"), 400, "not both"),
            (await client.post("/api/jobs", json={"stride": 4}), 400, "no video"),
            (await client.post("/api/jobs", data=b'{"url": "https://example.com/x.mp4", "stride": 1e999}',
                               headers={"Content-Type": "application/json"}), 400, "stride must be an integer"),
            (await client.post("/api/jobs", data=aiohttp.FormData([(f"f{i}", "x" * 100) for i in range(40)],
                                                                   default_to_multipart=True)),
             400, "more than 32 text fields"),
            (await client.post("/api/jobs", data=b"{not json", headers={"Content-Type": "application/json"}),
             400, "not valid JSON"),
            (await client.post("/api/jobs", data=b"abc", headers={"Content-Type": "text/plain"}), 400,
             "multipart/form-data"),
            (await client.get("/api/jobs/ffffffffffff"), 404, "no job"),
        ]
        for response, status, words in cases:
            got, error = await error_of(response)
            assert (got, words in error) == (status, True), (got, error)
        assert job_files(config) == []

        first = await submit(client, long_clip, annotate="false")
        not_yet = await client.get(f"/api/jobs/{first['id']}/annotated.mp4")
        assert (await error_of(not_yet))[0] == 404
        assert (await error_of(await client.get(f"/api/jobs/{first['id']}/secrets.txt")))[0] == 404
        async with client.ws_connect(f"/api/jobs/{first['id']}/ws") as ws:  # wait until it left the queue
            while (await ws.receive_json(timeout=60))["state"] == "queued":
                pass
        second = await submit(client, long_clip, annotate="false")
        status, error = await error_of(await upload(client, change_clip))
        assert status == 429 and "already waiting" in error
        for job in (first, second):
            await client.delete(f"/api/jobs/{job['id']}")
        assert (await client.get("/api/health")).status == 200


async def test_a_predict_client_that_hangs_up_cancels_its_job(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The real server (``handler_cancellation``): /predict's job must not run on for nobody. One runner, busy
    with a long job, so the /predict job is still queued when its client gives up."""
    from tests.helpers.webrtc_client import live_server

    long_clip = write_motion_clip(tmp_path / "long.mp4", CHANGE_SCRIPT * 30, seed=3, speed=0.4, start=(0.75, 0.3))
    config = jobs_config(tiny_checkpoint, tmp_path, job_concurrency=1)
    async with live_server(config) as server:
        form = aiohttp.FormData()
        form.add_field("video", long_clip.read_bytes(), filename="busy.mp4")
        status, busy = await server.post("/api/jobs", data=form)
        assert status == 202, busy
        form = aiohttp.FormData()
        form.add_field("video", long_clip.read_bytes(), filename="impatient.mp4")
        with pytest.raises(TimeoutError):
            async with server.session.post(server.url + "/predict", data=form,
                                           timeout=aiohttp.ClientTimeout(total=1.0)) as response:
                await response.read()
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            jobs = {j["source"]["name"]: j for j in (await server.get("/api/jobs"))[1]["jobs"]}
            if jobs["impatient.mp4"]["state"] == "cancelled" or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert jobs["impatient.mp4"]["state"] == "cancelled", jobs["impatient.mp4"]
        assert jobs["busy.mp4"]["state"] in ("running", "done")


async def test_concurrent_uploads_never_queue_more_than_the_limit(tiny_checkpoint: Path, change_clip: Path,
                                                                  tmp_path: Path) -> None:
    """A flood of simultaneous POST /api/jobs: each takes its queue place before its first await, so at most
    ``max_queued_jobs`` are queued; the rest are 429 and leave no files."""
    long_clip = write_motion_clip(tmp_path / "long.mp4", CHANGE_SCRIPT * 12, seed=3, speed=0.4, start=(0.75, 0.3))
    config = jobs_config(tiny_checkpoint, tmp_path, max_queued_jobs=3, job_concurrency=1)
    async with jobs_client(config) as client:
        busy = await submit(client, long_clip, annotate="false")  # keeps the one runner busy
        async with client.ws_connect(f"/api/jobs/{busy['id']}/ws") as ws:  # wait until it left the queue
            while (await ws.receive_json(timeout=60))["state"] == "queued":
                pass
        responses = await asyncio.gather(*(upload(client, change_clip, annotate="false") for _ in range(16)))
        outcomes = [await error_of(r) if r.status != 202 else (202, "") for r in responses]
        accepted = [status for status, _ in outcomes if status == 202]
        refused = [(status, error) for status, error in outcomes if status != 202]
        assert len(accepted) == 3, outcomes
        assert all(status == 429 and "already waiting (the limit is 3)" in error for status, error in refused)
        listing = await (await client.get("/api/jobs")).json()
        states = sorted(job["state"] for job in listing["jobs"])
        assert states.count("queued") <= 3 and len(listing["jobs"]) == 4, states
        folders = sorted(p.name for p in (config.data_path / "jobs").iterdir())
        assert len(folders) == 4  # the refused uploads left nothing behind
        for job in listing["jobs"]:
            await client.post(f"/api/jobs/{job['id']}/cancel")

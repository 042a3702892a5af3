"""The jobs API end to end: real uploads and URLs, the tiny model trained in the run, files on disk, websockets."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import av
import pytest

from har_stream.synthetic import write_motion_clip
from tests.helpers.clips import CHANGE_SCRIPT, check_labels_and_boundary
from tests.helpers.http_server import StaticServer
from tests.helpers.jobs import finished, job_files, jobs_client, jobs_config, submit, upload, watch
from tests.helpers.media import make_hls, make_video_page

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def frames_in(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_an_uploaded_clip_is_analysed_with_the_right_labels_and_every_file_is_served(
        tiny_checkpoint: Path, change_clip: Path, tmp_path: Path) -> None:
    config = jobs_config(tiny_checkpoint, tmp_path)
    async with jobs_client(config) as client:
        created = await submit(client, change_clip)
        job_id = created["id"]
        assert created["state"] == "queued" and created["source"] == {
            "kind": "upload", "name": change_clip.name, "size": change_clip.stat().st_size}
        default = (await (await client.get("/api/models")).json())["default"]
        assert created["options"]["stride"] == 4 and created["options"]["model"] == default == tiny_checkpoint.stem
        assert created["links"]["media"] is None and created["links"]["ws"] == f"/api/jobs/{job_id}/ws"

        docs = await watch(client, job_id)
        states = [d["state"] for d in docs]
        assert states[-1] == "done" and "result" not in docs[-1]
        progress = [d["progress"] for d in docs]
        assert progress == sorted(progress) and progress[-1] == 1.0

        job = (await (await client.get(f"/api/jobs/{job_id}")).json())
        result = job["result"]
        check_labels_and_boundary(result, stride=4)
        assert result["settings"]["stride"] == 4 and result["video_url"] == f"/api/jobs/{job_id}/media"
        assert job["duration"] == pytest.approx(3.2, abs=0.1) and job["error"] is None
        assert job["started"] and job["finished"] and job["started"] <= job["finished"]

        # the uploaded mp4 plays in browsers as it is: served with Range support for seeking
        media = await client.get(job["links"]["media"], headers={"Range": "bytes=100-299"})
        assert media.status == 206 and media.headers["Content-Range"].endswith(f"/{change_clip.stat().st_size}")
        assert await media.read() == change_clip.read_bytes()[100:300]

        download = await client.get(job["links"]["result_json"])
        assert download.status == 200 and "attachment" in download.headers["Content-Disposition"]
        assert json.loads(await download.read()) == result
        rows = list(csv.DictReader(io.StringIO((await (await client.get(job["links"]["result_csv"])).read())
                                               .decode())))
        assert [r["label"] for r in rows] == [s["label"] for s in result["segment_predictions"]]
        annotated = await client.get(job["links"]["annotated"])
        assert annotated.status == 200 and frames_in(await annotated.read()) == 48

        listing = await (await client.get("/api/jobs")).json()
        assert [j["id"] for j in listing["jobs"]] == [job_id] and "result" not in listing["jobs"][0]
        assert (listing["concurrency"], listing["queued"], listing["running"]) == (1, 0, 0)
        assert sorted(job_files(config)) == sorted(f"{job_id}/{n}" for n in (
            "input.mp4", "result.json", "result.csv", "annotated.mp4"))


@pytest.mark.parametrize("kind", ["mp4", "hls", "page"])
async def test_a_url_job_gives_the_labels_of_the_file_and_a_playable_copy(
        tiny_checkpoint: Path, change_clip: Path, tmp_path: Path, http_server: StaticServer, kind: str) -> None:
    (http_server.root / "clip.mp4").write_bytes(change_clip.read_bytes())
    if kind == "hls":
        target = make_hls(http_server.root / "clip.mp4", http_server.root / "hls").relative_to(http_server.root)
    elif kind == "page":
        target = make_video_page(http_server.root / "watch.html", "clip.mp4").relative_to(http_server.root)
    else:
        target = Path("clip.mp4")
    config = jobs_config(tiny_checkpoint, tmp_path, allow_private_urls=True)
    async with jobs_client(config) as client:
        response = await client.post("/api/jobs", json={"url": http_server.url(str(target)), "annotate": False})
        created = await response.json()
        assert response.status == 202, created
        assert created["source"]["kind"] == "url" and created["options"]["annotate"] is False
        job = await finished(client, created["id"])
        assert job["state"] == "done", job["error"]
        check_labels_and_boundary(job["result"], stride=4)
        assert job["links"]["annotated"] is None
        media = await client.get(job["links"]["media"])  # a local H.264 copy: the player never fetches the URL
        assert media.status == 200 and frames_in(await media.read()) == 48
        assert job_files(config) == sorted(f"{created['id']}/{n}" for n in (
            "playable.mp4", "result.csv", "result.json"))


async def test_predict_answers_synchronously_with_the_job_result(
        tiny_checkpoint: Path, change_clip: Path, tmp_path: Path, http_server: StaticServer) -> None:
    """The original design's call: ``curl -X POST .../predict -F video=@clip.mp4``, or a ``url`` field."""
    (http_server.root / "clip.mp4").write_bytes(change_clip.read_bytes())
    config = jobs_config(tiny_checkpoint, tmp_path, allow_private_urls=True)
    async with jobs_client(config) as client:
        response = await upload(client, change_clip, target="/predict", annotate="false")
        body = await response.json()
        assert response.status == 200, body
        check_labels_and_boundary(body, stride=4)
        assert body["video_url"] == str(client.make_url(f"/api/jobs/{body['job_id']}/media"))
        job = await (await client.get(f"/api/jobs/{body['job_id']}")).json()
        assert job["state"] == "done" and {k: v for k, v in body.items() if k not in ("video_url", "job_id")} == {
            k: v for k, v in job["result"].items() if k != "video_url"}
        assert (await client.session.get(body["video_url"])).status == 200

        form_url = await client.post("/predict", data={"url": http_server.url("clip.mp4"), "stride": "8"})
        by_url = await form_url.json()
        assert form_url.status == 200, by_url
        check_labels_and_boundary(by_url, stride=8)


async def test_cancel_a_queued_and_a_running_job_then_delete_removes_everything(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    long_clip = write_motion_clip(tmp_path / "long.mp4", CHANGE_SCRIPT * 12, seed=3, speed=0.4, start=(0.75, 0.3))
    config = jobs_config(tiny_checkpoint, tmp_path, job_concurrency=1)
    async with jobs_client(config) as client:
        running = await submit(client, long_clip)
        queued = await submit(client, long_clip)
        async with client.ws_connect(f"/api/jobs/{running['id']}/ws") as ws:
            while (await ws.receive_json(timeout=60))["state"] != "running":
                pass
        assert (await (await client.get(f"/api/jobs/{queued['id']}")).json())["state"] == "queued"

        for job in (queued, running):
            response = await client.delete(f"/api/jobs/{job['id']}")
            body = await response.json()
            assert response.status == 200 and body["state"] == "cancelled", body
            assert "cancelled" in body["error"]
        assert job_files(config) == []  # a cancelled job keeps no files

        third = await submit(client, long_clip, annotate="false")  # the runner is free again
        assert (await finished(client, third["id"]))["state"] == "done"
        kept = await client.post(f"/api/jobs/{third['id']}/cancel")  # cancel-only: a finished job stays
        assert kept.status == 200 and (await kept.json())["state"] == "done"
        assert (await client.get(f"/api/jobs/{third['id']}/media")).status == 200

        for job in (queued, running, third):
            response = await client.delete(f"/api/jobs/{job['id']}")
            assert response.status == 200 and await response.json() == {"deleted": job["id"]}
            missing = await client.get(f"/api/jobs/{job['id']}")
            assert missing.status == 404 and job["id"] in (await missing.json())["error"]
        assert job_files(config) == [] and (await (await client.get("/api/jobs")).json())["jobs"] == []
        assert not any(p.is_dir() for p in (config.data_path / "jobs").iterdir())


async def test_a_finished_job_survives_a_restart_and_an_interrupted_one_is_failed_not_lost(
        tiny_checkpoint: Path, change_clip: Path, tmp_path: Path) -> None:
    config = jobs_config(tiny_checkpoint, tmp_path)
    async with jobs_client(config) as client:
        done = await finished(client, (await submit(client, change_clip))["id"])
        assert done["state"] == "done"

    # a server that crashed mid-job left a 'running' row and half-written files behind
    from server.job_store import JobStore
    store = JobStore(config.data_path)
    await store.open()
    crashed = (await store.get(done["id"]))
    assert crashed is not None
    from dataclasses import replace
    await store.put(replace(crashed, id="0123456789ab", state="running", artifacts={}))
    (store.job_dir("0123456789ab")).mkdir()
    (store.job_dir("0123456789ab") / ".annotated.x.part.mp4").write_bytes(b"half")
    await store.aclose()

    async with jobs_client(config) as client:  # a new app on the same data directory
        listing = {j["id"]: j for j in (await (await client.get("/api/jobs")).json())["jobs"]}
        assert listing[done["id"]]["state"] == "done"
        again = await (await client.get(f"/api/jobs/{done['id']}")).json()
        assert again["result"] == done["result"] and again["links"] == done["links"]
        assert (await client.get(again["links"]["media"])).status == 200
        interrupted = listing["0123456789ab"]
        assert interrupted["state"] == "failed" and "stopped unexpectedly" in interrupted["error"]
        assert not (store.job_dir("0123456789ab") / ".annotated.x.part.mp4").exists()


async def test_a_job_running_at_a_clean_stop_is_failed_with_its_reason_and_a_queued_one_runs_after_the_restart(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    long_clip = write_motion_clip(tmp_path / "long.mp4", CHANGE_SCRIPT * 12, seed=3, speed=0.4, start=(0.75, 0.3))
    config = jobs_config(tiny_checkpoint, tmp_path)
    async with jobs_client(config) as client:
        job = await submit(client, long_clip, annotate="false")
        waiting = await submit(client, long_clip, annotate="false")
        async with client.ws_connect(f"/api/jobs/{job['id']}/ws") as ws:
            while (await ws.receive_json(timeout=60))["state"] != "running":
                pass
    # stopped mid-job: the running job is failed and its files are gone; the queued job keeps its upload
    assert job_files(config) == [f"{waiting['id']}/input.mp4"]

    async with jobs_client(config) as client:
        cut = await (await client.get(f"/api/jobs/{job['id']}")).json()
        assert cut["state"] == "failed" and cut["error"].startswith("interrupted: the server was stopped")
        again = await finished(client, waiting["id"])
        assert again["state"] == "done", again["error"]
        assert again["result"]["duration"] == pytest.approx(38.4, abs=0.1)

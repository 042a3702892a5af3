"""kill -9 of a real ``har-stream serve`` in the middle of a job and of a camera's event writes, then a restart on
the same ``--data-dir``: every finished job and stored event is there and intact, the cut-off job is failed
with its reason and its files are gone, nothing half-written is left, the API-added camera is watched again,
and every database passes SQLite's integrity check."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers.restart_checks import (all_events, changing_frames, get_json, integrity, long_clip,
                                          submit_job, temp_files, write_config)
from tests.helpers.rtsp_server import RtspServer, closed_port_url
from tests.helpers.serve_process import ServeProcess


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll the coroutine function ``check`` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        if value := await check():
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(interval)


async def downloads(session: aiohttp.ClientSession, base: str, job: dict[str, Any]) -> dict[str, str]:
    """The sha256 of each file a finished job offers, by link name."""
    out = {}
    for link in ("media", "result_json", "result_csv", "annotated"):
        if job["links"].get(link):
            async with session.get(base + job["links"][link]) as r:
                assert r.status == 200, (link, r.status)
                out[link] = hashlib.sha256(await r.read()).hexdigest()
    return out


async def test_kill_9_during_a_job_and_event_writes_loses_nothing_finished(
        tiny_checkpoint: Path, change_clip: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    long_video = long_clip(tmp_path / "long.mp4")
    config = write_config(tmp_path / "server.toml", {"cfg": closed_port_url()})
    args = ["--model", str(tiny_checkpoint), "--data-dir", str(data), "--config", str(config),
            "--torch-threads", "1", "--stride", "4"]
    with RtspServer.from_frames(changing_frames(), fps=15) as camera:
        async with aiohttp.ClientSession() as session:
            with ServeProcess(cli_env, args) as first:
                await first.wait_ready(session)
                base = first.url
                async with session.post(f"{base}/api/streams", json={"name": "porch", "url": camera.url}) as r:
                    assert r.status == 201, await r.text()
                done_id = (await submit_job(session, base, change_clip))["id"]

                async def done_job() -> Any:
                    status, body = await get_json(session, f"{base}/api/jobs/{done_id}")
                    assert body["state"] in ("queued", "running", "done"), body
                    return body if body["state"] == "done" else None
                done = await until(done_job, 120, "the first job finished")
                files = await downloads(session, base, done)
                assert set(files) == {"media", "result_json", "result_csv", "annotated"}

                async def events_written() -> Any:
                    events = await all_events(session, base)
                    closed = [e for e in events.values() if e["state"] == "closed"]
                    return events if closed and any(e["state"] == "open" for e in events.values()) else None
                await until(events_written, 60, "the camera stored a closed event and has an open one")
                cut_id = (await submit_job(session, base, long_video, annotate="false"))["id"]

                async def cut_running() -> Any:
                    status, body = await get_json(session, f"{base}/api/jobs/{cut_id}")
                    assert body["state"] in ("queued", "running"), body  # not finished before the kill
                    return body if body["state"] == "running" and (body.get("progress") or 0) > 0 else None
                await until(cut_running, 120, "the long job runs", interval=0.05)
                before = await all_events(session, base)
                first.kill9()  # mid-job, while the camera's events are being updated

            assert sorted(p.name for p in data.glob("*.sqlite3")) == ["cameras.sqlite3", "events.sqlite3",
                                                                      "jobs.sqlite3"]
            for db in data.glob("*.sqlite3"):
                assert integrity(db) == "ok", db

            with ServeProcess(cli_env, args) as second:
                await second.wait_ready(session)
                base = second.url
                # the finished job: same record, same result, same file
                _, again = await get_json(session, f"{base}/api/jobs/{done_id}")
                assert again["state"] == "done" and again["result"] == done["result"]
                assert await downloads(session, base, again) == files
                # the job cut off: failed, saying why, its files gone
                _, cut = await get_json(session, f"{base}/api/jobs/{cut_id}")
                assert cut["state"] == "failed" and cut["error"].startswith("interrupted: the server stopped "
                                                                            "unexpectedly"), cut
                assert not (data / "jobs" / cut_id).exists()
                assert temp_files(data) == []
                # every event stored before the kill: closed ones unchanged, open ones ended as interrupted
                after = await all_events(session, base)
                for event_id, old in before.items():
                    new = after[event_id]
                    if old["state"] == "closed":
                        assert new == old
                    else:
                        assert new["state"] == "closed" and new["seq"] > old["seq"], new
                        assert new["reason"] in ("interrupted", "gap", "stopped") and new["start"] == old["start"]
                    if new["snapshot"]:
                        async with session.get(base + new["snapshot"]) as r:
                            assert r.status == 200 and (await r.read())[:2] == b"\xff\xd8"
                # both cameras are watched again: the API one from the store, the config one from the file
                _, listing = await get_json(session, f"{base}/api/streams")
                origins = {s["name"]: s["origin"] for s in listing["streams"]}
                assert origins == {"porch": "api", "cfg": "config"}

                async def porch_live() -> Any:
                    _, doc = await get_json(session, f"{base}/api/streams/porch")
                    return doc["state"] == "live" and doc["current"] is not None
                await until(porch_live, 40, "the stored camera went live again")
                assert (await second.stop())[0] == 0, second.log
            for db in data.glob("*.sqlite3"):
                assert integrity(db) == "ok", db


@pytest.mark.parametrize("rounds", [2])
async def test_kill_9_at_random_moments_of_event_writes_leaves_a_consistent_store(
        rounds: int, tiny_checkpoint: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    """Killed again and again while a camera writes events: no stored event is ever lost or half-written (each
    row's snapshot file is there), and no temp file survives the next start."""
    data = tmp_path / "data"
    config = write_config(tmp_path / "server.toml")
    args = ["--model", str(tiny_checkpoint), "--data-dir", str(data), "--config", str(config),
            "--torch-threads", "1", "--stride", "4"]
    rng = random.Random(13)
    seen: dict[str, dict[str, Any]] = {}
    with RtspServer.from_frames(changing_frames(), fps=15) as camera:
        async with aiohttp.ClientSession() as session:
            for round_ in range(rounds + 1):
                with ServeProcess(cli_env, args) as server:
                    await server.wait_ready(session)
                    assert temp_files(data) == []
                    after = await all_events(session, server.url)
                    for event_id, old in seen.items():
                        assert event_id in after, f"event {event_id} lost in round {round_}"
                        if old["state"] == "closed":
                            assert after[event_id] == old
                        if after[event_id]["snapshot"]:
                            async with session.get(server.url + after[event_id]["snapshot"]) as r:
                                assert r.status == 200 and (await r.read())[:2] == b"\xff\xd8"
                    if round_ == rounds:
                        assert (await server.stop())[0] == 0, server.log
                        break
                    if round_ == 0:
                        async with session.post(f"{server.url}/api/streams",
                                                json={"name": "porch", "url": camera.url}) as r:
                            assert r.status == 201, await r.text()
                    total = len(after)

                    async def more_events() -> Any:
                        return len(await all_events(session, server.url)) > total
                    await until(more_events, 60, f"new events in round {round_}")
                    await asyncio.sleep(rng.uniform(0.0, 1.5))  # somewhere among the writes
                    seen.update(await all_events(session, server.url))
                    server.kill9()
                for db in data.glob("*.sqlite3"):
                    assert integrity(db) == "ok", db

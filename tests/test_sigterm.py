"""SIGTERM to a real ``har-stream serve`` with a running job, a queued one, a live camera producing events and a
camera stuck on a port that never answers: it exits 0 within 10 s, the running job is recorded as failed with
its reason, the queued one stays queued, every event is closed, and the API cameras are still stored."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import aiohttp

from tests.helpers.restart_checks import (all_events, changing_frames, get_json, integrity, long_clip,
                                          submit_job, temp_files, write_config)
from tests.helpers.rtsp_server import RtspServer
from tests.helpers.serve_process import ServeProcess
from tests.helpers.silent_tcp import SilentListener


def rows(db: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_sigterm_marks_the_running_job_closes_cameras_and_exits_within_10_s(
        tiny_checkpoint: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    long_video = long_clip(tmp_path / "long.mp4")
    args = ["--model", str(tiny_checkpoint), "--data-dir", str(data), "--config",
            str(write_config(tmp_path / "server.toml")), "--torch-threads", "1", "--stride", "4"]
    with RtspServer.from_frames(changing_frames(), fps=15) as camera, SilentListener() as hung:
        with ServeProcess(cli_env, args) as server:
            async with aiohttp.ClientSession() as session:
                await server.wait_ready(session)
                base = server.url
                for name, url in (("porch", camera.url), ("hung", hung.url())):
                    async with session.post(f"{base}/api/streams", json={"name": name, "url": url}) as r:
                        assert r.status == 201, await r.text()
                assert await asyncio.to_thread(hung.wait_accepted, 1, 20)
                deadline = time.monotonic() + 60
                while not any(e["state"] == "open" for e in (await all_events(session, base)).values()):
                    assert time.monotonic() < deadline, "the camera opened no event"
                    await asyncio.sleep(0.2)
                running = (await submit_job(session, base, long_video, annotate="false"))["id"]
                queued = (await submit_job(session, base, long_video, annotate="false"))["id"]
                while (job := (await get_json(session, f"{base}/api/jobs/{running}"))[1])["progress"] <= 0:
                    assert job["state"] in ("queued", "running") and time.monotonic() < deadline + 60, job
                    await asyncio.sleep(0.05)
                assert job["state"] == "running" and job["progress"] < 0.5, job  # far from its end

            code, took = await server.stop()
            assert code == 0, server.log
            assert took < 10.0, f"took {took:.1f} s to stop\n{server.log}"
            after = server.log.partition("server.runner: stopped")[2].splitlines()[1:]  # the stop's last words,
            assert all("leaving without the interpreter's exit: har-decode-" in line for line in after), \
                server.log  # then, the stuck camera's thread still in its read, an exit without joining it
            log = server.log

    jobs = {r["id"]: r for r in rows(data / "jobs.sqlite3", "SELECT id, state, error FROM jobs")}
    assert jobs[running]["state"] == "failed", f"{dict(jobs[running])}\n{log}"
    assert jobs[running]["error"].startswith("interrupted: the server was stopped while this job was running")
    assert jobs[queued]["state"] == "queued" and (data / "jobs" / queued).is_dir()
    assert not (data / "jobs" / running).exists() and temp_files(data) == []
    events = rows(data / "events.sqlite3", "SELECT phase, reason FROM events")
    assert events and all(e["phase"] == "end" for e in events), [dict(e) for e in events]
    assert "stopped" in {e["reason"] for e in events}
    stored = {r["name"]: json.loads(r["spec"])["url"] for r in rows(data / "cameras.sqlite3",
                                                                    "SELECT name, spec FROM cameras")}
    assert stored == {"porch": camera.url, "hung": hung.url()}
    for db in data.glob("*.sqlite3"):
        assert integrity(db) == "ok"

"""A stop that something hangs (issue 13: "SIGTERM ... exits within 10 s"; "a stuck inference call ... reported
in health"). Real ``har-stream serve`` subprocesses: a model call that never returns turns ``/healthz`` 503 once
it has been stuck 10 x ``inference_stall_s`` (so a supervisor restarts the process), and SIGTERM still exits
within 10 s, the stores intact; SIGTERM while a URL job waits on a server that never answers does too, and the
job is recorded failed with its reason; a stop step that hangs for good (the event loop blocked) meets the
last resort at the 9 s deadline, after the stores were closed. In process: closing a worker waits for a running
call only within the watchdog's bound."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

import aiohttp
import numpy as np
import torch

from har_stream.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, VideoModel
from har_stream.worker import BatchSettings, ModelWorker
from server.health import UNHEALTHY_STALLS
from tests.helpers.restart_checks import get_json, integrity, long_clip, submit_job, write_config
from tests.helpers.serve_process import ServeProcess
from tests.helpers.silent_tcp import SilentListener
from server.stop_deadline import STOP_BUDGET_S
from tests.helpers.stalling_serve import PatchedServe, StallingServe

STALL_S = 0.4
INTERRUPTED = "interrupted: the server was stopped while this job was running"


def job_row(data: Path, job_id: str) -> sqlite3.Row:
    conn = sqlite3.connect(data / "jobs.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT state, error FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        conn.close()


def assert_stores_intact(data: Path) -> None:
    stores = sorted(data.glob("*.sqlite3"))
    assert stores, "no store was written"
    for db in stores:
        assert integrity(db) == "ok", db


def server_args(tiny_checkpoint: Path, tmp_path: Path) -> list[str]:
    config = write_config(tmp_path / "server.toml")
    config.write_text(config.read_text() + f"inference_stall_s = {STALL_S}\n")
    return ["--model", str(tiny_checkpoint), "--data-dir", str(tmp_path / "data"), "--config", str(config),
            "--torch-threads", "1", "--stride", "4"]


async def wait_for(check, timeout: float, what: str, log: ServeProcess):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, f"{what}\n{log.log}"
        await asyncio.sleep(0.1)
    return found


async def test_a_model_call_stuck_for_good_fails_healthz_and_sigterm_still_exits_within_10_s(
        tiny_checkpoint: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    clip = long_clip(tmp_path / "long.mp4")
    with StallingServe(cli_env, server_args(tiny_checkpoint, tmp_path), tmp_path / "hang") as server:
        async with aiohttp.ClientSession() as session:
            await server.wait_ready(session)
            base = server.url
            assert (await get_json(session, f"{base}/healthz"))[0] == 200
            server.hang()  # every classify call from now on sleeps 600 s
            job = (await submit_job(session, base, clip, annotate="false"))["id"]

            async def failed() -> dict | None:
                body = (await get_json(session, f"{base}/api/jobs/{job}"))[1]
                assert body["state"] in ("queued", "running", "failed"), body
                return body if body["state"] == "failed" else None
            body = await wait_for(failed, 60, "the job did not fail with the stall", server)
            assert "inference_stall_s" in body["error"], body
            status, ready = await get_json(session, f"{base}/readyz")
            assert status == 503 and any("inference stuck" in r for r in ready["reasons"]), ready

            async def unhealthy() -> dict | None:
                status, health = await get_json(session, f"{base}/healthz")
                return health if status == 503 else None
            health = await wait_for(unhealthy, 30, "/healthz never failed", server)
            assert health["ok"] is False and "restart" in health["reasons"][0], health
            stuck_s = float(re.search(r"stuck for (\d+) s", health["reasons"][0]).group(1))  # type: ignore[union-attr]
            assert stuck_s >= UNHEALTHY_STALLS * STALL_S - 1, health  # not before 10 x the bound (rounded)

        code, took = await server.stop()
        assert code == 0, f"exit code {code}\n{server.log}"
        assert took < 10.0, f"took {took:.1f} s to stop\n{server.log}"
        assert "terminate called" not in server.log, server.log
        assert re.search(r"leaving without the interpreter's exit: .*har-infer-", server.log), server.log
        assert "stopped" in server.log, server.log

    assert job_row(data, job)["state"] == "failed"
    assert_stores_intact(data)


async def test_sigterm_while_a_url_job_waits_on_a_silent_server_exits_within_10_s_and_fails_the_job(
        tiny_checkpoint: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SilentListener() as hung, ServeProcess(cli_env, server_args(tiny_checkpoint, tmp_path)) as server:
        async with aiohttp.ClientSession() as session:
            await server.wait_ready(session)
            async with session.post(f"{server.url}/api/jobs", json={"url": hung.url("http", "watch")}) as r:
                assert r.status == 202, await r.text()
                job = (await r.json())["id"]
            assert await asyncio.to_thread(hung.wait_accepted, 1, 30), server.log  # the fetch waits for an answer
            state = (await get_json(session, f"{server.url}/api/jobs/{job}"))[1]["state"]
            assert state == "running", state

        code, took = await server.stop()
        assert code == 0, f"exit code {code}\n{server.log}"
        assert took < 10.0, f"took {took:.1f} s to stop\n{server.log}"
        assert "stopped" in server.log, server.log

    row = job_row(data, job)
    assert row["state"] == "failed" and row["error"].startswith(INTERRUPTED), dict(row)
    assert_stores_intact(data)


HUNG_MODEL_CLOSE = """
import time
from server.models_service import ModelService
async def aclose(self):
    time.sleep(600)  # the event loop itself blocked: nothing but another thread can end this stop
ModelService.aclose = aclose
"""


async def test_a_stop_step_that_hangs_for_good_meets_the_last_resort_after_the_stores_closed(
        tiny_checkpoint: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    clip = long_clip(tmp_path / "long.mp4")
    with PatchedServe(cli_env, server_args(tiny_checkpoint, tmp_path), HUNG_MODEL_CLOSE) as server:
        async with aiohttp.ClientSession() as session:
            await server.wait_ready(session)
            job = (await submit_job(session, server.url, clip, annotate="false"))["id"]

            async def running() -> bool:
                body = (await get_json(session, f"{server.url}/api/jobs/{job}"))[1]
                return body["state"] == "running" and body["progress"] > 0
            await wait_for(running, 60, "the job never ran", server)

        code, took = await server.stop()
        assert code == 0, f"exit code {code}\n{server.log}"
        assert STOP_BUDGET_S - 1 < took < 10.0, f"took {took:.1f} s to stop\n{server.log}"
        assert f"the stop ran past its {STOP_BUDGET_S:g} s budget; still running: tasks " in server.log, server.log

    row = job_row(data, job)  # the jobs' store closed before the models (whose close hung)
    assert row["state"] == "failed" and row["error"].startswith(INTERRUPTED), dict(row)
    assert_stores_intact(data)


class SlowModel(VideoModel):
    """Feature = mean brightness; ``classify`` sleeps ``sleep_s`` first."""

    def __init__(self, sleep_s: float) -> None:
        self.device = torch.device("cpu")
        self.info = ModelInfo(name="slow", family="test", labels=("dark", "bright"), frames=8, fps=15.0, resize=16,
                              crop=(16, 16), mean=IMAGENET_MEAN, std=IMAGENET_STD, label_set="test")
        self.sleep_s = sleep_s

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float().mean(dim=(1, 2, 3)).div(255.0).unsqueeze(1)

    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        time.sleep(self.sleep_s)
        mean = windows.float().mean(dim=(1, 2)).unsqueeze(1)
        return torch.cat([-mean, mean], dim=1)


async def test_closing_a_worker_waits_for_a_running_call_only_within_the_watchdogs_bound() -> None:
    model = SlowModel(sleep_s=0.0)
    worker = ModelWorker(model, BatchSettings(max_batch=4, max_wait_ms=2.0, stall_s=0.6))
    worker.start()
    features = [await (await worker.encode(np.zeros((16, 16, 3), dtype=np.uint8))) for _ in range(8)]
    assert (await worker.classify(features)).shape == (2,)  # a quick call is waited for as before
    model.sleep_s = 2.5
    call = asyncio.ensure_future(worker.classify(features))
    await asyncio.sleep(0.1)  # the call is running, the watchdog has not given up on it yet
    assert worker.stalled_for() is None and worker.classifier.running_for() is not None
    started = time.monotonic()
    await worker.aclose()
    took = time.monotonic() - started
    assert 0.3 < took < 1.5, f"closed after {took:.2f} s: the bound is 0.6 s from the call's start"
    await asyncio.gather(call, return_exceptions=True)

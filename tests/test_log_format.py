"""``--log-format json``: one JSON object per line, with the stream, peer and job each line is about.

In process: the formatter, and ids set per task that do not leak between concurrent tasks. Through the real
CLI: ``har-stream serve --log-format json`` with a WebRTC peer, a camera and an analysis job; every stderr line
parses, and the lines of the peer's, camera's and job's tasks carry their ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from har_stream.logs import JsonFormatter, TextFormatter, log_context, resolve_log_format
from har_stream.errors import ConfigError
from har_stream.synthetic import write_motion_clip
from tests.helpers.rtsp_server import closed_port_url
from tests.helpers.webhook_receiver import free_port
from tests.helpers.webrtc_client import ClientPeer, motion_frames

REPO = Path(__file__).resolve().parents[1]


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-log-format-{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


async def test_json_lines_carry_the_ids_of_their_own_task_only() -> None:
    logger, out = capture(JsonFormatter())

    async def peer(peer_id: str) -> None:
        log_context(peer=peer_id)
        for n in range(3):
            logger.info("frame %d of %s", n, peer_id)
            await asyncio.sleep(0)  # interleave the two tasks

    await asyncio.gather(peer("aaa"), peer("bbb"))
    logger.warning("no task ids here", extra={"job": "j1"})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 8
    for doc in lines[:6]:
        assert set(doc) == {"time", "level", "logger", "message", "peer"}, doc
        assert doc["message"].endswith(doc["peer"]) and doc["level"] == "INFO"
        assert doc["time"].endswith("+00:00") and "T" in doc["time"]
    assert lines[6] == {**lines[6], "job": "j1", "level": "WARNING", "message": "no task ids here"}
    assert "peer" not in lines[6]  # the tasks' context did not leak out of them
    assert lines[7]["message"] == "it failed" and "ValueError: boom" in lines[7]["exc"]


def test_text_lines_name_their_ids_and_a_bad_format_is_a_config_error() -> None:
    logger, out = capture(TextFormatter())
    logger.info("camera up", extra={"stream": "porch"})
    logger.info("plain")
    first, second = out.getvalue().splitlines()
    assert first.endswith("camera up [stream=porch]") and second.endswith(": plain")
    assert resolve_log_format(None, {}) == "text"
    assert resolve_log_format(None, {"HAR_STREAM_LOG_FORMAT": "JSON"}) == "json"
    assert resolve_log_format("text", {"HAR_STREAM_LOG_FORMAT": "json"}) == "text"
    with pytest.raises(ConfigError, match="HAR_STREAM_LOG_FORMAT"):
        resolve_log_format(None, {"HAR_STREAM_LOG_FORMAT": "xml"})


async def wait_ready(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early: {proc.communicate()[1]}"
        try:
            async with session.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the server did not get ready")


@pytest.mark.usefixtures("ice_loopback_patch")
async def test_serve_logs_json_lines_with_peer_camera_and_job_ids(
        tiny_checkpoint: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    clip = write_motion_clip(tmp_path / "clip.mp4", [("holding still", 2.0)], seed=2)
    env = {**cli_env, "HAR_STREAM_ICE_LOOPBACK": "1", "HAR_STREAM_PORT": str(port),
           "HAR_STREAM_DATA": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "har_stream.cli", "serve", "--log-format", "json",
                             "--model", str(tiny_checkpoint), "--torch-threads", "1", "--stride", "4"],
                            env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    peer = None
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, url, proc)
            peer = await ClientPeer.connect(session, url, motion_frames("holding still"))
            await peer.wait_for("label", 1, timeout=30)
            await peer.close()
            async with session.post(f"{url}/api/streams", json={"name": "gone-cam", "url": closed_port_url()}) as r:
                assert r.status == 201, await r.text()
            form = aiohttp.FormData()
            form.add_field("video", clip.read_bytes(), filename="clip.mp4", content_type="video/mp4")
            async with session.post(f"{url}/api/jobs", data=form) as r:
                assert r.status == 202, await r.text()
                job_id = (await r.json())["id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                async with session.get(f"{url}/api/jobs/{job_id}") as r:
                    if (await r.json())["state"] in ("done", "failed"):
                        break
                await asyncio.sleep(0.3)
            await asyncio.sleep(1.0)  # the camera has logged its failed connection attempts by now
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if peer is not None:
            await peer.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [line for line in err.splitlines() if line.strip()]
    docs = []
    for line in lines:
        doc = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= set(doc), doc
        docs.append(doc)
    assert any(d["message"].startswith("serving on http://127.0.0.1:") for d in docs)
    assert any(d.get("peer") == peer.peer_id and f"peer {peer.peer_id} closed" in d["message"] for d in docs), err
    assert any(d.get("stream") == "gone-cam" and d["level"] == "WARNING" for d in docs), err
    assert any(d.get("job") == job_id and d["message"] == f"job {job_id} running" for d in docs), err
    assert not any(d.get("job") == job_id and d.get("peer") for d in docs)  # ids stay with their own task

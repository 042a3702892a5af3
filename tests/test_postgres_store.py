"""``--database postgresql://…``: two real front ends (the whole app each, own ``--data-dir``) on one real
PostgreSQL see each other's jobs, events and cameras; bad database URLs are one clear error."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from har_stream.errors import ConfigError
from server.app import create_app
from server.config import ServerConfig
from server.database import SCHEMA_VERSION
from server.keys import EVENTS
from tests.helpers.clips import check_labels_and_boundary
from tests.helpers.jobs import finished, jobs_client, jobs_config, submit
from tests.helpers.postgres_server import PostgresServer
from tests.helpers.rtsp_server import closed_port_url, free_port
from tests.helpers.serve_process import har_stream_command
from tests.test_event_store import JPEG, action

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RENEW_S, TTL_S = 0.5, 1.5


def front_end(checkpoint: Path, tmp: Path, name: str, database: str, **kw: Any) -> ServerConfig:
    settings: dict[str, Any] = dict(data_dir=tmp / name, database=database, allow_private_urls=True,
                                    lease_renew_s=RENEW_S, lease_ttl_s=TTL_S, reconnect_initial_s=0.3,
                                    reconnect_max_s=1.5)
    return jobs_config(checkpoint, tmp, **{**settings, **kw})


async def streams(client: Any) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/streams")
    assert response.status == 200
    return {s["name"]: s for s in (await response.json())["streams"]}


async def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.1)
    return value


async def test_jobs_events_and_cameras_stored_through_one_front_end_are_listed_by_another(
        postgres: PostgresServer, tiny_checkpoint: Path, change_clip: Path, tmp_path: Path) -> None:
    url = await postgres.create_database()
    async with jobs_client(front_end(tiny_checkpoint, tmp_path, "a", url)) as a, \
            jobs_client(front_end(tiny_checkpoint, tmp_path, "b", url)) as b:
        # a job analysed by A: B lists it and returns its result (from the row; the file is only in A's folder)
        job_id = (await submit(a, change_clip))["id"]
        done = await finished(a, job_id)
        assert done["state"] == "done"
        listed = (await (await b.get("/api/jobs")).json())["jobs"]
        assert [j["id"] for j in listed] == [job_id] and listed[0]["state"] == "done"
        seen = await (await b.get(f"/api/jobs/{job_id}")).json()
        assert seen["result"] == done["result"]
        check_labels_and_boundary(seen["result"], stride=4)
        assert not (tmp_path / "b" / "jobs" / job_id).exists()
        download = await b.get(f"/api/jobs/{job_id}/result.json")
        assert download.status == 200 and await download.json() == done["result"]
        elsewhere = await b.get(f"/api/jobs/{job_id}/result.csv")  # media files stay with the front end that ran it
        assert elsewhere.status == 404 and "another front end" in (await elsewhere.json())["error"]
        assert (await a.get(f"/api/jobs/{job_id}/result.csv")).status == 200
        conn = await asyncpg.connect(url)  # the job belongs to A's data dir (its id is kept there), not to B's
        try:
            node = await conn.fetchval("SELECT node FROM jobs WHERE id = $1", job_id)
        finally:
            await conn.close()
        node_a, node_b = ((tmp_path / name / "node-id").read_text().strip() for name in ("a", "b"))
        assert node == node_a != node_b
        # a job queued on A (its row, as A's submit writes it) cannot be cancelled through B: only A runs it
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("INSERT INTO jobs SELECT 'queued1', node, 'queued', created + 1, NULL, NULL,"
                               " source_kind, source_name, source_ref, source_size, options, NULL, NULL, '{}', NULL"
                               " FROM jobs WHERE id = $1", job_id)
        finally:
            await conn.close()
        refused = await b.post("/api/jobs/queued1/cancel")
        assert refused.status == 409 and "another front end" in (await refused.json())["error"]
        assert (await (await b.get("/api/jobs/queued1")).json())["state"] == "queued"

        # an event (and its snapshot) published on A: B lists and serves it
        a.app[EVENTS].publish(action("e1", stream="porch", label="walking"))
        await a.app[EVENTS].store.flush()
        assert a.app[EVENTS].store.stats().written == 1
        events = await (await b.get("/api/events?stream=porch")).json()
        assert events["total"] == 1 and events["events"][0]["id"] == "e1"
        picture = await b.get("/api/events/e1/snapshot.jpg")
        assert picture.status == 200 and await picture.read() == JPEG

        # a camera added through A: A watches it, B lists it with its owner, and its name is taken on B too
        added = await a.post("/api/streams", json={"name": "porch", "url": closed_port_url("porch")})
        assert added.status == 201, await added.text()
        owner = (await added.json())["owner"]
        remote = await until(lambda: _remote(b, "porch"), 10 * RENEW_S + 10, "B lists A's camera")
        assert remote["owner"] == owner and remote["url"].startswith("rtsp://127.0.0.1:")
        assert (await streams(a))["porch"]["state"] != "remote"
        twice = await b.post("/api/streams", json={"name": "porch", "url": closed_port_url("porch")})
        assert twice.status == 409
        viewer = await b.post("/api/streams/porch/viewer", json={"type": "offer", "sdp": "v=0"})
        assert viewer.status == 404 and owner in (await viewer.json())["error"]

        # deleted through B: A stops watching it within a few renewals, and nobody lists it
        assert (await b.delete("/api/streams/porch")).status == 202
        await until(lambda: _gone(a, "porch"), 3 * TTL_S + 10, "A stops the camera deleted through B")
        assert "porch" not in await streams(b)


async def _remote(client: Any, name: str) -> dict[str, Any] | None:
    doc = (await streams(client)).get(name)
    return doc if doc is not None and doc["state"] == "remote" else None


async def _gone(client: Any, name: str) -> bool:
    return name not in await streams(client)


async def test_the_schema_is_versioned_and_a_newer_one_is_refused(
        postgres: PostgresServer, tiny_checkpoint: Path, tmp_path: Path) -> None:
    url = await postgres.create_database()
    async with jobs_client(front_end(tiny_checkpoint, tmp_path, "a", url), wait_for_default=False):
        pass
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT max(version) FROM har_stream_schema") == SCHEMA_VERSION
        await conn.execute("INSERT INTO har_stream_schema (version) VALUES ($1)", SCHEMA_VERSION + 1)
    finally:
        await conn.close()
    runner = web.AppRunner(create_app(front_end(tiny_checkpoint, tmp_path, "a", url)))
    try:
        with pytest.raises(ConfigError, match="newer har-stream"):
            await runner.setup()
    finally:
        await runner.cleanup()


async def test_bad_database_urls_are_one_clear_error(postgres: PostgresServer, tiny_checkpoint: Path,
                                                    tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--database must be sqlite or postgresql://"):
        jobs_config(tiny_checkpoint, tmp_path, database="mysql://root@127.0.0.1/har")
    with pytest.raises(ConfigError, match="needs a host and a database name"):
        jobs_config(tiny_checkpoint, tmp_path, database="postgresql://127.0.0.1")
    cases = {
        f"postgresql://har:s3cret@127.0.0.1:{free_port()}/har": "cannot reach the database",
        postgres.url("no_such_database"): "does not exist",
    }
    for url, message in cases.items():
        runner = web.AppRunner(create_app(jobs_config(tiny_checkpoint, tmp_path, database=url)))
        try:
            with pytest.raises(ConfigError, match=message) as caught:
                await runner.setup()  # the app's start: the database opens before anything else
        finally:
            await runner.cleanup()
        assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_says_why_it_cannot_use_the_database(cli_env: dict[str, str], tiny_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    url = f"postgresql://har:s3cret@127.0.0.1:{free_port()}/har"
    run = subprocess.run([*har_stream_command(), "serve", "--port", "0", "--model", str(tiny_checkpoint),
                          "--data-dir", str(tmp_path / "data"), "--database", url], env=cli_env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "har-stream: error: cannot reach the database postgresql://har:***@127.0.0.1" in run.stderr, run.stderr
    assert "s3cret" not in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_the_compose_cluster_front_ends_share_the_database_and_keep_their_own_data_dirs() -> None:
    import yaml

    from tests.helpers.clips import REPO

    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    fronts = [services["front-1"], services["front-2"]]
    urls = {front["environment"]["HAR_STREAM_DATABASE"] for front in fronts}
    assert len(urls) == 1 and next(iter(urls)).startswith("postgresql://har:") and "@postgres:5432/har" in urls.pop()
    data = [next(v for v in front["volumes"] if v.endswith(":/data")) for front in fronts]
    assert len(set(data)) == 2, data  # one node-id, one set of uploads per front end
    assert all(front["depends_on"]["postgres"] == {"condition": "service_healthy"} for front in fronts)
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


async def test_a_restarted_front_end_resumes_and_fails_only_its_own_jobs(postgres: PostgresServer,
                                                                        tmp_path: Path) -> None:
    from server.database import Database, DatabaseSettings
    from server.job_store import JobOptions, JobRecord, JobSource
    from server.pg_stores import PgJobStore

    database = Database(DatabaseSettings.parse(await postgres.create_database()))
    await database.open()
    try:
        def job(job_id: str, state: str, created: float) -> JobRecord:
            return JobRecord(id=job_id, state=state, created=created,  # type: ignore[arg-type]
                             source=JobSource("upload", "clip.mp4", "input.mp4"), options=JobOptions())

        stores = {name: PgJobStore(tmp_path / name, database) for name in ("a", "b")}
        for name, store in stores.items():
            await store.open()
            for n, state in enumerate(("running", "queued")):
                await store.put(job(f"{name}-{state}", state, 100.0 + n))
                (store.job_dir(f"{name}-{state}")).mkdir(parents=True)
            await store.aclose()
        (tmp_path / "a" / "jobs" / "stray").mkdir()  # a folder no row names (a crash mid-upload)

        again = PgJobStore(tmp_path / "a", database)  # A restarts on its data dir (a new process, the same node)
        resumed = await again.open()
        assert [r.id for r in resumed] == ["a-queued"]
        states = {r.id: (r.state, r.error is not None) for r in await again.list()}
        assert states == {"a-running": ("failed", True), "a-queued": ("queued", False),
                          "b-running": ("running", False), "b-queued": ("queued", False)}
        assert sorted(p.name for p in (tmp_path / "a" / "jobs").iterdir()) == ["a-queued"]
        assert sorted(p.name for p in (tmp_path / "b" / "jobs").iterdir()) == ["b-queued", "b-running"]
        await again.aclose()
    finally:
        await database.aclose()

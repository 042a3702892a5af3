"""Camera leases on a shared PostgreSQL: a camera is watched by one front end at a time, and moves to another
when its front end stops (at once) or dies without a word (once its lease expires: within TTL + one renewal).

The camera is a TCP listener that never answers (tests/helpers/silent_tcp.py): who connects to it shows who
watches it, with no decoding load."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from server.camera_leases import CameraLeases
from server.database import Database, DatabaseSettings
from tests.helpers.jobs import jobs_client
from tests.helpers.postgres_server import PostgresServer
from tests.helpers.serve_process import ServeProcess
from tests.helpers.silent_tcp import SilentListener
from tests.test_postgres_store import front_end, streams, until

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RENEW_S, TTL_S = 0.5, 2.0


def config(checkpoint: Path, tmp: Path, name: str, url: str) -> Any:
    return front_end(checkpoint, tmp, name, url, lease_renew_s=RENEW_S, lease_ttl_s=TTL_S)


async def owned_by(client: Any, name: str, owner: str) -> dict[str, Any] | None:
    doc = (await streams(client)).get(name)
    return doc if doc is not None and doc["owner"] == owner and doc["state"] != "remote" else None


async def test_a_front_end_that_stops_hands_its_camera_to_another(
        postgres: PostgresServer, tiny_checkpoint: Path, tmp_path: Path) -> None:
    url = await postgres.create_database()
    with SilentListener() as camera:
        async with jobs_client(config(tiny_checkpoint, tmp_path, "b", url)) as b:
            async with jobs_client(config(tiny_checkpoint, tmp_path, "a", url)) as a:
                added = await a.post("/api/streams", json={"name": "gate", "url": camera.url("rtsp", "gate")})
                assert added.status == 201, await added.text()
                a_owner = added_owner = (await added.json())["owner"]
                assert await asyncio.to_thread(camera.wait_accepted, 1, 20), "A never connected to the camera"
                remote = await until(lambda: _listed_remote(b, "gate"), 10, "B lists A's camera")
                assert remote["owner"] == added_owner
                await asyncio.sleep(3 * RENEW_S)  # B keeps its hands off while A renews
                assert (await streams(b))["gate"]["state"] == "remote" and camera.open_connections <= 1
                b_owner = (await (await b.get("/api/streams")).json())["streams"][0]["owner"]
                assert b_owner == a_owner  # B lists A as the owner ...
                stopped = time.monotonic()  # A's stop starts here
            # ... until A stops: it releases its lease, and B takes the camera at its next renewal
            doc = await until(lambda: _owned_elsewhere(b, "gate", a_owner), 3 * RENEW_S + 10, "B takes the camera")
            took = time.monotonic() - stopped
            assert doc["origin"] == "api" and doc["url"].startswith("rtsp://127.0.0.1:")
            accepted = camera.accepted
            assert await asyncio.to_thread(camera.wait_accepted, accepted + 1, 20), "B never connected"
            assert took < TTL_S + 3 * RENEW_S + 5, took  # released, not left to expire (with slack for a busy box)


async def _listed_remote(client: Any, name: str) -> dict[str, Any] | None:
    doc = (await streams(client)).get(name)
    return doc if doc is not None and doc["state"] == "remote" else None


async def _owned_elsewhere(client: Any, name: str, not_owner: str) -> dict[str, Any] | None:
    doc = (await streams(client)).get(name)
    return doc if doc is not None and doc["state"] != "remote" and doc["owner"] != not_owner else None


async def test_a_front_end_that_dies_loses_its_camera_once_the_lease_expires(
        postgres: PostgresServer, cli_env: dict[str, str], tiny_checkpoint: Path, tmp_path: Path) -> None:
    url = await postgres.create_database()
    env = {**cli_env, "HAR_STREAM_DATABASE": url, "HAR_STREAM_LEASE_RENEW": str(RENEW_S),
           "HAR_STREAM_LEASE_TTL": str(TTL_S)}
    with SilentListener() as camera, \
            ServeProcess(env, ["--model", str(tiny_checkpoint), "--data-dir", str(tmp_path / "a"),
                               "--allow-private-urls"]) as a:
        async with aiohttp.ClientSession() as session:
            await a.wait_ready(session)
            async with session.post(f"{a.url}/api/streams",
                                    json={"name": "gate", "url": camera.url("rtsp", "gate")}) as response:
                assert response.status == 201, await response.text()
                a_owner = (await response.json())["owner"]
        assert await asyncio.to_thread(camera.wait_accepted, 1, 20), f"A never connected:\n{a.log}"
        # an action A had open on the camera when it died
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO events (id, phase, seq, stream, label, start, last, started_at, updated_at, peak, mean,"
                " peak_t, windows, has_snapshot) VALUES ('open1', 'update', 1, 'gate', 'walking', 0, 4, $1, $2,"
                " 0.9, 0.8, 1, 3, 0)", time.time() - 4, time.time())
        finally:
            await conn.close()

        async with jobs_client(config(tiny_checkpoint, tmp_path, "b", url)) as b:
            remote = await until(lambda: _listed_remote(b, "gate"), 10, "B lists A's camera")
            assert remote["owner"] == a_owner
            await asyncio.sleep(3 * RENEW_S)
            assert (await streams(b))["gate"]["state"] == "remote"  # A is alive: B keeps its hands off

            a.kill9()  # no release, no last renewal: the lease has to expire
            killed = time.monotonic()
            doc = await until(lambda: _owned_elsewhere(b, "gate", a_owner), TTL_S + RENEW_S + 15,
                              "B takes the dead front end's camera")
            took = time.monotonic() - killed
            # not before the lease could have expired (A renewed at most RENEW_S before the kill), and within the
            # bound of TTL + one renewal of B's (plus slack for a busy machine)
            assert TTL_S - RENEW_S - 0.3 <= took <= TTL_S + RENEW_S + 5, took
            assert doc["origin"] == "api"
            accepted = camera.accepted
            assert await asyncio.to_thread(camera.wait_accepted, accepted + 1, 20), "B never connected"
            events = await (await b.get("/api/events?stream=gate")).json()
            assert [(e["id"], e["phase"], e["reason"]) for e in events["events"]] == [("open1", "end", "interrupted")]


async def test_front_ends_racing_for_free_cameras_get_one_lease_each_and_only_an_expired_one_changes_hands(
        postgres: PostgresServer) -> None:
    url = await postgres.create_database()
    databases = [Database(DatabaseSettings.parse(url)) for _ in range(3)]
    for database in databases:
        await database.open()  # three at once would race on the schema too: the advisory lock orders them
    try:
        leases = [CameraLeases(database, ttl_s=30.0) for database in databases]
        names = [f"cam{i}" for i in range(20)]
        winners: dict[str, str] = {}
        for name in names:
            won = await asyncio.gather(*(lease.acquire(name) for lease in leases))
            assert sum(won) == 1, (name, won)
            winners[name] = leases[won.index(True)].owner
        assert await leases[0].owners() == winners
        for lease in leases:  # renewing touches only one's own leases
            assert await lease.renew(names) == {n for n, owner in winners.items() if owner == lease.owner}
        # a lease that expires goes to whoever asks next; one still valid never does
        short = CameraLeases(databases[0], ttl_s=0.3)
        assert await short.acquire("door") and not await leases[1].acquire("door")
        await asyncio.sleep(0.6)
        assert await leases[1].acquire("door") and not await short.acquire("door")
        assert (await leases[2].owners())["door"] == leases[1].owner
    finally:
        for database in databases:
            await database.aclose()


async def test_a_camera_name_another_front_end_watches_from_its_config_file_is_refused(
        postgres: PostgresServer, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from server.camera_spec import parse_camera

    url = await postgres.create_database()
    with SilentListener() as camera:
        gate = parse_camera({"name": "gate", "url": camera.url("rtsp", "gate")})
        async with jobs_client(front_end(tiny_checkpoint, tmp_path, "a", url, cameras=(gate,),
                                         lease_renew_s=RENEW_S, lease_ttl_s=TTL_S)) as a:
            a_owner = (await until(lambda: _owned_elsewhere(a, "gate", ""), 10, "A watches its config camera"))["owner"]
            async with jobs_client(config(tiny_checkpoint, tmp_path, "b", url)) as b:
                refused = await b.post("/api/streams", json={"name": "gate", "url": camera.url("rtsp", "other")})
                assert refused.status == 409, await refused.text()
                assert (await owned_by(a, "gate", a_owner)) is not None  # A still holds it
                assert "gate" not in await streams(b)  # B's config has no such camera, and nothing was stored


async def test_a_front_end_cut_off_from_the_database_gives_its_camera_up_and_takes_it_back_later(
        postgres: PostgresServer, tiny_checkpoint: Path, tmp_path: Path) -> None:
    url = await postgres.create_database()
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres.url("postgres"))
    try:
        with SilentListener() as camera:
            async with jobs_client(config(tiny_checkpoint, tmp_path, "a", url)) as a:
                added = await a.post("/api/streams", json={"name": "gate", "url": camera.url("rtsp", "gate")})
                assert added.status == 201, await added.text()
                owner = (await added.json())["owner"]
                # the database goes away for this front end: its connections are cut and no new one is allowed
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                                    name)
                cut = time.monotonic()
                await until(lambda: _not_watched(a, "gate"), TTL_S + 2 * RENEW_S + 10,
                            "A stops a camera whose lease it cannot renew")
                assert time.monotonic() - cut >= TTL_S - RENEW_S - 0.3  # not before the lease could expire
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                await until(lambda: owned_by(a, "gate", owner), TTL_S + 2 * RENEW_S + 10,
                            "A takes the camera again once the database is back")
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def _not_watched(client: Any, name: str) -> bool:
    doc = (await streams(client)).get(name)
    return doc is None or doc["state"] == "remote"

"""HTTP face of the analysis jobs: ``/api/jobs`` (create, list, get, cancel/delete, files, websocket) and
``/predict`` (the synchronous form the original design had). The ``/analyse`` page is served by ``api.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import shutil
from pathlib import Path
from typing import Any

from aiohttp import web

from har_stream.errors import InputError

from .errors import BadRequestError, NotFoundError
from .job_store import JobOptions, JobRecord, JobSource
from .jobs import JobManager
from .keys import CONFIG, JOBS
from .models_service import check_custom_labels
from .timestamps import iso_seconds
from .uploads import ReceivedRequest, probe, receive, stored_name
from .url_guard import check_url, check_url_syntax, redact
from .ws_push import push_changes

log = logging.getLogger(__name__)

WS_MIN_INTERVAL_S = 0.2  # at most 5 progress messages a second per watcher
JOB_ID_CHARS = 12
FILES = {"media": "media", "result.json": "result", "result.csv": "csv", "annotated.mp4": "annotated"}  # URL → artifact
LINKS = {"media": "media", "result_json": "result.json", "result_csv": "result.csv", "annotated": "annotated.mp4"}
OPTION_FIELDS = ("model", "labels", "custom_labels", "stride", "clip_threshold", "annotate")


# -- presenting a job ---------------------------------------------------------------------------------------

def job_json(jobs: JobManager, record: JobRecord) -> dict[str, Any]:
    """The job document of the API (without ``result``)."""
    progress = jobs.progress(record.id)
    base = f"/api/jobs/{record.id}"
    links: dict[str, str | None] = {"self": base, "ws": f"{base}/ws"}
    for link, name in LINKS.items():
        links[link] = f"{base}/{name}" if FILES[name] in record.artifacts else None
    return {
        "id": record.id,
        "state": record.state,
        "phase": progress.phase if progress else None,
        "progress": 1.0 if record.state == "done" else round(progress.fraction, 4) if progress else 0.0,
        "realtime": round(progress.realtime, 2) if progress and progress.realtime else None,
        "created": iso_seconds(record.created),
        "started": iso_seconds(record.started),
        "finished": iso_seconds(record.finished),
        "source": {"kind": record.source.kind, "name": record.source.name, "size": record.source.size},
        "options": record.options.to_json(),
        "duration": record.duration if record.duration is not None else progress.duration if progress else None,
        "error": record.error,
        "links": links,
    }


async def _result(jobs: JobManager, record: JobRecord) -> dict[str, Any] | None:
    if record.state != "done" or "result" not in record.artifacts:
        return None
    try:
        return await jobs.store.read_result(record)
    except (OSError, ValueError) as err:
        raise NotFoundError(f"job {record.id}'s result file is gone or unreadable ({err}); run the job again") \
            from None


# -- reading a request --------------------------------------------------------------------------------------

def parse_options(fields: dict[str, Any], defaults: JobOptions) -> JobOptions:
    """Job options from form fields (strings) or JSON values; absent ones take the server's defaults."""
    unknown = set(fields) - set(OPTION_FIELDS) - {"url"}
    if unknown:
        raise BadRequestError(f"unknown field(s) {', '.join(sorted(unknown))}; known: url, video, "
                              f"{', '.join(OPTION_FIELDS)}")

    def text(name: str) -> str | None:
        value = fields.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise BadRequestError(f"{name} must be a string")
        return value.strip()

    def number(name: str, kind: type, default: Any) -> Any:
        value = fields.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise BadRequestError(f"{name} must be a number")
        try:
            out = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise BadRequestError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") \
                from None
        if kind is float and not math.isfinite(out):
            raise BadRequestError(f"{name} must be a finite number, got {value!r}")
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise BadRequestError(f"{name} must be an integer, got {value!r}")
        return out

    stride = number("stride", int, defaults.stride)
    if not 1 <= stride <= 256:
        raise BadRequestError(f"stride must be between 1 and 256 frames, got {stride}")
    threshold = number("clip_threshold", float, float(defaults.clip_threshold))
    if not 0.0 <= threshold <= 1.0:
        raise BadRequestError(f"clip_threshold must be between 0 and 1, got {threshold}")
    annotate = fields.get("annotate", defaults.annotate)
    if isinstance(annotate, str):
        if annotate.strip().lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise BadRequestError(f"annotate must be true or false, got {annotate!r}")
        annotate = annotate.strip().lower() in ("true", "1", "yes", "on")
    elif not isinstance(annotate, bool):
        raise BadRequestError("annotate must be true or false")
    custom = fields.get("custom_labels")
    if isinstance(custom, str):
        custom = [line for line in custom.splitlines() if line.strip()] or None
    if custom is not None:
        if not isinstance(custom, list) or not all(isinstance(x, str) for x in custom):
            raise BadRequestError("custom_labels must be a list of strings (a form field: one label per line)")
        custom = check_custom_labels(tuple(custom))
    return JobOptions(model=text("model"), labels=text("labels"), custom_labels=custom, stride=stride,
                      clip_threshold=threshold, annotate=annotate)


async def _create(request: web.Request) -> JobRecord:
    """Receive a job request (upload or URL), keep its file, queue it. Leaves nothing behind on any error."""
    app = request.app
    config, jobs = app[CONFIG], app[JOBS]
    jobs.check_room()
    job_id = secrets.token_hex(JOB_ID_CHARS // 2)
    folder = jobs.store.job_dir(job_id)
    await asyncio.to_thread(folder.mkdir, parents=True)
    try:
        received = await receive(request, folder, max_bytes=config.max_upload_bytes)
        options = parse_options({k: v for k, v in received.fields.items() if k != "url"},
                                JobOptions(stride=config.stride, clip_threshold=config.clip_threshold))
        source = await _source(received, folder, jobs)
        return await jobs.submit(job_id, source, options)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise


async def _source(received: ReceivedRequest, folder: Path, jobs: JobManager) -> JobSource:
    url = received.fields.get("url")
    if received.upload is not None and url not in (None, ""):
        raise BadRequestError("send either a video file or a url, not both")
    if received.upload is not None:
        upload = received.upload
        found = await asyncio.to_thread(probe, upload.path)  # 415 for anything that is not a video
        jobs.limits.check(found, upload.filename)  # 413 for a video longer or larger than the limits
        # a file the player can use as it is gets the extension of what it is, so it is served as that type
        name = f"input.{found.container}" if found.container else stored_name(upload.filename)
        await asyncio.to_thread(upload.path.rename, folder / name)
        return JobSource("upload", upload.filename, name, upload.size)
    if url in (None, ""):
        raise BadRequestError("no video: send a multipart form with a `video` file, or a `url` (form field or JSON)")
    if not isinstance(url, str):
        raise BadRequestError("url must be a string")
    url = check_url_syntax(url)
    await asyncio.to_thread(check_url, url, jobs.url_policy)  # 400 for loopback, private, link-local ...
    return JobSource("url", redact(url), url, None)


# -- handlers -----------------------------------------------------------------------------------------------

async def create_job(request: web.Request) -> web.Response:
    record = await _create(request)
    return web.json_response(job_json(request.app[JOBS], record), status=202,
                             headers={"Location": f"/api/jobs/{record.id}"})


async def list_jobs(request: web.Request) -> web.Response:
    jobs = request.app[JOBS]
    records = await jobs.list()
    return web.json_response({"jobs": [job_json(jobs, r) for r in records], "concurrency":
                              request.app[CONFIG].job_concurrency, "queued": jobs.queued, "running": jobs.running})


async def get_job(request: web.Request) -> web.Response:
    jobs = request.app[JOBS]
    record = await jobs.get(request.match_info["id"])
    body = job_json(jobs, record)
    if (result := await _result(jobs, record)) is not None:
        body["result"] = result
    return web.json_response(body)


async def delete_job(request: web.Request) -> web.Response:
    jobs = request.app[JOBS]
    record = await jobs.get(request.match_info["id"])
    if not record.final:
        return web.json_response(job_json(jobs, await jobs.cancel(record.id)))
    await jobs.delete(record.id)
    return web.json_response({"deleted": record.id})


async def cancel_job(request: web.Request) -> web.Response:
    """Cancel only: unlike DELETE, a job that finished meanwhile is kept (200, as it is)."""
    jobs = request.app[JOBS]
    return web.json_response(job_json(jobs, await jobs.cancel(request.match_info["id"])))


async def job_file(request: web.Request) -> web.StreamResponse:
    jobs = request.app[JOBS]
    record = await jobs.get(request.match_info["id"])
    name = request.match_info["file"]
    key = FILES.get(name)
    if key is None:
        raise NotFoundError(f"a job has no file {name!r}; its files are {', '.join(FILES)}")
    if key not in record.artifacts:
        raise NotFoundError(f"job {record.id} has no {name} ({record.state}"
                            f"{'' if record.final else ', not finished yet'})")
    path = jobs.store.job_dir(record.id) / record.artifacts[key]
    headers = {"Cache-Control": "no-cache"}
    if key != "media":  # downloads get a name after the video: "clip-result.csv"
        stem = Path(record.source.name).stem
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)[:80] or record.id
        headers["Content-Disposition"] = f'attachment; filename="{safe}-{name}"'
    if not path.is_file():
        if key == "result":  # a shared database (--database postgresql://…) keeps a copy: any front end has it
            try:
                return web.json_response(await jobs.store.read_result(record), headers=headers)
            except (OSError, ValueError):
                pass
        raise NotFoundError(f"job {record.id}'s {name} is not in this front end's data directory (gone, or the "
                            "job ran on another front end sharing the database: ask that one)")
    return web.FileResponse(path, headers=headers)  # answers Range requests, so players can seek


async def job_events(request: web.Request) -> web.WebSocketResponse:
    """Push the job's document on every change (at most every ``WS_MIN_INTERVAL_S``) until it is final."""
    jobs = request.app[JOBS]
    job_id = (await jobs.get(request.match_info["id"])).id  # 404 before the upgrade

    async def snapshot() -> tuple[dict[str, Any], bool] | None:
        try:
            record = await jobs.get(job_id)
        except NotFoundError:
            return None  # deleted meanwhile
        if record.final:
            jobs.release_event(job_id)
        return job_json(jobs, record), record.final

    return await push_changes(request, snapshot, lambda: jobs.change_event(job_id), WS_MIN_INTERVAL_S)


async def predict(request: web.Request) -> web.Response:
    """The original design's synchronous call: upload (field ``video``) or ``url`` in, the result out.

    It is a job like any other (queued with the rest, listed in ``/api/jobs``); if the client goes away, the
    job is cancelled."""
    jobs = request.app[JOBS]
    record = await _create(request)
    try:
        record = await jobs.wait_final(record.id)
    except asyncio.CancelledError:
        await asyncio.shield(jobs.cancel(record.id))
        raise
    if record.state != "done":
        raise InputError(f"analysis {record.state}: {record.error}")
    result = await _result(jobs, record)
    assert result is not None
    media = str(request.url.with_path(f"/api/jobs/{record.id}/media").with_query(None))
    return web.json_response({**result, "video_url": media, "job_id": record.id})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/jobs", create_job)
    app.router.add_get("/api/jobs", list_jobs)
    app.router.add_get("/api/jobs/{id}", get_job)
    app.router.add_delete("/api/jobs/{id}", delete_job)
    app.router.add_post("/api/jobs/{id}/cancel", cancel_job)
    app.router.add_get("/api/jobs/{id}/ws", job_events)
    app.router.add_get("/api/jobs/{id}/{file}", job_file)
    app.router.add_post("/predict", predict)


"""``/healthz`` (alive) and ``/readyz`` (ready to serve), for docker, Kubernetes or a load balancer.

Why two: a server whose default model is still downloading, or whose inference is stuck, is alive (restarting
it would only start the download again) but not ready (sending it streams would get 503s or no labels). So
``/healthz`` answers 200 whenever the event loop answers, and ``/readyz`` answers 503 with its reasons until
the default model is loaded, and again while the inference watchdog reports a stuck model call.

One exception: a model call stuck for ``UNHEALTHY_STALLS`` times ``inference_stall_s`` (5 minutes at the
default 30 s) will likely never return (a driver hang, a deadlock in native code), and its model serves nothing
until it does; only a restart helps, so ``/healthz`` then answers 503 too and a supervisor restarts the process.
"""

from __future__ import annotations

import time

from aiohttp import web

from har_stream.worker import ModelWorker

from .keys import CONFIG, MODELS
from .models_service import ModelService, ModelSlot

STARTED = web.AppKey("started", float)  # monotonic time the app was built, for /healthz's uptime
UNHEALTHY_STALLS = 10  # /healthz fails once a model call has been stuck this many inference_stall_s


def serving_workers(models: ModelService) -> list[tuple[str, str, ModelWorker]]:
    """Every started worker as ``(model, role, worker)``: role ``primary`` (a model's own), ``fallback`` (the
    CLIP view refining a model's labels, under that model's name), ``clip-view`` (CLIP over a label list)."""
    seen: set[int] = set()
    out: list[tuple[str, str, ModelWorker]] = []

    def add(model: str, role: str, worker: ModelWorker | None) -> None:
        if worker is not None and id(worker) not in seen:
            seen.add(id(worker))
            out.append((model, role, worker))

    for slot in models.slots.values():
        add(slot.name, "primary", slot.worker)
        add(slot.name, "fallback", slot.fallback.worker if slot.fallback is not None else None)
    for worker in models.clip.workers if models.clip is not None else ():
        add("clip", "clip-view", worker)
    return out


def model_reason(slot: ModelSlot) -> str | None:
    """Why the model of ``slot`` cannot serve now, in the words of ``/api/models``; None when it can."""
    if slot.status == "ready" and slot.worker is not None:
        return None
    if slot.status == "downloading":
        done = f" {100 * slot.progress:.0f}%" if slot.progress is not None else ""
        return f"model {slot.name}: downloading{done}"
    if slot.status == "missing":
        return f"model {slot.name}: weights missing: {slot.message}"
    if slot.status == "error":
        return f"model {slot.name}: failed to load: {slot.message}"
    return f"model {slot.name}: loading" + (f" ({slot.message})" if slot.message else "")


def readiness(models: ModelService) -> list[str]:
    """The reasons the server is not ready; empty when it is."""
    reasons: list[str] = []
    default = models.slots.get(models.default)
    if default is None:
        reasons.append(f"model {models.default}: not in the catalogue")
    elif (why := model_reason(default)) is not None:
        reasons.append(why)
    for model, role, worker in serving_workers(models):
        stalled = worker.stalled_for()
        if stalled is not None:
            what = model if role == "primary" else f"{model} ({role})"
            reasons.append(f"inference stuck for {stalled:.0f} s on model {what}")
    return reasons


def hopeless_stalls(models: ModelService, stall_s: float) -> list[str]:
    """Model calls stuck past ``UNHEALTHY_STALLS`` times the watchdog's bound: reasons to be restarted."""
    limit = UNHEALTHY_STALLS * stall_s
    return [f"inference stuck for {stalled:.0f} s on model {model} ({role}), over {limit:g} s "
            f"({UNHEALTHY_STALLS} x inference_stall_s): restart the server"
            for model, role, worker in serving_workers(models)
            if (stalled := worker.stalled_for()) is not None and stalled > limit]


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answered, and no model call is stuck beyond hope."""
    reasons = hopeless_stalls(request.app[MODELS], request.app[CONFIG].inference_stall_s)
    body: dict[str, object] = {"ok": not reasons, "uptime_s": round(time.monotonic() - request.app[STARTED], 1)}
    if reasons:
        body["reasons"] = reasons
    return web.json_response(body, status=503 if reasons else 200, headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    models = request.app[MODELS]
    reasons = readiness(models)
    return web.json_response({"ready": not reasons, "default_model": models.default, "reasons": reasons},
                             status=503 if reasons else 200, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app[STARTED] = time.monotonic()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

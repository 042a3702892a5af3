"""Soak: a real ``har-stream serve`` process under everything at once, then checked for leaks.

The load (tests/helpers/soak.py): 4 live aiortc peers (one replaced every few seconds), 2 RTSP cameras whose
GStreamer server is killed -9 and restarted every 10 s (20 s by hand), a stream of offline jobs (a 3.2 s clip
uploaded whenever fewer than two of ours are unfinished), and a webhook receiver that answers 500 to every
other request, so every event message is delivered only on its retry.

How it is measured, and why that is honest:
- The server is its own process, so ``/proc/PID`` gives its RSS, open descriptors and threads alone (torch,
  FFmpeg and libvpx threads included); asyncio tasks it reports in ``GET /api/status`` (``"tasks"``). The test
  samples through a session without keep-alive, so its own sampling leaves no connection behind.
- Warm-up first: the whole load for ``warmup_s``, then everything closed again (peers hung up, cameras deleted,
  jobs finished, webhooks drained). Whatever is built once and kept on purpose (the model, thread pools,
  codec contexts, the webhook's connection pool, the allocator's arenas) exists by then; the idle state after
  warm-up is the baseline. Then the same load for ``soak_s`` (CI: 45 s; ``--soak-minutes`` or
  ``$HAR_STREAM_SOAK_MINUTES`` by hand) and everything closed again.
- Descriptors, threads and tasks must come back to at most the baseline (waiting up to 30 s for a closing
  peer or camera to let go; a leak does not go away by waiting). Every idle sample follows a full garbage
  collection in the server (SIGUSR2, installed by the test's launcher): objects in reference cycles, such as a
  closed camera's scaler with its two FFmpeg threads, live until Python's cyclic collector runs, which an
  idle server may put off for minutes. That is garbage not yet collected, not a leak; the figures before the
  collection are kept in the report (``idle.before_collection``). Threads are told apart by the names the
  server's launcher lists (tests/helpers/soak_launcher.py): more idle workers of the loop's default executor
  (``asyncio_N`` or ``har-io_N``, started on demand up to min(32, CPUs + 4) and kept) is that pool filling
  up; any other new thread, Python or native (FFmpeg, torch, libvpx), is a leak. On failure the message names
  what is left:
  new descriptor targets, thread names, every thread's Python stack and (with gdb) native stack.
- RSS is compared twice, both against 1.10 x: idle after the soak vs idle after warm-up (medians of settled
  samples), and loaded at the soak's end vs loaded at warm-up's end (medians of the last 10 one-second
  samples of each), so a steady level measured at the same point of the same load, not a single reading.
- Jobs: every accepted job ends ``done`` with its result, or ``failed`` with its error recorded.
- Events: every message the store wrote (start, updates, end of each event) was delivered to the receiver or is
  still queued for retry: ``written == delivered + queued + in flight`` (in flight: at most the one message the
  URL's single delivery task holds), none failed or dropped; the receiver saw each delivery id answered 2xx
  once, and the latest message of every stored event among them.
- Last, SIGTERM stops the server, exit 0, within 10 s.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from har_stream.synthetic import write_motion_clip
from tests.helpers.clips import CHANGE_SCRIPT
from tests.helpers.rtsp_server import RtspServer, motion_loop, require_rtsp_server
from tests.helpers.soak import (DEFAULT_EXECUTOR_MAX, DEFAULT_EXECUTOR_PREFIX, HalfFailingReceiver, LoadReport,
                                Sample, ServerProcess, SoakPlan, median_rss, run_load, soak_minutes, stored_events,
                                webhooks_settled)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ice_loopback_patch")]

RSS_GROWTH = 1.10
LOADED_TAIL = 10  # one-second samples at the end of each phase that make its loaded RSS level


def server_settings(checkpoint: Path, tmp: Path, webhook: str) -> dict[str, Any]:
    """The tiny model, offline, one torch thread; cameras reconnect within seconds; events every 5 s at most."""
    return dict(model=str(checkpoint), offline=True, home=str(tmp / "home"), data_dir=str(tmp / "data"),
                stride=4, preload=False, clip_threshold=0.0, ice_loopback=True, torch_threads=1,
                reconnect_initial_s=0.3, reconnect_max_s=1.5, first_frame_timeout_s=8.0, stall_timeout_s=3.0,
                event_min_s=0.5, event_update_s=5.0, webhooks=[webhook])


def growth(after: float, before: float) -> float:
    return after / before


def diff(before: list[str], after: list[str]) -> dict[str, int]:
    """What ``after`` has more of than ``before`` (fd targets or thread names)."""
    more = Counter(after) - Counter(before)
    return dict(more.most_common(20))


async def test_soak_nothing_leaks_and_every_job_and_event_is_accounted_for(
        tiny_checkpoint: Path, tmp_path: Path, cli_env: dict[str, str], request: pytest.FixtureRequest) -> None:
    require_rtsp_server()
    plan = SoakPlan.for_minutes(soak_minutes(request.config.getoption("--soak-minutes")))
    timeout = request.config.getoption("timeout", None) or 0
    if timeout and float(timeout) < plan.budget_s:
        pytest.fail(f"this soak needs up to {plan.budget_s:.0f} s; run it with --timeout 0 (or --timeout "
                    f"{plan.budget_s:.0f})")
    clip = write_motion_clip(tmp_path / "job.mp4", CHANGE_SCRIPT, seed=6, speed=0.4, start=(0.75, 0.3))

    async with HalfFailingReceiver() as hook:
        with RtspServer.from_frames(motion_loop("holding still"), fps=15) as cam_a, \
                RtspServer.from_frames(motion_loop("holding still", seed=3), fps=15) as cam_b:
            cameras = [cam_a, cam_b]
            server = await ServerProcess.start(server_settings(tiny_checkpoint, tmp_path, hook.url()), tmp_path,
                                               cli_env)
            try:
                started = time.monotonic()
                warm = await run_load(server, plan, plan.warmup_s, cameras, clip)
                await webhooks_settled(server)
                uncollected_before = await server.sample()
                idle_before = await server.settled()
                fds_before, threads_before = server.fd_targets(), server.thread_names()
                python_before, _ = await server.python_threads()

                soak = await run_load(server, plan, plan.soak_s, cameras, clip)
                events_status = await webhooks_settled(server)
                uncollected_after = await server.sample()
                idle_after = await server.settled(at_most=idle_before[-1])
                fds_after, threads_after = server.fd_targets(), server.thread_names()
                python_after, stacks = await server.python_threads()
                if idle_after[-1].threads > idle_before[-1].threads:
                    stacks += "\nnative:\n" + server.native_stacks()
                events = await stored_events(server)
                jobs = {job_id: await server.get(f"/api/jobs/{job_id}") for job_id in warm.jobs + soak.jobs}
            finally:
                code, took = await server.stop()
            summary = report(plan, warm, soak, idle_before, idle_after, events_status, len(events), jobs,
                             time.monotonic() - started, took)
            summary["idle"]["before_collection"] = {"before": uncollected_before.to_json(),
                                                    "after": uncollected_after.to_json()}
            summary["idle"]["python_threads"] = {"before": python_before, "after": python_after}
            print("\nsoak:", json.dumps({k: v for k, v in summary.items() if k not in ("warm-up", "soak")}))
            folder = Path(os.environ.get("HAR_STREAM_TEST_ARTIFACTS") or tmp_path)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "soak.json").write_text(json.dumps(summary, indent=1))
            if folder != tmp_path:
                shutil.copy(server.log, folder / "soak-server.log")

    # -- the load really ran ---------------------------------------------------------------------------------
    for phase in (warm, soak):
        assert not phase.refused_peers, phase.refused_peers
        assert phase.samples and phase.jobs, "no samples or no job accepted: the load did not run"
        long_lived = [p for p in phase.peers if p[1] >= 10.0]
        assert long_lived and all(labels > 0 for _, _, labels in long_lived), phase.peers
    assert soak.restarts >= 2, soak.restarts
    assert sum(c["reconnects"] for c in soak.cameras) >= 1, soak.cameras

    # -- nothing leaked -----------------------------------------------------------------------------------------
    base, end = idle_before[-1], idle_after[-1]
    leaks = []
    if end.fds > base.fds:
        leaks.append(f"descriptors {base.fds} -> {end.fds}, new: {diff(fds_before, fds_after)}")
    # Threads: the native ones (FFmpeg, torch, libvpx: no Python name) back to the baseline; Python threads back
    # too, except more idle workers of the loop's default executor, which starts them on demand up to its cap
    pool = [n for n in python_after if n.startswith(DEFAULT_EXECUTOR_PREFIX)]
    new_python = [n for n in diff(python_before, python_after) if not n.startswith(DEFAULT_EXECUTOR_PREFIX)]
    native_before, native_after = base.threads - len(python_before), end.threads - len(python_after)
    if new_python or native_after > native_before or len(pool) > DEFAULT_EXECUTOR_MAX:
        leaks.append(f"threads {base.threads} -> {end.threads} (native {native_before} -> {native_after}, new "
                     f"Python threads {new_python}, {len(pool)} default-executor workers), new names: "
                     f"{diff(threads_before, threads_after)}; the server's threads now:\n{stacks}")
    if end.tasks > base.tasks:
        leaks.append(f"asyncio tasks {base.tasks} -> {end.tasks}")
    assert not leaks, "; ".join(leaks)
    idle_growth = growth(median_rss(idle_after), median_rss(idle_before))
    assert idle_growth < RSS_GROWTH, f"idle RSS grew {idle_growth:.3f}x: {summary['rss_kib']}"
    loaded_growth = growth(median_rss(soak.samples[-LOADED_TAIL:]), median_rss(warm.samples[-LOADED_TAIL:]))
    assert loaded_growth < RSS_GROWTH, f"loaded RSS grew {loaded_growth:.3f}x: {summary['rss_kib']}"

    # -- every job has a result or a recorded error ---------------------------------------------------------
    for job_id, job in jobs.items():
        assert job["state"] in ("done", "failed"), (job_id, job["state"])
        if job["state"] == "done":
            assert job["result"]["segment_predictions"], job_id
        else:
            assert job["error"], job_id
    assert any(j["state"] == "done" for j in jobs.values())

    # -- every event delivered, or still queued for retry --------------------------------------------------
    store, (webhook,) = events_status["store"], events_status["webhooks"]
    assert store["dropped"] == store["failed"] == store["queued"] == 0, store
    assert webhook["failed"] == webhook["dropped"] == 0, webhook
    in_flight = store["written"] - webhook["delivered"] - webhook["queued"]
    assert 0 <= in_flight <= 1, (store, webhook)
    assert webhook["retried"] >= 1, webhook  # the receiver did fail half the time
    delivered = hook.delivered_ids()
    assert len(delivered) == len(set(delivered)) == webhook["delivered"], "a delivery was answered 2xx twice"
    assert len(events) >= 2, events
    if webhook["queued"] == 0 and in_flight == 0:
        missing = [e["id"] for e in events if f"{e['id']}-{e['seq']}" not in set(delivered)]
        assert not missing, f"the latest message of events {missing} never reached the receiver"

    # -- and it still stops cleanly ------------------------------------------------------------------------
    assert code == 0 and took < 10.0, (code, took, server.log_tail())


def report(plan: SoakPlan, warm: LoadReport, soak: LoadReport, idle_before: list[Sample], idle_after: list[Sample],
           events_status: dict[str, Any], events: int, jobs: dict[str, Any], wall_s: float,
           stop_s: float) -> dict[str, Any]:
    """The figures of a run, for the log and ``soak.json`` (the numbers docs/operations.md quotes)."""
    states = Counter(j["state"] for j in jobs.values())
    return {
        "plan": {"warmup_s": plan.warmup_s, "soak_s": plan.soak_s, "camera_restart_s": plan.camera_restart_s},
        "wall_s": round(wall_s, 1),
        "rss_kib": {"idle_before": median_rss(idle_before), "idle_after": median_rss(idle_after),
                    "loaded_warmup_end": median_rss(warm.samples[-LOADED_TAIL:]),
                    "loaded_soak_start": median_rss(soak.samples[:LOADED_TAIL]),
                    "loaded_soak_end": median_rss(soak.samples[-LOADED_TAIL:]),
                    "peak": max(s.rss_kib for s in warm.samples + soak.samples)},
        "idle": {"before": idle_before[-1].to_json(), "after": idle_after[-1].to_json()},
        "peers": len(warm.peers) + len(soak.peers), "camera_restarts": warm.restarts + soak.restarts,
        "reconnects": sum(c["reconnects"] for c in warm.cameras + soak.cameras),
        "jobs": dict(states), "refused_jobs": len(warm.refused_jobs) + len(soak.refused_jobs),
        "events": events, "store": events_status["store"], "webhook": events_status["webhooks"],
        "stop_s": round(stop_s, 2),
        "warm-up": warm.to_json(), "soak": soak.to_json(),
    }

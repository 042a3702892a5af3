"""``har-stream bench``: throughput figures with the machine they came from; comparisons run side by side."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .analyse import add_compile_option

if TYPE_CHECKING:
    import torch

    from ..models.base import VideoModel
    from ..plugins import BenchServer


RUNTIME_NAMES = ("torch-fp32", "torch-bf16", "torch-compile", "onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32",
                 "openvino-bf16", "openvino-int8")  # har_stream.bench.runtimes.RUNTIMES, without importing torch


def add_json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the figures, the machine (CPU and flags, cores, GPU), versions and settings as JSON")


def check_json(args: argparse.Namespace) -> None:
    from ..errors import ConfigError

    if args.json is not None and not args.json.parent.resolve().is_dir():
        raise ConfigError(f"--json {args.json}: folder {args.json.parent} does not exist")


def report(args: argparse.Namespace, figures: object, device: object = None) -> None:
    if args.json is not None:
        from ..bench.report import write_report

        write_report(args.json, args.bench, vars(args), figures, device)  # type: ignore[arg-type]
        print(f"json:    {args.json}")


def compile_figures(model: object, seconds: float | None = None) -> dict[str, object]:
    """What ``--compile`` did, for the report: compiled or not, in how long, and why it fell back to eager."""
    guard = getattr(model, "compile_guard", None)
    return {"compiled": guard is not None and guard.failure is None, "compile_mode": getattr(guard, "mode", None),
            "compile_failure": getattr(guard, "failure", None), "compile_s": seconds}


def warm_compiled(model: VideoModel, precision: str, max_batch: int) -> float | None:
    """Compile (and record CUDA graphs) at every batch size before measuring; seconds taken, None if not compiled."""
    import time

    from ..compiled import warm_buckets

    if getattr(model, "compile_guard", None) is None:
        return None
    started = time.perf_counter()
    warm_buckets(model, precision, max_batch)
    return time.perf_counter() - started


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure throughput and latency (prints figures and the machine)")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH")
    bsub.required = True
    off = bsub.add_parser("offline", help="offline analysis: the engine vs a naive re-encode-every-window app")
    off.add_argument("--model", default=None,
                     help="a CNN-LSTM checkpoint (default: a ResNet-18 CNN-LSTM with untrained weights; "
                          "throughput does not depend on the weights' values)")
    off.add_argument("--video", type=Path, default=None,
                     help="video to analyse (default: a 30 s 640x480 30 fps synthetic clip made for the run)")
    off.add_argument("--window", type=int, default=16)
    off.add_argument("--stride", type=int, default=4)
    off.add_argument("--fps", type=float, default=None, help="sampling rate (default: the model's)")
    off.add_argument("--repeats", type=int, default=2, help="runs of each pipeline; the best is kept")
    off.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    off.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                     help="the engine's inference precision (default: auto, what a user gets); the naive pipeline "
                          "runs PyTorch eager fp32, as a simple app would")
    off.add_argument("--runtime", default="auto", choices=("auto", "torch", "openvino", "onnxruntime"),
                     help="the engine's runtime (default: auto, what a user gets)")
    off.add_argument("--same-settings", action="store_true",
                     help="run the engine on PyTorch at fp32 too, so the ratio is the pipeline's alone")
    add_compile_option(off)
    add_json_option(off)
    off.set_defaults(func=run_offline)

    live = bsub.add_parser("live", help="live WebRTC: N peers at 15 fps against a server (latency, drops, most peers)")
    live.add_argument("--peers", type=int, default=2, help="peers to run (default: 2)")
    live.add_argument("--sweep", default=None, metavar="N,N,...",
                      help="peer counts to try in turn, e.g. 1,2,4,8,12; reports the largest sustained in real time")
    live.add_argument("--url", default=None,
                      help="a running server, e.g. http://127.0.0.1:8080 (default: start one in this process)")
    live.add_argument("--model", default=None,
                      help="model to ask for (default: the server's; in-process: an untrained ResNet-18 CNN-LSTM)")
    live.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run, after warm-up")
    live.add_argument("--stride", type=int, default=None, help="frames between windows (default: the server's)")
    live.add_argument("--fps", type=float, default=15.0, help="webcam frame rate (default: 15)")
    live.add_argument("--size", default="320x240", help="webcam size WxH (default: 320x240)")
    live.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="in-process server only")
    live.add_argument("--torch-threads", type=int, default=None,
                      help="in-process server: torch intra-op threads (default: torch's; 1 is often best on 2 cores)")
    live.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                      help="in-process server: inference precision (default: auto, as serve)")
    live.add_argument("--untrained", action="store_true",
                      help="in-process server: load --model (a torchvision name) with random weights through a "
                           "temporary manifest, for speed figures where the real weights cannot be had")
    live.add_argument("--ice-loopback", action="store_true",
                      help="clients offer 127.0.0.1 only (for a server started with --ice-loopback)")
    live.add_argument("--backend", default="local", choices=("local", "ray"),
                      help="ray: run the same peers against an in-process server with the local backend, then with "
                           "the Ray Serve backend, and report the added latency, the throughput ratio and the bytes "
                           "per stream per second (docs/scaling.md) (default: local)")
    live.add_argument("--ray-address", default="local", metavar="local|auto|ray://HOST:10001|HOST:PORT",
                      help="--backend ray: the cluster (default: local = start Ray in this process, on loopback)")
    add_json_option(live)
    live.set_defaults(func=run_live)

    jobs = bsub.add_parser("jobs", help="an offline job beside N live peers: job speed, and whether live stays "
                                        "in real time (side by side with each alone)")
    jobs.add_argument("--peers", type=int, default=4, help="live peers beside the job (default: 4)")
    jobs.add_argument("--seconds", type=float, default=10.0, help="measured seconds of the peers-alone run")
    jobs.add_argument("--video", type=Path, default=None,
                      help="video the job analyses (default: a 60 s 640x480 30 fps synthetic clip)")
    jobs.add_argument("--stride", type=int, default=None, help="frames between windows, live and job (default: 8)")
    jobs.add_argument("--bound-ms", type=float, default=300.0,
                      help="live p95 server latency that counts as within bound (default: 300)")
    jobs.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    jobs.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    jobs.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                      help="inference precision (default: auto, as serve)")
    add_json_option(jobs)
    jobs.set_defaults(func=run_jobs)

    cams = bsub.add_parser("cameras", help="RTSP cameras (640x480, 15 fps): how many the server keeps in real "
                                           "time, with lag behind the camera and CPU per role")
    cams.add_argument("--cameras", type=int, default=2, help="cameras in one run (default: 2)")
    cams.add_argument("--sweep", default=None, metavar="N,N,...",
                      help="camera counts to try in turn, e.g. 1,2,4,6,8; reports the largest sustained in real time")
    cams.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run, after warm-up")
    cams.add_argument("--stride", type=int, default=8, help="frames between windows (default: 8)")
    cams.add_argument("--model", default=None,
                      help="the server's model: a name or a CNN-LSTM checkpoint (default: an untrained ResNet-18 "
                           "CNN-LSTM)")
    cams.add_argument("--untrained", action="store_true",
                      help="load --model (a torchvision name) with random weights, as bench live does")
    cams.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    cams.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    cams.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                      help="inference precision (default: auto, as serve)")
    add_json_option(cams)
    cams.set_defaults(func=run_cameras)

    prep = bsub.add_parser("prepare", help="frame preparation: the reference-exact path vs swscale AREA, frames/s "
                                           "and distance from each model's reference transform")
    prep.add_argument("--video", type=Path, default=None,
                      help="frames to prepare (default: a synthetic 640x480 clip made for the run)")
    prep.add_argument("--sizes", default="320x240,640x480,1280x720,1920x1080", metavar="WxH,...",
                      help="decoded frame sizes (default: %(default)s)")
    prep.add_argument("--models", default="r2plus1d-18,s3d,clip", metavar="NAME,...",
                      help="model geometries: torchvision names or clip (default: %(default)s)")
    prep.add_argument("--frames", type=int, default=60, help="frames per size (default: 60)")
    prep.add_argument("--repeats", type=int, default=3, help="alternating runs of each preparer; the best is kept")
    prep.add_argument("--torch-threads", type=int, default=1,
                      help="torch intra-op threads (default: 1, as in a decode thread beside inference)")
    add_json_option(prep)
    prep.set_defaults(func=run_prepare)

    rts = bsub.add_parser("runtimes", help="CPU runtimes side by side: torch eager fp32/bf16, torch.compile, ONNX "
                                           "Runtime and OpenVINO (fp32, bf16, int8), speed and distance from fp32")
    rts.add_argument("--networks", default="resnet18,r2plus1d-18,s3d", metavar="NAME,...",
                     help="resnet18 (the CNN-LSTM's frame encoder), r2plus1d-18, s3d (default: %(default)s)")
    rts.add_argument("--runtimes", default=",".join(RUNTIME_NAMES), metavar="NAME,...",
                     help="default: all of %(default)s")
    rts.add_argument("--repeats", type=int, default=3, help="timed calls per runtime after a warm-up; the best is kept")
    rts.add_argument("--batch", type=int, default=16, help="frames per encoder call (default: 16)")
    rts.add_argument("--size", type=int, default=None, help="input size (default: each network's own)")
    rts.add_argument("--videos", type=Path, nargs="*", default=None, metavar="FILE",
                     help="real clips for the calibration and comparison inputs (default: ../shared/data/videos "
                          "where present, else synthetic motion)")
    rts.add_argument("--torch-threads", type=int, default=None, help="threads for every runtime (default: torch's)")
    add_json_option(rts)
    rts.set_defaults(func=run_runtimes)

    gpu = bsub.add_parser("gpu", help="the engine's capacity with decoded frames injected: N live 15 fps streams on one "
                                      "device (latency, drops, batches, TFLOP/s), and what decode would allow")
    gpu.add_argument("--streams", type=int, default=64, help="streams in one run (default: 64)")
    gpu.add_argument("--sweep", default=None, metavar="N,N,...",
                     help="stream counts to try in turn, e.g. 100,200,400,600; reports the largest sustained")
    gpu.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run, after --warmup")
    gpu.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (default: 3)")
    gpu.add_argument("--stride", type=int, default=8, help="frames between windows (default: 8)")
    gpu.add_argument("--model", default=None,
                     help="a torchvision name (random weights) or a CNN-LSTM checkpoint (default: an untrained "
                          "ResNet-18 CNN-LSTM)")
    gpu.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                     help="default: cuda; cpu measures this CPU's engine the same way")
    gpu.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"), help="default: auto")
    gpu.add_argument("--runtime", default="auto", choices=("auto", "torch", "openvino", "onnxruntime"),
                     help="CPU only (default: auto)")
    gpu.add_argument("--max-batch", type=int, default=256, help="the batchers' largest batch (default: 256)")
    gpu.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    add_compile_option(gpu)
    add_json_option(gpu)
    gpu.set_defaults(func=run_gpu)


def bench_model(spec: str | None, device: torch.device) -> VideoModel:
    from ..bench.machine import untrained_cnn_lstm_net
    from ..models.cnn_lstm import CnnLstmModel, load_cnn_lstm

    if spec:
        return load_cnn_lstm(Path(spec), device)
    return CnnLstmModel(untrained_cnn_lstm_net(), device, name="cnn-lstm (ResNet-18, untrained)")


def run_offline(args: argparse.Namespace) -> int:
    check_json(args)
    from ..bench.machine import describe
    from ..bench.offline import run_offline_bench
    from ..models.base import pick_device

    from ..errors import ConfigError

    for option, value in (("--repeats", args.repeats), ("--window", args.window), ("--stride", args.stride)):
        if value < 1:
            raise ConfigError(f"{option} must be at least 1 (got {value})")
    if args.fps is not None and args.fps <= 0:
        raise ConfigError(f"--fps must be positive (got {args.fps})")
    device = pick_device(args.device)
    model = bench_model(args.model, device)
    fps = args.fps or model.info.fps
    from ..precision import resolve_precision
    from ..runtime import with_runtime

    runtime, precision = ("torch", "fp32") if args.same_settings else (args.runtime, args.precision)
    from ..compiled import with_compile

    engine_model = with_compile(with_runtime(model, runtime), args.compile)
    engine_precision = resolve_precision(engine_model, precision).precision
    compile_s = warm_compiled(engine_model, engine_precision, 32)  # the engine's batches: not timed below
    naive, engine, video = run_offline_bench(model, args.video, window=args.window, stride=args.stride,
                                             sample_fps=fps, repeats=args.repeats, precision="fp32",
                                             engine_model=engine_model, engine_precision=engine_precision)
    engine_runtime = getattr(engine_model, "runtime", "torch")
    print(f"machine: {describe(device)}")
    print(f"model:   {model.info.name}, {model.info.crop[0]}x{model.info.crop[1]}, window {args.window}, "
          f"stride {args.stride}, sampled at {fps:g} fps; engine on {engine_runtime} at {engine_precision}, naive on "
          "torch eager at fp32")
    print(f"video:   {video.name if args.video is None else video}, {engine.duration_s:.1f} s, "
          f"{engine.frames_decoded} frames")
    for fig in (naive, engine):
        print(f"  {fig.name:36s} {fig.fps:8.1f} frames/s  {fig.realtime:6.2f}x realtime  "
              f"{fig.windows} windows  {fig.wall_s:.2f} s")
    print(f"  ratio engine/naive: {engine.realtime / naive.realtime:.2f}x (best of {args.repeats} each, "
          "alternating runs)")
    print("  engine stages (s): " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in engine.stage_s)
          + " (decode and prepare on the decode thread, encode and head on the inference thread, overlapping)")
    if args.compile:
        print(f"  compile: {compile_figures(engine_model, compile_s)}")
    report(args, {"model": model.info.name, "engine_runtime": engine_runtime, "engine_precision": engine_precision,
                  **compile_figures(engine_model, compile_s), "naive": naive, "engine": engine, "ratio_engine_over_naive": engine.realtime / naive.realtime},
           device)
    return 0


def _peer_counts(args: argparse.Namespace) -> list[int]:
    from ..errors import ConfigError

    try:
        counts = [int(x) for x in args.sweep.split(",")] if args.sweep else [args.peers]
    except ValueError:
        raise ConfigError(f"--sweep takes peer counts separated by commas, e.g. 1,2,4,8 (got {args.sweep!r})") from None
    if not counts or min(counts) < 1:
        raise ConfigError("peer counts must be at least 1")
    return sorted(set(counts))


def _size(text: str) -> tuple[int, int]:
    from ..errors import ConfigError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like 320x240 (got {text!r})") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise ConfigError(f"--size must be even and at least 16x16 (got {text!r})")
    return w, h


def run_live(args: argparse.Namespace) -> int:
    check_json(args)
    import asyncio

    from ..plugins import bench_server

    counts, size = _peer_counts(args), _size(args.size)
    # what the server package provides (an in-process server, or with --url the ICE patch alone): looked up
    # first, so that a missing server package is one line before anything starts
    server = bench_server("bench live") if not args.url or args.ice_loopback else None
    if args.backend == "ray":
        return asyncio.run(_run_live_backends(args, counts, size))
    return asyncio.run(_run_live(args, counts, size, server))


async def _run_live_backends(args: argparse.Namespace, counts: list[int], size: tuple[int, int]) -> int:
    """``bench live --backend ray``: local and Ray Serve in one run (har_stream/bench/backends.py)."""
    from ..backends.base import BackendConfig
    from ..bench.backends import compare_backends
    from ..bench.live import HEADER, format_run
    from ..bench.machine import describe
    from ..errors import ConfigError
    from ..models.base import pick_device

    if args.url:
        raise ConfigError("--backend ray starts its own servers (local, then Ray); leave out --url")
    ray = BackendConfig(kind="ray", ray_address=args.ray_address, num_replicas=1, num_cpus=1.0, app_prefix="bench")
    print(f"machine: {describe(pick_device(args.device))}")
    print(f"peers:   synthetic {size[0]}x{size[1]} webcams at {args.fps:g} fps (VP8), {args.seconds:g} s measured "
          "after every peer's first label; clients, front end and Ray all run on this machine")
    results = []
    for n in counts:
        comparison, local_desc, ray_desc = await compare_backends(
            n, ray, model=args.model, device=args.device, stride=args.stride, torch_threads=args.torch_threads,
            precision=args.precision, seconds=args.seconds, fps=args.fps, size=size)
        print(f"local:   {local_desc}")
        print(f"ray:     {ray_desc}")
        print("backend " + HEADER)
        print("local   " + format_run(comparison.local))
        print("ray     " + format_run(comparison.ray))
        print(comparison.summary(), flush=True)
        results.append({"peers": n, "local": comparison.local, "ray": comparison.ray, **comparison.to_json()})
    report(args, {"backends": results}, pick_device(args.device))
    return 0


async def _run_live(args: argparse.Namespace, counts: list[int], size: tuple[int, int],
                    server: BenchServer | None) -> int:
    import contextlib

    from ..bench.live import HEADER, format_run, run_peers
    from ..bench.machine import describe
    from ..models.base import pick_device

    async with contextlib.AsyncExitStack() as stack:
        if args.url:
            url, where = args.url.rstrip("/"), f"{args.url} (its model: {args.model or 'the default'})"
            if args.ice_loopback and server is not None:
                stack.enter_context(server.ice_loopback())
        else:
            assert server is not None  # run_live looked it up
            url, where = await stack.enter_async_context(server.local_server(args.model, args.device, args.stride,
                                                                             args.torch_threads, args.untrained,
                                                                             args.precision))
        print(f"machine: {describe(pick_device(args.device))}")
        print(f"server:  {where}")
        print(f"peers:   synthetic {size[0]}x{size[1]} webcams at {args.fps:g} fps (VP8), {args.seconds:g} s measured "
              "after every peer's first label; clients run on this machine too")
        print(HEADER)
        best = 0
        runs = []
        for n in counts:
            # in-process, --model is the server's default already (and may be a path, which peers cannot name)
            run = await run_peers(url, n, seconds=args.seconds, fps=args.fps, model=args.model if args.url else None,
                                  stride=args.stride, size=size)
            print(format_run(run), flush=True)
            runs.append(run)
            if not run.sustained:
                if len(counts) > 1:
                    print(f"stopping the sweep: {n} peers are not sustained in real time")
                break
            best = n
        print(f"largest number of peers sustained in real time with no drops: {best if best else 'none'}"
              + (f" (of {', '.join(map(str, counts))})" if len(counts) > 1 else ""))
        report(args, {"server": where, "runs": runs, "peers_sustained": best}, pick_device(args.device))
    return 0


def run_jobs(args: argparse.Namespace) -> int:
    check_json(args)
    import asyncio

    from ..errors import ConfigError
    from ..plugins import bench_server

    if args.peers < 1 or not args.seconds > 0:
        raise ConfigError("--peers must be at least 1 and --seconds positive")
    if args.video is not None and not args.video.is_file():
        raise ConfigError(f"--video {args.video} is not a file")
    return asyncio.run(_run_jobs(args, bench_server("bench jobs")))


async def _run_jobs(args: argparse.Namespace, server: BenchServer) -> int:
    import tempfile

    from ..bench.jobs import format_mixed, run_mixed
    from ..bench.machine import describe
    from ..bench.offline import make_bench_clip
    from ..models.base import pick_device

    with tempfile.TemporaryDirectory(prefix="har-bench-jobs-") as tmp:
        clip = args.video or make_bench_clip(Path(tmp), seconds=60.0)  # long enough to measure the peers during it
        async with server.local_server(None, args.device, args.stride, args.torch_threads, precision=args.precision) \
                as (url, where):
            print(f"machine: {describe(pick_device(args.device))}")
            print(f"server:  {where}")
            print(f"job:     {clip.name}, uploaded to /api/jobs (no annotated video); peers: synthetic 320x240 "
                  "webcams at 15 fps; clients run on this machine too")
            alone, job_alone, together, job_during = await run_mixed(url, clip, args.peers, seconds=args.seconds,
                                                                     stride=args.stride)
            for line in format_mixed(alone, job_alone, together, job_during, args.bound_ms):
                print(line)
            report(args, {"server": where, "peers_alone": alone, "job_alone": job_alone, "peers_with_job": together,
                          "job_with_peers": job_during}, pick_device(args.device))
    return 0


def run_cameras(args: argparse.Namespace) -> int:
    check_json(args)
    import asyncio

    from ..errors import ConfigError
    from ..plugins import bench_server

    try:
        counts = sorted({int(x) for x in args.sweep.split(",")}) if args.sweep else [args.cameras]
    except ValueError:
        raise ConfigError(f"--sweep takes camera counts separated by commas, e.g. 1,2,4,6,8 (got {args.sweep!r})") \
            from None
    if not counts or min(counts) < 1:
        raise ConfigError("camera counts must be at least 1")
    if not args.seconds > 0 or args.stride < 1:
        raise ConfigError("--seconds must be positive and --stride at least 1")
    return asyncio.run(_run_cameras(args, counts, bench_server("bench cameras")))


async def _run_cameras(args: argparse.Namespace, counts: list[int], server: BenchServer) -> int:
    import tempfile

    from ..bench.cameras import CAMERA_FPS, HEADER, criteria, format_run, make_camera_clip, run_cameras
    from ..bench.cpu import named_threads
    from ..bench.machine import describe
    from ..models.base import pick_device

    with tempfile.TemporaryDirectory(prefix="har-bench-cameras-") as tmp, named_threads():
        clip = make_camera_clip(Path(tmp))
        async with server.local_server(args.model, args.device, args.stride, args.torch_threads, args.untrained,
                                       args.precision) as (url, where):
            print(f"machine: {describe(pick_device(args.device))}")
            print(f"server:  {where}")
            print(f"cameras: RTSP 640x480 at {CAMERA_FPS:g} fps (H.264, a keyframe a second), each ffmpeg streaming a "
                  f"clip with no encoding through an RTSP relay, 2 processes per camera on this machine; stride "
                  f"{args.stride}; {args.seconds:g} s measured after every camera's first label and 3 s more")
            print(criteria())
            print(HEADER, flush=True)
            best = 0
            runs = []
            for n in counts:
                run = await run_cameras(url, n, clip, Path(tmp), seconds=args.seconds, stride=args.stride)
                runs.append(run)
                for line in format_run(run):
                    print(line, flush=True)
                if not run.sustained:
                    if len(counts) > 1:
                        print(f"stopping the sweep: {n} camera{'s are' if n > 1 else ' is'} not sustained in real "
                              "time")
                    break
                best = n
            print(f"largest number of cameras sustained in real time: {best if best else 'none'}"
                  + (f" (of {', '.join(map(str, counts))})" if len(counts) > 1 else ""))
            report(args, {"server": where, "runs": runs, "cameras_sustained": best}, pick_device(args.device))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    check_json(args)
    import tempfile

    import torch

    from ..bench.machine import describe
    from ..bench.offline import make_bench_clip
    from ..bench.prepare import run_prepare_bench
    from ..errors import ConfigError
    from ..models.torchvision_video import TORCHVISION_MODELS

    if args.frames < 1 or args.repeats < 1 or args.torch_threads < 1:
        raise ConfigError("--frames, --repeats and --torch-threads must be at least 1")
    sizes = [_size(text) for text in args.sizes.split(",")]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m != "clip" and m not in TORCHVISION_MODELS]
    if unknown or not models:
        raise ConfigError(f"--models takes torchvision model names or clip (got {args.models!r})")
    torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory(prefix="har-stream-bench-") as tmp:
        video = args.video or make_bench_clip(Path(tmp), seconds=5.0)
        figures = run_prepare_bench(video, models=models, frames=args.frames, repeats=args.repeats, sizes=sizes)
    print(f"machine: {describe(torch.device('cpu'))}")
    print(f"frames:  {args.frames} per size from {args.video or 'a synthetic 640x480 clip'}, yuv420p as decoded; "
          f"best of {args.repeats} alternating runs; diff = |output - reference transform| in grey levels")
    print(f"  {'size':>9s}  {'model':12s} {'preparer':30s} {'frames/s':>9s} {'ms/frame':>9s}  "
          f"{'diff mean':>9s} {'p99':>6s} {'max':>6s}")
    for f in figures:
        print(f"  {f.size[0]:>4d}x{f.size[1]:<4d}  {f.model:12s} {f.preparer:30s} {f.fps:9.0f} {1000 / f.fps:9.3f}  "
              f"{f.diff.mean:9.3f} {f.diff.p99:6.2f} {f.diff.max:6.2f}")
    served = {(f.size, f.model): f for f in figures if f.preparer.endswith("(served)")}
    for f in figures:
        if f.preparer.startswith("swscale"):
            ratio = served[(f.size, f.model)].fps / f.fps
            print(f"  ratio served/swscale AREA at {f.size[0]}x{f.size[1]} for {f.model}: {ratio:.2f}x")
    report(args, figures)
    return 0


def run_runtimes(args: argparse.Namespace) -> int:
    check_json(args)
    import torch

    from ..bench.machine import describe
    from ..bench.runtimes import NETWORKS, run_runtime_bench
    from ..errors import ConfigError

    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if not networks or set(networks) - set(NETWORKS):
        raise ConfigError(f"--networks takes {', '.join(NETWORKS)} (got {args.networks!r})")
    if not runtimes or set(runtimes) - set(RUNTIME_NAMES) or runtimes[0] != "torch-fp32":
        raise ConfigError(f"--runtimes takes {', '.join(RUNTIME_NAMES)}, torch-fp32 first: every row is compared "
                          f"with it (got {args.runtimes!r})")
    if args.repeats < 1 or args.batch < 1 or (args.size is not None and args.size < 16):
        raise ConfigError("--repeats and --batch must be at least 1, --size at least 16")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.videos is None:
        shared = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos"
        args.videos = sorted(shared.glob("*")) if shared.is_dir() else []
    figures = run_runtime_bench(networks, runtimes, repeats=args.repeats, videos=args.videos, batch=args.batch,
                                size=args.size)
    print(f"machine: {describe(torch.device('cpu'))}")
    print(f"inputs:  {len(args.videos)} real clips" if args.videos else "inputs:  synthetic motion (no clips given)")
    print("  seeded random weights; diff = max |output - torch fp32| / spread of torch fp32's output; "
          f"best of {args.repeats} calls")
    print(f"  {'network':40s} {'runtime':18s} {'ms/call':>9s} {'items/s':>8s} {'x fp32':>7s} {'diff':>8s} "
          f"{'top-1':>6s}")
    base: dict[str, float] = {}
    for f in figures:
        if f.seconds is None:
            print(f"  {f.network:40s} {f.runtime:18s} {f.note}")
            continue
        if f.runtime == "torch-fp32":
            base[f.network] = f.seconds
        ratio = base[f.network] / f.seconds if f.network in base else float("nan")
        diff = f"{f.max_rel_diff:8.1e}" if f.max_rel_diff is not None else f"{'':8s}"
        top1 = f"{100 * f.top1_agreement:5.0f}%" if f.top1_agreement is not None else f"{'':6s}"
        print(f"  {f.network:40s} {f.runtime:18s} {1000 * f.seconds:9.1f} {f.items_per_s:8.1f} {ratio:7.2f} "
              f"{diff} {top1}")
    report(args, figures)
    return 0


def _engine_model(spec: str | None, device: torch.device) -> VideoModel:
    from ..models.torchvision_video import TORCHVISION_MODELS, untrained_torchvision_video

    if spec in TORCHVISION_MODELS:
        return untrained_torchvision_video(spec, device)
    return bench_model(spec, device)


def run_gpu(args: argparse.Namespace) -> int:
    check_json(args)
    import asyncio
    import tempfile

    import torch

    from ..bench.engine import bf16_peak, count_flops, decode_fps, run_streams
    from ..bench.machine import describe
    from ..bench.offline import make_bench_clip
    from ..errors import ConfigError
    from ..models.base import pick_device
    from ..precision import resolve_precision
    from ..runtime import with_runtime
    from ..worker import BatchSettings

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("bench gpu: torch sees no CUDA GPU here; run it with --device cpu to measure this CPU's "
                          "engine the same way")
    counts = _peer_counts(args) if args.sweep else [args.streams]
    if min(counts) < 1 or args.seconds <= 0 or args.warmup < 0 or args.stride < 1 or args.max_batch < 1:
        raise ConfigError("--streams, --stride and --max-batch must be at least 1, --seconds positive")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = _engine_model(args.model, device)
    flops = count_flops(model)
    from ..compiled import with_compile

    model = with_compile(with_runtime(model, args.runtime) if device.type == "cpu" else model, args.compile)
    precision = resolve_precision(model, args.precision).precision
    compile_s = warm_compiled(model, precision, args.max_batch)  # before the streams: not in their figures
    batch = BatchSettings(max_batch=args.max_batch, max_wait_ms=5.0, queue_size=4 * args.max_batch,
                          precision=precision)
    peak = bf16_peak(device)
    print(f"machine: {describe(device)}")
    print(f"model:   {model.info.name} ({model.info.family}, {model.info.frames} x {model.info.crop[0]}x"
          f"{model.info.crop[1]}), {getattr(model, 'runtime', 'torch')} at {precision}, stride {args.stride}, "
          f"max batch {args.max_batch}; {flops[0] / 1e9:.2f} GFLOP a frame, {flops[1] / 1e9:.2f} GFLOP a window"
          + (f"; torch.compile mode {model.compile_guard.mode}" if hasattr(model, "compile_guard") else ""))
    print(f"streams: prepared frames injected at {15:g} fps each (no decode, no network), {args.seconds:g} s measured "
          f"after {args.warmup:g} s")
    print("streams  labels  latency p50/p95/p99 ms  dropped  windows min/needed  busy enc/cls  batch enc/cls  "
          "TFLOP/s  real time")
    runs, best = [], 0
    for n in counts:
        run = asyncio.run(run_streams(model, n, seconds=args.seconds, warmup=args.warmup, stride=args.stride,
                                      batch=batch, flops=flops))
        runs.append(run)
        p50, p95, p99 = (run.percentile(q) for q in (50, 95, 99))
        share = f"{run.tflops:.3f}" + (f" ({100 * run.tflops / peak:.1f}% of {peak:g})" if peak else "")
        print(f"{n:7d}  {len(run.latency_ms):6d}  {p50 or 0:6.0f} / {p95 or 0:5.0f} / {p99 or 0:5.0f}  "
              f"{run.dropped:7d}  {min(run.windows_per_stream):7d} / {run.expected_windows:5.1f}   "
              f"{100 * run.encode_busy_s / run.seconds:4.0f}% / {100 * run.classify_busy_s / run.seconds:3.0f}%  "
              f"{run.encode_mean_batch:5.1f} / {run.classify_mean_batch:5.1f}  {share:>8s}  "
              f"{'yes' if run.sustained else 'no'}", flush=True)
        if not run.sustained:
            if len(counts) > 1:
                print(f"stopping the sweep: {n} streams are not sustained in real time")
            break
        best = n
    with tempfile.TemporaryDirectory(prefix="har-bench-gpu-") as tmp:
        fps = decode_fps(make_bench_clip(Path(tmp), seconds=10.0))
    print(f"largest number of streams sustained in real time: {best if best else 'none'}")
    print(f"decode:  one thread decodes 640x480 H.264 at {fps:.0f} frames/s = {fps / 15:.0f} streams at 15 fps; "
          f"this machine's {os.cpu_count()} logical cores cap real decoding near {fps / 15 * (os.cpu_count() or 1):.0f}")
    if args.compile:
        print(f"compile: {compile_figures(model, compile_s)}")
    report(args, {"model": model.info.name, "precision": precision, "runtime": getattr(model, "runtime", "torch"),
                  **compile_figures(model, compile_s), "flops_per_frame": flops[0], "flops_per_window": flops[1], "bf16_peak_tflops": peak, "runs": runs,
                  "streams_sustained": best, "decode_fps_one_thread": fps}, device)
    return 0

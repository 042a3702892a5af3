#!/usr/bin/env bash
# The one prepared GPU check: runs the train/eval and engine tests on the GPU (tests/test_cuda.py: frames resized
# on the card, CLIP on its own stream, --compile with CUDA graphs, channels_last_3d, fp16/bf16 labels), measures
# CNN-LSTM training throughput (clips/s) on a synthetic dataset, then the engine's capacity (`har-stream bench
# gpu`: injected live streams of the CNN-LSTM and of S3D), each eager and with --compile side by side, and a short
# `bench offline --device cuda` both ways, and writes everything to one folder.
#
#   scripts/gpu_check.sh [OUT_DIR]          default OUT_DIR: $OUT if set (the device machine), else
#                                           test-artifacts/gpu-check
#   HAR_STREAM_TEST_DEVICE=cpu scripts/gpu_check.sh /tmp/check    the same on a CPU (to try the script here)
#
# Results: OUT_DIR/env.txt (card, driver, versions), OUT_DIR/tests.log (pytest), OUT_DIR/throughput.json and
# OUT_DIR/throughput.txt, OUT_DIR/gpu-cnn-lstm.{json,txt}, OUT_DIR/gpu-s3d.{json,txt}, OUT_DIR/offline.{json,txt},
# the same three with -compile appended (--compile), and OUT_DIR/compile-side-by-side.json (eager vs compiled).
# HAR_STREAM_GPU_SWEEP / HAR_STREAM_GPU_S3D_SWEEP set the stream counts tried (defaults below). Exit status: non-zero when a test failed or the measurement could not run.
#
# Python: $PYTHON, else .venv/bin/python when it exists, else python3 (the GPU machines' python3 holds a CUDA
# PyTorch). Packages those machines lack (PyAV, yt-dlp) travel as wheels in .whl/ (git-ignored), made here with:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0 yt-dlp
# and installed by this script into a private folder. Without the --compile runs it was estimated at 2-5 minutes
# on an H100 (never run yet: no GPU was lent); the compiled runs add their compile time (estimated 3-6 minutes).
# HAR_STREAM_GPU_STEPS picks parts, comma-separated (default tests,train,bench,compile), so that a device call
# limited to 10 minutes can run it in two: e.g. tests,train,bench then compile.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RESULTS="${1:-${OUT:-$ROOT/test-artifacts/gpu-check}}"
DEVICE="${HAR_STREAM_TEST_DEVICE:-cuda}"
if [[ "$DEVICE" == cpu ]]; then GPU_SWEEP_DEFAULT=4,8; GPU_S3D_SWEEP_DEFAULT=1; fi  # a quick try of the script
mkdir -p "$RESULTS"

if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3; fi

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/har-site .whl/*.whl
    export PYTHONPATH="/tmp/har-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HAR_STREAM_TEST_DEVICE="$DEVICE"
export HAR_STREAM_HOME="$RESULTS/home" HAR_STREAM_OFFLINE=1 HAR_STREAM_TEST_CACHE="$RESULTS/test-cache"

"$PY" - "$DEVICE" >"$RESULTS/env.txt" <<'PYEOF'
import importlib, sys
import torch
device = sys.argv[1]
print("python", sys.version.split()[0], "torch", torch.__version__)
missing = [m for m in ("av", "yt_dlp", "matplotlib", "tqdm", "pytest", "filelock", "transformers")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {', '.join(missing)}; carry them as wheels in .whl/ (see this script's header)")
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("HAR_STREAM_TEST_DEVICE is cuda but torch sees no CUDA GPU")
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", "bf16", torch.cuda.is_bf16_supported())
PYEOF
cat "$RESULTS/env.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$RESULTS/env.txt" 2>/dev/null || true

STEPS=",${HAR_STREAM_GPU_STEPS:-tests,train,bench,compile},"
step() { [[ "$STEPS" == *",$1,"* ]]; }
status=0
set +e
if step tests; then
"$PY" -m pytest -p no:cacheprovider -q -rs \
    tests/test_eval_metrics.py tests/test_train_augment.py tests/test_train_resume.py tests/test_train_eval_cli.py \
    tests/test_train_pretrained.py tests/test_eval_models.py tests/test_datasets.py \
    tests/test_precision.py tests/test_adaptive_stride.py tests/test_model_parity.py tests/test_cuda.py \
    tests/test_device_prepare.py tests/test_compile.py tests/test_clip_stream.py tests/test_memory_format.py \
    tests/test_hwdecode.py 2>&1 | tee "$RESULTS/tests.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi
set -e

# Training throughput: ResNet-18 CNN-LSTM (random init: no weights travel), 16 frames at 112x112, on synthetic
# clips. Stage 1 = LSTM head on cached features; stage 2 = the whole network on augmented frames (the cost
# that matters); encoding = frozen-encoder frames/s while the feature cache fills.
step train && { "$PY" - "$RESULTS" "$DEVICE" <<'PYEOF' || status=1; }
import csv, json, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
from har_stream.bench.machine import describe
from har_stream.datasets import open_dataset
from har_stream.training.settings import RunOptions, TrainSettings
from har_stream.training.trainer import Trainer, dtype_name, training_dtype
from tests.helpers.motion_dataset import make_motion_dataset

results, device = Path(sys.argv[1]), torch.device(sys.argv[2])
gpu = device.type == "cuda"
groups, batch = (64, 32) if gpu else (4, 4)
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    data = make_motion_dataset(tmp / "data", train_groups=groups, test_groups=1, clips_per_group=2,
                               width=160, height=120)
    dataset = open_dataset(data.root)
    settings = TrainSettings(encoder="resnet18", pretrained=False, epochs=1, fine_tune_epochs=2, batch_size=batch,
                             clips_per_video=4 if gpu else 1, val_fraction=0.0, precision="auto")
    trainer = Trainer(dataset, settings, tmp / "run", RunOptions(device=str(device)), cache=tmp / "cache",
                      say=lambda line: print(line, flush=True))
    started = time.monotonic()
    trainer.run()
    total = time.monotonic() - started
    rows = list(csv.DictReader((tmp / "run" / "log.csv").open()))
    frames = sum(len(np.load(trainer.frames.path(c), mmap_mode="r")) for c in dataset.train)

    # encode throughput on its own: a fresh frozen ResNet-18, as stage 1 runs it
    from har_stream.models.cnn_lstm import build_encoder
    encoder = build_encoder("resnet18")[0].to(device).eval()
    x = torch.randint(0, 255, (256, 3, 112, 112), device=device).float()
    dtype = training_dtype("auto", device)
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        encoder(x)
        if gpu:
            torch.cuda.synchronize()
        t0, n = time.monotonic(), 0
        while time.monotonic() - t0 < 3.0:
            encoder(x); n += len(x)
        if gpu:
            torch.cuda.synchronize()
        encode_fps = n / (time.monotonic() - t0)

out = {
    "device": describe(device), "precision": dtype_name(dtype), "batch_size": batch, "frames": 16, "size": 112,
    "train_videos": len(dataset.train), "sampled_frames": frames,
    "stage1_head_clips_per_s": float(rows[0]["clips_per_s"]),
    "stage2_finetune_clips_per_s_epochs": [float(r["clips_per_s"]) for r in rows[1:]],
    "encoder_frames_per_s": round(encode_fps, 1), "run_seconds": round(total, 1),
}
(results / "throughput.json").write_text(json.dumps(out, indent=1) + "\n")
text = (f"{out['device']}, precision {out['precision']}, batch {batch}, 16 frames at 112x112, ResNet-18 CNN-LSTM\n"
        f"  stage 1 (head on cached features): {out['stage1_head_clips_per_s']:.0f} clips/s\n"
        f"  stage 2 (whole network, augmented): {', '.join(f'{v:.1f}' for v in out['stage2_finetune_clips_per_s_epochs'])}"
        f" clips/s per epoch (the first includes warm-up)\n"
        f"  frozen encoder: {encode_fps:.0f} frames/s at batch 256\n")
(results / "throughput.txt").write_text(text)
print(text)
PYEOF
# The engine on the card: injected streams (no decode), then a short offline run with real decode.
bench() {  # NAME ARGS...: har-stream bench ARGS, its output in NAME.txt and its report in NAME.json
    local name=$1; shift
    "$PY" -m har_stream.cli bench "$@" --json "$RESULTS/$name.json" 2>&1 | tee "$RESULTS/$name.txt"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
}
set +e
# Each eager, then with --compile (reduce-overhead: CUDA graphs), side by side on the same warm card.
for compile in "" "--compile"; do
    step "${compile:+compile}${compile:-bench}" || continue
    suffix=${compile:+-compile}
    bench "gpu-cnn-lstm$suffix" gpu --device "$DEVICE" --seconds 10 $compile \
        --sweep "${HAR_STREAM_GPU_SWEEP:-${GPU_SWEEP_DEFAULT:-100,250,500,750}}"
    bench "gpu-s3d$suffix" gpu --device "$DEVICE" --model s3d --seconds 10 --max-batch 64 $compile \
        --sweep "${HAR_STREAM_GPU_S3D_SWEEP:-${GPU_S3D_SWEEP_DEFAULT:-30,60,120}}"
    bench "offline$suffix" offline --device "$DEVICE" --repeats 1 $compile
done
"$PY" - "$RESULTS" <<'PYEOF' || status=1
import json, sys
from pathlib import Path
results = Path(sys.argv[1])
def figures(name):
    path = results / f"{name}.json"
    if not path.is_file():
        return None
    f = json.loads(path.read_text())["figures"]
    keep = ("streams_sustained", "compiled", "compile_mode", "compile_s", "compile_failure", "precision", "runtime")
    out = {k: f.get(k) for k in keep if k in f}
    if "engine" in f:
        out["engine_realtime"] = f["engine"].get("realtime") if isinstance(f["engine"], dict) else None
        out["ratio_engine_over_naive"] = f.get("ratio_engine_over_naive")
    return out
side = {name: {"eager": figures(name), "compile": figures(f"{name}-compile")}
        for name in ("gpu-cnn-lstm", "gpu-s3d", "offline")}
(results / "compile-side-by-side.json").write_text(json.dumps(side, indent=1) + "\n")
print(json.dumps(side, indent=1))
PYEOF
set -e
echo "gpu_check: results in $RESULTS (status $status)"
exit $status

#!/usr/bin/env bash
# Set up (scripts/setup.sh), then start the main job: the server with the live page.
#
#   scripts/start.sh                           har-stream serve on http://127.0.0.1:8080 (options pass through)
#   scripts/start.sh --port 9000 --model my.pt options of `har-stream serve`
#   scripts/start.sh analyse                   analyse a synthetic sample clip with the default model
#   scripts/start.sh analyse path/to/video.mp4 analyse that file (or URL); options of `har-stream analyse` pass
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

JOB=serve  # the main job: serve | analyse (the first argument may choose)
if [[ "${1:-}" == "analyse" || "${1:-}" == "serve" ]]; then
    JOB="$1"
    shift
fi

scripts/setup.sh
HAR="$ROOT/.venv/bin/har-stream"

has_input() {  # does the command line name an input (a positional argument of `har-stream analyse`)?
    local arg
    while (($#)); do
        arg="$1"; shift
        case "$arg" in
            --) return 0 ;;                      # whatever follows is positional
            -h|--help|--*=*) ;;                  # no separate value
            -*) (($#)) && shift ;;               # every other analyse option takes one value
            *) return 0 ;;
        esac
    done
    return 1
}

sample_clip() {  # an 8 s synthetic motion clip (a square moves left, holds still, moves up, moves right), made once and kept beside the weights cache
    local dir="${HAR_STREAM_HOME:-$HOME/.cache/har-stream}/samples"
    mkdir -p "$dir" 2>/dev/null && [[ -w "$dir" ]] || dir="$(mktemp -d "${TMPDIR:-/tmp}/har-stream-sample.XXXXXX")"
    local clip="$dir/motion-sample.mp4"
    if [[ ! -s "$clip" ]]; then
        echo "start: writing a synthetic sample clip to $clip" >&2
        "$ROOT/.venv/bin/python" -c '
import os, sys
from pathlib import Path
from har_stream.synthetic import write_motion_clip
clip = Path(sys.argv[1])
tmp = clip.with_name(f".{clip.name}.{os.getpid()}.mp4")
script = [("moving left", 2.0), ("holding still", 2.0), ("moving up", 2.0), ("moving right", 2.0)]
write_motion_clip(tmp, script, width=320, height=240, fps=15.0, speed=0.35, seed=1, start=(0.78, 0.72))
os.replace(tmp, clip)
' "$clip"
    fi
    printf '%s' "$clip"
}

run_analyse() {
    local args=("$@") rc=0
    if ! has_input "$@"; then
        args=("$(sample_clip)" "$@")
    fi
    "$HAR" analyse "${args[@]}" || rc=$?
    if [[ $rc -eq 6 ]]; then  # WeightsError: the line above says what to do; this says where to read more
        echo "start: see README.md, section Weights (\`.venv/bin/har-stream weights list\` shows the cache)" >&2
    fi
    return "$rc"
}

case "$JOB" in
    analyse) run_analyse "$@" ;;
    serve) exec "$HAR" serve "$@" ;;
    *) echo "start: unknown JOB $JOB" >&2; exit 2 ;;
esac

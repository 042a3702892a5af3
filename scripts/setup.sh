#!/usr/bin/env bash
# Set up har-stream on a fresh Debian machine: system packages, a virtual environment at .venv, and
# `pip install -e '.[test,runtimes]'`. Idempotent and fast once done: pip runs again only when pyproject.toml changes
# (a stamp in .venv holds its hash), apt-get only when a needed program is missing.
#
#   scripts/setup.sh          what running needs (ffmpeg)
#   scripts/setup.sh --test   what the tests need too (chromium for the browser tests; GStreamer's RTSP
#                             server and python3-gi for the RTSP camera tests; mosquitto for the MQTT tests)
#
# Environment: HAR_STREAM_PYTHON=/path/to/python3.11 picks the interpreter; HAR_STREAM_SKIP_APT=1 never
# calls apt-get (only reports what is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP="$VENV/.har-stream-setup"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

want_test=0
for arg in "$@"; do
    case "$arg" in
        --test) want_test=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $arg; use --test or nothing" ;;
    esac
done

# ------------------------------------------------------------------------------------------ Python
python_ok() {  # a Python 3.11+ that can build a venv with pip in it
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

python_new_enough() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

find_python() {  # the first candidate that can build a venv; else the first new enough; else nothing
    local candidate fallback=""
    for candidate in ${HAR_STREAM_PYTHON:-} python3.11 python3; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if python_ok "$candidate"; then
            command -v "$candidate"
            return
        fi
        if [[ -z "$fallback" ]] && python_new_enough "$candidate"; then
            fallback="$(command -v "$candidate")"
        fi
    done
    printf '%s' "$fallback"
}

# ------------------------------------------------------------------------------------------ apt
# One install step for every system package: ffmpeg always, chromium and GStreamer's RTSP server for the
# tests, and Python itself (with its venv module) when no usable Python 3.11+ is found.
GST_RTSP_PACKAGES=(gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good
                   gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)
gst_rtsp_ok() {  # the RTSP test camera (tests/helpers/rtsp_server.py) runs with the system python
    /usr/bin/python3 -c "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')
from gi.repository import Gst, GstRtspServer; Gst.init(None)
raise SystemExit(any(Gst.ElementFactory.find(e) is None for e in ('appsrc', 'videoconvert', 'x264enc', 'rtph264pay')))" \
        >/dev/null 2>&1
}

apt_packages=()
command -v ffmpeg >/dev/null 2>&1 || apt_packages+=(ffmpeg)
if [[ $want_test == 1 ]] && ! command -v chromium >/dev/null 2>&1; then
    apt_packages+=(chromium)
fi
if [[ $want_test == 1 ]] && ! gst_rtsp_ok; then
    apt_packages+=("${GST_RTSP_PACKAGES[@]}")
fi
mosquitto_ok() { command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]]; }
if [[ $want_test == 1 ]] && ! mosquitto_ok; then
    apt_packages+=(mosquitto)  # the MQTT broker the event tests publish to
fi
postgres_ok() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; }
if [[ $want_test == 1 ]] && ! postgres_ok; then
    apt_packages+=(postgresql)  # the server the shared-database tests start (tests/helpers/postgres_server.py)
fi
PY="$(find_python)"
if [[ -z "$PY" ]]; then
    apt_packages+=(python3 python3-venv)
elif ! python_ok "$PY"; then
    # Debian splits venv/ensurepip out of the interpreter package.
    minor="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    apt_packages+=("python${minor}-venv")
fi

run_apt() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            return 1
        fi
        sudo=(sudo)
        [[ -t 0 ]] || sudo+=(-n)  # no terminal (CI): never hang on a password prompt
    fi
    say "installing system packages: ${apt_packages[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${apt_packages[@]}"
}

if ((${#apt_packages[@]})); then
    if ! command -v apt-get >/dev/null 2>&1 || [[ "${HAR_STREAM_SKIP_APT:-}" == 1 ]] || ! run_apt; then
        say "could not install ${apt_packages[*]}; as root run: apt-get install -y ${apt_packages[*]}"
        say "carrying on with what is present"
    fi
    PY="$(find_python)"
fi

command -v ffmpeg >/dev/null 2>&1 \
    || die "ffmpeg is missing; install it (Debian: apt-get install -y ffmpeg) and run this script again"
if [[ $want_test == 1 ]] && ! command -v chromium >/dev/null 2>&1; then
    say "warning: chromium is missing; the browser tests need it (Debian: apt-get install -y chromium)"
fi
if [[ $want_test == 1 ]] && ! gst_rtsp_ok; then
    say "warning: GStreamer's RTSP server is missing; the RTSP camera tests skip without it" \
        "(Debian: apt-get install -y ${GST_RTSP_PACKAGES[*]})"
fi
if [[ $want_test == 1 ]] && ! mosquitto_ok; then
    say "warning: mosquitto is missing; the MQTT tests skip without it (Debian: apt-get install -y mosquitto)"
fi
if [[ $want_test == 1 ]] && ! postgres_ok; then
    say "warning: PostgreSQL is missing; the --database tests fail without it (Debian: apt-get install -y postgresql)"
fi
[[ -n "$PY" ]] || die "no Python 3.11+ found; install python3.11 (with its venv module) or set HAR_STREAM_PYTHON"
python_ok "$PY" || die "$PY cannot create virtual environments; install its venv package (Debian: python3-venv)"

# ------------------------------------------------------------------------------------------ venv + pip
# A lock so that two setups at once (e.g. start.sh and test.sh) do not pip install over each other.
mkdir -p "$VENV"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV/.setup.lock"
    flock 9
fi

if [[ ! -x "$VENV/bin/python" ]] || ! python_new_enough "$VENV/bin/python" \
        || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    say "creating the virtual environment $VENV with $PY ($("$PY" --version 2>&1))"
    find "$VENV" -mindepth 1 -maxdepth 1 ! -name .setup.lock -exec rm -rf {} +
    "$PY" -m venv "$VENV"
fi

# The stamp covers what decides the install: pyproject.toml and the interpreter.
want_stamp="$(cat pyproject.toml <("$VENV/bin/python" -VV) | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" && -x "$VENV/bin/har-stream" ]]; then
    exit 0
fi

say "installing har-stream and its test tools into $VENV (pip install -e '.[test,runtimes]'; first time: minutes)"
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test,runtimes]'
version="$("$VENV/bin/har-stream" --version)" \
    || die "the install finished but \`$VENV/bin/har-stream --version\` fails; see the error above"
printf '%s\n' "$want_stamp" >"$STAMP"
say "done: $version"

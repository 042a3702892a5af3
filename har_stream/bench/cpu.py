"""Where the CPU goes: per-thread CPU time of this process grouped by role, other processes, the machine.

Linux only (``/proc``); elsewhere every figure is zero. A thread's CPU time is ``utime + stime`` of
``/proc/self/task/<tid>/stat``. Threads are grouped by name: Python threads by ``threading`` name, native
threads (FFmpeg's codec threads, torch's intra-op pool) by their kernel name (``comm``). FFmpeg names its
frame threads (``av:h264:df0`` …); other native threads inherit the name of the thread that created them.
CPython 3.11 leaves every kernel name at the process's, so ``named_threads()`` gives each Python thread
started under it its Python name as kernel name (first 15 characters): then an inference thread's torch
pool counts as inference. It also shows the roles in ``top -H``; nothing else reads those names.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

ROLES = ("decode", "inference", "event loop", "other")
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _cpu_seconds(stat_path: Path) -> float | None:
    """utime + stime of a /proc stat file, in seconds; None when it is gone."""
    try:
        text = stat_path.read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def _comm(tid: int) -> str:
    try:
        return Path(f"/proc/self/task/{tid}/comm").read_text().strip()
    except OSError:
        return ""


def role(name: str) -> str:
    """The role a thread plays in the server, from its name (FFmpeg names its own codec threads ``av:…``,
    e.g. ``av:h264:df0``; only decode threads use codecs in the server)."""
    if name.startswith(("har-decode", "av:")):
        return "decode"
    if name.startswith("har-infer"):
        return "inference"
    return "other"


def _name_this_thread(frame: FrameType, event: str, arg: Any) -> None:
    sys.setprofile(None)  # once, at the thread's start: no cost afterwards
    with contextlib.suppress(OSError):
        Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text(threading.current_thread().name[:15])


@contextlib.contextmanager
def named_threads() -> Iterator[None]:
    """Threads started meanwhile take their Python name as kernel name (see the module docstring)."""
    previous = getattr(threading, "_profile_hook", None)
    threading.setprofile(_name_this_thread)
    try:
        yield
    finally:
        threading.setprofile(previous)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far: this process's live threads (tid → (role, seconds)), this process in all, some
    other processes, and the machine's busy and total seconds."""

    threads: dict[int, tuple[str, float]]
    process: float
    pids: dict[int, float]
    machine_busy: float
    machine_total: float


def _machine() -> tuple[float, float]:
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0, 0.0
    ticks = [int(v) for v in first[:8]]  # user nice system idle iowait irq softirq steal
    total = sum(ticks)
    return (total - ticks[3] - ticks[4]) * _TICK_S, total * _TICK_S


def snapshot(pids: tuple[int, ...] = ()) -> CpuSnapshot:
    """Call it on the event loop's thread: that thread is the ``event loop`` role."""
    python = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    loop_tid = threading.get_native_id()
    threads: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc/self/task").iterdir():
            tid = int(entry.name)
            seconds = _cpu_seconds(entry / "stat")
            if seconds is not None:
                threads[tid] = ("event loop" if tid == loop_tid else role(python.get(tid) or _comm(tid)), seconds)
    busy, total = _machine()
    measured = {pid: s for pid in pids if (s := _cpu_seconds(Path(f"/proc/{pid}/stat"))) is not None}
    return CpuSnapshot(threads, _cpu_seconds(Path("/proc/self/stat")) or 0.0, measured, busy, total)


@dataclass(frozen=True)
class CpuUse:
    """CPU used over an interval, in cores (1.0 = one core busy all the time)."""

    seconds: float
    cores: int
    roles: dict[str, float]  # the server process by role; threads that ended meanwhile count as "other"
    process: float
    processes: float  # the ``pids`` given to both snapshots, together
    machine: float  # every process on the machine (other users' too)

    def share(self, cores_used: float) -> str:
        """``"% of one core / % of the machine"``."""
        return f"{100 * cores_used:.0f}% / {100 * cores_used / self.cores:.0f}%"


def cpu_use(before: CpuSnapshot, after: CpuSnapshot, seconds: float) -> CpuUse:
    def rate(delta: float) -> float:
        return max(0.0, delta) / seconds if seconds > 0 else 0.0

    roles = dict.fromkeys(ROLES, 0.0)
    for tid, (name, used) in after.threads.items():  # a thread started meanwhile: all its time is in the interval
        roles[name] += rate(used - before.threads.get(tid, (name, 0.0))[1])
    process = rate(after.process - before.process)
    roles["other"] += max(0.0, process - sum(roles.values()))  # threads that ended during the interval
    common = set(before.pids) & set(after.pids)
    cores = os.cpu_count() or 1
    machine_total = after.machine_total - before.machine_total
    machine = cores * (after.machine_busy - before.machine_busy) / machine_total if machine_total > 0 else 0.0
    return CpuUse(seconds, cores, roles, process, sum(rate(after.pids[p] - before.pids[p]) for p in common), machine)

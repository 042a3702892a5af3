"""``--json FILE`` for every bench: the figures with the machine, the versions and the settings they came from.

One writer for every bench, so each report has the same frame: ``bench``, ``machine`` (CPU model and the flags
that decide speed, cores, memory, GPU and driver when one was used), ``versions``, ``settings`` (the command's
options) and ``figures`` (the bench's own dataclasses, with their derived properties). Written atomically.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ..fileutil import publish
from .machine import cpu_model

SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("har-stream", "torch", "torchvision", "av", "numpy", "aiortc", "transformers", "openvino",
            "onnxruntime")


def jsonable(value: Any) -> Any:
    """Dataclasses (fields and properties), sequences, mappings, paths, numpy and torch scalars → JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name, attr in vars(type(value)).items():
            if isinstance(attr, property) and not name.startswith("_"):
                try:
                    out[name] = jsonable(getattr(value, name))
                except Exception:  # a derived figure that cannot be computed (e.g. nothing measured) is left out
                    pass
        return out
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return jsonable(value.item())
    return str(value)  # Path, torch.device, dtype, …


def machine_facts(device: torch.device | None = None) -> dict[str, Any]:
    from ..precision import cpu_flags

    flags = cpu_flags()
    facts: dict[str, Any] = {
        "cpu": cpu_model(), "cpu_flags": [f for f in SPEED_FLAGS if f in flags], "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "python": platform.python_version(),
    }
    try:
        facts["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                        "cuda": torch.version.cuda, "driver": _nvidia_driver()}
    return facts


def peak_rss_mib() -> float:
    """The largest resident set of this process (and of the children it waited for, e.g. bench cameras')."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def _nvidia_driver() -> str | None:
    try:
        return Path("/proc/driver/nvidia/version").read_text().split("Kernel Module")[1].split()[0]
    except (OSError, IndexError):
        return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_report(path: Path, bench: str, settings: dict[str, Any], figures: Any,
                 device: torch.device | None = None) -> Path:
    report = {
        "bench": bench,
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(device),
        "versions": versions(),
        "settings": jsonable({k: v for k, v in settings.items() if k not in ("func", "json") and not callable(v)}),
        "figures": jsonable(figures),
        "peak_rss_mib": peak_rss_mib(),
    }
    if device is not None and getattr(device, "type", None) == "cuda":
        report["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    publish(tmp, path)
    return path

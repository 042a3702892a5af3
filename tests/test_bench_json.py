"""Every bench writes `--json FILE`: the figures with the machine, the versions and the settings, as valid JSON.

Tiny settings throughout (the test-trained model, short clips, one repeat): these check the report, never speed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.clips import run_cli
from tests.helpers.media import make_mp4


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("bench-json") / "small.mp4", frames=60, fps=30.0, size=(160, 120))


def _report(path: Path, bench: str) -> dict:
    data = json.loads(path.read_text())
    assert data["bench"] == bench
    machine = data["machine"]
    assert machine["cpu"] and machine["logical_cores"] >= 1 and isinstance(machine["cpu_flags"], list)
    assert data["versions"]["torch"] and data["versions"]["har-stream"]
    assert "func" not in data["settings"] and "json" not in data["settings"]
    assert data["peak_rss_mib"] > 50  # torch alone is more than that
    return data


def _bench(args: list[str], env: dict[str, str], timeout: float = 240) -> str:
    proc = run_cli("bench", *args, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_offline(tiny_checkpoint: Path, small_clip: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "offline.json"
    stdout = _bench(["offline", "--model", str(tiny_checkpoint), "--video", str(small_clip), "--repeats", "1",
                     "--json", str(out)], cli_env)
    data = _report(out, "offline")
    figures = data["figures"]
    assert figures["engine"]["frames_decoded"] == figures["naive"]["frames_decoded"] == 60
    assert figures["engine"]["realtime"] > 0 and figures["ratio_engine_over_naive"] > 0
    stages = dict(figures["engine"]["stage_s"])
    assert set(stages) == {"decode", "prepare", "encode", "head"} and all(v > 0 for v in stages.values())
    # encode and head share the inference thread: together they cannot exceed the run's wall time
    assert stages["encode"] + stages["head"] <= figures["engine"]["wall_s"] * 1.05
    assert data["settings"]["repeats"] == 1 and f"json:    {out}" in stdout


def test_prepare_and_runtimes(cli_env: dict[str, str], tmp_path: Path) -> None:
    prepare, runtimes = tmp_path / "prepare.json", tmp_path / "runtimes.json"
    _bench(["prepare", "--frames", "2", "--repeats", "1", "--sizes", "320x240", "--models", "r2plus1d-18",
            "--json", str(prepare)], cli_env)
    rows = _report(prepare, "prepare")["figures"]
    assert len(rows) == 3 and all(r["fps"] > 0 and r["diff"]["max"] >= 0 for r in rows)
    _bench(["runtimes", "--networks", "resnet18", "--runtimes", "torch-fp32,torch-bf16,openvino-fp32",
            "--batch", "2", "--size", "32", "--repeats", "1", "--json", str(runtimes)], cli_env)
    rows = _report(runtimes, "runtimes")["figures"]
    assert [r["runtime"] for r in rows] == ["torch-fp32", "torch-bf16", "openvino-fp32"]
    assert all(r["seconds"] > 0 for r in rows) and rows[0]["max_rel_diff"] == 0.0
    assert rows[2]["max_rel_diff"] < 1e-4  # OpenVINO fp32 is PyTorch fp32 to float rounding


def test_live(tiny_checkpoint: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    _bench(["live", "--peers", "1", "--seconds", "2", "--model", str(tiny_checkpoint), "--json", str(out)], cli_env)
    figures = _report(out, "live")["figures"]
    (run,) = figures["runs"]
    assert run["peers"] == 1 and "sustained" in run


def test_jobs(small_clip: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "jobs.json"
    _bench(["jobs", "--peers", "1", "--seconds", "2", "--video", str(small_clip), "--json", str(out)], cli_env,
           timeout=300)
    figures = _report(out, "jobs")["figures"]
    assert set(figures) >= {"peers_alone", "job_alone", "peers_with_job", "job_with_peers"}


def test_cameras(tiny_checkpoint: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed; the cameras bench streams its cameras with it")
    out = tmp_path / "cameras.json"
    _bench(["cameras", "--cameras", "1", "--seconds", "2", "--model", str(tiny_checkpoint), "--json", str(out)],
           cli_env, timeout=300)
    (run,) = _report(out, "cameras")["figures"]["runs"]
    assert run["cameras"] == 1


def test_a_json_path_in_a_missing_folder_is_refused_before_running(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_cli("bench", "prepare", "--json", str(tmp_path / "no" / "such.json"), env=cli_env)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_gpu_bench_on_the_cpu(tiny_checkpoint: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    """`bench gpu`'s engine measurement, run on the CPU: injected streams, batches, FLOPs, the decode figure."""
    out = tmp_path / "gpu.json"
    stdout = _bench(["gpu", "--device", "cpu", "--model", str(tiny_checkpoint), "--streams", "2", "--seconds", "2",
                     "--warmup", "1", "--json", str(out)], cli_env)
    data = _report(out, "gpu")
    figures = data["figures"]
    (run,) = figures["runs"]
    assert run["streams"] == 2 and len(run["windows_per_stream"]) == 2 and run["latency_ms"]
    assert figures["flops_per_frame"] > 0 and run["flops"] > 0 and figures["decode_fps_one_thread"] > 0
    assert figures["bf16_peak_tflops"] is None  # no card: no peak to compare with
    assert "decode:  one thread decodes 640x480 H.264" in stdout


def test_gpu_bench_without_a_gpu_says_how_to_run_it(cli_env: dict[str, str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    proc = run_cli("bench", "gpu", env=cli_env)
    assert proc.returncode == 2 and "no CUDA GPU here; run it with --device cpu" in proc.stderr

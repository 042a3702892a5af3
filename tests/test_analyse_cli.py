"""`har-stream analyse` end to end, through the real CLI, with a model trained in this test run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import pytest

from har_stream.models.cnn_lstm import file_sha256
from tests.helpers.clips import check_labels_and_boundary, run_cli

FPS = 15.0


def analyse_json(clip: Path | str, checkpoint: Path, env: dict[str, str], out: Path, *extra: str) -> dict:
    proc = run_cli("analyse", str(clip), "--model", str(checkpoint), "--clip-threshold", "0",
                   "--json", str(out), *extra, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("stride", [4, 8])
def test_labels_follow_the_action_and_timeline_splits_at_the_change(tiny_checkpoint, change_clip, cli_env,
                                                                    tmp_path, stride):
    result = analyse_json(change_clip, tiny_checkpoint, cli_env, tmp_path / "r.json", "--stride", str(stride))
    check_labels_and_boundary(result, stride)
    assert result["model"]["weights_sha256"] == file_sha256(tiny_checkpoint)
    assert result["settings"]["stride"] == stride and result["settings"]["window"] == 16
    for seg in result["segment_predictions"]:
        assert seg["source"] == "model"
        assert len(seg["top5"]) == 4  # four classes: top-5 holds them all, best first
        assert seg["top5"][0] == [seg["label"], seg["confidence"]]
        assert abs(sum(p for _, p in seg["top5"]) - 1.0) < 1e-3


def test_30fps_clip_is_sampled_to_the_models_rate(tiny_checkpoint, change_clip_30fps, cli_env, tmp_path):
    result = analyse_json(change_clip_30fps, tiny_checkpoint, cli_env, tmp_path / "r.json", "--stride", "4")
    assert result["frames_decoded"] == 96 and result["frames_sampled"] == 48
    check_labels_and_boundary(result, 4)


def test_stdout_table_csv_and_annotated_video(tiny_checkpoint, change_clip, cli_env, tmp_path):
    out_csv, out_mp4 = tmp_path / "r.csv", tmp_path / "annotated.mp4"
    proc = run_cli("analyse", str(change_clip), "--model", str(tiny_checkpoint), "--clip-threshold", "0",
                   "--csv", str(out_csv), "--annotate", str(out_mp4), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "moving left" in proc.stdout and "holding still" in proc.stdout
    rows = list(csv.DictReader(out_csv.open()))
    assert rows and {"start", "end", "label", "confidence", "source"} <= set(rows[0])
    assert all(r["label"] in ("moving left", "holding still") for r in rows[:3] + rows[-3:])
    with av.open(str(out_mp4)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 48


def test_progress_bar_reports_frames_and_realtime(tiny_checkpoint, change_clip, cli_env):
    proc = run_cli("analyse", str(change_clip), "--model", str(tiny_checkpoint), "--clip-threshold", "0",
                   "--progress", "on", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "48/48" in proc.stderr and "realtime" in proc.stderr


def test_url_inputs_match_the_file(tiny_checkpoint, change_clip, cli_env, tmp_path, http_server):
    from tests.helpers.media import make_hls, make_video_page

    file_result = analyse_json(change_clip, tiny_checkpoint, cli_env, tmp_path / "file.json")
    (http_server.root / "clip.mp4").write_bytes(change_clip.read_bytes())
    make_hls(http_server.root / "clip.mp4", http_server.root / "hls")
    make_video_page(http_server.root / "page.html", "clip.mp4")
    for name, url in (("mp4", http_server.url("clip.mp4")), ("hls", http_server.url("hls/index.m3u8")),
                      ("page", http_server.url("page.html"))):
        result = analyse_json(url, tiny_checkpoint, cli_env, tmp_path / f"{name}.json")
        labels = [s["label"] for s in result["segment_predictions"]]
        assert labels == [s["label"] for s in file_result["segment_predictions"]], name
        assert result["frames_decoded"] == file_result["frames_decoded"], name

"""Every bad input of `har-stream analyse` gets one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers.clips import run_cli
from tests.helpers.media import make_page_without_video, make_text_file, truncated_copy


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_user_error(proc, *needles: str) -> str:
    assert proc.returncode not in (0, 1), (proc.returncode, proc.stderr)  # 1 would be an unhandled crash
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("har-stream: error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def analyse(args, checkpoint, env, *extra):
    return run_cli("analyse", *args, "--model", str(checkpoint), "--clip-threshold", "0", *extra, env=env,
                   timeout=120)


def test_missing_file(tiny_checkpoint, cli_env, tmp_path):
    assert_user_error(analyse([str(tmp_path / "nope.mp4")], tiny_checkpoint, cli_env), "no such file",
                      "nope.mp4")


def test_file_that_is_not_a_video(tiny_checkpoint, cli_env, tmp_path):
    text = make_text_file(tmp_path / "notes.mp4")
    assert_user_error(analyse([str(text)], tiny_checkpoint, cli_env), "notes.mp4")


def test_truncated_video(tiny_checkpoint, cli_env, change_clip, tmp_path):
    cut = truncated_copy(change_clip, tmp_path / "cut.mp4", keep=0.5)
    assert_user_error(analyse([str(cut)], tiny_checkpoint, cli_env), "cut.mp4")


def test_unreachable_url(tiny_checkpoint, cli_env):
    url = f"http://127.0.0.1:{closed_port()}/clip.mp4"
    assert_user_error(analyse([url], tiny_checkpoint, cli_env), "127.0.0.1")


def test_page_yt_dlp_cannot_resolve(tiny_checkpoint, cli_env, http_server):
    make_page_without_video(http_server.root / "empty.html")
    line = assert_user_error(analyse([http_server.url("empty.html")], tiny_checkpoint, cli_env))
    assert "empty.html" in line or "unsupported url" in line.lower() or "no video" in line.lower(), line


def test_unknown_model(cli_env, change_clip):
    proc = run_cli("analyse", str(change_clip), "--model", "no-such-model", env=cli_env)
    assert_user_error(proc, "unknown model", "no-such-model", "s3d")


def test_empty_label_file(cli_env, change_clip, tmp_path):
    empty = tmp_path / "labels.txt"
    empty.write_text("# nothing here\n\n")
    proc = run_cli("analyse", str(change_clip), "--labels", str(empty), env=cli_env)
    assert_user_error(proc, "labels.txt")


def test_missing_weights_while_offline_names_the_import_command(cli_env, change_clip):
    proc = run_cli("analyse", str(change_clip), "--model", "r3d-18", env=cli_env)
    assert_user_error(proc, "har-stream weights import r3d-18")


@pytest.mark.parametrize("args, needle", [
    (["--stride", "0"], "--stride"),
    (["--window", "0"], "--window"),
    (["--clip-threshold", "1.5"], "--clip-threshold"),
    (["--fps", "-3"], "--fps"),
])
def test_bad_option_values(tiny_checkpoint, cli_env, change_clip, args, needle):
    assert_user_error(analyse([str(change_clip)], tiny_checkpoint, cli_env, *args), needle)


def test_output_folder_missing(tiny_checkpoint, cli_env, change_clip, tmp_path: Path):
    proc = analyse([str(change_clip)], tiny_checkpoint, cli_env, "--json", str(tmp_path / "no" / "r.json"))
    assert_user_error(proc, "--json")

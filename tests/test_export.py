"""Offline result export: JSON round trip, CSV, terminal table, atomic writes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from har_stream.errors import InputError
from har_stream.export import (
    CSV_COLUMNS,
    format_time,
    format_timeline,
    label_color,
    read_json,
    result_from_json,
    write_csv,
    write_json,
)
from har_stream.types import AnalysisResult, ModelRef, Prediction, Segment, TimelineEntry


def _seg(start: float, end: float, top: list[tuple[str, float]], source: str = "model") -> Segment:
    return Segment(start, end, Prediction(top[0][0], top[0][1], tuple(top), source))  # type: ignore[arg-type]


@pytest.fixture
def result() -> AnalysisResult:
    five = [("jumping jack", 0.91), ("waving", 0.04), ("clapping", 0.02), ("running", 0.015), ("café dancing", 0.01)]
    return AnalysisResult(
        video_url="https://example.org/clip.mp4",
        duration=12.4,
        frames_decoded=372,
        frames_sampled=186,
        fps=30.0,
        segments=(
            _seg(0.0, 1.067, five),
            _seg(0.267, 1.333, [("jumping jack", 0.8), ("waving", 0.1)]),
            _seg(4.3, 5.367, [("café dancing", 0.42), ('say "hi", wave', 0.3)], source="clip"),
        ),
        timeline=(
            TimelineEntry("jumping jack", 0.0, 4.3, 0.77),
            TimelineEntry("café dancing", 4.3, 12.4, 0.42),
        ),
        model=ModelRef(name="cnn_lstm", weights_sha256="ab" * 32, labels="ucf101", fallback="clip"),
        settings={"window": 16, "stride": 4, "sample_fps": 15.0},
        elapsed_s=1.55,
    )


def test_json_round_trip(result: AnalysisResult, tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json(result, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == result.to_json()
    back = result_from_json(data)
    assert back == result  # every value above is already at to_json's rounding
    assert back.to_json() == data
    assert read_json(path) == result


def test_json_round_trip_is_stable_after_rounding(result: AnalysisResult) -> None:
    seg = _seg(0.123456789, 1.987654321, [("waving", 0.123456789)])
    noisy = AnalysisResult(**{**result.__dict__, "segments": (seg,), "duration": 12.3456789})
    once = noisy.to_json()
    assert result_from_json(once).to_json() == once


def test_json_is_utf8_and_indented(result: AnalysisResult, tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json(result, path)
    raw = path.read_bytes()
    assert "café dancing".encode() in raw  # not \u00e9 escapes
    assert b'\n  "video_url": ' in raw


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("timeline"), "timeline"),
        (lambda d: d["segment_predictions"][0].pop("label"), "label"),
        (lambda d: d["segment_predictions"][0].update(source="oracle"), "oracle"),
        (lambda d: d.update(duration="long"), "long"),
    ],
)
def test_malformed_json_raises_input_error(result: AnalysisResult, mutate, needle: str) -> None:
    data = json.loads(json.dumps(result.to_json()))
    mutate(data)
    with pytest.raises(InputError, match=needle):
        result_from_json(data)


def test_read_json_of_broken_file_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"video_url": ', encoding="utf-8")
    with pytest.raises(InputError, match="broken.json"):
        read_json(path)


def test_csv_rows_and_columns(result: AnalysisResult, tmp_path: Path) -> None:
    path = tmp_path / "result.csv"
    write_csv(result, path)
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert CSV_COLUMNS[:5] == ("start", "end", "label", "confidence", "source")
    assert CSV_COLUMNS[-2:] == ("top5_label", "top5_prob")
    body = rows[1:]
    assert len(body) == len(result.segments)
    assert all(len(r) == len(CSV_COLUMNS) for r in body)

    first = dict(zip(CSV_COLUMNS, body[0], strict=True))
    assert (float(first["start"]), float(first["end"])) == (0.0, 1.067)
    assert first["label"] == "jumping jack" and float(first["confidence"]) == 0.91
    assert first["source"] == "model"
    assert first["top5_label"] == "café dancing" and float(first["top5_prob"]) == 0.01

    second = dict(zip(CSV_COLUMNS, body[1], strict=True))
    assert second["top2_label"] == "waving"
    assert second["top3_label"] == second["top3_prob"] == second["top5_prob"] == ""

    third = dict(zip(CSV_COLUMNS, body[2], strict=True))
    assert third["source"] == "clip"
    assert third["top2_label"] == 'say "hi", wave'  # quoting survives commas and quotes


def test_csv_of_empty_result_has_only_header(result: AnalysisResult, tmp_path: Path) -> None:
    empty = AnalysisResult(**{**result.__dict__, "segments": (), "timeline": ()})
    path = tmp_path / "empty.csv"
    write_csv(empty, path)
    with path.open(encoding="utf-8", newline="") as fh:
        assert list(csv.reader(fh)) == [list(CSV_COLUMNS)]


def test_atomic_writes_leave_no_temp_files(result: AnalysisResult, tmp_path: Path) -> None:
    json_path, csv_path = tmp_path / "r.json", tmp_path / "r.csv"
    json_path.write_text("old", encoding="utf-8")
    write_json(result, json_path)  # overwrites in place
    write_csv(result, csv_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]
    assert json.loads(json_path.read_text(encoding="utf-8"))["video_url"] == result.video_url


def test_failed_write_leaves_target_and_no_temp(result: AnalysisResult, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # the final rename onto a directory fails after the temp file was written
    (target / "keep").write_text("x")
    with pytest.raises(OSError):
        write_json(result, target)
    with pytest.raises(OSError):
        write_csv(result, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert [p.name for p in target.iterdir()] == ["keep"]


def test_format_time() -> None:
    assert format_time(0) == "00:00.0"
    assert format_time(4.26) == "00:04.3"
    assert format_time(75.04) == "01:15.0"
    assert format_time(59.96) == "01:00.0"
    assert format_time(3725.5) == "1:02:05.5"


def test_format_timeline_table(result: AnalysisResult) -> None:
    text = format_timeline(result)
    lines = text.splitlines()
    assert "https://example.org/clip.mp4" in lines[0]
    header = "\n".join(lines[:4])
    assert "00:12.4" in header and "cnn_lstm" in header and "ucf101" in header and "fallback clip" in header
    assert "windows:  3" in header and "window 16" in header and "stride 4" in header

    rows = [line for line in lines if line.startswith("00:")]
    assert len(rows) == 2
    assert rows[0].startswith("00:00.0\u201300:04.3") and "jumping jack" in rows[0] and rows[0].endswith("0.77")
    assert rows[1].startswith("00:04.3\u201300:12.4") and "café dancing" in rows[1] and rows[1].endswith("0.42")
    # aligned: labels start in one column and confidences end in one column
    assert rows[0].index("jumping jack") == rows[1].index("café dancing")
    assert len(rows[0]) == len(rows[1])

    assert lines[-1] == "3 segments, 2 timeline entries, analysed in 1.6 s (8.0x realtime)"
    assert "\x1b[" not in text
    assert all(ch.isascii() or ch in "\u2013é" for ch in text)


def test_format_timeline_color_ascii_and_width(result: AnalysisResult) -> None:
    coloured = format_timeline(result, color=True)
    r, g, b = label_color("jumping jack")
    assert f"\x1b[38;2;{r};{g};{b}m" in coloured

    plain = format_timeline(result, ascii_only=True)
    assert "00:00.0-00:04.3" in plain and "\u2013" not in plain

    narrow = format_timeline(result, width=30)
    assert all(len(line) <= 30 for line in narrow.splitlines())
    assert "00:00.0\u201300:04.3" in narrow  # times are kept, labels are cut


def test_format_timeline_empty(result: AnalysisResult) -> None:
    empty = AnalysisResult(**{**result.__dict__, "segments": (), "timeline": (), "elapsed_s": 0.0})
    text = format_timeline(empty)
    assert "no timeline entries" in text
    assert text.splitlines()[-1] == "0 segments, 0 timeline entries"


def test_label_color_is_stable_across_processes() -> None:
    here = label_color("jumping jack")
    assert all(0 <= c <= 255 for c in here)
    assert label_color("waving") != here
    code = "from har_stream.export import label_color; print(label_color('jumping jack'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345"}, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == str(here)

"""Smoke tests of benchmarks.live: its JSON lines and what they are made of, never its timings."""

from __future__ import annotations

import json

import pytest

from benchmarks import live
from benchmarks.bench import Emitter
from ddpm_ui import state

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lines_of(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_speed_rows_time_the_student_and_the_teacher_in_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert live.main(["--only", "speed", "--repeats", "2"]) == 0
    rows = lines_of(capsys)
    assert [row["threads"] for row in rows] == [1, 2]
    for row in rows:
        assert row["metric"] == "live_update_s" and row["cpu_capability"] and len(row["runs_s"]) == 2
        assert row["network_passes"] == state.student_steps() and row["teacher_runs_s"]["steps"] == 10
        assert row["speedup_vs_teacher_default"] == pytest.approx(row["teacher_default_s"] / row["value"], rel=1e-2)


def test_quality_rows_put_the_student_beside_the_teacher(capsys: pytest.CaptureFixture[str]) -> None:
    assert live.main(["--only", "quality", "--per-class", "1"]) == 0
    (row,) = lines_of(capsys)
    assert row["samples_per_w"] == 10 and len(row["runs"]) == 3
    for table in row["runs"].values():
        assert list(table) == ["w=0", "w=1", "w=2", "w=3", "w=5"]
        assert all(0 <= cell["accuracy"] <= 1 and cell["frechet_distance"] >= 0 for cell in table.values())
    student, everywhere = list(row["runs"].values())[:2]
    assert row["student_over_teacher_frechet"]["w=2"] == pytest.approx(
        student["w=2"]["frechet_distance"] / everywhere["w=2"]["frechet_distance"], rel=1e-2
    )


def test_crowd_drags_against_a_real_app(capsys: pytest.CaptureFixture[str]) -> None:
    live.bench_crowd(Emitter(), seconds=3.0, people=2)
    (row,) = lines_of(capsys)
    assert row["metric"] == "crowd_live_update_s" and row["errors"] == 0 and row["updates"] >= 2
    assert row["max_s"] >= row["p95_s"] >= row["value"] > 0


def test_an_unknown_group_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert live.main(["--only", "speed,nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err

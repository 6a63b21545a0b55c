"""Eight people at once against ``python app.py``: a short run of :mod:`benchmarks.crowd`, never its timings.

Three scrub the forward slider, two sample digits, one drags live guidance, one trains a short run and one
starts the largest guidance sweep and abandons it, each a ``gradio_client.Client`` of its own. The benchmark
checks every answer (the forward view at the uploaded picture's size and the t asked for, the digits and
their files, the live grid at the w asked for, the training run finished or stopped) and counts anything
else as an error. Run with ``-s`` to see the table. Timings are not asserted: this machine is shared.
(This replaces the earlier ``tests/test_load.py``: its eight slider-and-sample users are part of this mix.)
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from benchmarks import crowd

pytestmark = pytest.mark.slow

SECONDS = 15.0
QUOTED = {  # what the README quotes from a line
    "metric", "value", "unit", "date", "cores", "cpu_capability", "torch", "users", "roles", "seconds",
    "endpoints", "errors", "refused", "peak_rss_mb", "rss_mb", "server_cpu_s_after_end", "quiet_window_s",
    "abandoned_sweeps", "goals", "load_average_1m_before", "server_cpu_s_in_window",
    "load_generator_cpu_s_in_window", "other_processes_cpu_s_in_window",
}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    folder = tmp_path_factory.mktemp("crowd")
    out, printed = folder / "crowd.jsonl", io.StringIO()
    line = crowd.run_crowd(
        SECONDS, train_steps=20, abandon_after_s=2.0, sweep_every_s=6.0, quiet_s=3.0, grace_s=45.0,
        out=out, stream=printed, workdir=folder / "work",
    )  # fmt: skip
    print("\n" + printed.getvalue())  # the table, with -s
    return line, out, printed.getvalue()


def test_every_endpoint_answers_what_was_asked_without_errors(run: tuple[dict, Path, str]) -> None:
    line, _, _ = run
    rows = line["endpoints"]
    assert line["errors"] == 0 and not line["stuck_users"], line["first_errors"]
    for name in ("forward_view", "sample_digits", "live_digits", "model_info"):
        assert rows[name]["ok"] >= 1 and rows[name]["refused"] == 0, (name, rows.get(name))
    assert rows["forward_view"]["users"] >= 3  # three at the slider (and the sweeper between sweeps)
    assert rows["train_model"]["calls"] == 1 and rows["train_model"]["ok"] + rows["train_model"]["refused"] == 1
    sweep = rows["guidance_sweep"]
    assert sweep["calls"] >= 1 and sweep["errors"] == 0  # abandoned, or refused as too much work
    assert sum(row["errors"] for row in rows.values()) == 0
    assert line["server_answers_after"] and line["server_alive_after"]


def test_memory_and_cpu_were_measured(run: tuple[dict, Path, str]) -> None:
    line, _, _ = run
    assert line["peak_rss_mb"] > 0 and line["rss_mb"]["samples"] >= 2
    assert line["peak_rss_mb"] >= line["rss_mb"]["at_window_start"] > 0 and line["rss_mb"]["at_start"] > 0
    assert len(line["rss_mb"]["timeline_every_5_s"]) >= SECONDS // 5
    assert line["server_cpu_s_in_window"] > 0 and line["server_cpu_s_after_end"] >= 0
    assert line["cores"] and line["cpu_capability"] and line["torch"]


def test_the_json_line_is_written_once_with_the_quoted_fields(run: tuple[dict, Path, str]) -> None:
    line, out, printed = run
    (written,) = [json.loads(text) for text in out.read_text().splitlines()]
    assert written == line and QUOTED <= set(written)
    assert written["users"] == 8 and written["roles"] == crowd.ROLES and written["metric"] == "crowd_mixed_load"
    assert written["value"] == written["endpoints"]["forward_view"]["p95_s"]
    assert set(written["goals"]) == set(crowd.GOALS)
    assert all(set(goal) == {"goal", "measured", "met"} for goal in written["goals"].values())
    assert "forward_view" in printed and "peak RSS" in printed


def test_an_unknown_person_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert crowd.main(["--only", "slider,juggler"]) == 2
    assert "juggler" in capsys.readouterr().err


def test_the_default_output_is_named_like_the_other_benchmarks() -> None:
    out = crowd.default_out()
    assert out.parent == crowd.OUT_DIR and out.name.startswith("crowd-") and out.suffix == ".jsonl"

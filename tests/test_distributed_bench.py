"""A short run of :mod:`benchmarks.distributed`: the lines it writes and how the scaling follows from them.

Timings are not asserted (this machine is shared); what is checked is that each way ran as it says (processes,
threads, the batch each process took) and that the efficiency is the ratio the README defines.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from benchmarks import distributed


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("ddp-bench") / "lines.jsonl"
    with out.open("w") as fh:
        emitted = distributed.run_bench([16], images=64, repeats=1, preset="tiny", out=fh, stream=io.StringIO())
    return emitted, out


def test_each_way_ran_as_it_says(lines: tuple[list[dict], Path]) -> None:
    emitted, out = lines
    rates = [line for line in emitted if line["metric"] == "train_images_per_s"]
    ways = [(line["processes"], line["threads_per_process"], line["batch_per_process"]) for line in rates]
    assert ways == [(1, 1, 16), (1, 2, 16), (2, 1, 8)]
    for line in rates:
        assert line["value"] > 0 and line["steps"] == 4 and line["batch"] == 16 and line["chosen"] == "torch-fp32"
        assert line["wall_s"] > 0 and line["cpu_capability"] and line["cores"]
    assert [json.loads(text) for text in out.read_text().splitlines()] == emitted


def test_the_efficiency_is_two_processes_over_twice_one(lines: tuple[list[dict], Path]) -> None:
    emitted, _ = lines
    rate = {(line["processes"], line["threads_per_process"]): line["value"] for line in emitted[:3]}
    scaling = emitted[3]
    assert scaling["metric"] == "scaling_efficiency" and scaling["batch"] == 16
    assert scaling["value"] == pytest.approx(rate[2, 1] / (2 * rate[1, 1]), rel=1e-3)
    assert scaling["speedup_over_one_process_two_threads"] == pytest.approx(rate[2, 1] / rate[1, 2], rel=1e-3)


def test_odd_batches_are_refused(capsys: pytest.CaptureFixture) -> None:
    assert distributed.main(["--batches", "33", "--out", "-"]) == 2
    assert "even numbers" in capsys.readouterr().err

"""Smoke tests of benchmarks.bench: its functions and its JSON lines, never its timings."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import torch

from benchmarks import bench
from ddpm_core.checkpoints import LoadedModel, load_checkpoint, save_checkpoint
from ddpm_core.classifier import ImageClassifier, save_classifier
from ddpm_core.data import load_bundled
from ddpm_core.runtime import Execution
from ddpm_core.sampling import SamplerSettings
from ddpm_core.schedule import ScheduleConfig, make_schedule
from ddpm_core.training import TrainConfig, TrainProgress, train
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet

T = 50
REQUIRED_KEYS = {"metric", "value", "unit", "cores", "torch_threads", "cpu_capability", "execution"}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained for a few steps on the bundled digits, cosine schedule with T = 50."""
    out = tmp_path_factory.mktemp("bench") / "ck"
    config = TrainConfig(
        preset="tiny", batch_size=16, max_steps=3, max_minutes=None, schedule=ScheduleConfig("cosine", T)
    )
    train(config, load_bundled(), out_dir=out, device="cpu")
    return out


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fashion model of the digit model's shape (untrained: only its speed is measured)."""
    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("bench") / "fashion"
    meta = {"name": "tiny-fashion", "data": {"dataset": "fashion"}}
    return save_checkpoint(out, ContextUNet(WIDTH_PRESETS["tiny"]), make_schedule("cosine", T), meta)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path) -> LoadedModel:
    return load_checkpoint(tiny_checkpoint)


def test_flops_are_positive_linear_in_batch_and_include_attention(loaded: LoadedModel) -> None:
    two, four = bench.forward_flops(loaded.model, 2), bench.forward_flops(loaded.model, 4)
    assert two > 0
    assert four == 2 * two
    fused = torch.utils.flop_counter.FlopCounterMode(display=False)
    x, t, labels = torch.zeros(2, 1, 28, 28), torch.full((2,), 0.5), torch.tensor([0, 10])
    with torch.inference_mode(), fused:
        loaded.model(x, t, labels)
    assert two > fused.get_total_flops()  # the fused attention kernel is invisible to the counter
    assert torch.backends.mha.get_fastpath_enabled()  # and the fast path is switched back on


def test_guided_batch_and_wilson_bound() -> None:
    assert bench.guided_batch(10, 3.0) == 20
    assert bench.guided_batch(10, 1.0) == 10
    assert 0.96 < bench.wilson_lower_bound(100, 100) < 0.97
    assert bench.wilson_lower_bound(0, 10) == 0.0
    assert bench.wilson_lower_bound(90, 100) < bench.wilson_lower_bound(99, 100)


def test_emitter_writes_strict_json_with_the_common_keys() -> None:
    printed, written = io.StringIO(), io.StringIO()
    emitter = bench.Emitter(out=written, stream=printed)
    emitter.emit("x_s", float("nan"), "s", runs=[1.23456789, float("inf")], nested={"a": 0.123456789})
    line = json.loads(printed.getvalue(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert printed.getvalue() == written.getvalue()
    assert REQUIRED_KEYS <= set(line)
    assert line["value"] is None and line["runs"] == [1.235, None] and line["nested"] == {"a": 0.1235}


def test_missing_classifier_gives_a_note(tmp_path: Path) -> None:
    classifier, note = bench.load_optional_classifier(tmp_path / "nowhere")
    assert classifier is None
    assert "accuracy skipped" in note


def test_selected_groups() -> None:
    args = bench.build_parser().parse_args(["--quick"])
    assert "train95" not in bench.selected_groups(args)
    default = bench.selected_groups(bench.build_parser().parse_args([]))
    assert default == [g for g in bench.GROUPS if g != "train95"]  # minutes of training only when asked
    assert "train95" in bench.selected_groups(bench.build_parser().parse_args(["--train95"]))
    assert bench.selected_groups(bench.build_parser().parse_args(["--only", "train95"])) == ["train95"]
    with pytest.raises(ValueError, match="unknown"):
        bench.selected_groups(bench.build_parser().parse_args(["--only", "baseline,nope"]))


def test_main_prints_parseable_lines(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    save_classifier(ImageClassifier().eval(), tmp_path / "clf", {})  # untrained: accuracy is some share
    out = tmp_path / "bench.jsonl"
    argv = ["--checkpoint", str(tiny_checkpoint), "--classifier", str(tmp_path / "clf"), "--repeats", "1"]
    code = bench.main([*argv, "--threads", "1", "--only", "baseline,default,unet,ddpm", "--out", str(out)])
    assert code == 0
    printed = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert printed == [json.loads(s) for s in out.read_text().splitlines()]
    names = [line["metric"] for line in printed]
    assert names == [
        "baseline_note",
        "baseline_ten_digits_s",
        "ten_digits_default_s",
        "unet_step_ms_batch20",
        "ddpm_full_T_ten_digits_s",
        "summary",
    ]
    assert all(REQUIRED_KEYS <= set(line) for line in printed)
    assert all(line["torch_threads"] == 1 for line in printed)
    default = printed[2]
    assert default["network_evaluations"] == SamplerSettings().steps
    assert default["ran_as"] == printed[0]["execution"]["chosen"]
    assert set(printed[0]["execution"]["timings_ms"]) >= {"torch-fp32", "torch-bf16"}
    assert all(line["cpu_capability"] == torch.backends.cpu.get_cpu_capability() for line in printed)
    assert default["gflop_per_run"] > 0 and default["speedup_vs_baseline"] > 0
    assert 0 <= default["accuracy_ten"] <= 1 and default["accuracy_100_samples"] == 100
    assert printed[1]["network_evaluations"] == T
    assert printed[3]["fastest"] in printed[3]["variants_ms"]
    assert printed[-1]["metrics"] == names[1:-1]


def test_a_failing_metric_becomes_an_error_line_and_the_rest_run(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(_: bench.Bench) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(bench, "bench_unet", boom)
    argv = ["--checkpoint", str(tiny_checkpoint), "--classifier", str(tmp_path / "none"), "--repeats", "1"]
    assert bench.main([*argv, "--threads", "1", "--only", "unet,default"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [line["metric"] for line in lines] == ["baseline_note", "ten_digits_default_s", "error", "summary"]
    assert lines[2]["group"] == "unet" and "kaput" in lines[2]["error"]
    default = lines[1]
    assert default["accuracy_ten"] is None and default["accuracy_100"] is None
    assert "accuracy skipped" in default["accuracy_note"]
    assert default["speedup_vs_baseline"] is None  # no baseline in this run
    assert any("unet failed" in note for note in lines[-1]["notes"])


def test_forward_group_times_the_apps_tab_handlers(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--checkpoint", str(tiny_checkpoint), "--classifier", str(tmp_path / "none"), "--repeats", "1"]
    assert bench.main([*argv, "--threads", "1", "--quick", "--only", "forward"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    names = ["baseline_note", "forward_slider_update_ms", "error_curve_s", "summary"]
    assert [line["metric"] for line in lines] == names  # no "error" line: the handlers imported and ran
    slider, curve = lines[1], lines[2]
    assert slider["value"] > 0 and slider["calls"] == 10 and slider["first_call_ms"] > 0
    assert "ddpm_ui.forward_tab.forward_view" in slider["path"]
    assert curve["value"] > 0 and len(curve["runs_s"]) == 1
    assert "ddpm_ui.oracle_tab.error_curve" in curve["path"]


def test_fashion_group_times_ten_items_against_ten_digits_in_turns(
    tiny_checkpoint: Path, tiny_fashion: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--checkpoint", str(tiny_checkpoint), "--fashion-checkpoint", str(tiny_fashion), "--repeats", "3"]
    assert bench.main([*argv, "--classifier", str(tmp_path / "none"), "--threads", "1", "--only", "fashion"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [line["metric"] for line in lines] == ["baseline_note", "ten_fashion_items_default_s", "summary"]
    row = lines[1]
    assert REQUIRED_KEYS <= set(row) and row["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert len(row["runs_s"]) == len(row["digits_runs_s"]) == 3 and row["value"] > 0 and row["digits_s"] > 0
    assert row["fashion_over_digits"] == pytest.approx(row["value"] / row["digits_s"], rel=2e-3)
    assert lines[-1]["fashion_over_digits_default_s"] == row["fashion_over_digits"]
    chosen = lines[0]["execution"]["chosen"]  # what auto chose for the digit model, used for both
    assert row["ran_as"] == {"digits": chosen, "fashion": chosen}
    assert chosen == f"{row['settings']['runtime']}-{row['settings']['precision']}"
    passes = SamplerSettings().steps
    assert row["network_evaluations"] == {"digits": passes, "fashion": passes}
    assert row["datasets"] == {"digits": "digits", "fashion": "fashion"}
    assert row["checkpoints"] == {"digits": str(tiny_checkpoint), "fashion": str(tiny_fashion)}


def test_fashion_group_without_a_fashion_model_says_so(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--checkpoint", str(tiny_checkpoint), "--fashion-checkpoint", str(tmp_path / "absent"), "--repeats", "1"]
    assert bench.main([*argv, "--classifier", str(tmp_path / "none"), "--threads", "1", "--only", "fashion"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [line["metric"] for line in lines] == ["baseline_note", "ten_fashion_items_default_s", "summary"]
    assert lines[1]["value"] is None and lines[1]["skipped"] and "no fashion model" in lines[1]["note"]


def test_interleaved_runs_take_turns_and_reverse_the_order_each_round() -> None:
    calls: list[str] = []
    runs = bench.interleaved_runs({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert {name: len(times) for name, times in runs.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for times in runs.values() for t in times)


def test_main_refuses_a_missing_checkpoint(tmp_path: Path) -> None:
    assert bench.main(["--checkpoint", str(tmp_path / "none"), "--only", "default"]) == 2


def test_accuracy_watch_evaluates_on_schedule_and_stops(loaded: LoadedModel) -> None:
    torch.manual_seed(0)
    classifier = ImageClassifier().eval()

    def progress(step: int, elapsed: float, done: bool = False) -> TrainProgress:
        asked = Execution("torch", "fp32", "fp32/torch", "train", "cpu", "test", 0)
        return TrainProgress(step, None, 0.1, 1e-3, elapsed, 0.1, 1.0, loaded.model, loaded.schedule, asked, done)

    watch = bench.AccuracyWatch(classifier, every_s=10.0, target=2.0)  # a target no accuracy reaches
    watch(progress(6, 5.0))
    assert watch.evaluations == []
    watch(progress(7, 12.0))
    watch(progress(7, 12.5, done=True))  # the final report of a step just measured is not measured again
    assert [e["step"] for e in watch.evaluations] == [7]
    assert 0 <= watch.evaluations[0]["accuracy"] <= 1
    watch(progress(8, 13.0, done=True))  # the end of training is always measured
    assert [e["step"] for e in watch.evaluations] == [7, 8]
    assert not watch.should_stop() and watch.reached_s is None

    easy = bench.AccuracyWatch(classifier, every_s=10.0, target=0.0)
    easy(progress(3, 10.5))
    assert easy.should_stop() and easy.reached_s == 10.5


def test_train_throughput_counts_images(loaded: LoadedModel) -> None:
    assert bench.train_throughput("fp32", warmup=1, steps=2, preset="tiny") > 0


def test_a_variant_several_times_slower_is_stopped_after_a_few_calls() -> None:
    calls = {"fast": 0, "slow": 0}

    def run(name: str, seconds: float):
        def call() -> None:
            calls[name] += 1
            time.sleep(seconds)

        return call

    timed, stopped = bench.screened_timings({"fast": run("fast", 0.002), "slow": run("slow", 0.06)}, repeats=5)
    assert set(timed) == {"fast"} and len(timed["fast"]) == 5
    assert set(stopped) == {"slow"} and calls["slow"] <= 2  # 30× slower: out after its warm-up or first timing


def test_peak_rss_child(tiny_checkpoint: Path) -> None:
    rss = bench.peak_rss_mb(tiny_checkpoint)
    assert 10 < rss["after_import"] <= rss["peak"]

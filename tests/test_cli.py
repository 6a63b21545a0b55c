"""The command lines under ``ddpm_core.cli``, run in-process on tiny settings, and their console scripts."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from ddpm_core import paths
from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.classifier import load_classifier
from ddpm_core.cli import digits, evaluate, sample, train, train_classifier
from ddpm_core.data import FASHION, load_bundled
from ddpm_core.evaluate import real_floor
from ddpm_core.paths import classifier_dir

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny"
    assert train.main(["--steps", "4", "--preset", "tiny", "--T", "20", "--batch-size", "16", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny-fashion"
    args = ["--dataset", "fashion", "--steps", "2", "--preset", "tiny", "--T", "20", "--batch-size", "8"]
    assert train.main([*args, "--out", str(out)]) == 0
    return out


def test_train_writes_a_loadable_checkpoint(tiny_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    assert loaded.schedule.num_steps == 20 and loaded.config["training"]["steps"] == 4
    assert loaded.config["data"]["source"] == "bundled" and loaded.config["data"]["dataset"] == "digits"


def test_train_on_fashion_items_writes_a_fashion_checkpoint(tiny_fashion: Path) -> None:
    loaded = load_checkpoint(tiny_fashion)
    assert loaded.dataset == "fashion" and loaded.config["training"]["steps"] == 2
    assert loaded.config["data"] == {
        "dataset": "fashion",
        "source": "bundled",
        "description": "Fashion-MNIST, 5,000-image subset shipped in assets/fashion_5k.npz",
        "train_images": 4000,
    }


def test_a_model_is_continued_only_on_its_own_dataset(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--resume", str(tiny_checkpoint), "--steps", "1", "--batch-size", "8", "--out", str(tmp_path / "run")]
    assert train.main(["--dataset", "fashion", *args]) == 2 and not (tmp_path / "run").exists()
    err = capsys.readouterr().err
    assert "learnt MNIST digits, not Fashion-MNIST" in err and "--dataset digits" in err
    assert train.main(args) == 0  # on its own digits it goes on
    assert load_checkpoint(tmp_path / "run").config["training"]["steps"] == 5


def test_train_on_a_full_set_that_is_absent_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(paths, "SYSTEM_DATASETS", tmp_path / "no-system-datasets")
    code = train.main(["--dataset", "fashion", "--data", "full", "--steps", "1", "--out", str(tmp_path / "run")])
    assert code == 2 and not (tmp_path / "run").exists()
    err = capsys.readouterr().err
    assert err.startswith(f"error: no Fashion-MNIST IDX files under {tmp_path / 'empty'} or ")
    assert "apt-get install dataset-fashion-mnist" in err


def test_sample_writes_the_documented_npz_grid_and_gif(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "samples.npz"
    code = sample.main([
        "--checkpoint", str(tiny_checkpoint), "--w", "3", "--sampler", "ddim", "--steps", "6",
        "--per-class", "2", "--classes", "1,4,7", "--seed", "0", "--out", str(out),
        "--grid", str(tmp_path / "grid.png"), "--gif", str(tmp_path / "anim.gif"),
    ])  # fmt: skip
    assert code == 0
    with np.load(out) as f:  # no pickle needed: every array is plain data
        assert f["images"].dtype == np.uint8 and f["images"].shape == (6, 28, 28)
        assert f["labels"].tolist() == [1, 1, 4, 4, 7, 7]
        assert f["class_names"].tolist() == [str(d) for d in range(10)]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["dataset"] == "digits" and summary["images"] == 6
    frames = iio.imread(tmp_path / "anim.gif", index=None)
    assert frames.shape[0] == 6  # one frame per step: 6 steps, every = max(1, 6 // 25)
    assert iio.imread(tmp_path / "grid.png").ndim in (2, 3)


def test_sample_names_the_fashion_classes(
    tiny_fashion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "items.npz"
    args = ["--classes", "5,9", "--sampler", "ddim", "--steps", "2", "--precision", "fp32", "--runtime", "torch"]
    assert sample.main(["--checkpoint", str(tiny_fashion), *args, "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["class_names"].tolist() == list(FASHION.class_names)
        assert f["class_names"][f["labels"]].tolist() == ["Sandal", "Ankle boot"]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["dataset"] == "fashion" and summary["images"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--w", "42"], "guidance weight"),
        (["--classes", "3,12"], "unknown class"),
        (["--steps", "0", "--sampler", "ddim"], "steps must lie"),
        (["--steps", "21", "--sampler", "ddim"], "steps must lie"),
    ],
)
def test_sample_refuses_bad_input_with_a_message(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = sample.main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x.npz"), *args])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_sample_refuses_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sample.main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "there is no folder" in capsys.readouterr().err


def test_evaluate_records_metrics_in_the_checkpoint(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--per-class", "2", "--ws", "0,3", "--write"]) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = load_checkpoint(tiny_checkpoint).config["metrics"]
    assert stored == printed
    assert [row["w"] for row in stored["by_w"]] == [0.0, 3.0]
    assert all(row["samples"] == 20 and 0 <= row["accuracy"] <= 1 for row in stored["by_w"])
    assert stored["real_vs_real_frechet_distance"] >= 0


def test_evaluate_measures_a_fashion_model_with_the_fashion_classifier_by_default(
    tiny_fashion: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[Path, str | None]] = []
    real_load = evaluate.load_classifier

    def spy(directory, dataset=None):
        asked.append((Path(directory), dataset))
        return real_load(directory, dataset)

    monkeypatch.setattr(evaluate, "load_classifier", spy)
    assert evaluate.main(["--checkpoint", str(tiny_fashion), "--per-class", "1", "--ws", "2"]) == 0
    assert asked == [(classifier_dir("fashion"), "fashion")]
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["by_w"][0]["accuracy"] <= 1 and metrics["by_w"][0]["samples"] == 10
    # the floor is that of the fashion items read by the fashion classifier (its quality does not matter here)
    floor = real_floor(real_load(classifier_dir("fashion")), load_bundled("fashion"))
    assert metrics["real_vs_real_frechet_distance"] == round(floor, 3)


def test_evaluate_refuses_the_digit_classifier_for_a_fashion_model(
    tiny_fashion: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = evaluate.main(["--checkpoint", str(tiny_fashion), "--classifier", str(classifier_dir("digits"))])
    assert code == 2 and "reads digits, not fashion" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_every_cli_runs_with_each_precision(
    precision: str, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train, sample and evaluate take --precision and report what ran, with the CPU capability."""
    out = tmp_path / "run"
    args = ["--steps", "2", "--preset", "tiny", "--T", "20", "--batch-size", "8", "--precision", precision]
    assert train.main([*args, "--out", str(out)]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["execution"]
    assert (
        sample.main(
            ["--checkpoint", str(out), "--steps", "3", "--precision", precision, "--out", str(tmp_path / "s.npz")]
        )
        == 0
    )
    sampled = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["execution"]
    assert evaluate.main(["--checkpoint", str(out), "--per-class", "1", "--ws", "2", "--precision", precision]) == 0
    evaluated = json.loads(capsys.readouterr().out)["execution"][0]
    for execution, mode in ((trained, "train"), (sampled, "sample"), (evaluated, "sample")):
        assert execution["mode"] == mode and execution["cpu_capability"]
        assert execution["precision"] in (("fp32",) if precision == "fp32" else ("fp32", "bf16"))
        assert execution["requested"].startswith(precision)
        if precision == "auto":  # timed: the report holds a time for fp32 and for bf16
            assert execution["batch"] > 0 and {"torch-fp32", "torch-bf16"} <= set(execution["timings_ms"])
    assert load_checkpoint(out).config["training"]["execution"] == trained


def test_train_classifier_saves_a_loadable_classifier_with_its_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "classifier"
    assert train_classifier.main(["--out", str(out), "--steps", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 3
    assert config["command"] == f"python -m ddpm_core.cli.train_classifier --out {out} --steps 3"
    load_classifier(out)


def test_train_classifier_on_fashion_items_saves_a_fashion_classifier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tmp"
    assert train_classifier.main(["--dataset", "fashion", "--steps", "20", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "fashion" and config["data"].startswith("Fashion-MNIST, 5,000-image subset")
    assert config["steps"] == 20 and config["held_out_images"] == 1000
    assert config["held_out_accuracy"] == round(printed["held_out_accuracy"], 4)
    load_classifier(out, "fashion")
    with pytest.raises(ValueError, match="reads fashion, not digits"):
        load_classifier(out, "digits")


def test_digits_describes_the_bundled_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert digits.main([]) == 0
    assert capsys.readouterr().out.strip() == (
        "MNIST digits, 5,000-image subset shipped in assets/mnist_5k.npz: 4000 train, 1000 held out"
    )
    assert digits.main(["--dataset", "fashion"]) == 0
    assert capsys.readouterr().out.strip() == (
        "Fashion-MNIST, 5,000-image subset shipped in assets/fashion_5k.npz: 4000 train, 1000 held out"
    )


def test_every_console_script_names_a_main_of_ddpm_core_cli() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert {"ddpm-train", "ddpm-sample", "ddpm-evaluate", "ddpm-train-classifier", "ddpm-distill"} <= set(scripts)
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert module.startswith("ddpm_core.cli."), name
        assert callable(getattr(importlib.import_module(module), function)), name


@pytest.mark.slow
def test_the_project_builds_a_wheel_with_the_core_the_ui_and_the_scripts(tmp_path: Path) -> None:
    """What ``pip install .`` (and ``-e .``) builds: every package, app.py, the scripts, the same dependencies."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=PYPROJECT.parent, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for leftover in ("build", "ddpm_playground.egg-info"):
        shutil.rmtree(PYPROJECT.parent / leftover, ignore_errors=True)
    (wheel,) = tmp_path.glob("ddpm_playground-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [line for line in zf.read(meta).decode().splitlines() if line.startswith("Requires-Dist:")]
        entry_points = zf.read(meta.replace("METADATA", "entry_points.txt")).decode()
    assert {"app.py", "ddpm_core/sampling.py", "ddpm_core/cli/train.py", "ddpm_ui/sample_tab.py"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    pinned = [line.split("#")[0].strip() for line in (PYPROJECT.parent / "requirements.txt").read_text().splitlines()]
    runtime = [r for r in requires if "extra ==" not in r]
    dev = [r for r in requires if 'extra == "dev"' in r]
    assert len(runtime) == len([p for p in pinned if p])  # exactly requirements.txt
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    dev_listed = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["dev"]
    assert len(dev) == len(dev_listed) and len(requires) == len(runtime) + len(dev)
    assert "ddpm-sample = ddpm_core.cli.sample:main" in entry_points

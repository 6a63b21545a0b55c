"""The command lines take a Hugging Face Hub id ``owner/repo[@revision]`` wherever they take a checkpoint folder.

No network: ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` pointing at a cache laid out the way huggingface_hub lays
out its own (``hub_fixtures.cache_repo``), so the ids resolve through :func:`ddpm_core.hub.resolve_checkpoint`
exactly as a cached download would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hub_fixtures import cache_repo

from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.cli import distill, evaluate, sample, train

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "someone/tiny-digits"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hub-cli") / "tiny"
    assert train.main(["--steps", "2", "--preset", "tiny", "--T", "20", "--batch-size", "8", "--out", str(out)]) == 0
    return out


@pytest.fixture
def hub_cache(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline Hub cache holding REPO at COMMIT (its ``main``); returns the snapshot folder."""
    files = {path.name: path.read_bytes() for path in tiny_checkpoint.iterdir() if path.is_file()}
    cache = tmp_path / "hf-cache"
    snapshot = cache_repo(cache, REPO, files, commit=COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


def test_sample_takes_a_hub_id(hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.npz"
    args = ["--checkpoint", f"{REPO}@main", "--steps", "2", "--classes", "3", "--precision", "fp32", "--out", str(out)]
    assert sample.main(args) == 0, capsys.readouterr().err
    with np.load(out) as f:
        assert f["labels"].tolist() == [3] and f["images"].shape == (1, 28, 28)


def test_train_resumes_from_a_hub_id(hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "more"
    args = ["--resume", REPO, "--steps", "3", "--preset", "tiny", "--T", "20", "--batch-size", "8", "--out", str(out)]
    args += ["--precision", "fp32"]
    assert train.main(args) == 0, capsys.readouterr().err
    assert load_checkpoint(out).config["training"]["steps"] == 5  # the cached model's 2 steps, then 3 more


def test_distill_takes_a_hub_teacher(hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "student"
    args = ["--teacher", REPO, "--steps", "1", "--batch-size", "4", "--precision", "fp32", "--out", str(out)]
    assert distill.main(args) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 1


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (sample.main, "--checkpoint"),
        (evaluate.main, "--checkpoint"),
        (train.main, "--resume"),
        (distill.main, "--teacher"),
    ],
    ids=["sample", "evaluate", "train", "distill"],
)
def test_an_id_missing_from_the_offline_cache_is_a_message_and_exit_2(
    hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command, flag: str
) -> None:
    required = {
        "--checkpoint": [],
        "--resume": ["--out", str(tmp_path / "o")],
        "--teacher": ["--out", str(tmp_path / "o")],
    }
    extra = ["--out", str(tmp_path / "x.npz")] if command is sample.main else required[flag]
    assert command([flag, "someone/not-cached", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "someone/not-cached" in err and "HF_HUB_OFFLINE" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.npz").exists()


def test_evaluate_write_refuses_a_hub_id_before_measuring(hub_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (hub_cache / "config.json").read_text()
    assert evaluate.main(["--checkpoint", f"{REPO}@main", "--per-class", "1", "--ws", "0", "--write"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before anything was measured
    assert f"hf download {REPO} --revision main --local-dir DIR" in captured.err
    assert (hub_cache / "config.json").read_text() == before


def test_evaluate_write_refuses_a_folder_inside_the_hub_cache(
    hub_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (hub_cache / "config.json").read_text()
    assert evaluate.main(["--checkpoint", str(hub_cache), "--per-class", "1", "--ws", "0", "--write"]) == 2
    assert "Hugging Face Hub cache" in capsys.readouterr().err
    assert (hub_cache / "config.json").read_text() == before


def test_evaluate_measures_a_hub_id_without_write(hub_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--checkpoint", REPO, "--per-class", "1", "--ws", "0", "--precision", "fp32"]) == 0
    assert [row["w"] for row in json.loads(capsys.readouterr().out)["by_w"]] == [0.0]
    assert "metrics" not in json.loads((hub_cache / "config.json").read_text())


def test_evaluate_refuses_an_unknown_folder_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--checkpoint", str(tmp_path / "nope"), "--write"]) == 2
    assert "there is no folder" in capsys.readouterr().err

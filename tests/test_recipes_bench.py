"""benchmarks/recipes.py, the training-recipe ablation, on a budget of seconds."""

from __future__ import annotations

import json

import pytest

from benchmarks import recipes
from ddpm_core.training import TrainConfig


def test_every_variant_is_a_valid_config_and_the_names_say_what_differs() -> None:
    for name, (recipe, overrides) in recipes.VARIANTS.items():
        config = TrainConfig.from_recipe(recipe, **overrides)
        config.validate()
        if name.startswith(("eps", "v_")):
            assert config.prediction == name.split("_")[0]
            assert (config.weighting == "min_snr") == ("minsnr" in name)
            assert f"b{config.batch_size}" in name


def test_one_short_variant_trains_measures_and_prints_a_table(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    out = tmp_path / "rows.jsonl"
    assert recipes.main(["--only", "fast", "--minutes", "0.02", "--per-class", "2", "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["variant"] == "fast" and row["steps"] >= 1 and row["samples"] == 20
    assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["accuracy_guided_everywhere"] <= 1.0
    assert row["images_seen"] == row["steps"] * TrainConfig().batch_size
    assert row["guidance_interval"] == [1.0, 2.0] and row["cpu_capability"]
    printed = capsys.readouterr().out
    assert "| `fast` |" in printed and printed.count("\n") >= 4


def test_an_unknown_variant_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert recipes.main(["--only", "turbo"]) == 2
    assert "unknown variant" in capsys.readouterr().err

"""The fast-training ideas (v-prediction, Min-SNR-γ, log-normal t, shifts), the two recipes, and the memorisation check.

Golden values are closed forms worked out here (min(SNR, γ)/SNR …), or brute force on small inputs.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ddpm_core.checkpoints import LoadedModel, load_checkpoint
from ddpm_core.data import ImageData, load_bundled, to_model_range
from ddpm_core.evaluate import memorisation_check, near_copies, nearest_distances
from ddpm_core.schedule import ScheduleConfig, make_schedule
from ddpm_core.training import (
    RECIPES,
    TrainConfig,
    lognormal_timesteps,
    min_snr_weight,
    random_shift,
    train,
)

TINY = TrainConfig(
    preset="tiny", batch_size=32, lr=3e-3, warmup_steps=5, max_steps=40, max_minutes=None,
    schedule=ScheduleConfig("cosine", 50), checkpoint_every_s=1e9, report_every=5, precision="fp32",
)  # fmt: skip


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_bundled()


def test_min_snr_weights_match_their_closed_forms() -> None:
    snr = torch.tensor([0.25, 1.0, 5.0, 20.0], dtype=torch.float64)
    # ε: min(SNR, 5)/SNR → 1 until SNR reaches γ, then γ/SNR
    torch.testing.assert_close(
        min_snr_weight(snr, 5.0, "eps"), torch.tensor([1.0, 1.0, 1.0, 0.25], dtype=torch.float64)
    )
    # v: min(SNR, 5)/(SNR + 1)
    expected_v = torch.tensor([0.25 / 1.25, 1 / 2, 5 / 6, 5 / 21], dtype=torch.float64)
    torch.testing.assert_close(min_snr_weight(snr, 5.0, "v"), expected_v)


def test_lognormal_timesteps_follow_the_log_snr_they_were_drawn_at() -> None:
    schedule = make_schedule("cosine", 250)
    g = torch.Generator().manual_seed(0)
    # a spread of almost nothing: every draw lands on the step whose log SNR is nearest −2·mean
    t = lognormal_timesteps(schedule, 50, mean=0.0, std=1e-9, generator=g)
    expected = int((schedule.log_snr - 0.0).abs().argmin())
    assert t.tolist() == [expected] * 50
    # EDM's (−1.2, 1.2): the median draw has log SNR ≈ 2.4, i.e. ln σ = −1.2
    t = lognormal_timesteps(schedule, 4000, mean=-1.2, std=1.2, generator=g)
    median_log_snr = float(schedule.log_snr[t].median())
    assert abs(median_log_snr - 2.4) < 0.3
    assert int(t.min()) >= 0 and int(t.max()) <= 249


def test_random_shift_moves_each_digit_without_losing_ink(digits: ImageData) -> None:
    x = to_model_range(digits.train.images[:64])
    offsets = torch.randint(0, 5, (64, 2), generator=torch.Generator().manual_seed(1))
    shifted = random_shift(x, 2, offsets)
    assert shifted.shape == x.shape
    # MNIST digits sit inside a 20×20 box with a 4-pixel margin: a 2-pixel shift keeps all the ink
    torch.testing.assert_close((shifted + 1).sum(dim=(1, 2, 3)), (x + 1).sum(dim=(1, 2, 3)))
    moved = [not torch.equal(a, b) for a, b in zip(shifted, x, strict=True)]
    assert 40 < sum(moved) < 64  # 1 in 25 offsets is (0, 0)
    for a, b in zip(shifted, x, strict=True):  # each is the original rolled by one whole-pixel offset
        assert any(torch.equal(a, torch.roll(b, (dy, dx), (1, 2))) for dy in range(-2, 3) for dx in range(-2, 3))
    assert random_shift(x, 0, offsets) is x


def test_recipes_differ_where_they_say_and_refuse_unknown_names() -> None:
    fast, classic = TrainConfig.from_recipe("fast"), TrainConfig.from_recipe("classic")
    assert TrainConfig() == fast and fast.recipe == "fast" and classic.recipe == "classic"
    assert (classic.prediction, classic.weighting, classic.preset) == ("eps", "uniform", "base")
    assert all(getattr(fast, k) == v for k, v in RECIPES["fast"].items())
    assert TrainConfig.from_recipe("classic", lr=1e-4).lr == 1e-4
    with pytest.raises(ValueError, match="unknown recipe"):
        TrainConfig.from_recipe("turbo")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prediction": "x0"}, "prediction"),
        ({"weighting": "snr"}, "weighting"),
        ({"min_snr_gamma": 0.0}, "γ"),
        ({"t_sampling": "beta"}, "t sampling"),
        ({"augment_shift": 9}, "shift"),
        ({"recipe": "turbo"}, "recipe"),
    ],
)
def test_bad_recipe_settings_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **change).validate()


@pytest.mark.parametrize(
    "change",
    [
        {"prediction": "v", "weighting": "min_snr"},
        {"prediction": "eps", "weighting": "min_snr", "t_sampling": "lognormal"},
        {"prediction": "v", "weighting": "uniform", "augment_shift": 1},
    ],
)
def test_every_idea_trains_and_the_checkpoint_says_what_it_predicts(
    tmp_path: Path, digits: ImageData, change: dict
) -> None:
    config = replace(TINY, **change)
    result = train(config, digits, out_dir=tmp_path / "run", device="cpu")
    assert all(math.isfinite(v) for v in result.losses)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.8 * first
    loaded = load_checkpoint(tmp_path / "run")
    assert loaded.model.config.prediction == change["prediction"]
    assert loaded.config["training"]["config"]["weighting"] == change["weighting"]


def test_resuming_keeps_the_checkpoints_prediction(tmp_path: Path, digits: ImageData) -> None:
    first = train(replace(TINY, prediction="eps", max_steps=5), digits, out_dir=tmp_path / "a", device="cpu")
    resume = LoadedModel(first.ema_model, first.schedule, {"training": {"steps": 5}})
    again = train(
        replace(TINY, prediction="v", max_steps=3), digits, out_dir=tmp_path / "b", resume=resume, device="cpu"
    )
    assert again.ema_model.config.prediction == "eps"
    assert load_checkpoint(tmp_path / "b").config["training"]["config"]["prediction"] == "eps"


def test_nearest_distances_agree_with_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    images, reference = torch.rand(7, 1, 4, 4, generator=g) * 2 - 1, torch.rand(30, 1, 4, 4, generator=g) * 2 - 1
    got = nearest_distances(images, reference, k=3, chunk=2)
    for i in range(7):
        brute = sorted(math.dist(((images[i] + 1) / 2).flatten().tolist(), ((r + 1) / 2).flatten().tolist())
                       for r in reference)  # fmt: skip
        assert got[i].tolist() == pytest.approx(brute[:3], rel=1e-5)
    assert near_copies(torch.tensor([[1.0, 4.0, 4.0], [2.0, 4.0, 4.0]])).tolist() == [True, False]


def test_memorisation_check_flags_copies_and_not_unseen_digits(digits: ImageData) -> None:
    unseen = memorisation_check(to_model_range(digits.held_out.images[:200]), digits)
    assert unseen.sample_near_copy_share == unseen.real_near_copy_share == 0.0
    assert unseen.sample_nearest_median > 3.0  # pixels in [0, 1]: unseen digits are far from every training one
    copies = to_model_range(digits.train.images[:200])
    copies = (copies + 0.05 * torch.randn(copies.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    copied = memorisation_check(copies, digits)
    assert copied.sample_near_copy_share == 1.0
    assert copied.sample_nearest_median < 0.2 * unseen.sample_nearest_median
    assert copied.real_nearest_median == unseen.real_nearest_median  # the reference does not depend on the samples

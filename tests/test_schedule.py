"""Noise schedules against closed forms recomputed here with plain Python (no code under test)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ddpm_core.schedule import NoiseSchedule, ScheduleConfig, make_schedule


def reference_linear_betas(T: int) -> list[float]:
    """β_i = s·(1e-4 + i·(0.02 − 1e-4)/(T − 1)), s = 1000/T (Ho et al.; Nichol & Dhariwal's scaling)."""
    s = 1000.0 / T
    return [s * (1e-4 + i * (0.02 - 1e-4) / (T - 1)) for i in range(T)]


def reference_cosine_alpha_bar(T: int, offset: float = 0.008) -> list[float]:
    """ᾱ for code steps 0 … T−1 = paper steps 1 … T: f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2)."""

    def f(t: float) -> float:
        return math.cos((t / T + offset) / (1 + offset) * math.pi / 2) ** 2

    return [f(i + 1) / f(0) for i in range(T)]


def cumprod(values: list[float]) -> list[float]:
    out, acc = [], 1.0
    for v in values:
        acc *= v
        out.append(acc)
    return out


def as_list(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x]


@pytest.mark.parametrize("T", [1000, 150, 50])
def test_linear_betas_match_closed_form(T: int) -> None:
    betas = as_list(make_schedule("linear", T).betas)
    assert betas == pytest.approx(reference_linear_betas(T), rel=1e-12, abs=0)


def test_linear_with_too_few_steps_raises() -> None:
    # With the 1000/T scaling, β_T = 20/T reaches 1 at T = 20: no valid linear schedule that short.
    with pytest.raises(ValueError, match="needs T > 20"):
        make_schedule("linear", 20)
    assert make_schedule("linear", 21).betas[-1] < 1


def test_linear_endpoints_at_1000_and_scaled_at_150() -> None:
    s1000 = make_schedule("linear", 1000)
    assert float(s1000.betas[0]) == pytest.approx(1e-4, rel=1e-12)
    assert float(s1000.betas[-1]) == pytest.approx(0.02, rel=1e-12)
    s150 = make_schedule("linear", 150)
    assert float(s150.betas[0]) == pytest.approx(1e-4 * 1000 / 150, rel=1e-12)
    assert float(s150.betas[-1]) == pytest.approx(0.02 * 1000 / 150, rel=1e-12)
    # The scaling keeps the last step almost pure noise for the short chain too.
    assert float(s150.alphas_cumprod[-1]) < 1e-3
    assert float(s1000.alphas_cumprod[-1]) < 1e-4


@pytest.mark.parametrize("T", [1000, 150])
def test_cosine_alpha_bar_closed_form(T: int) -> None:
    schedule = make_schedule("cosine", T)
    reference = reference_cosine_alpha_bar(T)
    ref_betas = [1 - reference[0]] + [1 - reference[i] / reference[i - 1] for i in range(1, T)]
    unclipped = [i for i, b in enumerate(ref_betas) if b < 0.999]
    # Up to the first clipped β the product of (1 − β) is exactly the closed form.
    first_clipped = next((i for i, b in enumerate(ref_betas) if b >= 0.999), T)
    got = as_list(schedule.alphas_cumprod)
    assert got[:first_clipped] == pytest.approx(reference[:first_clipped], rel=1e-9)
    assert as_list(schedule.betas[unclipped]) == pytest.approx([ref_betas[i] for i in unclipped], rel=1e-9)
    assert float(schedule.betas.max()) <= 0.999


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1000, 150])
def test_alpha_bar_strictly_decreasing_and_in_range(name: str, T: int) -> None:
    ab = as_list(make_schedule(name, T).alphas_cumprod)
    assert all(later < earlier for earlier, later in itertools.pairwise(ab))
    assert 0 < ab[-1] < ab[0] < 1


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_bar_is_product_of_alphas(name: str) -> None:
    schedule = make_schedule(name, 150)
    expected = cumprod([1 - b for b in as_list(schedule.betas)])
    assert as_list(schedule.alphas_cumprod) == pytest.approx(expected, rel=1e-12)
    assert float(schedule.alphas_cumprod_prev[0]) == 1.0
    assert as_list(schedule.alphas_cumprod_prev[1:]) == pytest.approx(expected[:-1], rel=1e-12)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_posterior_variance_and_coefficients(name: str) -> None:
    schedule = make_schedule(name, 150)
    betas = reference_linear_betas(150) if name == "linear" else as_list(schedule.betas)
    ab = cumprod([1 - b for b in betas])
    ab_prev = [1.0, *ab[:-1]]
    var = [(1 - ab_prev[i]) / (1 - ab[i]) * betas[i] for i in range(150)]
    c0 = [math.sqrt(ab_prev[i]) * betas[i] / (1 - ab[i]) for i in range(150)]
    ct = [math.sqrt(1 - betas[i]) * (1 - ab_prev[i]) / (1 - ab[i]) for i in range(150)]
    assert as_list(schedule.posterior_variance) == pytest.approx(var, rel=1e-9, abs=1e-15)
    assert as_list(schedule.posterior_mean_coef_x0) == pytest.approx(c0, rel=1e-9)
    assert as_list(schedule.posterior_mean_coef_xt) == pytest.approx(ct, rel=1e-9, abs=1e-15)
    # At the first step x_{t−1} is x_0 itself: no variance and the mean is x_0.
    assert float(schedule.posterior_variance[0]) == pytest.approx(0.0, abs=1e-15)
    assert float(schedule.posterior_mean_coef_x0[0]) == pytest.approx(1.0, rel=1e-12)


def test_snr_and_log_snr() -> None:
    schedule = make_schedule("linear", 1000)
    ab = cumprod([1 - b for b in reference_linear_betas(1000)])
    snr = [a / (1 - a) for a in ab]
    assert as_list(schedule.snr) == pytest.approx(snr, rel=1e-8)
    assert as_list(schedule.log_snr) == pytest.approx([math.log(s) for s in snr], rel=1e-8, abs=1e-10)
    assert as_list(schedule.sqrt_alphas_cumprod) == pytest.approx([math.sqrt(a) for a in ab], rel=1e-10)
    assert as_list(schedule.sqrt_one_minus_alphas_cumprod) == pytest.approx([math.sqrt(1 - a) for a in ab], rel=1e-8)


@pytest.mark.parametrize(
    ("name", "T"),
    [
        ("quadratic", 1000),
        ("", 1000),
        ("linear", 1),
        ("linear", 0),
        ("cosine", -5),
        ("linear", 10.5),
        ("linear", "1000"),
    ],
)
def test_bad_names_and_steps_raise(name: str, T: object) -> None:
    with pytest.raises(ValueError):
        make_schedule(name, T)  # type: ignore[arg-type]


@pytest.mark.parametrize("betas", [[0.1, 1.0], [0.0, 0.2], [-0.1], [], [[0.1, 0.2]]])
def test_bad_betas_raise(betas: list) -> None:
    with pytest.raises(ValueError):
        NoiseSchedule(torch.tensor(betas, dtype=torch.float64))


def test_config_round_trip_and_step_checks() -> None:
    schedule = make_schedule("cosine", 150)
    assert schedule.config() == ScheduleConfig("cosine", 150)
    rebuilt = NoiseSchedule.from_config(schedule.config())
    assert torch.equal(rebuilt.betas, schedule.betas)
    assert schedule.check_steps(149).item() == 149
    for bad in (150, -1, [0, 150]):
        with pytest.raises(ValueError):
            schedule.check_steps(bad)

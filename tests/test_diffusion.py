"""The DDPM/DDIM equations against moments, inverses and the product-of-Gaussians derivation.

Reference values are recomputed here from β with plain Python, never read from the schedule object
except for β itself (checked in test_schedule.py).
"""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_core.diffusion import (
    ddim_sigma,
    ddim_step,
    ddpm_step,
    eps_from_output,
    eps_from_v,
    predict_eps,
    predict_x0,
    q_mean,
    q_posterior,
    q_sample,
    q_step_sample,
    v_target,
)
from ddpm_core.schedule import make_schedule

T = 150
SCHEDULE = make_schedule("linear", T)
BETAS = [float(b) for b in SCHEDULE.betas]


def alpha_bar(t: int) -> float:
    """ᾱ_t = ∏_{s ≤ t} (1 − β_s); ᾱ_{−1} = 1."""
    return math.prod(1 - b for b in BETAS[: t + 1])


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_q_sample_moments() -> None:
    t, value, n = 60, 0.7, 400_000
    x0 = torch.full((n,), value, dtype=torch.float64)
    x_t, eps = q_sample(SCHEDULE, x0, t, generator=generator(1))
    ab = alpha_bar(t)
    # 5 standard errors on the mean, and a ±2% band on the variance (its relative s.e. is √(2/n) ≈ 0.2%).
    assert float(x_t.mean()) == pytest.approx(math.sqrt(ab) * value, abs=5 * math.sqrt((1 - ab) / n))
    assert float(x_t.var()) == pytest.approx(1 - ab, rel=0.02)
    assert torch.allclose(x_t, math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps)


def test_q_step_sample_moments() -> None:
    t, value, n = 100, -0.4, 400_000
    x_prev = torch.full((n,), value, dtype=torch.float64)
    x_t, _ = q_step_sample(SCHEDULE, x_prev, t, generator=generator(2))
    beta = BETAS[t]
    assert float(x_t.mean()) == pytest.approx(math.sqrt(1 - beta) * value, abs=5 * math.sqrt(beta / n))
    assert float(x_t.var()) == pytest.approx(beta, rel=0.02)


def test_steps_compose_to_the_jump() -> None:
    """Many single steps give the same distribution as one jump: variance 1 − ᾱ_t around √ᾱ_t x_0."""
    n, t_end = 200_000, 20
    x = torch.full((n,), 0.5, dtype=torch.float64)
    g = generator(3)
    for t in range(t_end + 1):
        x, _ = q_step_sample(SCHEDULE, x, t, generator=g)
    ab = alpha_bar(t_end)
    assert float(x.mean()) == pytest.approx(math.sqrt(ab) * 0.5, abs=5 * math.sqrt((1 - ab) / n))
    assert float(x.var()) == pytest.approx(1 - ab, rel=0.03)


def test_predict_x0_and_eps_invert_q_sample() -> None:
    g = generator(4)
    x0 = torch.rand(5, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 75, 120, T - 1])
    x_t, _ = q_sample(SCHEDULE, x0, t, noise=eps)
    assert torch.allclose(predict_x0(SCHEDULE, x_t, t, eps), x0, atol=1e-10)
    assert torch.allclose(predict_eps(SCHEDULE, x_t, t, x0), eps, atol=1e-10)
    assert torch.allclose(q_mean(SCHEDULE, x0, 75), math.sqrt(alpha_bar(75)) * x0)


@pytest.mark.parametrize("t", [1, 2, 40, T - 1])
def test_posterior_is_product_of_gaussians(t: int) -> None:
    """q(x_{t−1} | x_t, x_0) ∝ q(x_t | x_{t−1}) q(x_{t−1} | x_0), completed square by hand.

    As a function of x_{t−1}: q(x_t | x_{t−1}) = N(x_t; √α_t x_{t−1}, β_t) has precision α_t/β_t and
    contributes √α_t x_t / β_t to the linear term; q(x_{t−1} | x_0) = N(√ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}) has
    precision 1/(1 − ᾱ_{t−1}) and linear term √ᾱ_{t−1} x_0 / (1 − ᾱ_{t−1}).
    """
    g = generator(5)
    x0 = torch.rand(4, 6, generator=g, dtype=torch.float64) * 2 - 1
    x_t = torch.randn(4, 6, generator=g, dtype=torch.float64)
    alpha, beta, ab_prev = 1 - BETAS[t], BETAS[t], alpha_bar(t - 1)
    precision = alpha / beta + 1 / (1 - ab_prev)
    variance = 1 / precision
    mean = variance * (math.sqrt(alpha) * x_t / beta + math.sqrt(ab_prev) * x0 / (1 - ab_prev))
    got_mean, got_var = q_posterior(SCHEDULE, x0, x_t, t)
    assert torch.allclose(got_mean, mean, rtol=1e-10, atol=1e-12)
    assert float(got_var) == pytest.approx(variance, rel=1e-10)


def test_posterior_at_first_step_is_x0() -> None:
    x0 = torch.linspace(-1, 1, 10, dtype=torch.float64)
    x_t = torch.randn(10, generator=generator(6), dtype=torch.float64)
    mean, var = q_posterior(SCHEDULE, x0, x_t, 0)
    assert torch.allclose(mean, x0, atol=1e-12)
    assert float(var) == pytest.approx(0.0, abs=1e-15)


def test_ddpm_step_adds_no_noise_at_t0() -> None:
    g = generator(7)
    x_t = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    big_noise = 100 * torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    quiet = ddpm_step(SCHEDULE, x_t, 0, eps, noise=torch.zeros_like(x_t)).sample
    loud = ddpm_step(SCHEDULE, x_t, 0, eps, noise=big_noise).sample
    assert torch.equal(quiet, loud)
    # In a mixed batch only the t = 0 row stays noise-free.
    t = torch.tensor([0, 5])
    quiet = ddpm_step(SCHEDULE, x_t, t, eps, noise=torch.zeros_like(x_t)).sample
    loud = ddpm_step(SCHEDULE, x_t, t, eps, noise=big_noise).sample
    assert torch.equal(quiet[0], loud[0])
    assert not torch.allclose(quiet[1], loud[1])


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_step_variance_choice(variance: str) -> None:
    t = 30
    g = generator(8)
    x_t = torch.randn(3, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 5, generator=g, dtype=torch.float64)
    z = torch.randn(3, 5, generator=g, dtype=torch.float64)
    mean = ddpm_step(SCHEDULE, x_t, t, eps, variance=variance, noise=torch.zeros_like(z)).sample
    noisy = ddpm_step(SCHEDULE, x_t, t, eps, variance=variance, noise=z).sample
    ab, ab_prev = alpha_bar(t), alpha_bar(t - 1)
    sigma2 = BETAS[t] if variance == "beta" else (1 - ab_prev) / (1 - ab) * BETAS[t]
    assert torch.allclose(noisy - mean, math.sqrt(sigma2) * z, atol=1e-12)
    # The mean is eq. 11: (x_t − β_t/√(1−ᾱ_t) ε) / √α_t.
    eq11 = (x_t - BETAS[t] / math.sqrt(1 - ab) * eps) / math.sqrt(1 - BETAS[t])
    assert torch.allclose(mean, eq11, atol=1e-12)


def test_ddpm_step_rejects_unknown_variance() -> None:
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError):
        ddpm_step(SCHEDULE, x, 3, x, variance="sigma")  # type: ignore[arg-type]


def test_ddim_eta0_is_deterministic_and_exact_with_true_noise() -> None:
    g = generator(9)
    x0 = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    t, t_prev = 120, 40
    x_t, _ = q_sample(SCHEDULE, x0, t, noise=eps)
    a = ddim_step(SCHEDULE, x_t, t, t_prev, eps, eta=0.0, noise=torch.randn(x_t.shape, generator=g, dtype=x_t.dtype))
    b = ddim_step(SCHEDULE, x_t, t, t_prev, eps, eta=0.0, noise=torch.randn(x_t.shape, generator=g, dtype=x_t.dtype))
    c = ddim_step(SCHEDULE, x_t, t, t_prev, eps, eta=0.0)
    assert torch.equal(a.sample, b.sample) and torch.equal(a.sample, c.sample)
    expected = math.sqrt(alpha_bar(t_prev)) * x0 + math.sqrt(1 - alpha_bar(t_prev)) * eps
    assert torch.allclose(a.sample, expected, atol=1e-10)
    # Jumping to t' = −1 lands on x_0.
    assert torch.allclose(ddim_step(SCHEDULE, x_t, t, -1, eps).sample, x0, atol=1e-10)


@pytest.mark.parametrize("t", [1, 17, T - 1])
def test_ddim_eta1_single_step_has_posterior_variance(t: int) -> None:
    ab, ab_prev = alpha_bar(t), alpha_bar(t - 1)
    beta_tilde = (1 - ab_prev) / (1 - ab) * BETAS[t]
    like = torch.zeros(1, dtype=torch.float64)
    sigma = float(ddim_sigma(SCHEDULE, t, t - 1, 1.0, like))
    assert sigma**2 == pytest.approx(beta_tilde, rel=1e-10)
    # And the whole step equals DDPM's ancestral step with σ_t² = β̃_t.
    g = generator(10)
    x_t = torch.randn(3, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 4, generator=g, dtype=torch.float64)
    z = torch.randn(3, 4, generator=g, dtype=torch.float64)
    ddim = ddim_step(SCHEDULE, x_t, t, t - 1, eps, eta=1.0, noise=z).sample
    ddpm = ddpm_step(SCHEDULE, x_t, t, eps, variance="beta_tilde", noise=z).sample
    assert torch.allclose(ddim, ddpm, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_mixed_steps_shapes_and_dtypes(dtype: torch.dtype) -> None:
    g = generator(11)
    x0 = (torch.rand(4, 3, 8, 8, generator=g) * 2 - 1).to(dtype)
    eps = torch.randn(4, 3, 8, 8, generator=g).to(dtype)
    t = torch.tensor([0, 10, 90, T - 1])
    x_t, noise = q_sample(SCHEDULE, x0, t, noise=eps)
    step = ddpm_step(SCHEDULE, x_t, t, eps, noise=torch.zeros_like(x_t))
    jump = ddim_step(SCHEDULE, x_t, t, t - 1, eps)
    mean, var = q_posterior(SCHEDULE, x0, x_t, t)
    for out in (x_t, noise, step.sample, step.pred_x0, jump.sample, mean, predict_x0(SCHEDULE, x_t, t, eps)):
        assert out.shape == x0.shape and out.dtype == dtype
    assert var.shape == (4, 1, 1, 1) and var.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for i in range(4):  # each row equals the same computation with a single step
        single, _ = q_sample(SCHEDULE, x0[i : i + 1], int(t[i]), noise=eps[i : i + 1])
        assert torch.allclose(x_t[i : i + 1], single, atol=tol)
        one = ddpm_step(SCHEDULE, x_t[i : i + 1], int(t[i]), eps[i : i + 1], noise=torch.zeros_like(single))
        assert torch.allclose(step.sample[i : i + 1], one.sample, atol=tol)


@pytest.mark.parametrize("bad_t", [T, -1, 10_000, [0, T]])
def test_out_of_range_steps_raise(bad_t: object) -> None:
    x = torch.zeros(2 if isinstance(bad_t, list) else 1, 3)
    t = torch.tensor(bad_t) if isinstance(bad_t, list) else bad_t
    with pytest.raises(ValueError):
        q_sample(SCHEDULE, x, t)
    with pytest.raises(ValueError):
        q_step_sample(SCHEDULE, x, t)
    with pytest.raises(ValueError):
        ddpm_step(SCHEDULE, x, t, x)
    with pytest.raises(ValueError):
        predict_x0(SCHEDULE, x, t, x)


def test_ddim_argument_checks() -> None:
    x = torch.zeros(1, 3)
    with pytest.raises(ValueError):
        ddim_step(SCHEDULE, x, 10, 10, x)  # t' must be below t
    with pytest.raises(ValueError):
        ddim_step(SCHEDULE, x, 10, 5, x, eta=1.5)
    with pytest.raises(ValueError):
        ddim_step(SCHEDULE, x, 10, -2, x)


def test_velocity_round_trip_and_its_x0_form() -> None:
    """v = √ᾱ ε − √(1−ᾱ) x_0 (Salimans & Ho §4): ε comes back exactly, and x_0 = √ᾱ x_t − √(1−ᾱ) v."""
    x0 = torch.rand(3, 1, 5, 5, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0, 70, T - 1])
    x_t, eps = q_sample(SCHEDULE, x0, t, generator=generator(3))
    v = v_target(SCHEDULE, x0, t, eps)
    torch.testing.assert_close(eps_from_v(SCHEDULE, x_t, t, v), eps)
    torch.testing.assert_close(eps_from_output(SCHEDULE, x_t, t, v, "v"), eps)
    torch.testing.assert_close(eps_from_output(SCHEDULE, x_t, t, eps, "eps"), eps)
    for i, step in enumerate(t.tolist()):
        a, s = math.sqrt(alpha_bar(step)), math.sqrt(1 - alpha_bar(step))
        torch.testing.assert_close(v[i], a * eps[i] - s * x0[i])
        torch.testing.assert_close(a * x_t[i] - s * v[i], x0[i])  # a² + s² = 1
    with pytest.raises(ValueError, match="predicts 'eps' or 'v'"):
        eps_from_output(SCHEDULE, x_t, t, v, "x0")

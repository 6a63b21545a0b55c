"""The oracle computations behind tabs 1 and 2, against closed forms recomputed from β here."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_core import oracle
from ddpm_core.schedule import make_schedule

LINEAR_1000 = make_schedule("linear", 1000)
COSINE_150 = make_schedule("cosine", 150)


def image(height: int = 12, width: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, height, width, generator=g) * 2 - 1


def alpha_bar(schedule, t: int) -> float:
    """ᾱ_t from β with a plain loop; ᾱ_{−1} = 1."""
    return math.prod(1 - float(b) for b in schedule.betas[: t + 1])


# ---------------------------------------------------------------------------------------------- forward


def test_forward_view_matches_the_closed_form() -> None:
    x0, t = image(), 400
    view = oracle.explore_forward(x0, LINEAR_1000, t, seed=3, num_samples=4)
    ab = alpha_bar(LINEAR_1000, t)
    assert view.alpha_bar == pytest.approx(ab, rel=1e-9)
    assert torch.allclose(view.mean, math.sqrt(ab) * x0, atol=1e-6)
    assert view.samples.shape == (4, *x0.shape) and view.noises.shape == (4, *x0.shape)
    expected = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * view.noises
    assert torch.allclose(view.samples, expected, atol=1e-5)
    # Single step: x_{t−1} from the jump, then x_t = √α_t x_{t−1} + √β_t ε′.
    ab_prev = alpha_bar(LINEAR_1000, t - 1)
    residual = (view.x_prev - math.sqrt(ab_prev) * x0) / math.sqrt(1 - ab_prev)
    assert float(residual.std()) == pytest.approx(1.0, abs=0.3)  # it is noise, not x_0
    beta = float(LINEAR_1000.betas[t])
    assert torch.allclose(view.x_step, math.sqrt(1 - beta) * view.x_prev + math.sqrt(beta) * view.step_noise, atol=1e-6)


def test_forward_view_is_reproducible_and_noise_does_not_depend_on_t() -> None:
    x0 = image()
    a = oracle.explore_forward(x0, LINEAR_1000, 10, seed=7)
    b = oracle.explore_forward(x0, LINEAR_1000, 10, seed=7)
    c = oracle.explore_forward(x0, LINEAR_1000, 10, seed=8)
    later = oracle.explore_forward(x0, LINEAR_1000, 900, seed=7)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.x_step, b.x_step)
    assert not torch.allclose(a.noises, c.noises)
    assert torch.equal(a.noises, later.noises)
    # The first draw does not depend on how many samples are asked for.
    one = oracle.explore_forward(x0, LINEAR_1000, 10, seed=7, num_samples=1)
    assert torch.equal(one.noises[0], a.noises[0])


def test_forward_view_at_t0_steps_from_x0() -> None:
    x0 = image()
    view = oracle.explore_forward(x0, COSINE_150, 0, seed=1)
    assert torch.equal(view.x_prev, x0)
    beta = float(COSINE_150.betas[0])
    assert torch.allclose(view.x_step, math.sqrt(1 - beta) * x0 + math.sqrt(beta) * view.step_noise, atol=1e-6)


@pytest.mark.parametrize("t", [-1, 1000])
def test_forward_view_rejects_bad_steps(t: int) -> None:
    with pytest.raises(ValueError):
        oracle.explore_forward(image(), LINEAR_1000, t)


# ---------------------------------------------------------------------------------------------- oracle step


@pytest.mark.parametrize(
    ("schedule", "t"), [(LINEAR_1000, 0), (LINEAR_1000, 500), (LINEAR_1000, 999), (COSINE_150, 149)]
)
def test_oracle_x0_is_exact(schedule, t: int) -> None:
    x0 = image()
    rec = oracle.reconstruct_oracle(x0, schedule, t, seed=2)
    assert rec.l1_x0_hat_vs_x0 < 1e-5
    assert rec.x0_hat.dtype == torch.float64
    ab = alpha_bar(schedule, t)
    assert rec.l1_xt_vs_x0 == pytest.approx(
        float((math.sqrt(ab) * x0.double() + math.sqrt(1 - ab) * rec.noise - x0.double()).abs().mean()), rel=1e-9
    )


@pytest.mark.parametrize("t", [1, 50, 999])
def test_posterior_mean_differs_from_prior_mean_by_the_known_noise_term(t: int) -> None:
    """μ̃_{t−1} − μ_{t−1} = c_t √(1 − ᾱ_t) ε with c_t = √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)."""
    x0 = image()
    rec = oracle.reconstruct_oracle(x0, LINEAR_1000, t, seed=4)
    ab, ab_prev, beta = alpha_bar(LINEAR_1000, t), alpha_bar(LINEAR_1000, t - 1), float(LINEAR_1000.betas[t])
    c_t = math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
    assert torch.allclose(rec.prior_mean, math.sqrt(ab_prev) * x0.double(), atol=1e-12)
    assert torch.allclose(rec.posterior_mean - rec.prior_mean, c_t * math.sqrt(1 - ab) * rec.noise, atol=1e-10)
    assert rec.l1_posterior_vs_prior_mean == pytest.approx(c_t * math.sqrt(1 - ab) * float(rec.noise.abs().mean()))
    assert rec.posterior_std == pytest.approx(math.sqrt((1 - ab_prev) / (1 - ab) * beta), rel=1e-9)


def test_oracle_and_forward_tabs_share_x_t() -> None:
    x0 = image()
    view = oracle.explore_forward(x0, LINEAR_1000, 321, seed=5)
    rec = oracle.reconstruct_oracle(x0, LINEAR_1000, 321, seed=5)
    assert torch.allclose(rec.x_t.float(), view.samples[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------- curves


def test_error_curves_cover_every_step() -> None:
    x0 = image(40, 30)
    curves = oracle.error_curves(x0, LINEAR_1000, seed=1, max_side=16)
    for series in (curves.l1_xt, curves.l1_x0_hat, curves.l1_posterior_mean, curves.psnr_xt):
        assert series.shape == (1000,)
    assert curves.image_size == (16, 12)
    assert torch.equal(curves.steps, torch.arange(1000))
    assert float(curves.l1_x0_hat.max()) < 1e-5
    assert bool((curves.psnr_x0_hat > oracle.PSNR_CAP_DB).all())
    assert float(curves.capped(curves.psnr_x0_hat).max()) == oracle.PSNR_CAP_DB
    assert float(curves.l1_xt[0]) < 0.05 < 0.5 < float(curves.l1_xt[-1])
    assert float(curves.psnr_xt[0]) > float(curves.psnr_xt[-1])
    # At t = 0 the posterior mean is x_0 itself.
    assert float(curves.l1_posterior_mean[0]) < 1e-12


def test_error_curves_agree_with_single_step_reconstruction_and_chunking() -> None:
    x0 = image(8, 8)
    curves = oracle.error_curves(x0, COSINE_150, seed=6, max_side=None)
    chunked = oracle.error_curves(x0, COSINE_150, seed=6, max_side=None, chunk=7)
    assert torch.allclose(curves.l1_xt, chunked.l1_xt, rtol=1e-12)
    for t in (0, 75, 149):
        rec = oracle.reconstruct_oracle(x0, COSINE_150, t, seed=6)
        assert float(curves.l1_xt[t]) == pytest.approx(rec.l1_xt_vs_x0, rel=1e-9)
        assert float(curves.l1_posterior_mean[t]) == pytest.approx(rec.l1_posterior_vs_x0, rel=1e-9, abs=1e-14)
        mse = float((rec.x_t - x0.double()).pow(2).mean())
        assert float(curves.psnr_xt[t]) == pytest.approx(10 * math.log10(4 / mse), rel=1e-9)


def test_l1_helper() -> None:
    a = torch.zeros(2, 2)
    assert oracle.l1(a, a) == 0.0
    assert oracle.l1(a, a - 0.5) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------- chain


@pytest.mark.parametrize(
    ("schedule", "steps"), [(LINEAR_1000, (999, 799, 599, 399, 199, -1)), (COSINE_150, (149, 119, 89, 59, 29, -1))]
)
def test_oracle_chain_returns_to_x0(schedule, steps: tuple[int, ...]) -> None:
    x0 = image(10, 8)
    chain = oracle.oracle_reverse_chain(x0, schedule, seed=9)
    assert chain.snapshot_steps == steps
    assert chain.snapshots.shape == (6, 3, 10, 8) and chain.snapshots.dtype == torch.float64
    assert chain.final_max_error < 1e-5
    assert torch.allclose(chain.final, x0.double(), atol=1e-5)
    # The first snapshot is x_{T−1}: almost pure noise.
    assert oracle.l1(chain.snapshots[0], x0) > 0.5


def test_oracle_chain_with_posterior_variance_and_downscaling() -> None:
    chain = oracle.oracle_reverse_chain(image(40, 20), COSINE_150, seed=1, variance="beta_tilde", max_side=16)
    assert chain.final.shape == (3, 16, 8)
    assert chain.final_max_error < 1e-5

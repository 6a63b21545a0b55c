"""The DDPM equations, tensors in and tensors out.

Every function takes the :class:`~ddpm_core.schedule.NoiseSchedule` and a per-sample step tensor ``t``
(shape ``[B]``, or a plain int for the whole batch). Equation numbers refer to Ho, Jain & Abbeel,
"Denoising Diffusion Probabilistic Models" (2020) unless another paper is named. Schedule constants
are float64 and are cast to the dtype of the images, so float64 inputs give float64-exact answers.

Symbols: x_0 clean image, x_t noisy image, ε standard-normal noise, β_t, α_t = 1 − β_t,
ᾱ_t = ∏ α_s, β̃_t posterior variance, η (``eta``) DDIM stochasticity, σ_t (``sigma``) its std.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ddpm_core.schedule import NoiseSchedule, gather

VarianceChoice = Literal["beta", "beta_tilde"]


@dataclass(frozen=True)
class StepResult:
    """One reverse step: the next, less noisy sample and the x̂_0 it was computed from."""

    sample: torch.Tensor
    pred_x0: torch.Tensor


def standard_normal_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """ε ~ N(0, I) with the shape, dtype and device of ``x``, drawn from ``generator`` if given."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def q_step_sample(
    schedule: NoiseSchedule,
    x_prev: torch.Tensor,
    t: torch.Tensor | int,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample q(x_t | x_{t−1}) = N(√(1−β_t) x_{t−1}, β_t I) (eq. 2); returns (x_t, ε)."""
    if noise is None:
        noise = standard_normal_like(x_prev, generator)
    mean = schedule.at(schedule.alphas.sqrt(), t, x_prev) * x_prev
    return mean + schedule.at(schedule.betas.sqrt(), t, x_prev) * noise, noise


def q_mean(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """Mean of q(x_t | x_0): μ_t = √ᾱ_t x_0 (eq. 4)."""
    return schedule.at(schedule.sqrt_alphas_cumprod, t, x0) * x0


def q_sample(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    t: torch.Tensor | int,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) in one jump (eq. 4); returns (x_t, ε)."""
    if noise is None:
        noise = standard_normal_like(x0, generator)
    std = schedule.at(schedule.sqrt_one_minus_alphas_cumprod, t, x0)
    return q_mean(schedule, x0, t) + std * noise, noise


def predict_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
    """x̂_0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t, eq. 4 solved for x_0 (used in eq. 15)."""
    sqrt_ab = schedule.at(schedule.sqrt_alphas_cumprod, t, x_t)
    return (x_t - schedule.at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t) * eps) / sqrt_ab


def predict_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor) -> torch.Tensor:
    """ε = (x_t − √ᾱ_t x_0) / √(1−ᾱ_t), eq. 4 solved for ε."""
    std = schedule.at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t)
    return (x_t - q_mean(schedule, x0, t)) / std


def v_target(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
    """v = √ᾱ_t ε − √(1−ᾱ_t) x_0, the "velocity" a v-prediction model learns (Salimans & Ho 2022, §4)."""
    sqrt_ab = schedule.at(schedule.sqrt_alphas_cumprod, t, x0)
    return sqrt_ab * eps - schedule.at(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * x0


def eps_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, v: torch.Tensor) -> torch.Tensor:
    """ε = √ᾱ_t v + √(1−ᾱ_t) x_t, a predicted velocity turned back into noise (Salimans & Ho 2022, §4)."""
    sqrt_ab = schedule.at(schedule.sqrt_alphas_cumprod, t, x_t)
    return sqrt_ab * v + schedule.at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t


def eps_from_output(
    schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor | int, output: torch.Tensor, prediction: str
) -> torch.Tensor:
    """The ε a network means by ``output``: itself for an ε-model, :func:`eps_from_v` for a v-model."""
    if prediction == "eps":
        return output
    if prediction == "v":
        return eps_from_v(schedule, x_t, t, output)
    raise ValueError(f"unknown prediction {prediction!r}; a network predicts 'eps' or 'v'")


def q_posterior(
    schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean μ̃_t(x_t, x_0) and variance β̃_t of q(x_{t−1} | x_t, x_0) (eqs. 6–7)."""
    mean = (
        schedule.at(schedule.posterior_mean_coef_x0, t, x0) * x0
        + schedule.at(schedule.posterior_mean_coef_xt, t, x_t) * x_t
    )
    return mean, schedule.at(schedule.posterior_variance, t, x_t)


def reverse_variance(schedule: NoiseSchedule, choice: VarianceChoice) -> torch.Tensor:
    """σ_t² of p_θ(x_{t−1} | x_t): β_t or β̃_t, the two choices of §3.2."""
    if choice == "beta":
        return schedule.betas
    if choice == "beta_tilde":
        return schedule.posterior_variance
    raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {choice!r}")


def _nonzero_step_mask(t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """1 where t > 0 and 0 where t = 0, shaped to broadcast against ``like``: no noise is added at t = 0."""
    t = torch.as_tensor(t, device=like.device)
    mask = (t > 0).to(like.dtype)
    return mask if mask.ndim == 0 else mask.reshape(-1, *([1] * (like.ndim - 1)))


def ddpm_step(
    schedule: NoiseSchedule,
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    eps: torch.Tensor,
    variance: VarianceChoice = "beta",
    clip_x0: bool = False,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> StepResult:
    """Ancestral sample of p_θ(x_{t−1} | x_t) = N(μ̃_t(x_t, x̂_0), σ_t² I) (eq. 11, Algorithm 2).

    Steps: 1. x̂_0 from ε (eq. 15), clipped to [−1, 1] if asked; 2. the posterior mean μ̃_t from x̂_0
    and x_t (eq. 7), which equals eq. 11 when nothing is clipped; 3. add σ_t z, except at t = 0.
    """
    schedule.check_steps(t)
    # 1. predicted x_0 (eq. 15)
    pred_x0 = predict_x0(schedule, x_t, t, eps)
    if clip_x0:
        pred_x0 = pred_x0.clamp(-1.0, 1.0)
    # 2. posterior mean μ̃_t(x_t, x̂_0) (eq. 7)
    mean, _ = q_posterior(schedule, pred_x0, x_t, t)
    # 3. σ_t z with σ_t² = β_t or β̃_t; z = 0 at the last step
    if noise is None:
        noise = standard_normal_like(x_t, generator)
    sigma = schedule.at(reverse_variance(schedule, variance).sqrt(), t, x_t)
    return StepResult(mean + _nonzero_step_mask(t, x_t) * sigma * noise, pred_x0)


def ddim_sigma(
    schedule: NoiseSchedule, t: torch.Tensor | int, t_prev: torch.Tensor | int, eta: float, like: torch.Tensor
) -> torch.Tensor:
    """σ_t(η) = η √((1−ᾱ_{t'})/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'}) for a jump t → t' (Song et al. 2021, eq. 16)."""
    ab_t = schedule.at(schedule.alphas_cumprod, t, like)
    ab_prev = alphas_cumprod_at(schedule, t_prev, like)
    return eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).clamp(min=0).sqrt()


def alphas_cumprod_at(schedule: NoiseSchedule, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """ᾱ_t for t in −1…T−1, where t = −1 means x_0 itself (ᾱ = 1); shaped to broadcast against ``like``."""
    t = torch.as_tensor(t, dtype=torch.long)
    if t.numel() and (int(t.min()) < -1 or int(t.max()) >= schedule.num_steps):
        raise ValueError(f"step must lie in −1…{schedule.num_steps - 1}, got {t.tolist()}")
    padded = torch.cat([torch.ones(1, dtype=torch.float64), schedule.alphas_cumprod])
    return gather(padded, t + 1, like)


def ddim_step(
    schedule: NoiseSchedule,
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: torch.Tensor | int,
    eps: torch.Tensor,
    eta: float = 0.0,
    clip_x0: bool = False,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> StepResult:
    """DDIM jump x_t → x_{t'} for any t' < t (t' = −1 is x_0) (Song et al. 2021, eq. 12).

    x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ_t²) ε + σ_t z. η = 0 is deterministic; η = 1 with
    t' = t − 1 has σ_t² = β̃_t, the DDPM ancestral step.
    """
    schedule.check_steps(t)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if bool((torch.as_tensor(t_prev) >= torch.as_tensor(t)).any()):
        raise ValueError("DDIM needs t' < t")
    # 1. predicted x_0 (eq. 12, "predicted x_0" term); clipping changes ε to stay consistent
    pred_x0 = predict_x0(schedule, x_t, t, eps)
    if clip_x0:
        pred_x0 = pred_x0.clamp(-1.0, 1.0)
        eps = predict_eps(schedule, x_t, t, pred_x0)
    # 2. σ_t from η (eq. 16)
    sigma = ddim_sigma(schedule, t, t_prev, eta, x_t)
    ab_prev = alphas_cumprod_at(schedule, t_prev, x_t)
    # 3. "direction pointing to x_t" plus fresh noise
    direction = (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    if noise is None:
        noise = standard_normal_like(x_t, generator) if eta > 0 else torch.zeros_like(x_t)
    return StepResult(ab_prev.sqrt() * pred_x0 + direction + sigma * noise, pred_x0)


def half_log_snr(schedule: NoiseSchedule, t: int) -> float:
    """λ_t = log(√ᾱ_t / √(1 − ᾱ_t)), half the log-SNR (Lu et al. 2022, §2)."""
    return 0.5 * float(schedule.log_snr[t])


def dpm_solver_pp_step(
    schedule: NoiseSchedule,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    pred_x0: torch.Tensor,
    prev_pred_x0: torch.Tensor | None = None,
    h_prev: float | None = None,
) -> tuple[StepResult, float | None]:
    """DPM-Solver++(2M) jump t → t' in data prediction (Lu et al. 2022, Algorithm 2); returns (step, h).

    x_{t'} = (σ_{t'}/σ_t) x_t + α_{t'} (1 − e^{−h}) D with h = λ_{t'} − λ_t, where D = x̂_0 on the first
    step and D = (1 + 1/2r) x̂_0 − (1/2r) x̂_0^prev with r = h_prev / h afterwards. The jump to t' = −1
    (x_0 itself, λ = ∞) returns x̂_0.
    """
    if t_prev < 0:
        return StepResult(pred_x0, pred_x0), None
    alpha_next = float(schedule.sqrt_alphas_cumprod[t_prev])
    sigma_next = float(schedule.sqrt_one_minus_alphas_cumprod[t_prev])
    sigma_now = float(schedule.sqrt_one_minus_alphas_cumprod[t])
    h = half_log_snr(schedule, t_prev) - half_log_snr(schedule, t)
    if prev_pred_x0 is None or h_prev is None:
        d = pred_x0
    else:
        r = h_prev / h
        d = (1 + 1 / (2 * r)) * pred_x0 - (1 / (2 * r)) * prev_pred_x0
    x_next = (sigma_next / sigma_now) * x_t + alpha_next * (-math.expm1(-h)) * d
    return StepResult(x_next, pred_x0), h

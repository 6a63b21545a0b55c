"""Noise schedules: every per-step constant of the DDPM paper, computed once in float64.

Index convention: code step ``t`` runs over ``0 … T-1`` and stands for the paper's step ``t + 1``.
So ``alphas_cumprod[0] = 1 - betas[0]`` is the first noisy step, and ``alphas_cumprod_prev[0] = 1``
is "no noise at all" (x_0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

ScheduleName = Literal["linear", "cosine"]
SCHEDULE_NAMES: tuple[str, ...] = ("linear", "cosine")


@dataclass(frozen=True)
class ScheduleConfig:
    """Which schedule and how many steps; stored inside checkpoints."""

    name: ScheduleName = "linear"
    num_steps: int = 1000


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear β_t from 1e-4 to 0.02 at T = 1000 (Ho et al. 2020, §4), scaled by 1000/T otherwise.

    The 1000/T scaling (Nichol & Dhariwal 2021) keeps ᾱ_T ≈ 0 for short chains such as T = 150;
    without it a 150-step chain would still hold ~47% of the signal at its last step.
    """
    scale = 1000.0 / num_steps
    return torch.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2) (Nichol & Dhariwal eq. 17)."""
    steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=max_beta)


class NoiseSchedule:
    """The constants of one β schedule, float64 tensors of length T (symbols from Ho et al. 2020)."""

    def __init__(self, betas: torch.Tensor, name: str = "custom") -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 1:
            raise ValueError("betas must be a non-empty 1-D tensor")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("every beta must lie strictly between 0 and 1")
        self.name = name
        self.num_steps = len(betas)
        # β_t and α_t = 1 − β_t
        self.betas = betas
        self.alphas = 1.0 - betas
        # ᾱ_t = ∏_{s≤t} α_s, and ᾱ_{t−1} with ᾱ_{−1} = 1 (x_0 itself)
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        # √ᾱ_t and √(1 − ᾱ_t): the mean and std of q(x_t | x_0)
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        # β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t, the variance of q(x_{t−1} | x_t, x_0) (eq. 7)
        self.posterior_variance = (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod) * betas
        # μ̃_t = coef_x0 · x_0 + coef_xt · x_t (eq. 7)
        self.posterior_mean_coef_x0 = self.alphas_cumprod_prev.sqrt() * betas / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef_xt = (
            self.alphas.sqrt() * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        )
        # SNR(t) = ᾱ_t / (1 − ᾱ_t) (Kingma et al. 2021)
        self.snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        self.log_snr = self.snr.log()

    @classmethod
    def from_config(cls, config: ScheduleConfig) -> NoiseSchedule:
        """Build the schedule a config names."""
        return make_schedule(config.name, config.num_steps)

    def config(self) -> ScheduleConfig:
        """The config that rebuilds this schedule (only for the named schedules)."""
        if self.name not in SCHEDULE_NAMES:
            raise ValueError(f"schedule {self.name!r} has no config")
        return ScheduleConfig(name=self.name, num_steps=self.num_steps)  # type: ignore[arg-type]

    def check_steps(self, t: torch.Tensor | int) -> torch.Tensor:
        """Return ``t`` as a long tensor, raising a clear error if any step lies outside 0…T−1."""
        t = torch.as_tensor(t, dtype=torch.long)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_steps):
            raise ValueError(f"step t must lie in 0…{self.num_steps - 1}, got {t.tolist()}")
        return t

    def at(self, values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """Pick ``values[t]`` per sample and shape it to broadcast against ``like`` (dtype and device of ``like``)."""
        return gather(values, self.check_steps(t), like)

    def __repr__(self) -> str:
        return f"NoiseSchedule(name={self.name!r}, T={self.num_steps})"


def gather(values: torch.Tensor, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[index]`` in the dtype and device of ``like``, shaped [B, 1, 1, …] to broadcast against it."""
    picked = values[index.to(values.device)].to(device=like.device, dtype=like.dtype)
    return picked if picked.ndim == 0 else picked.reshape(-1, *([1] * (like.ndim - 1)))


def make_schedule(name: str = "linear", num_steps: int = 1000) -> NoiseSchedule:
    """A named schedule ('linear' or 'cosine') with T = num_steps."""
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"T must be an integer of at least 2, got {num_steps!r}")
    if name == "linear":
        if num_steps <= 20:  # β_T = 0.02 · 1000/T reaches 1 at T = 20
            raise ValueError(f"the linear schedule needs T > 20 (its β grow as 1000/T), got {num_steps}")
        return NoiseSchedule(linear_betas(num_steps), name="linear")
    if name == "cosine":
        return NoiseSchedule(cosine_betas(num_steps), name="cosine")
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")

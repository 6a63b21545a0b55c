"""Sampling digits from an ε-model with classifier-free guidance.

Guidance convention (the DLI course's ``sample_w``): ε̃ = w·ε_θ(x_t, c) + (1 − w)·ε_θ(x_t, ∅).
w = 0 is the unconditional model, w = 1 the plain conditional one, w > 1 pushes further toward the
class. Ho & Salimans (2021) write the same thing as ε̃ = (1 + w′)·ε_c − w′·ε_∅, so w = 1 + w′.

Every sampler has one signature, ``sample(model, schedule, labels, settings, callback)``, and calls
``callback(StepInfo)`` after each step with the current x and the model's x̂_0 (for progress bars,
cancelling and the two-track GIF). Samplers:

* ``ddpm``  — ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2);
* ``ddim``  — DDIM over ``steps`` evenly spaced steps with stochasticity η (Song et al. 2021);
* ``dpmpp`` — DPM-Solver++(2M), a second-order multistep solver (Lu et al. 2022), the default:
  the same quality as DDIM in about half the steps.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ddpm_core.diffusion import ddim_step, ddpm_step, dpm_solver_pp_step, predict_x0
from ddpm_core.schedule import NoiseSchedule
from ddpm_core.unet import NULL_LABEL, NUM_CLASSES

SamplerName = Literal["ddpm", "ddim", "dpmpp"]
SAMPLERS: tuple[str, ...] = ("dpmpp", "ddim", "ddpm")
W_MIN, W_MAX = 0.0, 10.0


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample: guidance weight, solver, number of steps, DDIM η, seed, precision."""

    w: float = 2.0
    sampler: SamplerName = "dpmpp"
    steps: int = 15
    eta: float = 0.0
    seed: int = 0
    clip_x0: bool = True
    bf16: bool = True  # bfloat16 autocast for the network on CPU: about 2× faster, same digits


@dataclass(frozen=True)
class StepInfo:
    """What a sampler reports after each step (k-diffusion's callback dict, typed)."""

    index: int  # 0-based step number
    total: int  # number of steps in this run
    t: int  # the step just taken from (0…T−1)
    x: torch.Tensor  # the sample after this step
    pred_x0: torch.Tensor  # the model's x̂_0 at this step


@dataclass(frozen=True)
class SampleResult:
    """Images in [−1, 1], their labels, and how long the sampling took."""

    images: torch.Tensor
    labels: torch.Tensor
    seconds: float
    network_evaluations: int


class SamplingCancelled(Exception):
    """Raised from a callback to stop sampling early."""


def validate_labels(labels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Labels as a long tensor, refusing empty lists and anything outside 0…9."""
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels.numel() == 0:
        raise ValueError("choose at least one digit class to sample")
    bad = sorted({int(v) for v in labels.tolist() if not 0 <= int(v) < NUM_CLASSES})
    if bad:
        raise ValueError(f"unknown class label(s) {bad}; digits are 0–9")
    return labels


def validate_settings(settings: SamplerSettings, schedule: NoiseSchedule) -> None:
    """Raise a clear ValueError for a guidance weight, sampler, step count or η that cannot work."""
    if not W_MIN <= settings.w <= W_MAX:
        raise ValueError(f"guidance weight w must lie in {W_MIN}…{W_MAX}, got {settings.w}")
    if settings.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {settings.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if settings.sampler != "ddpm" and not 1 <= settings.steps <= schedule.num_steps:
        raise ValueError(f"steps must lie in 1…{schedule.num_steps} (T), got {settings.steps}")
    if not 0.0 <= settings.eta <= 1.0:
        raise ValueError(f"η must lie in 0…1, got {settings.eta}")


def guided_eps(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, w: float, num_steps: int
) -> torch.Tensor:
    """ε̃ = w·ε(x, c) + (1 − w)·ε(x, ∅), with ε_c and ε_∅ from one batched forward pass."""
    t_in = t.float() / num_steps
    if w == 1.0:  # plain conditional: the unconditional half has weight 0
        return model(x, t_in, labels).float()
    null = torch.full_like(labels, NULL_LABEL)
    if w == 0.0:  # unconditional
        return model(x, t_in, null).float()
    eps = model(torch.cat([x, x]), torch.cat([t_in, t_in]), torch.cat([labels, null])).float()
    eps_cond, eps_uncond = eps.chunk(2)
    return w * eps_cond + (1.0 - w) * eps_uncond


def timesteps_for(sampler: str, steps: int, num_steps: int) -> list[int]:
    """The steps a sampler visits, from T−1 down to 0 ('trailing' spacing: always starts at pure noise)."""
    if sampler == "ddpm":
        return list(range(num_steps - 1, -1, -1))
    ts = torch.linspace(num_steps - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


def sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    labels: Sequence[int] | torch.Tensor,
    settings: SamplerSettings = SamplerSettings(),
    callback: Callable[[StepInfo], None] | None = None,
    noise: torch.Tensor | None = None,
) -> SampleResult:
    """Draw one image per label with guidance weight ``settings.w``; reproducible from ``settings.seed``."""
    validate_settings(settings, schedule)
    labels = validate_labels(labels)
    device = next(model.parameters()).device
    labels = labels.to(device)
    generator = torch.Generator(device="cpu").manual_seed(int(settings.seed))
    size = model.config.image_size  # type: ignore[attr-defined]
    channels = model.config.image_channels  # type: ignore[attr-defined]
    if noise is None:
        noise = torch.randn(len(labels), channels, size, size, generator=generator)
    x = noise.to(device=device, dtype=torch.float32)
    ts = timesteps_for(settings.sampler, settings.steps, schedule.num_steps)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if settings.bf16 and device.type == "cpu"
        else contextlib.nullcontext()
    )
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    evals = 0
    prev_x0: torch.Tensor | None = None
    h_prev: torch.Tensor | None = None
    try:
        with torch.inference_mode(), autocast:
            for i, t in enumerate(ts):
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                t_batch = torch.full((len(labels),), t, dtype=torch.long, device=device)
                eps = guided_eps(model, x, t_batch, labels, settings.w, schedule.num_steps)
                evals += 1
                z = torch.randn(x.shape, generator=generator).to(device)
                if settings.sampler == "ddpm":
                    step = ddpm_step(schedule, x, t_batch, eps, clip_x0=settings.clip_x0, noise=z)
                elif settings.sampler == "ddim":
                    step = ddim_step(schedule, x, t_batch, t_prev, eps, settings.eta, settings.clip_x0, noise=z)
                else:
                    pred_x0 = predict_x0(schedule, x, t_batch, eps)
                    if settings.clip_x0:
                        pred_x0 = pred_x0.clamp(-1, 1)
                    step, h_prev = dpm_solver_pp_step(schedule, x, t, t_prev, pred_x0, prev_x0, h_prev)
                    prev_x0 = pred_x0
                x = step.sample
                if callback is not None:
                    callback(StepInfo(i, len(ts), t, x, step.pred_x0))
    finally:
        model.train(was_training)
    return SampleResult(x.clamp(-1, 1).cpu(), labels.cpu(), time.perf_counter() - start, evals)


@dataclass
class Trajectory:
    """A callback that keeps x_t and x̂_0 every ``every`` steps (and always the last), for GIFs."""

    every: int = 1
    steps: list[int] = field(default_factory=list)
    xs: list[torch.Tensor] = field(default_factory=list)
    pred_x0s: list[torch.Tensor] = field(default_factory=list)

    def __call__(self, info: StepInfo) -> None:
        if info.index % max(1, self.every) == 0 or info.index == info.total - 1:
            self.steps.append(info.t)
            self.xs.append(info.x.detach().float().clamp(-1, 1).cpu())
            self.pred_x0s.append(info.pred_x0.detach().float().clamp(-1, 1).cpu())

"""Sampling digits from an ε-model with classifier-free guidance.

Guidance convention (the DLI course's ``sample_w``): ε̃ = w·ε_θ(x_t, c) + (1 − w)·ε_θ(x_t, ∅).
w = 0 is the unconditional model, w = 1 the plain conditional one, w > 1 pushes further toward the
class. Ho & Salimans (2021) write the same thing as ε̃ = (1 + w′)·ε_c − w′·ε_∅, so w = 1 + w′.

Guidance beyond the conditional model (w > 1) is applied only where the noise level σ_t = √((1 − ᾱ_t)/ᾱ_t)
lies in ``guidance_interval`` (Kynkäänniemi et al. 2024); elsewhere the step is plainly conditional (w = 1,
one network pass instead of two). w ≤ 1 applies at every step, so w = 0 is still the unconditional model.
At high noise guidance mostly costs variety and at low noise it changes little, so the default guides only
in the middle (:data:`MID_INTERVAL`); :data:`NO_INTERVAL` guides every step, as Ho & Salimans do.

Every sampler has one signature, ``sample(model, schedule, labels, settings, callback)``, and calls
``callback(StepInfo)`` after each step with the current x and the model's x̂_0 (for progress bars,
cancelling: raising in it stops the sampler, see :mod:`ddpm_core.background`; and the two-track GIF). Samplers:

* ``ddpm``  — ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2);
* ``ddim``  — DDIM over ``steps`` evenly spaced steps with stochasticity η (Song et al. 2021);
* ``dpmpp`` — DPM-Solver++(2M), a second-order multistep solver (Lu et al. 2022), the default:
  the same quality as DDIM in about half the steps.

Which steps a few-step sampler visits matters as much as the solver (``spacing``):

* ``logsnr``   — evenly spaced in half-log-SNR λ_t (Lu et al. 2022, §3.4), the default: 6 steps of
  DPM-Solver++ here beat 15 of the older linspace spacing;
* ``trailing`` — evenly spaced in t from T−1, never visiting t = 0 (diffusers' "trailing");
* ``linspace`` — evenly spaced in t from T−1 down to t = 0 (diffusers' "linspace"), which spends its
  last network evaluation where there is almost no noise left.

The network runs in the precision and runtime that :mod:`ddpm_core.runtime` picks (``auto``: timed once
per process on the real batch shape) unless the settings name one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ddpm_core.diffusion import ddim_step, ddpm_step, dpm_solver_pp_step, eps_from_output, predict_x0
from ddpm_core.runtime import Execution, choose_inference, default_precision, default_runtime, network
from ddpm_core.schedule import NoiseSchedule
from ddpm_core.unet import NULL_LABEL, NUM_CLASSES, prediction_of, takes_guidance

SamplerName = Literal["ddpm", "ddim", "dpmpp"]
SAMPLERS: tuple[str, ...] = ("dpmpp", "ddim", "ddpm")
SpacingName = Literal["logsnr", "trailing", "linspace"]
SPACINGS: tuple[str, ...] = ("logsnr", "trailing", "linspace")
W_MIN, W_MAX = 0.0, 10.0
NO_INTERVAL = (0.0, math.inf)  # guide at every noise level
MID_INTERVAL = (1.0, 2.0)  # the default: guide only where 1 < σ_t ≤ 2 (see guidance_weight_at)
GIF_FRAMES = 25  # a denoising GIF keeps about this many snapshots


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample: guidance weight and interval, solver, steps, DDIM η, seed, step spacing, precision, runtime."""

    w: float = 4.0
    sampler: SamplerName = "dpmpp"
    steps: int = 10
    eta: float = 0.0
    seed: int = 0
    clip_x0: bool = True
    spacing: SpacingName = "logsnr"
    precision: str = field(default_factory=default_precision)  # auto, fp32 or bf16 ($DDPM_PLAYGROUND_PRECISION)
    runtime: str = field(default_factory=default_runtime)  # auto, torch or onnx ($DDPM_PLAYGROUND_RUNTIME)
    guidance_interval: tuple[float, float] = MID_INTERVAL  # guide only where σ_lo < σ_t ≤ σ_hi


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
    """Images in [−1, 1], their labels, how long the sampling took, and how the network ran."""

    images: torch.Tensor
    labels: torch.Tensor
    seconds: float
    network_evaluations: int  # batched network calls, one per step
    execution: Execution
    network_images: int = 0  # images through the network in all: 2 per sample on a guided step, else 1


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
    lo, hi = settings.guidance_interval
    if not 0.0 <= lo < hi:
        raise ValueError(f"the guidance interval needs 0 ≤ σ_lo < σ_hi, got {settings.guidance_interval}")
    if settings.spacing not in SPACINGS:
        raise ValueError(f"unknown step spacing {settings.spacing!r}; choose one of {', '.join(SPACINGS)}")


def guided_batch(n: int, w: float, w_input: bool = False) -> int:
    """Images per network pass when guiding ``n``: 2n (conditional + unconditional) unless w is 0 or 1,
    or the network is a student that takes w as an input (one pass)."""
    return n if w_input or w in (0.0, 1.0) else 2 * n


def guided_eps(
    net: Callable[..., torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor,
    w: float | torch.Tensor,
    schedule: NoiseSchedule,
    prediction: str = "eps",
    w_input: bool = False,
) -> torch.Tensor:
    """ε̃ = w·ε(x, c) + (1 − w)·ε(x, ∅), with ε_c and ε_∅ from one batched pass of ``net`` (a model or runtime).

    ``w`` is one number or one per image. A v-model's two outputs are mixed the same way and then turned
    into ε: the map from v to ε is affine and the weights sum to one, so mixing before or after gives the
    same ε̃. A distilled student (``w_input``) was trained to output ε̃ itself: w goes in, one pass, no ∅ half.
    """
    t_in = t.float() / schedule.num_steps
    if w_input:
        w_in = torch.as_tensor(w, dtype=torch.float32, device=x.device).expand(len(x))
        out = net(x, t_in, labels, w_in).float()
    elif not torch.is_tensor(w) and w == 1.0:  # plain conditional: the unconditional half has weight 0
        out = net(x, t_in, labels).float()
    elif not torch.is_tensor(w) and w == 0.0:  # unconditional
        out = net(x, t_in, torch.full_like(labels, NULL_LABEL)).float()
    else:
        null = torch.full_like(labels, NULL_LABEL)
        both = net(torch.cat([x, x]), torch.cat([t_in, t_in]), torch.cat([labels, null])).float()
        out_cond, out_uncond = both.chunk(2)
        w = torch.as_tensor(w, dtype=torch.float32, device=x.device)
        w = w.reshape(-1, *([1] * (x.ndim - 1))) if w.ndim else w
        out = w * out_cond + (1.0 - w) * out_uncond
    return eps_from_output(schedule, x, t, out, prediction)


def interval_as_json(interval: tuple[float, float]) -> list[float | None]:
    """A guidance interval for JSON: an open upper end (∞, which strict JSON lacks) becomes null."""
    return [v if math.isfinite(v) else None for v in interval]


def guidance_weight_at(schedule: NoiseSchedule, t: int, w: float, interval: tuple[float, float]) -> float:
    """w > 1 where σ_t = √((1 − ᾱ_t)/ᾱ_t) lies in (σ_lo, σ_hi], else 1 (Kynkäänniemi et al. 2024); w ≤ 1 everywhere."""
    if w <= 1.0:  # no extra guidance to limit: w = 0 stays the unconditional model, w = 1 the conditional one
        return w
    sigma = math.exp(-0.5 * float(schedule.log_snr[t]))
    lo, hi = interval
    return w if lo < sigma <= hi else 1.0


def sampling_execution(model: nn.Module, n: int, settings: SamplerSettings) -> Execution:
    """How the network runs when sampling ``n`` images with ``settings`` (guided batch, precision, runtime)."""
    batch = guided_batch(n, settings.w, takes_guidance(model))
    return choose_inference(model, batch, settings.precision, settings.runtime)


def starting_noise(model: nn.Module, n: int, seed: int | torch.Generator) -> torch.Tensor:
    """x_T ~ N(0, I) (Ho et al. Algorithm 2, line 1) for ``n`` images of the model's shape, drawn on the CPU."""
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    config = model.config  # type: ignore[attr-defined]
    return torch.randn(n, config.image_channels, config.image_size, config.image_size, generator=generator)


def sampling_steps(settings: SamplerSettings, schedule: NoiseSchedule) -> int:
    """How many steps (network passes) a run with ``settings`` takes: T for DDPM, ``settings.steps`` otherwise."""
    return len(timesteps_for(settings.sampler, settings.steps, schedule, settings.spacing))


def network_images_needed(settings: SamplerSettings, schedule: NoiseSchedule, n: int, w_input: bool = False) -> int:
    """Images through the network for ``n`` samples with ``settings``: the work of a request, before it runs.

    It is what :attr:`SampleResult.network_images` will count: per step, 2n where guidance needs the
    unconditional pass too, else n (always n for a distilled student, which takes w as an input).
    """
    ts = timesteps_for(settings.sampler, settings.steps, schedule, settings.spacing)
    return sum(
        guided_batch(n, guidance_weight_at(schedule, t, settings.w, settings.guidance_interval), w_input) for t in ts
    )


def linspace_timesteps(num_steps: int, steps: int) -> list[int]:
    """``steps`` steps evenly spaced from T−1 down to 0 (diffusers' "linspace" spacing)."""
    ts = torch.linspace(num_steps - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


def trailing_timesteps(num_steps: int, steps: int) -> list[int]:
    """t_i = round(T − i·T/steps) − 1: evenly spaced from T−1, the last one T/steps − 1 (diffusers' "trailing")."""
    return sorted({round(num_steps - i * num_steps / steps) - 1 for i in range(steps)}, reverse=True)


def logsnr_timesteps(schedule: NoiseSchedule, steps: int) -> list[int]:
    """Steps evenly spaced in λ_t = ½ log SNR(t) (Lu et al. 2022, §3.4): λ_{T−2} + i·(λ_0 − λ_{T−2})/steps, i < steps.

    Trailing: λ_0 itself is left to the final jump to x_0. The first step is taken at T−1 rather than T−2,
    so sampling starts from pure noise. The grid starts at λ_{T−2}, not λ_{T−1}, because the cosine schedule
    clips its last β at 0.999, which puts λ_{T−1} far below the rest (−8.5 against −5.1 at T = 250) and
    would spend several steps on pure noise. Each λ is rounded to the nearest t; where the schedule is
    steep two would share a t, so each step is kept at least one below the one before.
    """
    T = schedule.num_steps
    lam = 0.5 * schedule.log_snr
    start = float(lam[max(T - 2, 0)])
    grid = torch.linspace(start, float(lam[0]), steps + 1, dtype=torch.float64)[:-1]
    ts = [T - 1]
    for i, target in enumerate(grid.tolist()[1:], start=1):
        t = min(int((lam - target).abs().argmin()), ts[-1] - 1)
        ts.append(max(t, steps - 1 - i))
    return ts


def timesteps_for(sampler: str, steps: int, schedule: NoiseSchedule, spacing: str = "logsnr") -> list[int]:
    """The steps a sampler visits, from T−1 down (all T for DDPM; ``steps`` of them at ``spacing`` otherwise)."""
    T = schedule.num_steps
    if sampler == "ddpm":
        return list(range(T - 1, -1, -1))
    steps = min(steps, T)
    if spacing == "logsnr":
        return logsnr_timesteps(schedule, steps)
    if spacing == "trailing":
        return trailing_timesteps(T, steps)
    return linspace_timesteps(T, steps)


def sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    labels: Sequence[int] | torch.Tensor,
    settings: SamplerSettings | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    noise: torch.Tensor | None = None,
    ws: Sequence[float] | torch.Tensor | None = None,
) -> SampleResult:
    """Draw one image per label with guidance weight ``settings.w``; reproducible from ``settings.seed``.

    ``ws`` gives each image a guidance weight of its own instead; only a distilled student, which takes w as
    an input, can do that in one batch (several people's requests at once, see :func:`sample_together`).
    """
    settings = settings or SamplerSettings()  # built per call: the precision and runtime defaults read the environment
    validate_settings(settings, schedule)
    labels = validate_labels(labels)
    w_input = takes_guidance(model)  # a distilled student: w is an input at every step, one pass
    if ws is not None:
        ws = _per_image_weights(ws, len(labels), w_input)
    device = next(model.parameters()).device
    labels = labels.to(device)
    generator = torch.Generator(device="cpu").manual_seed(int(settings.seed))
    if noise is None:
        noise = starting_noise(model, len(labels), generator)
    x = noise.to(device=device, dtype=torch.float32)
    ts = timesteps_for(settings.sampler, settings.steps, schedule, settings.spacing)
    execution = sampling_execution(model, len(labels), settings)
    was_training = model.training
    model.eval()
    net = network(model, execution)
    prediction = prediction_of(model)
    start = time.perf_counter()
    evals = images = 0
    prev_x0: torch.Tensor | None = None
    h_prev: torch.Tensor | None = None
    try:
        with torch.inference_mode():
            for i, t in enumerate(ts):
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                t_batch = torch.full((len(labels),), t, dtype=torch.long, device=device)
                if w_input:
                    w = settings.w if ws is None else ws.to(device)
                else:
                    w = guidance_weight_at(schedule, t, settings.w, settings.guidance_interval)
                eps = guided_eps(net, x, t_batch, labels, w, schedule, prediction, w_input)
                evals += 1
                images += guided_batch(len(labels), w, w_input)
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
    seconds = time.perf_counter() - start
    return SampleResult(x.clamp(-1, 1).cpu(), labels.cpu(), seconds, evals, execution, network_images=images)


def _per_image_weights(ws: Sequence[float] | torch.Tensor, n: int, w_input: bool) -> torch.Tensor:
    """Per-image guidance weights as a float tensor, checked: a student only, one per image, each in range."""
    if not w_input:
        raise ValueError("one guidance weight per image needs a distilled student (a model that takes w as an input)")
    ws = torch.as_tensor(ws, dtype=torch.float32).flatten()
    if len(ws) != n:
        raise ValueError(f"give one guidance weight per image: {len(ws)} weights for {n} images")
    if bool(((ws < W_MIN) | (ws > W_MAX) | ws.isnan()).any()):
        raise ValueError(f"guidance weights must lie in {W_MIN}…{W_MAX}")
    return ws


@dataclass(frozen=True)
class SampleRequest:
    """One person's request in a shared batch: the classes to draw, their guidance weight and seed."""

    labels: tuple[int, ...]
    w: float
    seed: int


def sample_together(
    model: nn.Module, schedule: NoiseSchedule, requests: Sequence[SampleRequest], settings: SamplerSettings
) -> list[torch.Tensor]:
    """Several requests to a distilled student in one batch; each gets the images it would get alone.

    Each request's starting noise comes from its own seed (:func:`starting_noise`) and each image carries its
    request's w, so batching changes only the cost: one network pass per step for everyone.
    """
    if not requests:
        return []
    labels = [validate_labels(list(r.labels)) for r in requests]
    noise = torch.cat([starting_noise(model, len(lab), r.seed) for lab, r in zip(labels, requests, strict=True)])
    ws = torch.cat([torch.full((len(lab),), float(r.w)) for lab, r in zip(labels, requests, strict=True)])
    result = sample(model, schedule, torch.cat(labels), settings, noise=noise, ws=ws)
    return list(result.images.split([len(lab) for lab in labels]))


@dataclass
class Trajectory:
    """A callback that keeps x_t and x̂_0 every ``every`` steps (and always the last), for GIFs."""

    every: int = 1
    steps: list[int] = field(default_factory=list)
    xs: list[torch.Tensor] = field(default_factory=list)
    pred_x0s: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def for_frames(cls, total_steps: int, frames: int = GIF_FRAMES) -> Trajectory:
        """Keep about ``frames`` snapshots of a run of ``total_steps`` steps."""
        return cls(every=max(1, total_steps // frames))

    def __call__(self, info: StepInfo) -> None:
        if info.index % max(1, self.every) == 0 or info.index == info.total - 1:
            self.steps.append(info.t)
            self.xs.append(info.x.detach().float().clamp(-1, 1).cpu())
            self.pred_x0s.append(info.pred_x0.detach().float().clamp(-1, 1).cpu())

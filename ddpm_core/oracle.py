"""The forward process at one step, and the reverse process when the noise is known: tensors in, dataclasses out.

"Oracle" means we know the clean image x_0, hence the exact noise ε that produced x_t. With that
knowledge every reverse-process quantity of DDPM can be computed exactly, which shows what a perfect
ε-prediction network would achieve and which errors are left to the learning.

Steps follow :mod:`ddpm_core.schedule`: code step t = 0 … T−1 is the paper's step t + 1, and
"x_{t−1}" at t = 0 is x_0 itself. Images are [3, H, W] (or [C, H, W]) tensors in [−1, 1].
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddpm_core.diffusion import (
    VarianceChoice,
    ddpm_step,
    predict_eps,
    predict_x0,
    q_mean,
    q_posterior,
    q_sample,
    q_step_sample,
)
from ddpm_core.schedule import NoiseSchedule

PSNR_CAP_DB = 100.0
"""PSNR values are capped here for plotting: an exact reconstruction has infinite PSNR."""

PIXEL_RANGE = 2.0
"""Images live in [−1, 1], so the peak-to-peak range used by PSNR is 2."""


def _generator(seed: int) -> torch.Generator:
    """A CPU generator seeded explicitly, so every view is reproducible from its seed."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


@functools.lru_cache(maxsize=8)
def _noise_bank(seed: int, shape: tuple[int, ...], count: int) -> tuple[torch.Tensor, ...]:
    """The first ``count`` float32 draws of ``seed``, as :func:`_draw_noises` makes them.

    Cached because dragging the t slider asks for the same noise again and again; callers must not
    modify the returned tensors in place.
    """
    return tuple(_draw_noises(torch.empty(shape), count, _generator(seed)))


def _draw_noises(like: torch.Tensor, count: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``count`` standard-normal tensors shaped like ``like``, drawn one after another in float32.

    Drawing each one separately (and always in float32) makes draw k the same whatever ``count`` is and
    whatever precision the caller computes in, so every view of the same seed sees the same x_t.
    """
    return [torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.dtype) for _ in range(count)]


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference ‖a − b‖₁ / n."""
    return float((a.double() - b.double()).abs().mean())


# ----------------------------------------------------------------------------------------------
# The forward process q
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardView:
    """What q does to x_0 at step t (eqs. 2 and 4 of Ho et al. 2020); all images [C, H, W]."""

    t: int
    alpha_bar: float  # ᾱ_t
    beta: float  # β_t
    mean: torch.Tensor  # μ_t = √ᾱ_t x_0
    samples: torch.Tensor  # [K, C, H, W]: x_t^(k) = μ_t + √(1 − ᾱ_t) ε^(k)
    noises: torch.Tensor  # [K, C, H, W]: the ε^(k) used for each sample
    x_prev: torch.Tensor  # x_{t−1} drawn by the jump q(x_{t−1} | x_0); x_0 when t = 0
    x_step: torch.Tensor  # x_t drawn by one step q(x_t | x_{t−1}) from x_prev
    step_noise: torch.Tensor  # the ε used for that step

    @property
    def noise(self) -> torch.Tensor:
        """ε of the first sample (the one :func:`reconstruct_oracle` draws for the same seed)."""
        return self.noises[0]


def explore_forward(
    x0: torch.Tensor, schedule: NoiseSchedule, t: int, seed: int = 0, num_samples: int = 3
) -> ForwardView:
    """μ_t, K samples of q(x_t | x_0) (eq. 4) and one step of q(x_t | x_{t−1}) (eq. 2), reproducible from ``seed``.

    The noise of sample k depends only on the seed, not on t, so moving t with a fixed seed fades one
    and the same ε in while the image fades out.
    """
    if x0.ndim != 3:
        raise ValueError(f"x0 must be one image [C, H, W], got shape {tuple(x0.shape)}")
    if num_samples < 1:
        raise ValueError("num_samples must be at least 1")
    t = int(schedule.check_steps(int(t)))
    *sample_noises, prev_noise, step_noise = (
        n.to(x0.dtype) for n in _noise_bank(int(seed), tuple(x0.shape), num_samples + 2)
    )
    noises = torch.stack(sample_noises)
    batch = x0.expand(num_samples, *x0.shape)
    samples, _ = q_sample(schedule, batch, t, noise=noises)
    mean = q_mean(schedule, x0, t)
    # Single-step view: x_{t−1} by the jump to t − 1, then one step of eq. 2.
    x_prev = x0 if t == 0 else q_sample(schedule, x0, t - 1, noise=prev_noise)[0]
    x_step, _ = q_step_sample(schedule, x_prev, t, noise=step_noise)
    return ForwardView(
        t=t,
        alpha_bar=float(schedule.alphas_cumprod[t]),
        beta=float(schedule.betas[t]),
        mean=mean,
        samples=samples,
        noises=noises,
        x_prev=x_prev,
        x_step=x_step,
        step_noise=step_noise.clone(),  # the bank's tensor stays private
    )


# ----------------------------------------------------------------------------------------------
# The reverse process with the oracle noise
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OracleReconstruction:
    """One step of the reverse process with the true ε, in float64; ℓ1 values are mean |a − b|."""

    t: int
    x_t: torch.Tensor  # x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (the first sample of explore_forward)
    noise: torch.Tensor  # the true ε
    x0_hat: torch.Tensor  # x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t
    posterior_mean: torch.Tensor  # μ̃_{t−1} = μ̃_t(x_t, x̂_0), the mean of q(x_{t−1} | x_t, x_0) (eq. 7)
    posterior_std: float  # √β̃_t
    prior_mean: torch.Tensor  # μ_{t−1} = √ᾱ_{t−1} x_0, the mean of q(x_{t−1} | x_0)
    l1_xt_vs_x0: float
    l1_x0_hat_vs_x0: float
    l1_posterior_vs_prior_mean: float  # ℓ1(μ̃_{t−1}, μ_{t−1})
    l1_posterior_vs_x0: float  # ℓ1(μ̃_{t−1}, x_0)


def reconstruct_oracle(x0: torch.Tensor, schedule: NoiseSchedule, t: int, seed: int = 0) -> OracleReconstruction:
    """x̂_0 from the true ε (eq. 4 solved for x_0) and the posterior mean μ̃_{t−1} (eq. 7), compared with μ_{t−1}.

    μ̃_{t−1} − μ_{t−1} = c_t √(1 − ᾱ_t) ε with c_t the x_t-coefficient of eq. 7: knowing x_t tells the
    posterior which way the noise went, so it does not equal the mean of q(x_{t−1} | x_0).
    """
    if x0.ndim != 3:
        raise ValueError(f"x0 must be one image [C, H, W], got shape {tuple(x0.shape)}")
    t = int(schedule.check_steps(int(t)))
    x0 = x0.to(torch.float64)
    noise = _noise_bank(int(seed), tuple(x0.shape), 1)[0].to(torch.float64)  # .to() copies: float32 → 64
    x_t, _ = q_sample(schedule, x0, t, noise=noise)
    x0_hat = predict_x0(schedule, x_t, t, noise)
    posterior_mean, posterior_var = q_posterior(schedule, x0_hat, x_t, t)
    prior_mean = schedule.alphas_cumprod_prev[t].sqrt() * x0
    return OracleReconstruction(
        t=t,
        x_t=x_t,
        noise=noise,
        x0_hat=x0_hat,
        posterior_mean=posterior_mean,
        posterior_std=float(posterior_var.sqrt()),
        prior_mean=prior_mean,
        l1_xt_vs_x0=l1(x_t, x0),
        l1_x0_hat_vs_x0=l1(x0_hat, x0),
        l1_posterior_vs_prior_mean=l1(posterior_mean, prior_mean),
        l1_posterior_vs_x0=l1(posterior_mean, x0),
    )


@dataclass(frozen=True)
class ErrorCurves:
    """Errors against x_0 at every step t = 0 … T−1, one shared ε; numpy-free float64 tensors of length T."""

    steps: torch.Tensor  # 0 … T−1
    l1_xt: torch.Tensor
    l1_x0_hat: torch.Tensor
    l1_posterior_mean: torch.Tensor  # ℓ1(μ̃_{t−1}, x_0)
    psnr_xt: torch.Tensor  # dB, may be inf
    psnr_x0_hat: torch.Tensor
    psnr_posterior_mean: torch.Tensor
    image_size: tuple[int, int]  # (H, W) the curves were computed at
    psnr_cap_db: float = PSNR_CAP_DB

    def capped(self, values: torch.Tensor) -> torch.Tensor:
        """PSNR values with inf and anything above the cap set to the cap (for plotting)."""
        return values.clamp(max=self.psnr_cap_db)


def _downscale(x: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """``x`` [C, H, W] with its longest side at most ``max_side`` (area-averaged); unchanged if already small."""
    if max_side is None or max(x.shape[-2:]) <= max_side:
        return x
    h, w = x.shape[-2:]
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x[None], size=size, mode="area")[0]


def _psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """10 log₁₀(range² / MSE), inf where MSE = 0."""
    return 10.0 * torch.log10(PIXEL_RANGE**2 / mse)


def error_curves(
    x0: torch.Tensor, schedule: NoiseSchedule, seed: int = 0, max_side: int | None = 64, chunk: int | None = None
) -> ErrorCurves:
    """ℓ1 and PSNR against x_0 of x_t, oracle x̂_0 and μ̃_{t−1} for all t at once (float64, chunks of t).

    Computed on a copy of x_0 downscaled to ``max_side`` (the errors are per-pixel averages, so they
    barely depend on resolution) with one ε shared by every t, which makes the curves smooth. ``chunk``
    steps are computed together; by default as many as fit in about 2 MB, which keeps them in cache.
    """
    if x0.ndim != 3:
        raise ValueError(f"x0 must be one image [C, H, W], got shape {tuple(x0.shape)}")
    x0 = _downscale(x0.to(torch.float64), max_side)
    (noise,) = _draw_noises(x0, 1, _generator(seed))
    steps = torch.arange(schedule.num_steps)
    chunk = chunk if chunk is not None else max(1, 2**18 // x0.numel())
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("l1_xt", "l1_x0", "l1_mu", "mse_xt", "mse_x0", "mse_mu")}
    for start in range(0, schedule.num_steps, chunk):
        t = steps[start : start + chunk]
        batch = x0.expand(len(t), *x0.shape)
        eps = noise.expand(len(t), *noise.shape)
        x_t, _ = q_sample(schedule, batch, t, noise=eps)
        x0_hat = predict_x0(schedule, x_t, t, eps)
        mu, _ = q_posterior(schedule, x0_hat, x_t, t)
        for name, value in (("xt", x_t), ("x0", x0_hat), ("mu", mu)):
            diff = (value - batch).flatten(1)
            rows[f"l1_{name}"].append(diff.abs().mean(1))
            rows[f"mse_{name}"].append(diff.pow(2).mean(1))
    out = {k: torch.cat(v) for k, v in rows.items()}
    return ErrorCurves(
        steps=steps,
        l1_xt=out["l1_xt"],
        l1_x0_hat=out["l1_x0"],
        l1_posterior_mean=out["l1_mu"],
        psnr_xt=_psnr_from_mse(out["mse_xt"]),
        psnr_x0_hat=_psnr_from_mse(out["mse_x0"]),
        psnr_posterior_mean=_psnr_from_mse(out["mse_mu"]),
        image_size=(int(x0.shape[-2]), int(x0.shape[-1])),
    )


@dataclass(frozen=True)
class OracleChain:
    """The reverse chain x_{T−1} → … → x_0 run with the oracle ε; snapshots every T/5 steps."""

    snapshot_steps: tuple[int, ...]  # the code step t of each snapshot; −1 is the final x_0
    snapshots: torch.Tensor  # [S, C, H, W], float64
    final: torch.Tensor  # the chain's x_0
    final_max_error: float  # max |final − x_0|
    final_l1: float  # mean |final − x_0|


def oracle_reverse_chain(
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    seed: int = 0,
    num_snapshots: int = 5,
    variance: VarianceChoice = "beta",
    max_side: int | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> OracleChain:
    """Run Algorithm 2 from x_{T−1} ~ q(x_{T−1} | x_0) with ε = predict_eps(x_t, t, x_0) at every step, in float64.

    With the oracle ε, x̂_0 = x_0 at every step, so each step samples the true posterior
    q(x_{t−1} | x_t, x_0); the last step (t = 0) adds no noise and its mean is exactly x_0.
    ``callback(done, T)`` runs after each step (a progress bar; raising in it stops the chain).
    """
    if x0.ndim != 3:
        raise ValueError(f"x0 must be one image [C, H, W], got shape {tuple(x0.shape)}")
    if num_snapshots < 1:
        raise ValueError("num_snapshots must be at least 1")
    x0 = _downscale(x0.to(torch.float64), max_side)
    T = schedule.num_steps
    generator = _generator(seed)
    (start_noise,) = _draw_noises(x0, 1, generator)
    x_t, _ = q_sample(schedule, x0, T - 1, noise=start_noise)
    every = max(1, T // num_snapshots)
    steps: list[int] = []
    snapshots: list[torch.Tensor] = []
    for t in range(T - 1, -1, -1):
        if (T - 1 - t) % every == 0 and len(steps) < num_snapshots:
            steps.append(t)
            snapshots.append(x_t)
        eps = predict_eps(schedule, x_t, t, x0)
        x_t = ddpm_step(schedule, x_t, t, eps, variance=variance, generator=generator).sample
        if callback is not None:
            callback(T - t, T)
    steps.append(-1)
    snapshots.append(x_t)
    error = (x_t - x0).abs()
    return OracleChain(
        snapshot_steps=tuple(steps),
        snapshots=torch.stack(snapshots),
        final=x_t,
        final_max_error=float(error.max()),
        final_l1=float(error.mean()),
    )

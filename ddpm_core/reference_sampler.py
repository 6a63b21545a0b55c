"""The reference sampler: the NVIDIA DLI course's ``sample_w`` and ``reverse_q``, rewritten for this model.

It is the plainest correct guided DDPM sampler, kept as the yardstick that :mod:`ddpm_core.sampling`
is measured against (the benchmark's baseline) and checked with (the tests):

* every one of the T steps builds the doubled batch (x twice; the labels, then "no class") and calls the
  U-Net with autograd on, in float32, as the course does;
* the guided noise is ε̃ = w·ε_keep + (1 − w)·ε_drop (a v-model's outputs are mixed, then turned into ε);
* the update is Algorithm 2 of Ho et al. (eq. 11, σ_t² = β_t) with the course's precomputed constants:
  u_t = (x_t − β_t/√(1 − ᾱ_t)·ε̃)/√α_t, plus √β_t·z except at t = 0.

The course indexes the added noise as ``B[t-1]``, a one-step shift this module does not copy. Only the
final image is clamped to [−1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ddpm_core.diffusion import eps_from_output
from ddpm_core.schedule import NoiseSchedule
from ddpm_core.unet import NULL_LABEL, prediction_of


@dataclass(frozen=True)
class DliConstants:
    """The float32 per-step constants the course precomputes for ``reverse_q`` (index = code step t)."""

    betas: torch.Tensor  # β_t
    sqrt_a_inv: torch.Tensor  # 1/√α_t
    pred_noise_coeff: torch.Tensor  # β_t / √(1 − ᾱ_t)


def dli_constants(schedule: NoiseSchedule) -> DliConstants:
    """The course's reverse-process constants for ``schedule``, in float32 like the course keeps them."""
    return DliConstants(
        betas=schedule.betas.float(),
        sqrt_a_inv=(1.0 / schedule.alphas.sqrt()).float(),
        pred_noise_coeff=(schedule.betas / schedule.sqrt_one_minus_alphas_cumprod).float(),
    )


@torch.no_grad()
def reverse_q(consts: DliConstants, x_t: torch.Tensor, t: int, e_t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One reverse step (Ho et al. eq. 11, σ_t² = β_t): (x_t − β_t/√(1−ᾱ_t)·ε)/√α_t, plus √β_t·z unless t = 0."""
    u_t = consts.sqrt_a_inv[t] * (x_t - consts.pred_noise_coeff[t] * e_t)
    if t == 0:
        return u_t
    return u_t + consts.betas[t].sqrt() * z


def sample_w(
    model: nn.Module, schedule: NoiseSchedule, labels: Sequence[int], w: float, noise: torch.Tensor, seed: int = 0
) -> torch.Tensor:
    """The course's ``sample_w`` loop over all T steps (autograd on, fp32); returns images clamped to [−1, 1]."""
    consts = dli_constants(schedule)
    generator = torch.Generator().manual_seed(seed)
    c = torch.as_tensor(list(labels), dtype=torch.long)
    n = len(c)
    c = torch.cat([c, torch.full_like(c, NULL_LABEL)])  # double the batch: keep context, then drop it
    model.eval()
    x_t = noise.float().clone()
    for i in range(schedule.num_steps - 1, -1, -1):
        t = torch.full((2 * n,), i / schedule.num_steps)
        out = model(x_t.repeat(2, 1, 1, 1), t, c)
        e_t = eps_from_output(schedule, x_t, i, w * out[:n] + (1 - w) * out[n:], prediction_of(model))
        z = torch.randn(x_t.shape, generator=generator)
        x_t = reverse_q(consts, x_t, i, e_t.float(), z)
    return x_t.clamp(-1, 1)

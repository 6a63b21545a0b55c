"""The trained model next to the oracle: what the network predicts where the true noise is known.

For a real digit x_0 and a step t we draw ε, form x_t (eq. 4), and compare the model's ε_θ(x_t, t, c)
with the true ε, and its x̂_0 (eq. 15) with the oracle's (which is x_0 itself). Averaged over held-out
digits, the ε-error at each t is the training objective L_simple (eq. 14) as a function of t. A v-model's
output is turned into ε first (Salimans & Ho 2022), so both kinds are measured on the same scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ddpm_core.diffusion import eps_from_output, predict_x0, q_sample
from ddpm_core.runtime import Execution, choose_inference, default_precision, default_runtime, network
from ddpm_core.schedule import NoiseSchedule
from ddpm_core.unet import NULL_LABEL, ContextUNet, prediction_of


@dataclass(frozen=True)
class ModelVsOracle:
    """One digit at one step: true and predicted ε, oracle and model x̂_0, and their errors."""

    t: int
    x0: torch.Tensor
    x_t: torch.Tensor
    eps_true: torch.Tensor
    eps_model: torch.Tensor
    x0_model: torch.Tensor
    eps_mse: float
    x0_l1: float
    execution: Execution


@torch.inference_mode()
def compare_with_oracle(
    model: ContextUNet,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    label: int,
    t: int,
    seed: int = 0,
    conditional: bool = True,
    precision: str | None = None,
    runtime: str | None = None,
) -> ModelVsOracle:
    """ε_θ(x_t, t, c) against the true ε, and x̂_0 from it against x_0, for one image [1, 1, H, W]."""
    schedule.check_steps(t)
    x_t, eps = q_sample(schedule, x0, t, generator=torch.Generator().manual_seed(seed))
    labels = torch.tensor([label if conditional else NULL_LABEL])
    execution = choose_inference(model, 1, precision or default_precision(), runtime or default_runtime())
    output = network(model, execution)(x_t, torch.tensor([t / schedule.num_steps]), labels)
    eps_model = eps_from_output(schedule, x_t, t, output, prediction_of(model))
    x0_model = predict_x0(schedule, x_t, t, eps_model)
    return ModelVsOracle(
        t=t,
        x0=x0,
        x_t=x_t,
        eps_true=eps,
        eps_model=eps_model,
        x0_model=x0_model,
        eps_mse=float(((eps_model - eps) ** 2).mean()),
        x0_l1=float((x0_model.clamp(-1, 1) - x0).abs().mean()),
        execution=execution,
    )


@torch.inference_mode()
def loss_by_t(
    model: ContextUNet,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    labels: torch.Tensor,
    num_t: int = 25,
    seed: int = 0,
    batch_size: int = 500,
    precision: str | None = None,
    runtime: str | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, Execution]:
    """Mean ‖ε − ε_θ(x_t, t, c)‖² per pixel (eq. 14) over the given digits at ``num_t`` evenly spaced steps.

    ``callback(done, total)`` runs after each step t (a progress bar; raising in it stops the curve).
    """
    generator = torch.Generator().manual_seed(seed)
    batch = min(batch_size, len(labels))
    execution = choose_inference(model, batch, precision or default_precision(), runtime or default_runtime())
    net = network(model, execution)
    prediction = prediction_of(model)
    ts = np.unique(np.linspace(0, schedule.num_steps - 1, num_t).round().astype(int))
    losses = []
    for t in ts:
        total = 0.0
        for xb, yb in zip(x0.split(batch_size), labels.split(batch_size), strict=True):
            x_t, eps = q_sample(schedule, xb, int(t), generator=generator)
            t_in = torch.full((len(yb),), float(t) / schedule.num_steps)
            eps_model = eps_from_output(schedule, x_t, int(t), net(x_t, t_in, yb), prediction)
            total += float(((eps_model - eps) ** 2).mean(dim=(1, 2, 3)).sum())
        losses.append(total / len(labels))
        if callback is not None:
            callback(len(losses), len(ts))
    return ts, np.array(losses), execution

"""Model-vs-oracle views, checked on two models whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ddpm_core.data import load_bundled, to_model_range
from ddpm_core.diffusion import predict_eps
from ddpm_core.model_oracle import compare_with_oracle, loss_by_t
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet


class PerfectModel(nn.Module):
    """Knows x_0, so its ε is exact."""

    def __init__(self, x0: torch.Tensor, schedule) -> None:
        super().__init__()
        self.x0, self.schedule = x0, schedule

    def forward(self, x, t_in, labels):
        t = (t_in * self.schedule.num_steps).round().long()
        return predict_eps(self.schedule, x, t, self.x0.expand_as(x))


def test_a_perfect_model_matches_the_oracle() -> None:
    schedule = make_schedule("cosine", 100)
    x0 = to_model_range(load_bundled().held_out.images[:1])
    view = compare_with_oracle(PerfectModel(x0, schedule), schedule, x0, label=0, t=60)
    assert view.eps_mse < 1e-8 and view.x0_l1 < 1e-4
    torch.testing.assert_close(view.x0_model, x0, atol=1e-4, rtol=0)


def test_an_untrained_model_has_unit_loss_at_every_t() -> None:
    """The zero-initialised net predicts ε̂ = 0, so E‖ε − 0‖² per pixel = E[ε²] = 1."""
    schedule = make_schedule("cosine", 100)
    data = load_bundled().held_out
    x0 = to_model_range(data.images[:200])
    ts, losses, execution = loss_by_t(
        ContextUNet(WIDTH_PRESETS["tiny"]).eval(), schedule, x0, torch.as_tensor(data.labels[:200]), 5
    )
    assert ts.tolist() == [0, 25, 50, 74, 99]
    np.testing.assert_allclose(losses, 1.0, atol=0.02)  # 200 × 784 draws: std ≈ 0.0036
    assert execution.mode == "sample" and execution.precision in ("fp32", "bf16")

"""The reference sampler (the DLI course's sample_w and reverse_q): its shape, seed and maths, not its speed."""

from __future__ import annotations

import pytest
import torch
from test_sampling import OracleModel, random_unet

from ddpm_core.diffusion import ddpm_step
from ddpm_core.reference_sampler import dli_constants, reverse_q, sample_w
from ddpm_core.sampling import starting_noise
from ddpm_core.schedule import make_schedule

T = 50
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sample_w_shape_range_and_seed() -> None:
    model, schedule = random_unet(), make_schedule("cosine", T)
    noise = starting_noise(model, 10, 0)
    images = sample_w(model, schedule, range(10), 3.0, noise, seed=0)
    assert images.shape == (10, 1, 28, 28)
    assert images.dtype == torch.float32
    assert bool(torch.isfinite(images).all())
    assert images.min() >= -1 and images.max() <= 1
    first, again, other = (sample_w(model, schedule, range(2), 3.0, noise[:2], seed=s) for s in (0, 0, 1))
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)


def test_sample_w_with_an_oracle_model_lands_on_x0() -> None:
    x0 = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 1.8 - 0.9
    model = OracleModel(x0, T)
    noise = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    images = sample_w(model, model.schedule, range(10), 3.0, noise)
    torch.testing.assert_close(images, x0.expand_as(images), atol=1e-4, rtol=0)


@pytest.mark.parametrize("t", [0, 1, 20, 40])
def test_reverse_q_is_algorithm_2_with_beta_variance(t: int) -> None:
    schedule = make_schedule("cosine", T)
    g = torch.Generator().manual_seed(t)
    x, eps, z = (torch.randn(4, 1, 28, 28, generator=g, dtype=torch.float64) for _ in range(3))
    expected = ddpm_step(schedule, x, t, eps, variance="beta", clip_x0=False, noise=z).sample
    got = reverse_q(dli_constants(schedule), x, t, eps, z)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

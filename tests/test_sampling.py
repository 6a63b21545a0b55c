"""Guidance, samplers and the trajectory callback, checked against closed forms and an oracle model."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from ddpm_core.background import BackgroundWork
from ddpm_core.diffusion import ddim_step, dpm_solver_pp_step, predict_eps, predict_x0, q_sample
from ddpm_core.sampling import (
    NO_INTERVAL,
    SamplerSettings,
    StepInfo,
    Trajectory,
    guidance_weight_at,
    guided_eps,
    sample,
    sampling_steps,
    starting_noise,
    timesteps_for,
    validate_labels,
)
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import NULL_LABEL, ContextUNet, UNetConfig

SCHEDULE = make_schedule("cosine", 250)


def random_unet(seed: int = 0) -> ContextUNet:
    torch.manual_seed(seed)
    model = ContextUNet(UNetConfig(channels=(8, 16, 16), embed_dim=32, groups=4, attention_heads=2))
    for p in model.parameters():  # the zero-initialised output layer would make every ε zero
        nn.init.normal_(p, std=0.2)
    return model.eval()


class OracleModel(nn.Module):
    """Predicts the exact ε (or v) that connects x_t to one fixed x_0: every sampler must land on that x_0."""

    def __init__(self, x0: torch.Tensor, num_steps: int, prediction: str = "eps") -> None:
        super().__init__()
        self.x0 = x0
        self.schedule = make_schedule("cosine", num_steps)
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the sampler a device to read
        self.config = UNetConfig(image_size=x0.shape[-1], prediction=prediction)

    def forward(self, x: torch.Tensor, t_in: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = (t_in * self.schedule.num_steps).round().long()
        x0 = self.x0.expand_as(x)
        if self.config.prediction == "eps":
            return predict_eps(self.schedule, x, t, x0)
        # v = α ε − σ x_0 with α = √ᾱ_t, σ = √(1−ᾱ_t) and ε = (x_t − α x_0)/σ, written out here, not imported
        a = self.schedule.sqrt_alphas_cumprod[t].float().view(-1, 1, 1, 1)
        s = self.schedule.sqrt_one_minus_alphas_cumprod[t].float().view(-1, 1, 1, 1)
        return a * (x - a * x0) / s - s * x0


def test_guidance_endpoints_and_mixture() -> None:
    model = random_unet()
    x = torch.randn(4, 1, 28, 28)
    t = torch.tensor([3, 50, 120, 249])
    labels = torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        cond = model(x, t.float() / 250, labels)
        uncond = model(x, t.float() / 250, torch.full_like(labels, NULL_LABEL))
        assert not torch.allclose(cond, uncond)
        torch.testing.assert_close(guided_eps(model, x, t, labels, 1.0, SCHEDULE), cond)
        torch.testing.assert_close(guided_eps(model, x, t, labels, 0.0, SCHEDULE), uncond)
        # w = 3 is (1 + w')·ε_c − w'·ε_u with w' = 2
        torch.testing.assert_close(
            guided_eps(model, x, t, labels, 3.0, SCHEDULE), 3 * cond - 2 * uncond, atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize(("sampler", "prediction"), itertools.product(["ddpm", "ddim", "dpmpp"], ["eps", "v"]))
def test_every_sampler_reaches_the_oracle_x0(sampler: str, prediction: str) -> None:
    x0 = torch.rand(1, 1, 8, 8) * 2 - 1
    model = OracleModel(x0, 100, prediction)
    settings = SamplerSettings(w=2.0, sampler=sampler, steps=10, eta=0.5 if sampler == "ddim" else 0.0)
    settings = replace(settings, precision="fp32", runtime="torch")
    result = sample(model, model.schedule, [1, 2, 3], settings)
    assert result.images.shape == (3, 1, 8, 8)
    assert (result.images - x0).abs().max() < 1e-4
    assert result.network_evaluations == (100 if sampler == "ddpm" else 10)


def test_first_dpm_solver_step_is_ddim() -> None:
    """DPM-Solver++ of order one is DDIM with η = 0 (Lu et al. 2022, §4.1)."""
    s = make_schedule("linear", 1000)
    x0 = torch.rand(2, 1, 4, 4, dtype=torch.float64) * 2 - 1
    x_t, eps = q_sample(s, x0, 700, generator=torch.Generator().manual_seed(0))
    eps_model = eps + 0.1  # any ε: the identity holds for every prediction
    pred = predict_x0(s, x_t, 700, eps_model)
    solver, h = dpm_solver_pp_step(s, x_t, 700, 400, pred)
    ddim = ddim_step(s, x_t, 700, 400, eps_model, eta=0.0)
    torch.testing.assert_close(solver.sample, ddim.sample)
    assert h is not None and h > 0


def test_sampling_is_deterministic_under_a_seed_and_differs_across_seeds() -> None:
    model = random_unet()
    schedule = make_schedule("cosine", 50)
    a = sample(model, schedule, [0, 1], SamplerSettings(seed=5, steps=5))
    b = sample(model, schedule, [0, 1], SamplerSettings(seed=5, steps=5))
    c = sample(model, schedule, [0, 1], SamplerSettings(seed=6, steps=5))
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_trajectory_records_each_step_and_the_last() -> None:
    model = random_unet()
    schedule = make_schedule("cosine", 50)
    traj = Trajectory(every=3)
    sample(model, schedule, [4, 5], SamplerSettings(sampler="ddim", steps=10), callback=traj)
    assert traj.steps == [s for i, s in enumerate(timesteps_for("ddim", 10, schedule)) if i % 3 == 0 or i == 9]
    assert len(traj.xs) == len(traj.pred_x0s) == len(traj.steps)
    assert traj.xs[0].shape == (2, 1, 28, 28)


def test_starting_noise_is_the_noise_sample_draws() -> None:
    model = random_unet()
    schedule = make_schedule("cosine", 50)
    noise = starting_noise(model, 3, 7)
    assert noise.shape == (3, 1, 28, 28)
    expected = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    assert torch.equal(noise, expected)
    settings = SamplerSettings(seed=7, steps=4)
    assert torch.equal(
        sample(model, schedule, [1, 2, 3], settings).images,
        sample(model, schedule, [1, 2, 3], settings, noise=noise).images,
    )


def test_sampling_steps_counts_the_network_passes() -> None:
    model = random_unet()
    schedule = make_schedule("cosine", 40)
    for settings in (
        SamplerSettings(sampler="ddpm"),
        SamplerSettings(steps=5),
        SamplerSettings(sampler="ddim", steps=9),
    ):
        trajectory = Trajectory()
        result = sample(model, schedule, [0], settings, callback=trajectory)
        counted = trajectory.steps
        expected = 40 if settings.sampler == "ddpm" else settings.steps
        assert sampling_steps(settings, schedule) == expected == result.network_evaluations == len(counted)
    assert Trajectory.for_frames(40, frames=10).every == 4
    assert Trajectory.for_frames(6).every == 1


def sampling_in_background(model, schedule, labels, settings, callback=None) -> BackgroundWork:
    """The sampler in a background thread, as the app's heavy handlers run it: each step reported, then called back."""

    def work(report):
        def on_step(info: StepInfo) -> None:
            report(info.index + 1, info.total, info)
            if callback is not None:
                callback(info)

        return sample(model, schedule, labels, settings, callback=on_step)

    return BackgroundWork(work)


def test_background_sampling_matches_sample_and_streams_its_steps() -> None:
    model = random_unet()
    schedule = make_schedule("cosine", 30)
    settings = SamplerSettings(sampler="ddpm", seed=3)
    seen: list[int] = []
    job = sampling_in_background(model, schedule, [2, 7], settings, callback=lambda info: seen.append(info.index))
    updates = [u.detail for u in job.updates(0.001) if u is not None]
    result = job.outcome(timeout_s=60)
    assert result is not None and not job.running
    assert seen == list(range(30))
    assert all(isinstance(u, StepInfo) and 0 <= u.index < 30 for u in updates)
    assert torch.equal(result.images, sample(model, schedule, [2, 7], settings).images)


def test_background_sampling_stops_when_cancelled_and_reports_errors() -> None:
    model = random_unet()
    schedule = make_schedule("cosine", 200)
    steps: list[int] = []
    job = sampling_in_background(
        model, schedule, [1], SamplerSettings(sampler="ddpm"), callback=lambda i: steps.append(i.index)
    )
    first = next(u.detail for u in job.updates(0.01) if u is not None)  # at least one step has run
    job.cancel()
    assert job.outcome(timeout_s=60) is None
    assert first.index >= 0 and len(steps) < 200, "the sampler ran to the end after being cancelled"

    def broken(info: StepInfo) -> None:
        raise RuntimeError("callback broke")

    job = sampling_in_background(model, schedule, [1], SamplerSettings(steps=3), callback=broken)
    with pytest.raises(RuntimeError, match="callback broke"):
        job.outcome(timeout_s=60)


def test_timesteps_start_at_pure_noise_and_descend() -> None:
    linear = make_schedule("linear", 1000)
    ts = timesteps_for("ddim", 7, linear, "linspace")
    assert ts[0] == 999 and ts[-1] == 0 and ts == sorted(ts, reverse=True) and len(ts) == 7
    assert timesteps_for("ddpm", 3, make_schedule("cosine", 20)) == list(range(19, -1, -1))


def test_trailing_spacing_is_diffusers_trailing() -> None:
    """T = 1000, 10 steps: 999, 899, …, 99 (round(T − i·T/n) − 1); the last step jumps to x_0."""
    assert timesteps_for("dpmpp", 10, make_schedule("linear", 1000), "trailing") == list(range(999, 0, -100))


def test_logsnr_spacing_is_uniform_in_half_log_snr() -> None:
    """Independently: λ_t = ½ log(ᾱ_t / (1 − ᾱ_t)) from the closed-form linear ᾱ; n even λ from λ_{T−2}
    toward λ_0 (λ_0 excluded), nearest t each, and the first one moved to T−1."""
    import numpy as np

    T, n = 1000, 8
    betas = np.linspace(1e-4, 0.02, T)
    abar = np.cumprod(1 - betas)
    lam = 0.5 * np.log(abar / (1 - abar))
    grid = np.linspace(lam[T - 2], lam[0], n + 1)[:-1]
    expected = [T - 1] + [int(np.abs(lam - g).argmin()) for g in grid[1:]]
    assert timesteps_for("dpmpp", n, make_schedule("linear", T), "logsnr") == expected
    assert len(set(expected)) == n  # no collisions on this schedule, so no step was moved


def test_logsnr_spacing_stays_distinct_where_the_schedule_is_steep() -> None:
    """The cosine schedule's last β is clipped, so λ_{T−1} is far below its neighbours: steps must not repeat."""
    for n in (4, 8, 15, 40):
        ts = timesteps_for("dpmpp", n, make_schedule("cosine", 250), "logsnr")
        assert len(ts) == n and ts[0] == 249 and all(a > b for a, b in itertools.pairwise(ts)) and ts[-1] >= 0


@pytest.mark.parametrize(
    ("labels", "message"), [([], "at least one"), ([3, 10], "unknown class"), ([-1], "unknown class")]
)
def test_bad_labels_are_refused(labels: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_labels(labels)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (SamplerSettings(w=-0.5), "guidance weight"),
        (SamplerSettings(w=11.0), "guidance weight"),
        (SamplerSettings(steps=0, sampler="ddim"), "steps"),
        (SamplerSettings(steps=51, sampler="dpmpp"), "steps"),
        (SamplerSettings(eta=1.5, sampler="ddim"), "η"),
        (SamplerSettings(sampler="euler"), "unknown sampler"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_are_refused(settings: SamplerSettings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample(random_unet(), make_schedule("cosine", 50), [1], settings)


def test_guidance_interval_guides_only_inside_it() -> None:
    schedule = make_schedule("cosine", 250)
    sigma = [math.sqrt((1 - float(ab)) / float(ab)) for ab in schedule.alphas_cumprod]  # σ_t from ᾱ_t, written out
    t_mid = min(range(250), key=lambda t: abs(sigma[t] - 1.0))
    assert guidance_weight_at(schedule, t_mid, 3.0, NO_INTERVAL) == 3.0
    assert guidance_weight_at(schedule, t_mid, 3.0, (0.5 * sigma[t_mid], 2 * sigma[t_mid])) == 3.0
    assert guidance_weight_at(schedule, t_mid, 3.0, (2 * sigma[t_mid], 4 * sigma[t_mid])) == 1.0
    assert guidance_weight_at(schedule, t_mid, 3.0, (0.0, 0.5 * sigma[t_mid])) == 1.0
    # w ≤ 1 is not extra guidance: it holds everywhere, so w = 0 stays unconditional
    assert guidance_weight_at(schedule, t_mid, 0.0, (2 * sigma[t_mid], 4 * sigma[t_mid])) == 0.0
    assert guidance_weight_at(schedule, t_mid, 0.5, (2 * sigma[t_mid], 4 * sigma[t_mid])) == 0.5

    model = random_unet()
    base = SamplerSettings(w=3.0, steps=5, precision="fp32", runtime="torch", seed=4, guidance_interval=NO_INTERVAL)
    guided = sample(model, schedule, [1, 2], replace(base, guidance_interval=(0.0, 1e9)))
    everywhere = guided.images
    torch.testing.assert_close(everywhere, sample(model, schedule, [1, 2], base).images)
    unguided = sample(model, schedule, [1, 2], replace(base, guidance_interval=(1e8, 1e9)))
    nowhere = unguided.images
    torch.testing.assert_close(nowhere, sample(model, schedule, [1, 2], replace(base, w=1.0)).images)
    # images through the network: 2 labels × 5 steps, doubled on every guided step
    assert (guided.network_images, unguided.network_images) == (2 * 2 * 5, 2 * 5)
    assert not torch.allclose(nowhere, everywhere)
    with pytest.raises(ValueError, match="guidance interval"):
        sample(model, schedule, [1], replace(base, guidance_interval=(2.0, 1.0)))

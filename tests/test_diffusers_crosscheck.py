"""The hand-written schedules and solvers against diffusers, the implementation everyone else uses.

``ddpm_core`` writes its schedules and samplers by hand because they are what the app teaches; this module
checks them, step by step, against diffusers' ``DDPMScheduler``, ``DDIMScheduler`` and
``DPMSolverMultistepScheduler`` (a development dependency only, in requirements-dev.txt).

Conventions, made to agree explicitly:

* **Steps.** Both number the steps 0 … T−1; diffusers' timestep ``t`` is ``ddpm_core``'s step ``t``.
* **β.** The linear schedule here scales Ho et al.'s β from 1e-4 … 0.02 by 1000/T (Nichol & Dhariwal), so
  diffusers' ``"linear"`` is given ``beta_start = 1e-4·1000/T`` and ``beta_end = 0.02·1000/T`` (at T = 1000
  that is diffusers' default). The cosine schedule is diffusers' ``"squaredcos_cap_v2"`` unchanged: the
  same f(t) = cos²((t/T + 0.008)/1.008 · π/2), β_t = 1 − f(t+1)/f(t), each β clipped at 0.999.
* **Timesteps visited.** DDPM visits every step. DDIM uses diffusers' ``"trailing"`` spacing, whose steps are
  ``sampling.trailing_timesteps`` (checked below), and T divisible by the number of steps, because
  ``DDIMScheduler.step`` takes the next step as t − T // n rather than from its list. DPM-Solver++(2M) is
  handed ``ddpm_core``'s own steps (``set_timesteps(timesteps=…)``), for the log-SNR and trailing spacings.
* **The final step.** Every sampler here ends with a jump to x_0 itself (ᾱ = 1): DDIM's
  ``set_alpha_to_one=True``; DPM-Solver's ``final_sigmas_type="zero"``, whose last step is first order and
  returns x̂_0, as ``diffusion.dpm_solver_pp_step`` does for t' = −1. No x̂_0 is clipped (``clip_sample=False``).
* **Noise.** A stochastic step gets the same z on both sides: DDIM through ``variance_noise``; DDPM through
  a CPU generator seeded alike, from which diffusers' ``randn_tensor`` draws ``torch.randn(shape)``.
* **The model.** Both are driven by the same fixed function of x and t, not a trained network: the exact
  denoiser of Gaussian data x_0 ~ N(μ, s²I), read as ε or as v (Salimans & Ho).

Precision: ``ddpm_core`` computes its constants in float64 and the steps run here in float64; diffusers keeps
its β and ᾱ in float32 (cumulative products included), and DPM-Solver computes its steps in float32. So each
step is compared on the same input, one step at a time (errors do not compound), with a tolerance in units of
float32's ε, scaled by the size of the step's tensors and by the step's conditioning κ_t = 1/(1 − ᾱ_t) + 1/√ᾱ_t:
x̂_0 divides by √ᾱ_t, and the posterior coefficients are built from 1 − ᾱ_t (dividing by it) and from
β_t = 1 − ᾱ_t/ᾱ_{t−1}, which diffusers recomputes from its ᾱ. Near ᾱ = 1 float32 holds those differences only to
an absolute error of about ε, a relative one of about ε/(1 − ᾱ_t).
Each sampler test also shows that its tolerance is fine enough to tell apart the alternatives it is meant to
check (β from β̃, η = 0 from η = 1, DPM-Solver's second-order step from its first-order one).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pytest
import torch

try:
    import diffusers
except ImportError:  # a developer machine without the dev requirements skips; CI must not
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail("CI=true but diffusers is missing: pip install -r requirements-dev.txt", pytrace=False)
    pytest.skip("diffusers is not installed (pip install -r requirements-dev.txt)", allow_module_level=True)

from ddpm_core.diffusion import (
    VarianceChoice,
    ddim_step,
    ddpm_step,
    dpm_solver_pp_step,
    eps_from_output,
    predict_x0,
    q_sample,
)
from ddpm_core.sampling import linspace_timesteps, logsnr_timesteps, trailing_timesteps
from ddpm_core.schedule import NoiseSchedule, make_schedule

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # diffusers' DPM-Solver calls np.array() on a tensor, which numpy 2 warns about; nothing of ours
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

EPS32 = torch.finfo(torch.float32).eps
TOLERANCE_EPS = 8  # float32 ε per unit of scale and κ_t: a few per rounding; diffusers 0.42 needs at most 2.2
SHAPE = (2, 1, 8, 8)
STEP_CASES = [("linear", 1000), ("cosine", 250)]  # diffusers' classic DDPM; the shipped models' schedule
PREDICTIONS = {"eps": "epsilon", "v": "v_prediction"}  # ddpm_core's name → diffusers' prediction_type


def diffusers_schedule(name: str, num_steps: int) -> dict[str, object]:
    """The keyword arguments that give a diffusers scheduler ``make_schedule(name, num_steps)``'s β."""
    if name == "linear":
        scale = 1000.0 / num_steps
        return {
            "num_train_timesteps": num_steps,
            "beta_schedule": "linear",
            "beta_start": scale * 1e-4,
            "beta_end": scale * 0.02,
        }
    return {"num_train_timesteps": num_steps, "beta_schedule": "squaredcos_cap_v2"}


@dataclass(frozen=True)
class GaussianOracle:
    """The exact denoiser of data x_0 ~ N(μ, s²I): x̂_0 = μ + √ᾱ s²(x_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ), as ε or v."""

    mean: torch.Tensor  # μ, one value per pixel
    variance: float = 0.25  # s²

    def __call__(self, schedule: NoiseSchedule, x_t: torch.Tensor, t: int, prediction: str) -> torch.Tensor:
        abar = float(schedule.alphas_cumprod[t])
        x0 = self.mean + math.sqrt(abar) * self.variance * (x_t - math.sqrt(abar) * self.mean) / (
            abar * self.variance + 1 - abar
        )
        eps = (x_t - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
        return eps if prediction == "eps" else math.sqrt(abar) * eps - math.sqrt(1 - abar) * x0


def oracle() -> GaussianOracle:
    generator = torch.Generator().manual_seed(0)
    return GaussianOracle(mean=torch.rand(SHAPE[1:], generator=generator, dtype=torch.float64) * 1.6 - 0.8)


def as_float32_values(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to float32 and held in float64: the exact input both sides then receive."""
    return x.float().double()


def noise(seed: int) -> torch.Tensor:
    """z ~ N(0, I) as diffusers' ``randn_tensor`` draws it from ``torch.Generator().manual_seed(seed)``."""
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).double()


def step_tolerance(schedule: NoiseSchedule, t: int, *tensors: torch.Tensor) -> float:
    """TOLERANCE_EPS · ε₃₂ · κ_t · scale, κ_t = 1/(1 − ᾱ_t) + 1/√ᾱ_t, scale = the largest |value| in the step (≥ 1)."""
    abar = float(schedule.alphas_cumprod[t])
    kappa = 1.0 / (1.0 - abar) + 1.0 / math.sqrt(abar)
    scale = max([1.0] + [float(x.abs().max()) for x in tensors])
    return TOLERANCE_EPS * EPS32 * kappa * scale


def max_error(theirs: torch.Tensor, ours: torch.Tensor) -> float:
    return float((theirs.double() - ours).abs().max())


def describe(error: float, tolerance: float) -> str:
    return f"differ by {error:.3g} ({error / EPS32:.0f} float32 ε; allowed {tolerance / EPS32:.0f} ε)"


# ---------------------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(("name", "num_steps"), [("linear", 1000), ("linear", 250), ("cosine", 250), ("cosine", 1000)])
def test_betas_and_alphas_cumprod_match(name: str, num_steps: int) -> None:
    """β within 2ε (diffusers rounds them to float32), ᾱ_t within the float32 error of its cumulative product.

    diffusers forms α_s = 1 − β_s and ᾱ_t = ∏_{s≤t} α_s in float32: a β off by 2ε relative moves α_s by
    2ε·β_s/α_s relative, and each subtraction and product rounds by ε/2, so (to first order)
    |ᾱ_t/ᾱ_t^exact − 1| ≤ ε·Σ_{s≤t} (1 + 2β_s/α_s).
    """
    ours = make_schedule(name, num_steps)
    theirs = diffusers.DDPMScheduler(**diffusers_schedule(name, num_steps))
    assert theirs.betas.dtype == torch.float32 and theirs.alphas_cumprod.dtype == torch.float32
    beta_error = ((theirs.betas.double() - ours.betas) / ours.betas).abs()
    assert float(beta_error.max()) <= 2 * EPS32, f"β differ by {float(beta_error.max()) / EPS32:.1f} ε relative"
    bound = EPS32 * torch.cumsum(1 + 2 * ours.betas / ours.alphas, dim=0)
    abar_error = ((theirs.alphas_cumprod.double() - ours.alphas_cumprod) / ours.alphas_cumprod).abs()
    worst = int((abar_error / bound).argmax())
    assert bool((abar_error <= bound).all()), (
        f"ᾱ at step {worst} differs by {float(abar_error[worst]) / EPS32:.0f} ε relative, "
        f"beyond the float32 bound of {float(bound[worst]) / EPS32:.0f} ε"
    )


def test_linear_schedule_at_1000_steps_is_diffusers_default() -> None:
    """At T = 1000 the 1000/T scaling is 1: the linear schedule is diffusers' out-of-the-box ``DDPMScheduler()``."""
    ours = make_schedule("linear", 1000)
    theirs = diffusers.DDPMScheduler()
    assert theirs.config.num_train_timesteps == 1000
    relative = ((theirs.betas.double() - ours.betas) / ours.betas).abs()
    assert float(relative.max()) <= 2 * EPS32


@pytest.mark.parametrize(("num_steps", "steps"), [(1000, 10), (1000, 7), (250, 10), (250, 7), (150, 6), (250, 250)])
def test_trailing_and_linspace_timesteps_are_diffusers(num_steps: int, steps: int) -> None:
    """``trailing`` is diffusers' "trailing" (DDIM's and DPM-Solver's); ``linspace`` is DDIM's "linspace"."""
    kwargs = diffusers_schedule("linear", num_steps)
    trailing = diffusers.DDIMScheduler(timestep_spacing="trailing", **kwargs)
    trailing.set_timesteps(steps)
    assert trailing_timesteps(num_steps, steps) == trailing.timesteps.tolist()
    dpm = diffusers.DPMSolverMultistepScheduler(timestep_spacing="trailing", **kwargs)
    dpm.set_timesteps(steps)
    assert trailing_timesteps(num_steps, steps) == dpm.timesteps.tolist()
    linspace = diffusers.DDIMScheduler(timestep_spacing="linspace", **kwargs)
    linspace.set_timesteps(steps)
    assert linspace_timesteps(num_steps, steps) == linspace.timesteps.tolist()


# ---------------------------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize(("name", "num_steps"), STEP_CASES)
@pytest.mark.parametrize(("variance", "variance_type"), [("beta", "fixed_large"), ("beta_tilde", "fixed_small")])
def test_ddpm_steps_match(
    name: str, num_steps: int, prediction: str, variance: VarianceChoice, variance_type: str
) -> None:
    """Every ancestral step t → t−1, σ_t² = β_t (``fixed_large``) or β̃_t (``fixed_small``), the same z, at x_t ~ q."""
    ours = make_schedule(name, num_steps)
    theirs = diffusers.DDPMScheduler(
        variance_type=variance_type,
        prediction_type=PREDICTIONS[prediction],
        clip_sample=False,
        **diffusers_schedule(name, num_steps),
    )
    other: VarianceChoice = "beta_tilde" if variance == "beta" else "beta"
    model, x0 = oracle(), torch.rand(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    told_apart = []
    for t in range(num_steps - 1, -1, -1):
        x_t, _ = q_sample(ours, x0, t, generator=torch.Generator().manual_seed(10_000 + t))
        x_t = as_float32_values(x_t)
        output = as_float32_values(model(ours, x_t, t, prediction))
        z = noise(t)
        eps = eps_from_output(ours, x_t, t, output, prediction)
        step = ddpm_step(ours, x_t, t, eps, variance=variance, noise=z)
        result = theirs.step(output.float(), t, x_t.float(), generator=torch.Generator().manual_seed(t))
        tolerance = step_tolerance(ours, t, x_t, output, z, step.pred_x0, step.sample)
        error = max_error(result.prev_sample, step.sample)
        assert error <= tolerance, (
            f"DDPM step t = {t} ({variance}): diffusers and ddpm_core {describe(error, tolerance)}"
        )
        x0_error = max_error(result.pred_original_sample, step.pred_x0)
        assert x0_error <= tolerance, f"x̂_0 at t = {t}: {describe(x0_error, tolerance)}"
        alternative = ddpm_step(ours, x_t, t, eps, variance=other, noise=z).sample
        told_apart.append(max_error(result.prev_sample, alternative) > tolerance)
    assert any(told_apart), f"the tolerance cannot tell σ² = {variance} from {other}: the test would prove nothing"


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize(("name", "num_steps"), STEP_CASES)
def test_ddim_steps_match(name: str, num_steps: int, prediction: str, eta: float) -> None:
    """10 trailing DDIM jumps t → t', η = 0 (deterministic) and η = 1 (the same z), the last one to x_0."""
    ours = make_schedule(name, num_steps)
    theirs = diffusers.DDIMScheduler(
        prediction_type=PREDICTIONS[prediction],
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="trailing",
        **diffusers_schedule(name, num_steps),
    )
    theirs.set_timesteps(10)
    ts = trailing_timesteps(num_steps, 10)
    assert theirs.timesteps.tolist() == ts and ts[-1] - num_steps // 10 == -1  # the same jumps, the last to x_0
    model = oracle()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    told_apart = []
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x = as_float32_values(x)
        output = as_float32_values(model(ours, x, t, prediction))
        z = noise(t)
        eps = eps_from_output(ours, x, t, output, prediction)
        step = ddim_step(ours, x, t, t_next, eps, eta=eta, noise=z)
        result = theirs.step(output.float(), t, x.float(), eta=eta, variance_noise=z.float())
        tolerance = step_tolerance(ours, t, x, output, z, step.pred_x0, step.sample)
        error = max_error(result.prev_sample, step.sample)
        assert error <= tolerance, f"DDIM η = {eta} step {t} → {t_next}: {describe(error, tolerance)}"
        alternative = ddim_step(ours, x, t, t_next, eps, eta=1.0 - eta, noise=z).sample
        told_apart.append(max_error(result.prev_sample, alternative) > tolerance)
        x = step.sample
    assert float(x.abs().max()) < 5, "the DDIM run blew up, which would make the scaled tolerances meaningless"
    assert any(told_apart), f"the tolerance cannot tell η = {eta} from η = {1.0 - eta}: the test would prove nothing"


@pytest.mark.parametrize("spacing", ["logsnr", "trailing"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize(("name", "num_steps"), STEP_CASES)
def test_dpm_solver_pp_2m_steps_match(name: str, num_steps: int, prediction: str, spacing: str) -> None:
    """DPM-Solver++(2M), 10 steps at ddpm_core's own timesteps: first order, then second order, then x̂_0."""
    ours = make_schedule(name, num_steps)
    theirs = diffusers.DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type=PREDICTIONS[prediction],
        lower_order_final=True,
        final_sigmas_type="zero",
        **diffusers_schedule(name, num_steps),
    )
    ts = logsnr_timesteps(ours, 10) if spacing == "logsnr" else trailing_timesteps(num_steps, 10)
    theirs.set_timesteps(timesteps=ts)
    assert theirs.timesteps.tolist() == ts and float(theirs.sigmas[-1]) == 0.0  # the last jump is to x_0
    model = oracle()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    prev_x0: torch.Tensor | None = None
    h_prev: float | None = None
    told_apart = []
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x = as_float32_values(x)
        output = as_float32_values(model(ours, x, t, prediction))
        x0 = predict_x0(ours, x, t, eps_from_output(ours, x, t, output, prediction))
        step, h = dpm_solver_pp_step(ours, x, t, t_next, x0, prev_x0, h_prev)
        result = theirs.step(output.float(), t, x.float())
        tolerance = step_tolerance(ours, t, x, output, x0, step.sample, *([] if prev_x0 is None else [prev_x0]))
        error = max_error(result.prev_sample, step.sample)
        assert error <= tolerance, f"DPM-Solver++(2M) step {i}, {t} → {t_next}: {describe(error, tolerance)}"
        if prev_x0 is not None and t_next >= 0:  # a second-order step: is the first-order one told apart?
            first_order, _ = dpm_solver_pp_step(ours, x, t, t_next, x0)
            told_apart.append(max_error(result.prev_sample, first_order.sample) > tolerance)
        x, prev_x0, h_prev = step.sample, x0, h
    assert float(x.abs().max()) < 5, "the DPM-Solver run blew up, which would make the scaled tolerances meaningless"
    assert any(told_apart), "the tolerance cannot tell the second-order step from the first-order one"

"""Distilling the guided teacher into a few-step student that takes the guidance weight w as an input.

Classifier-free guidance costs two network passes per step (ε_c and ε_∅) and the teacher needs about ten
steps. Meng et al. (2023), "On distillation of guided diffusion models", remove both costs in two stages:

1. a student that takes w learns the teacher's guided output ε̃_w = w·ε_c + (1 − w)·ε_∅ in one pass, w drawn
   from [0, w_max] (the mix itself is :func:`ddpm_core.sampling.guided_eps`);
2. progressive distillation (Salimans & Ho 2022, Algorithm 2): a student DDIM step learns to land where two
   teacher steps land, halving the step count per round.

Here both happen at once, in one round. The student's steps are the ``student_steps`` DDIM steps of the
app's log-SNR grid; between two of them the guided teacher takes ``substeps`` DPM-Solver++ steps, and the
student learns the x̂_0 that makes its single DDIM jump land on the teacher's result
(:func:`progressive_distillation_target`). With ``substeps=2`` and a DDIM teacher this is exactly one round
of progressive distillation; more sub-steps with a better solver skip the intermediate rounds (what was
tried and measured is in the student's model card). The student starts from the teacher's weights, and its
w-embedding starts at zero, so at step 0 it is the teacher's conditional model sampled in a few steps.

Each training example: a real image x_0 of the teacher's dataset and its class, a student step i,
x_{t_i} ~ q(x_{t_i} | x_0) (eq. 4), w ~ U[0, w_max]; the teacher solves from t_i to t_{i+1}; the loss is
max(SNR_t, 1)·‖x̂_0 − x̃_0‖² (Salimans & Ho's truncated-SNR weighting). The student is sampled with
:func:`ddpm_core.sampling.sample` like any model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddpm_core.checkpoints import LoadedModel, save_checkpoint
from ddpm_core.data import ImageData, dataset_info
from ddpm_core.diffusion import (
    alphas_cumprod_at,
    ddim_step,
    dpm_solver_pp_step,
    eps_from_output,
    predict_x0,
    q_sample,
)
from ddpm_core.runtime import PRECISIONS, autocast, choose_inference, choose_training, default_precision, network
from ddpm_core.sampling import (
    NO_INTERVAL,
    W_MAX,
    SamplerSettings,
    guided_eps,
    interval_as_json,
    timesteps_for,
)
from ddpm_core.schedule import NoiseSchedule
from ddpm_core.training import (
    StepLedger,
    TrainingImages,
    TrainProgress,
    data_record,
    learning_rate,
    optimisation_step,
    pick_device,
)
from ddpm_core.unet import ContextUNet, prediction_of, takes_guidance

TEACHER_SOLVERS: tuple[str, ...] = ("dpmpp", "ddim")
STUDENT_SAMPLER = "ddim"  # what the student is trained for: deterministic DDIM (η = 0) on the log-SNR grid
STUDENT_SPACING = "logsnr"


@dataclass(frozen=True)
class DistillConfig:
    """Everything that decides a distillation run; stored in the student's config.json."""

    student_steps: int = 3  # network passes per sample for the student
    substeps: int = 4  # teacher steps per student step (2 with a DDIM teacher = one progressive-distillation round)
    teacher_solver: str = "dpmpp"  # "dpmpp" (DPM-Solver++(2M)) or "ddim"
    w_max: float = 5.0  # w ~ U[0, w_max] in training; the student's slider stops there
    batch_size: int = 64
    lr: float = 2e-4
    warmup_steps: int = 50
    weight_decay: float = 0.0
    ema_decay: float = 0.998
    grad_clip: float = 1.0
    max_steps: int | None = None
    max_minutes: float | None = 30.0
    seed: int = 0
    precision: str = field(default_factory=default_precision)
    checkpoint_every_s: float = 60.0
    report_every: int = 10

    def validate(self) -> None:
        """Raise ValueError for settings that cannot distil."""
        if not 1 <= self.student_steps <= 50:
            raise ValueError("the student takes 1…50 steps")
        if not 1 <= self.substeps <= 20:
            raise ValueError("the teacher takes 1…20 steps per student step")
        if self.teacher_solver not in TEACHER_SOLVERS:
            raise ValueError(f"teacher solver must be one of {', '.join(TEACHER_SOLVERS)}")
        if not 0 < self.w_max <= W_MAX:
            raise ValueError(f"w_max must lie in (0, {W_MAX}]")
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError("give a step limit, a time limit, or both")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if not 1 <= self.batch_size <= 4096:
            raise ValueError("batch size must lie in 1…4096")
        if not 0 < self.lr <= 1:
            raise ValueError("learning rate must lie in (0, 1]")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("EMA decay must lie in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DistillResult:
    """The distilled EMA student, how far it got and where its checkpoint is."""

    ema_model: ContextUNet
    schedule: NoiseSchedule
    steps: int
    seconds: float
    losses: list[float]
    checkpoint: Path | None
    stopped_early: bool


def student_from_teacher(teacher: nn.Module) -> ContextUNet:
    """A student with the teacher's weights and a zero-initialised w-embedding: at first, the conditional teacher."""
    if takes_guidance(teacher):
        raise ValueError("the teacher must be a classifier-free guided model, not a distilled student")
    student = ContextUNet(replace(teacher.config, guidance_input=True))  # type: ignore[arg-type]
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith("guidance_embed.") for k in missing):
        raise ValueError(f"teacher and student do not match: missing {missing}, unexpected {unexpected}")
    return student.to(next(teacher.parameters()).device)


def student_timesteps(schedule: NoiseSchedule, steps: int) -> list[int]:
    """The student's steps: the app's log-SNR grid for DDIM, from T−1 down (the last jump goes to x_0)."""
    return timesteps_for(STUDENT_SAMPLER, steps, schedule, STUDENT_SPACING)


def refine_timesteps(schedule: NoiseSchedule, start: int, end: int, substeps: int) -> list[int]:
    """``substeps`` teacher steps from ``start`` toward ``end`` (−1 = x_0), evenly spaced in λ (Lu et al. 2022, §3.4).

    Returns the steps the teacher evaluates at, ``start`` first; the last one jumps to ``end``. Toward x_0
    (λ = ∞) the spacing runs to λ_0, and from T−1 it starts at λ_{T−2}, as the log-SNR grid does
    (:func:`ddpm_core.sampling.logsnr_timesteps`). Steps that round to the same t are merged.
    """
    lam = 0.5 * schedule.log_snr.double()
    lam_end = float(lam[max(end, 0)])
    lam_start = float(lam[start - 1 if start == schedule.num_steps - 1 and start - 1 > end else start])
    targets = torch.linspace(lam_start, lam_end, substeps + 1, dtype=torch.float64)[:-1]
    steps = [start]
    for target in targets.tolist()[1:]:
        t = int((lam - target).abs().argmin())
        if end < t < steps[-1]:
            steps.append(t)
    return steps


def progressive_distillation_target(
    schedule: NoiseSchedule, x_t: torch.Tensor, t: int, x_s: torch.Tensor, s: int
) -> torch.Tensor:
    """x̃ = (x_s − (σ_s/σ_t)x_t)/(α_s − (σ_s/σ_t) α_t), whose DDIM jump t → s gives x_s (Salimans & Ho 2022, Alg. 2)."""
    if not -1 <= s < t:
        raise ValueError(f"the target needs −1 ≤ s < t, got s = {s}, t = {t}")
    ab_t = alphas_cumprod_at(schedule, t, x_t)
    ab_s = alphas_cumprod_at(schedule, s, x_t)
    ratio = ((1 - ab_s) / (1 - ab_t)).sqrt()  # σ_s / σ_t; 0 when s = −1, where x̃ = x_s = x_0
    return (x_s - ratio * x_t) / (ab_s.sqrt() - ratio * ab_t.sqrt())


def truncated_snr_weight(schedule: NoiseSchedule, t: int) -> float:
    """max(SNR_t, 1) = max(α_t²/σ_t², 1), the weight on ‖x̂_0 − x̃‖² (Salimans & Ho 2022, §4, "truncated SNR")."""
    return max(float(schedule.snr[t]), 1.0)


def teacher_solve(
    net: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x: torch.Tensor,
    steps: list[int],
    end: int,
    labels: torch.Tensor,
    w: torch.Tensor,
    prediction: str,
    solver: str = "dpmpp",
) -> torch.Tensor:
    """The guided teacher from ``steps[0]`` to ``end`` (−1 = x_0) through ``steps``, x̂_0 clipped as the app samples."""
    prev_x0: torch.Tensor | None = None
    h_prev: float | None = None
    for j, t in enumerate(steps):
        t_next = steps[j + 1] if j + 1 < len(steps) else end
        t_batch = torch.full((len(x),), t, dtype=torch.long, device=x.device)
        eps = guided_eps(net, x, t_batch, labels, w, schedule, prediction)
        if solver == "ddim":
            x = ddim_step(schedule, x, t_batch, t_next, eps, clip_x0=True).sample
        else:
            pred_x0 = predict_x0(schedule, x, t_batch, eps).clamp(-1, 1)
            step, h_prev = dpm_solver_pp_step(schedule, x, t, t_next, pred_x0, prev_x0, h_prev)
            x, prev_x0 = step.sample, pred_x0
    return x


def check_teacher(teacher: LoadedModel, dataset: str) -> None:
    """ValueError unless ``teacher`` draws ``dataset``: a student learns from its teacher's own images."""
    if dataset != teacher.dataset:
        raise ValueError(
            f"the teacher {teacher.name} draws {teacher.dataset_info.title}, not {dataset_info(dataset).title}; "
            f"distil it on its own images with --dataset {teacher.dataset}"
        )


def distill(
    config: DistillConfig,
    teacher: LoadedModel,
    data: ImageData,
    out_dir: str | Path | None = None,
    callback: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str = "auto",
    name: str | None = None,
) -> DistillResult:
    """Distil ``teacher`` into a student that takes w and needs ``config.student_steps`` passes.

    ``data`` must be the teacher's dataset (ValueError otherwise): the student's config records it as its own.
    """
    config.validate()
    check_teacher(teacher, data.dataset)
    dev = pick_device(device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    schedule = teacher.schedule
    teacher_model = copy.deepcopy(teacher.model).to(dev).eval().requires_grad_(False)
    prediction = prediction_of(teacher_model)
    model = student_from_teacher(teacher_model).to(dev).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    grid = student_timesteps(schedule, config.student_steps)
    segments = []
    for i, t in enumerate(grid):
        end = grid[i + 1] if i + 1 < len(grid) else -1
        segments.append((t, end, refine_timesteps(schedule, t, end, config.substeps)))

    images = TrainingImages.of(data, dev)
    # the teacher sees each batch twice per pass: with the class (ε_c) and without it (ε_∅)
    teacher_execution = choose_inference(teacher_model, 2 * config.batch_size, config.precision)
    teacher_net = network(teacher_model, teacher_execution)
    execution = choose_training(model, config.batch_size, config.precision)
    stopped_early = False
    lr = learning_rate(config, 0, 0.0)

    def save(elapsed: float) -> Path | None:
        if out_dir is None:
            return None
        meta = {
            "name": name or Path(out_dir).name,
            "data": data_record(data),
            "training": {
                **ledger.training_record(ledger.steps, elapsed, config, dev, execution),
                "teacher_execution": teacher_execution.as_dict(),
            },
            "distillation": {
                "method": "guided progressive distillation in one round (Meng et al. 2023; Salimans & Ho 2022)",
                "teacher": teacher.name,
                "teacher_training_steps": (teacher.config.get("training") or {}).get("steps"),
                "teacher_guidance_interval": interval_as_json(NO_INTERVAL),
                "student_timesteps": grid,
                "teacher_timesteps": [seg[2] for seg in segments],
                "w_range": [0.0, config.w_max],
            },
            "sampler": student_sampler(config.student_steps),
        }
        return save_checkpoint(out_dir, ema, schedule, meta)

    def report(done: bool) -> None:
        if callback is not None:
            callback(ledger.progress(ledger.steps, lr, ema, schedule, execution, done))

    ledger = StepLedger.for_config(config, report, save)
    while not ledger.done():
        if should_stop is not None and should_stop():
            stopped_early = True
            break
        lr = ledger.set_learning_rate(config, optimizer)
        t, end, teacher_steps = segments[ledger.steps % len(segments)]  # every student step equally often
        x0, labels = images.draw(config.batch_size, generator)
        w = (torch.rand(config.batch_size, generator=generator) * config.w_max).to(dev)
        noise = torch.randn(x0.shape, generator=generator).to(dev)
        x_t, _ = q_sample(schedule, x0, t, noise=noise)
        with torch.inference_mode():
            x_s = teacher_solve(
                teacher_net, schedule, x_t, teacher_steps, end, labels, w, prediction, config.teacher_solver
            )
            target = progressive_distillation_target(schedule, x_t, t, x_s, end)
        t_batch = torch.full((config.batch_size,), t, dtype=torch.long, device=dev)
        with autocast(execution.precision, dev):
            out = model(x_t, t_batch.float() / schedule.num_steps, labels, w)
        pred_x0 = predict_x0(schedule, x_t, t_batch, eps_from_output(schedule, x_t, t_batch, out.float(), prediction))
        # target was made under inference_mode: autograd needs an ordinary tensor
        loss = truncated_snr_weight(schedule, t) * (pred_x0 - target.clone()).square().mean()
        ledger.record(
            optimisation_step(model, ema, optimizer, loss, config.grad_clip, config.ema_decay, ledger.steps + 1)
        )

    elapsed, checkpoint = ledger.finish()
    return DistillResult(ema, schedule, ledger.steps, elapsed, ledger.losses, checkpoint, stopped_early)


def student_settings(loaded: LoadedModel, w: float = 3.0, seed: int = 0, **overrides: Any) -> SamplerSettings:
    """The sampler settings a student checkpoint records (DDIM, its steps), at guidance weight ``w``.

    The guidance interval plays no part: the student learnt the teacher's guided output at every step.
    """
    if not takes_guidance(loaded.model):
        raise ValueError(f"{loaded.name} is not a distilled student (it does not take w as an input)")
    recorded = recorded_sampler(loaded.config)
    return SamplerSettings(
        w=w, sampler=recorded["name"], steps=int(recorded["steps"]), eta=float(recorded.get("eta", 0.0)),
        seed=seed, spacing=recorded.get("spacing", STUDENT_SPACING), guidance_interval=NO_INTERVAL, **overrides,
    )  # fmt: skip


def student_w_range(config: Mapping[str, Any]) -> tuple[float, float]:
    """The guidance weights a student was distilled for, [0, w_max], from its checkpoint's config.json."""
    lo, hi = (config.get("distillation") or {}).get("w_range") or (0.0, DistillConfig().w_max)
    return float(lo), float(hi)


def student_sampler(steps: int) -> dict[str, Any]:
    """The sampler a student was distilled for, as its checkpoint records it."""
    return {"name": STUDENT_SAMPLER, "steps": steps, "eta": 0.0, "spacing": STUDENT_SPACING}


def recorded_sampler(config: Mapping[str, Any]) -> dict[str, Any]:
    """The sampler a student's config.json records, or the default student's if it records none."""
    return config.get("sampler") or student_sampler(DistillConfig().student_steps)

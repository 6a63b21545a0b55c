"""Training the class-conditional model (Ho et al. 2020, Algorithm 1, with classifier-free dropout).

One step: take the step's batch of x_0 and labels from this epoch's shuffle of the training images, draw
t ~ U{0…T−1}, ε ~ N(0, I); form x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε (eq. 4); replace each label by "no class"
with probability ``context_drop_prob`` (Bernoulli mask, Ho & Salimans 2021); minimise ‖ε − ε_θ(x_t, t, c)‖²
(eq. 14, the "simple" loss; L1 and Huber selectable). AdamW, linear warm-up then cosine decay of the
learning rate, gradient clipping, and an exponential moving average (EMA) of the weights, which is what
gets sampled and saved as ``model.safetensors``.

Which images a step takes (:class:`ShardedBatches`) and its random draws (:class:`StepDraws`) depend only
on the seed and the step number. So a resumed run picks up where it stopped, and N processes under
``torchrun`` (:mod:`ddpm_core.distributed`) each take their share of the very batch one process would.

Ideas from the fast-training literature, each one small function selected by :class:`TrainConfig`:

* ``prediction="v"`` — the network predicts the velocity v = √ᾱ_t ε − √(1−ᾱ_t) x_0 instead of ε
  (Salimans & Ho 2022), well-posed at every noise level, where ε-prediction's x̂_0 is not near t = T;
  in the variance-preserving form this is EDM's preconditioning with σ_data = 1 (Karras et al. 2022);
* ``weighting="min_snr"`` — each step's loss weighted by min(SNR_t, γ) over its natural weight
  (Hang et al. 2023), so the many easy low-noise steps stop dominating the gradient;
* ``t_sampling="lognormal"`` — noise levels drawn log-normally, as EDM trains (Karras et al. 2022);
* ``augment_shift`` — each digit moved by up to that many pixels, for more variety from 4,000 digits;
* width preset, batch, learning rate, warm-up and EMA decay, tuned for runs of a few minutes.

:data:`RECIPES` names two settings: ``classic`` (the shipped model's recipe before these) and ``fast``
(the default): what each idea bought is measured by ``python -m benchmarks.recipes`` and in the README.

The loop is bounded by steps or minutes (whichever comes first), seeded, resumable from a checkpoint,
stoppable between steps, and reports through a callback so a CLI and the UI can show progress.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from ddpm_core.checkpoints import LoadedModel, save_checkpoint
from ddpm_core.data import ImageData, to_model_range
from ddpm_core.diffusion import q_sample, v_target
from ddpm_core.distributed import SINGLE, World
from ddpm_core.runtime import PRECISIONS, Execution, autocast, choose_training, default_precision
from ddpm_core.schedule import NoiseSchedule, ScheduleConfig
from ddpm_core.unet import NULL_LABEL, PREDICTIONS, WIDTH_PRESETS, ContextUNet, prediction_of

LossName = Literal["mse", "l1", "huber"]
WEIGHTINGS: tuple[str, ...] = ("uniform", "min_snr")
T_SAMPLINGS: tuple[str, ...] = ("uniform", "lognormal")
MAX_SHIFT = 4

# The two named recipes; TrainConfig's defaults are "fast". Fields a recipe leaves out keep their defaults.
RECIPES: dict[str, dict[str, Any]] = {
    "fast": {
        "preset": "small",
        "batch_size": 32,
        "lr": 3e-3,
        "warmup_steps": 50,
        "prediction": "v",
        "weighting": "uniform",
        "t_sampling": "uniform",
        "augment_shift": 0,
        "ema_decay": 0.995,
    },
    "classic": {
        "preset": "base",
        "batch_size": 128,
        "lr": 2e-3,
        "warmup_steps": 100,
        "prediction": "eps",
        "weighting": "uniform",
        "t_sampling": "uniform",
        "augment_shift": 0,
        "ema_decay": 0.999,
    },
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; stored in the checkpoint's config.json."""

    recipe: str = "fast"  # the named recipe these settings started from (see RECIPES)
    preset: str = RECIPES["fast"]["preset"]
    batch_size: int = RECIPES["fast"]["batch_size"]
    lr: float = RECIPES["fast"]["lr"]
    weight_decay: float = 1e-4
    warmup_steps: int = RECIPES["fast"]["warmup_steps"]
    max_steps: int | None = None
    max_minutes: float | None = 10.0
    context_drop_prob: float = 0.15
    loss: LossName = "mse"
    prediction: str = RECIPES["fast"]["prediction"]  # "eps" (Ho et al.) or "v" (Salimans & Ho)
    weighting: str = RECIPES["fast"]["weighting"]  # "uniform" or "min_snr" (Hang et al.)
    min_snr_gamma: float = 5.0
    t_sampling: str = RECIPES["fast"]["t_sampling"]  # "uniform" or "lognormal" (Karras et al.)
    lognormal_mean: float = -1.2  # EDM's P_mean and P_std for ln σ
    lognormal_std: float = 1.2
    augment_shift: int = RECIPES["fast"]["augment_shift"]  # pixels; 0 = no augmentation
    ema_decay: float = RECIPES["fast"]["ema_decay"]
    grad_clip: float = 1.0
    seed: int = 0
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig("cosine", 250))
    precision: str = field(default_factory=default_precision)  # auto (timed), fp32 or bf16 autocast
    checkpoint_every_s: float = 60.0
    report_every: int = 10

    def validate(self) -> None:
        """Raise ValueError for settings that cannot train."""
        if self.preset not in WIDTH_PRESETS:
            raise ValueError(f"unknown width preset {self.preset!r}; choose one of {', '.join(WIDTH_PRESETS)}")
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError("give a step limit, a time limit, or both")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.max_minutes is not None and not 0 < self.max_minutes <= 24 * 60:
            raise ValueError("max_minutes must lie in (0, 1440]")
        if not 1 <= self.batch_size <= 4096:
            raise ValueError("batch size must lie in 1…4096")
        if not 0 < self.lr <= 1:
            raise ValueError("learning rate must lie in (0, 1]")
        if not 0 <= self.context_drop_prob < 1:
            raise ValueError("context-drop probability must lie in [0, 1)")
        if self.loss not in ("mse", "l1", "huber"):
            raise ValueError(f"unknown loss {self.loss!r}; choose mse, l1 or huber")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("EMA decay must lie in [0, 1)")
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {self.prediction!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"loss weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if not self.min_snr_gamma > 0:
            raise ValueError("the min-SNR γ must be positive")
        if self.t_sampling not in T_SAMPLINGS:
            raise ValueError(f"t sampling must be one of {', '.join(T_SAMPLINGS)}, got {self.t_sampling!r}")
        if not self.lognormal_std > 0:
            raise ValueError("the log-normal spread must be positive")
        if not 0 <= self.augment_shift <= MAX_SHIFT:
            raise ValueError(f"augmentation shift must lie in 0…{MAX_SHIFT} pixels")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> TrainConfig:
        """The settings of recipe ``name`` (see :data:`RECIPES`), with ``overrides`` on top."""
        if name not in RECIPES:
            raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
        return cls(recipe=name, **{**RECIPES[name], **overrides})


@dataclass(frozen=True)
class TrainProgress:
    """What the training loop reports every ``report_every`` steps and at the end."""

    step: int
    max_steps: int | None
    loss: float  # mean loss since the last report
    lr: float
    elapsed_s: float
    fraction: float  # 0…1 of the step or time budget, whichever is further along
    eta_s: float
    ema_model: ContextUNet
    schedule: NoiseSchedule
    execution: Execution
    done: bool = False


@dataclass
class TrainResult:
    """The trained EMA model, how far it got and where its checkpoint is."""

    ema_model: ContextUNet
    schedule: NoiseSchedule
    steps: int
    seconds: float
    losses: list[float]
    checkpoint: Path | None
    stopped_early: bool
    execution: Execution
    run_seconds: float = 0.0  # this run's training loop alone (``seconds`` adds the runs it continued)

    def images_per_second(self, batch: int) -> float:
        """This run's training throughput at global batch ``batch``: its steps × batch over its loop's seconds."""
        return len(self.losses) * batch / self.run_seconds if self.run_seconds > 0 else 0.0


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor, kind: LossName) -> torch.Tensor:
    """Per-image L_simple = ‖ε − ε_θ‖² averaged over pixels (eq. 14), or its L1 / Huber variants; shape [B]."""
    if kind == "mse":
        per_pixel = F.mse_loss(pred, target, reduction="none")
    elif kind == "l1":
        per_pixel = F.l1_loss(pred, target, reduction="none")
    else:
        per_pixel = F.smooth_l1_loss(pred, target, reduction="none")
    return per_pixel.flatten(1).mean(dim=1)


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction: str) -> torch.Tensor:
    """Min-SNR-γ weight: min(SNR_t, γ)/SNR_t for ε, min(SNR_t, γ)/(SNR_t + 1) for v (Hang et al. 2023, §3)."""
    clipped = snr.clamp(max=gamma)
    return clipped / snr if prediction == "eps" else clipped / (snr + 1)


def lognormal_timesteps(
    schedule: NoiseSchedule, n: int, mean: float, std: float, generator: torch.Generator
) -> torch.Tensor:
    """t with ln σ ~ N(mean, std²), σ² = (1 − ᾱ_t)/ᾱ_t, rounded to the nearest step (Karras et al. 2022, Table 1)."""
    ln_sigma = mean + std * torch.randn(n, generator=generator, dtype=torch.float64)
    target_log_snr = -2.0 * ln_sigma  # log SNR = log(ᾱ/(1 − ᾱ)) = −2 ln σ
    return (schedule.log_snr[None, :] - target_log_snr[:, None]).abs().argmin(dim=1)


def random_shift(x: torch.Tensor, max_shift: int, offsets: torch.Tensor, fill: float = -1.0) -> torch.Tensor:
    """Move each image by its own whole-pixel offset, ``offsets[i]`` in [0, 2·max_shift]² measured from
    −max_shift, filling with the background."""
    if max_shift == 0:
        return x
    _, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=fill)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def drop_context(labels: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Replace each label by ``NULL_LABEL`` where the Bernoulli mask ``drop`` is true."""
    return torch.where(drop.to(labels.device), torch.full_like(labels, NULL_LABEL), labels)


def step_seed(seed: int, step: int) -> int:
    """The seed of one step's random draws: the run's seed and the step mixed by NumPy's SeedSequence, so
    each step's draws depend on nothing else (not on earlier steps, nor on how many processes train)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0])


@dataclass(frozen=True)
class StepDraws:
    """The random draws of one training step for the whole global batch, one row per image: the noise
    level t, the noise ε, the context-drop mask and the shift of each image (``None`` without augmentation)."""

    t: torch.Tensor
    noise: torch.Tensor
    drop: torch.Tensor
    offsets: torch.Tensor | None

    @classmethod
    def of(cls, config: TrainConfig, schedule: NoiseSchedule, step: int, shape: tuple[int, ...]) -> StepDraws:
        """The draws of step ``step`` (0-based, counting earlier runs) for a global batch of ``shape``."""
        generator = torch.Generator().manual_seed(step_seed(config.seed, step))
        n, shift = shape[0], config.augment_shift
        offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=generator) if shift else None
        if config.t_sampling == "lognormal":
            t = lognormal_timesteps(schedule, n, config.lognormal_mean, config.lognormal_std, generator)
        else:
            t = torch.randint(0, schedule.num_steps, (n,), generator=generator)
        noise = torch.randn(shape, generator=generator)
        drop = torch.rand(n, generator=generator) < config.context_drop_prob
        return cls(t, noise, drop, offsets)

    def share(self, world: World) -> StepDraws:
        """The rows of ``world``'s rank: positions rank, rank + size, … (how :class:`ShardedBatches` deals)."""
        take = slice(world.rank, None, world.size)
        return StepDraws(
            self.t[take], self.noise[take], self.drop[take], None if self.offsets is None else self.offsets[take]
        )


def data_record(data: ImageData) -> dict[str, Any]:
    """The ``data`` entry of a checkpoint's config.json: the dataset, its images' source, how many trained it."""
    return {
        "dataset": data.dataset,
        "source": data.source,
        "description": data.description,
        "train_images": len(data.train),
    }


def learning_rate(config: TrainConfig, step: int, fraction: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 10% as the budget runs out."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))
    return config.lr * warm * decay


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)


def optimisation_step(
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    grad_clip: float,
    ema_decay: float,
    step: int,
) -> float:
    """Backpropagate ``loss``, clip the gradient norm, step the optimiser and update the EMA; returns the loss.

    ``step`` counts this step. EMA warm-up: until the decay's own horizon, the EMA averages all steps so far.
    A loss that is not finite stops the run with a message instead of training on.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    update_ema(ema, model, min(ema_decay, (1 + step) / (10 + step)))
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"loss became {value} at step {step}; lower the learning rate")
    return value


def _training_state(model: ContextUNet, optimizer: torch.optim.Optimizer, step: int) -> dict[str, torch.Tensor]:
    """Raw weights and AdamW moments as flat tensors, so resuming needs no pickle."""
    state: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, p in enumerate(model.parameters()):
        s = optimizer.state.get(p)
        if s:
            state[f"adam.{i}.exp_avg"] = s["exp_avg"]
            state[f"adam.{i}.exp_avg_sq"] = s["exp_avg_sq"]
    state["step"] = torch.tensor([step], dtype=torch.int64)
    return state


def _restore_training_state(
    state: dict[str, torch.Tensor], model: ContextUNet, optimizer: torch.optim.Optimizer
) -> int:
    model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}, strict=True)
    step = int(state["step"][0])
    for i, p in enumerate(model.parameters()):
        if f"adam.{i}.exp_avg" in state:
            optimizer.state[p] = {
                "step": torch.tensor(float(step)),
                "exp_avg": state[f"adam.{i}.exp_avg"].to(p.device).clone(),
                "exp_avg_sq": state[f"adam.{i}.exp_avg_sq"].to(p.device).clone(),
            }
    return step


@dataclass(frozen=True)
class TrainingImages:
    """The training images in the model's range [−1, 1] and their labels, on the training device."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def of(cls, data: ImageData, device: torch.device) -> TrainingImages:
        labels = torch.as_tensor(data.train.labels, dtype=torch.long)
        return cls(to_model_range(data.train.images).to(device), labels.to(device))

    def __len__(self) -> int:
        return len(self.labels)

    def draw(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` digits and their labels, drawn uniformly with replacement."""
        return self.take(torch.randint(0, len(self), (batch,), generator=generator))

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The images at ``indices`` and their labels."""
        idx = indices.to(self.labels.device)
        return self.images[idx], self.labels[idx]


class ShardedBatches:
    """Which training images each step takes, on this process: every epoch a shuffle of all n images, seeded
    by the run's seed and the epoch (the same on every rank), cut into ⌊n / batch⌋ global batches (the last
    n mod batch images wait for the next epoch's shuffle). Rank r of N takes positions r, r + N, r + 2N, … of
    each global batch: :class:`~torch.utils.data.DistributedSampler`'s deal. So the global batch of a step is
    the same whatever the number of processes, and a resumed run finds its place from the step count alone.
    """

    def __init__(self, n: int, batch: int, seed: int, world: World = SINGLE) -> None:
        self.check(n, batch, world)
        self.per_epoch, self.share = n // batch, batch // world.size
        self.sampler = DistributedSampler(
            range(n), num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed, drop_last=True
        )
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    @staticmethod
    def check(n: int, batch: int, world: World = SINGLE) -> None:
        """ValueError unless a global batch of ``batch`` fits in ``n`` images and splits evenly over ``world``."""
        if batch > n:
            raise ValueError(f"a batch of {batch} images is larger than the {n:,} training images; use a smaller batch")
        world.check_batch(batch)

    def indices(self, step: int) -> torch.Tensor:
        """This rank's image indices at step ``step`` (0-based, counting earlier runs)."""
        epoch, j = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, torch.tensor(list(self.sampler), dtype=torch.long)
        return self._order[j * self.share : (j + 1) * self.share]


class StepLedger:
    """What the training and distillation loops share: the budget (steps or minutes, whichever ends first),
    the losses, a progress report every ``report_every`` steps and a checkpoint every ``checkpoint_every_s``.

    ``report(done)`` and ``save(elapsed)`` are the loop's own; the ledger says when to call them.
    """

    def __init__(
        self,
        max_steps: int | None,
        max_minutes: float | None,
        report_every: int,
        checkpoint_every_s: float,
        report: Callable[[bool], None],
        save: Callable[[float], Path | None],
    ) -> None:
        self.max_steps, self.budget_s = max_steps, None if max_minutes is None else max_minutes * 60
        self.report_every, self.checkpoint_every_s = report_every, checkpoint_every_s
        self._report, self._save = report, save
        self.steps = 0  # steps taken in this run
        self.losses: list[float] = []
        self.window: list[float] = []  # losses since the last report
        self.clock_s: float | None = None  # the agreed time at the end of the last step, when there is one
        self.start = self.last_save = time.perf_counter()

    @classmethod
    def for_config(
        cls, config: Any, report: Callable[[bool], None], save: Callable[[float], Path | None]
    ) -> StepLedger:
        """A ledger with the budget and intervals of a config that has them (TrainConfig, DistillConfig)."""
        return cls(config.max_steps, config.max_minutes, config.report_every, config.checkpoint_every_s, report, save)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fraction(self) -> float:
        """0…1 of the step or time budget, whichever is further along."""
        parts = []
        if self.max_steps is not None:
            parts.append(self.steps / self.max_steps)
        if self.budget_s is not None:
            parts.append((self.elapsed() if self.clock_s is None else self.clock_s) / self.budget_s)
        return min(1.0, max(parts))

    def done(self) -> bool:
        return self.fraction() >= 1.0

    def progress(
        self, step: int, lr: float, ema: ContextUNet, schedule: NoiseSchedule, execution: Execution, done: bool
    ) -> TrainProgress:
        """A progress report: ``step`` (counting earlier runs), the mean loss since the last report, the ETA."""
        elapsed, frac = self.elapsed(), self.fraction()
        eta = 0.0 if done or frac <= 0 else elapsed * (1 - frac) / frac
        window = self.window or self.losses[-1:]
        loss = sum(window) / len(window) if window else float("nan")
        return TrainProgress(step, self.max_steps, loss, lr, elapsed, frac, eta, ema, schedule, execution, done)

    def set_learning_rate(self, config: Any, optimizer: torch.optim.Optimizer) -> float:
        """Set the optimiser's rate for the next step (:func:`learning_rate` at this run's step and fraction)."""
        lr = learning_rate(config, self.steps, self.fraction())
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def training_record(
        self, step: int, elapsed: float, config: Any, device: torch.device, execution: Execution, prior_s: float = 0.0
    ) -> dict[str, Any]:
        """The ``training`` entry of a checkpoint's config.json: steps, time (with ``prior_s`` of earlier runs),
        the last loss, the config, the device and how the network ran."""
        seconds = prior_s + elapsed
        return {
            "steps": step,
            "seconds": round(seconds, 1),
            "minutes": round(seconds / 60, 2),
            "final_loss": self.losses[-1] if self.losses else None,
            "config": config.to_dict(),
            "device": device.type,
            "execution": execution.as_dict(),
        }

    def record(self, loss: float, clock_s: float | None = None) -> None:
        """Count a step with its loss; report and save when it is time.

        ``clock_s``: the run's time at the end of the step as all processes agreed it (rank 0's); the budget is
        judged on it until the next step. Without it, on this process's own clock.
        """
        self.clock_s = clock_s
        self.steps += 1
        self.losses.append(loss)
        self.window.append(loss)
        if self.steps % self.report_every == 0:
            self._report(False)
            self.window = []
        if time.perf_counter() - self.last_save >= self.checkpoint_every_s:
            self._save(self.elapsed())
            self.last_save = time.perf_counter()

    def finish(self) -> tuple[float, Path | None]:
        """The final save and report; returns (elapsed s, checkpoint path or None)."""
        elapsed = self.elapsed()
        checkpoint = self._save(elapsed)
        self._report(True)
        return elapsed, checkpoint


def check_resume(resume: LoadedModel | None, data: ImageData) -> None:
    """ValueError if ``resume`` learnt another dataset than ``data``'s: a model is continued on its own images."""
    if resume is not None and resume.dataset != data.dataset:
        raise ValueError(
            f"the model to continue learnt {resume.dataset_info.title}, not {data.info.title}; continue it on its "
            f"own images (--dataset {resume.dataset}) or train a fresh model"
        )


def train(
    config: TrainConfig,
    data: ImageData,
    out_dir: str | Path | None = None,
    resume: LoadedModel | None = None,
    callback: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str = "auto",
    name: str | None = None,
    world: World = SINGLE,
) -> TrainResult:
    """Train (or continue training) an ε-model on ``data.train``; saves checkpoints to ``out_dir`` if given.

    A model is continued only on its own dataset (ValueError otherwise): its checkpoint would name the new one.
    With a ``world`` of several processes (inside :meth:`World.joined`), this process trains on its share of
    each global batch of ``config.batch_size``; only rank 0 saves and calls ``callback``.
    """
    config.validate()
    check_resume(resume, data)
    dev = world.place(pick_device(device))
    torch.manual_seed(config.seed)
    if resume is not None:  # the checkpoint's own width and prediction go on
        model = copy.deepcopy(resume.model)
        schedule = resume.schedule
        config = replace(config, prediction=prediction_of(model))
    else:
        model = ContextUNet(replace(WIDTH_PRESETS[config.preset], prediction=config.prediction))
        schedule = NoiseSchedule.from_config(config.schedule)
    model.to(dev).train().requires_grad_(True)  # a resumed EMA copy may have come frozen
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_step = 0
    if resume is not None and resume.training_state is not None:
        start_step = _restore_training_state(resume.training_state, model, optimizer)
    elif resume is not None:  # weights only (e.g. the shipped model): fresh AdamW moments, step count goes on
        start_step = int((resume.config.get("training", {}) or {}).get("steps") or 0)
    prior_seconds = float((resume.config.get("training", {}) or {}).get("seconds", 0.0)) if resume else 0.0

    images = TrainingImages.of(data, dev)
    batches = ShardedBatches(len(images), config.batch_size, config.seed, world)
    network = world.wrap(model, dev)
    step = start_step
    metadata = {"name": name or (Path(out_dir).name if out_dir else "digits"), "data": data_record(data)}

    def save(elapsed: float) -> Path | None:
        if out_dir is None or not world.is_main:
            return None
        meta = dict(metadata)
        meta["training"] = ledger.training_record(step, elapsed, config, dev, execution, prior_seconds)
        meta["training"]["processes"] = world.size
        return save_checkpoint(out_dir, ema, schedule, meta, _training_state(model, optimizer, step))

    def report(done: bool) -> None:
        if callback is not None and world.is_main:
            callback(ledger.progress(step, lr, ema, schedule, execution, done))

    lr = learning_rate(config, 0, 0.0)
    execution = _agreed_execution(model, batches.share, config.precision, world, dev)
    # started after the precision probe, which is not training time
    ledger = StepLedger.for_config(config, report, save)
    asked_to_stop = should_stop or (lambda: False)
    stop = world.agree(0.0, 0.0, asked_to_stop(), dev)[2]
    while not stop and not ledger.done():
        lr = ledger.set_learning_rate(config, optimizer)
        x0, labels = images.take(batches.indices(step))
        draws = StepDraws.of(config, schedule, step, (config.batch_size, *x0.shape[1:])).share(world)
        if draws.offsets is not None:
            x0 = random_shift(x0, config.augment_shift, draws.offsets)
        t, noise = draws.t.to(dev), draws.noise.to(dev)
        x_t, _ = q_sample(schedule, x0, t, noise=noise)
        target = noise if config.prediction == "eps" else v_target(schedule, x0, t, noise)
        labels = drop_context(labels, draws.drop)
        with autocast(execution.precision, dev):
            pred = network(x_t, t.float() / schedule.num_steps, labels)
        per_image = diffusion_loss(pred.float(), target, config.loss)
        if config.weighting == "min_snr":
            snr = schedule.snr[t.cpu()].to(device=dev, dtype=per_image.dtype)
            per_image = per_image * min_snr_weight(snr, config.min_snr_gamma, config.prediction)
        step += 1
        loss = optimisation_step(model, ema, optimizer, per_image.mean(), config.grad_clip, config.ema_decay, step)
        clock, loss, stop = world.agree(ledger.elapsed(), loss, asked_to_stop(), dev)
        ledger.record(loss, clock)
    stopped_early = stop and not ledger.done()

    elapsed, checkpoint = ledger.finish()
    return TrainResult(
        ema, schedule, step, prior_seconds + elapsed, ledger.losses, checkpoint, stopped_early, execution, elapsed
    )


def _agreed_execution(model: nn.Module, batch: int, precision: str, world: World, device: torch.device) -> Execution:
    """How to train: timed by rank 0 alone when ``precision`` is auto, and taken up by every rank."""
    if not world.parallel or precision != "auto":
        return choose_training(model, batch, precision)
    if world.is_main:
        execution = choose_training(model, batch, precision)
        world.from_main(PRECISIONS.index(execution.precision), device)
        return execution
    return choose_training(model, batch, PRECISIONS[world.from_main(0, device)])

"""Command line: train a model of digits or fashion items.

python -m ddpm_core.cli.train --minutes 3 --out runs/fast                      # the fast recipe (default)
python -m ddpm_core.cli.train --recipe classic --minutes 50 --out runs/classic  # the old recipe
python -m ddpm_core.cli.train --minutes 3 --prediction eps --out runs/eps       # a recipe with one setting changed
python -m ddpm_core.cli.train --steps 500 --resume checkpoints/digits-base --out runs/more
python -m ddpm_core.cli.train --dataset fashion --minutes 3 --out runs/fashion  # Fashion-MNIST's shipped subset
python -m ddpm_core.cli.train --data full --data-root ~/mnist --out runs/full   # full 60k from IDX files
torchrun --standalone --nproc-per-node 2 -m ddpm_core.cli.train --minutes 3 --out runs/ddp  # 2 processes

Settings not given on the command line come from the recipe (``--recipe``, see ddpm_core.training.RECIPES).
Under torchrun the processes train one model data-parallel (ddpm_core.distributed): --batch-size is the
global batch, split evenly over the processes, and rank 0 alone writes the checkpoint and the progress.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ddpm_core.checkpoints import CheckpointError, load_checkpoint
from ddpm_core.cli import HUB_SPEC, add_data_arguments, make_parser
from ddpm_core.data import load_dataset
from ddpm_core.distributed import World
from ddpm_core.hub import resolve_checkpoint
from ddpm_core.runtime import PRECISION_ENV, PRECISIONS
from ddpm_core.schedule import SCHEDULE_NAMES, ScheduleConfig
from ddpm_core.training import (
    RECIPES,
    T_SAMPLINGS,
    WEIGHTINGS,
    ShardedBatches,
    TrainConfig,
    TrainProgress,
    check_resume,
    pick_device,
    train,
)
from ddpm_core.unet import PREDICTIONS, WIDTH_PRESETS

# command-line flag → TrainConfig field, for the settings a recipe supplies when the flag is not given
OVERRIDES = {
    "preset": "preset",
    "batch_size": "batch_size",
    "lr": "lr",
    "warmup": "warmup_steps",
    "drop_prob": "context_drop_prob",
    "loss": "loss",
    "prediction": "prediction",
    "weighting": "weighting",
    "min_snr_gamma": "min_snr_gamma",
    "t_sampling": "t_sampling",
    "augment_shift": "augment_shift",
    "ema_decay": "ema_decay",
    "seed": "seed",
    "precision": "precision",
    "checkpoint_every": "checkpoint_every_s",
}


def recipe_default(field: str) -> str:
    """The help's default for a flag the recipe fills in: each recipe's value, or TrainConfig's if none sets it."""
    if not any(field in recipe for recipe in RECIPES.values()):
        return f"default: {getattr(TrainConfig(), field)}"
    values = {name: getattr(TrainConfig.from_recipe(name), field) for name in sorted(RECIPES)}
    if len(set(values.values())) == 1:
        return f"default: {next(iter(values.values()))} in every --recipe"
    return "default: from --recipe, " + ", ".join(f"{name} {value}" for name, value in values.items())


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m ddpm_core.cli.train", __doc__)
    d = TrainConfig()

    def tuned(flag: str, text: str, **kwargs: Any) -> None:
        """A setting the recipe supplies when the flag is not given (see OVERRIDES)."""
        field = OVERRIDES[flag.removeprefix("--").replace("-", "_")]
        p.add_argument(flag, help=f"{text} ({recipe_default(field)})", **kwargs)

    p.add_argument("--out", required=True, help="checkpoint folder to write (saved atomically, every minute)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="fast", help="the starting settings")
    p.add_argument("--minutes", type=float, default=None, help="time budget (default: 10 if no --steps)")
    p.add_argument("--steps", type=int, default=None, help="step budget (default: none, stop on --minutes)")
    tuned("--preset", "model width", choices=sorted(WIDTH_PRESETS))
    tuned("--batch-size", "images per training step, over all processes under torchrun", type=int)
    tuned("--lr", "peak learning rate", type=float)
    tuned("--warmup", "learning-rate warm-up steps", type=int)
    tuned("--drop-prob", "context-drop probability (trains the unconditional model for guidance)", type=float)
    tuned("--loss", "loss on the network's prediction", choices=["mse", "l1", "huber"])
    tuned("--prediction", "what the network predicts: eps or v", choices=PREDICTIONS)
    tuned("--weighting", "per-step loss weights: uniform or min_snr", choices=WEIGHTINGS)
    tuned("--min-snr-gamma", "γ of the min-SNR weighting", type=float)
    tuned("--t-sampling", "how training steps t are drawn", choices=T_SAMPLINGS)
    tuned("--augment-shift", "random shift of each digit, in pixels (0 = none)", type=int)
    tuned("--ema-decay", "decay of the exponential moving average of the weights that is saved", type=float)
    tuned("--seed", "random seed of initialisation, batches and noise", type=int)
    p.add_argument("--schedule", choices=SCHEDULE_NAMES, default=d.schedule.name, help="noise schedule β_t")
    p.add_argument("--T", type=int, default=d.schedule.num_steps, help="number of diffusion steps")
    tuned("--precision", f"auto: time fp32 and bf16 here, keep the faster; set by ${PRECISION_ENV}", choices=PRECISIONS)
    tuned("--checkpoint-every", "seconds between checkpoints", type=float)
    add_data_arguments(p)
    p.add_argument("--download", action="store_true", help="let torchvision download the full set (needs a network)")
    p.add_argument(
        "--resume", default=None, help=f"checkpoint to continue from: a folder or a Hub id {HUB_SPEC} (default: none)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument("--name", default=None, help="model name stored in config.json (default: the --out folder's name)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    world = World.from_environment()
    minutes = args.minutes if args.minutes is not None or args.steps is not None else 10.0
    given = {field: getattr(args, flag) for flag, field in OVERRIDES.items() if getattr(args, flag) is not None}
    try:
        given.update(max_steps=args.steps, max_minutes=minutes, schedule=ScheduleConfig(args.schedule, args.T))
        config = TrainConfig.from_recipe(args.recipe, **given)
        config.validate()
        if args.download and world.parallel:
            raise ValueError("download the full set once without torchrun (a plain run with --download), then start it")
        device = world.place(pick_device(args.device))
        data = load_dataset(args.dataset, args.data, args.data_root, args.download)
        resume = load_checkpoint(resolve_checkpoint(args.resume), with_training_state=True) if args.resume else None
        check_resume(resume, data)
        ShardedBatches.check(len(data.train), config.batch_size, world)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        where = f" (rank {world.rank})" if world.parallel else ""
        print(f"error{where}: {exc}", file=sys.stderr)
        return 2
    if world.is_main:
        print(f"data: {data.description} ({len(data.train)} train, {len(data.held_out)} held out); {world.describe()}")
    bar = tqdm(
        total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}", disable=not world.is_main
    )

    def on_progress(p: TrainProgress) -> None:
        bar.n = int(p.fraction * 1000)
        bar.set_postfix_str(f"step {p.step} loss {p.loss:.4f} lr {p.lr:.2e}")

    with world.joined(device):
        result = train(
            config,
            data,
            out_dir=args.out,
            resume=resume,
            callback=on_progress,
            device=str(device),
            name=args.name or Path(args.out).name,
            world=world,
        )
    bar.close()
    if world.is_main:
        summary = {
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
            "final_loss_mean_last_100": round(sum(result.losses[-100:]) / max(1, len(result.losses[-100:])), 5),
            "checkpoint": str(result.checkpoint),
            "processes": world.size,
            "images_per_s": round(result.images_per_second(config.batch_size), 1),
            "execution": result.execution.as_dict(),
        }
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: train a digit model.

python -m ddpm_core.cli.train --minutes 3 --out runs/fast                      # the fast recipe (default)
python -m ddpm_core.cli.train --recipe classic --minutes 50 --out runs/classic  # the old recipe
python -m ddpm_core.cli.train --minutes 3 --prediction eps --out runs/eps       # a recipe with one setting changed
python -m ddpm_core.cli.train --steps 500 --resume checkpoints/digits-base --out runs/more
python -m ddpm_core.cli.train --data mnist --data-root ~/mnist --out runs/full  # full 60k from IDX files

Settings not given on the command line come from the recipe (``--recipe``, see ddpm_core.training.RECIPES).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ddpm_core.checkpoints import CheckpointError, load_checkpoint
from ddpm_core.data import load_digits
from ddpm_core.runtime import PRECISIONS
from ddpm_core.schedule import SCHEDULE_NAMES, ScheduleConfig
from ddpm_core.training import RECIPES, T_SAMPLINGS, WEIGHTINGS, TrainConfig, TrainProgress, train
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ddpm_core.cli.train", description=__doc__.split("\n")[1])
    p.add_argument("--out", required=True, help="checkpoint folder to write (saved atomically, every minute)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="fast", help="starting settings (default fast)")
    p.add_argument("--minutes", type=float, default=None, help="time budget (default 10 if no --steps)")
    p.add_argument("--steps", type=int, default=None, help="step budget")
    p.add_argument("--preset", choices=sorted(WIDTH_PRESETS), help="model width")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup", type=int, help="learning-rate warm-up steps")
    p.add_argument("--drop-prob", type=float, help="context-drop probability")
    p.add_argument("--loss", choices=["mse", "l1", "huber"])
    p.add_argument("--prediction", choices=PREDICTIONS, help="what the network predicts: eps or v")
    p.add_argument("--weighting", choices=WEIGHTINGS, help="per-step loss weights: uniform or min_snr")
    p.add_argument("--min-snr-gamma", type=float, help="γ of the min-SNR weighting")
    p.add_argument("--t-sampling", choices=T_SAMPLINGS, help="how training steps t are drawn")
    p.add_argument("--augment-shift", type=int, help="random shift of each digit, in pixels (0 = none)")
    p.add_argument("--ema-decay", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--schedule", choices=SCHEDULE_NAMES, default=TrainConfig().schedule.name)
    p.add_argument("--T", type=int, default=TrainConfig().schedule.num_steps, help="number of diffusion steps")
    p.add_argument("--precision", choices=PRECISIONS, help="auto: time fp32 and bf16 here, keep the faster")
    p.add_argument("--checkpoint-every", type=float, help="seconds between checkpoints (default 60)")
    p.add_argument("--data", choices=["bundled", "mnist"], default="bundled")
    p.add_argument("--data-root", default="data", help="folder with MNIST/raw IDX files (for --data mnist)")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST (needs a network)")
    p.add_argument("--resume", default=None, help="checkpoint folder to continue from")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--name", default=None, help="model name stored in config.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    minutes = args.minutes if args.minutes is not None or args.steps is not None else 10.0
    given = {field: getattr(args, flag) for flag, field in OVERRIDES.items() if getattr(args, flag) is not None}
    try:
        given.update(max_steps=args.steps, max_minutes=minutes, schedule=ScheduleConfig(args.schedule, args.T))
        config = TrainConfig.from_recipe(args.recipe, **given)
        config.validate()
        data = load_digits(args.data, args.data_root, args.download)
        resume = load_checkpoint(args.resume, with_training_state=True) if args.resume else None
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"data: {data.description} ({len(data.train)} train, {len(data.held_out)} held out)")
    bar = tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def on_progress(p: TrainProgress) -> None:
        bar.n = int(p.fraction * 1000)
        bar.set_postfix_str(f"step {p.step} loss {p.loss:.4f} lr {p.lr:.2e}")

    result = train(
        config,
        data,
        out_dir=args.out,
        resume=resume,
        callback=on_progress,
        device=args.device,
        name=args.name or Path(args.out).name,
    )
    bar.close()
    summary = {
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "final_loss_mean_last_100": round(sum(result.losses[-100:]) / max(1, len(result.losses[-100:])), 5),
        "checkpoint": str(result.checkpoint),
        "execution": result.execution.as_dict(),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

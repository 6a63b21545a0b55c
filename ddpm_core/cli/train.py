"""Command line: train a digit model.

python -m ddpm_core.cli.train --minutes 10 --preset base --out checkpoints/digits-base
python -m ddpm_core.cli.train --steps 500 --resume checkpoints/digits-base --out runs/more
python -m ddpm_core.cli.train --data mnist --data-root ~/mnist   # full 60k from IDX files
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
from ddpm_core.training import TrainConfig, TrainProgress, train
from ddpm_core.unet import WIDTH_PRESETS


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m ddpm_core.cli.train", description=__doc__.split("\n")[1])
    p.add_argument("--out", required=True, help="checkpoint folder to write (saved atomically, every minute)")
    p.add_argument("--minutes", type=float, default=None, help="time budget (default 10 if no --steps)")
    p.add_argument("--steps", type=int, default=None, help="step budget")
    p.add_argument("--preset", choices=sorted(WIDTH_PRESETS), default=d.preset, help="model width")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--drop-prob", type=float, default=d.context_drop_prob, help="context-drop probability")
    p.add_argument("--loss", choices=["mse", "l1", "huber"], default=d.loss)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--schedule", choices=SCHEDULE_NAMES, default=d.schedule.name)
    p.add_argument("--T", type=int, default=d.schedule.num_steps, help="number of diffusion steps")
    p.add_argument(
        "--precision", choices=PRECISIONS, default=d.precision, help="auto: time fp32 and bf16 here, keep the faster"
    )
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
    config = TrainConfig(
        preset=args.preset,
        batch_size=args.batch_size,
        lr=args.lr,
        max_steps=args.steps,
        max_minutes=minutes,
        context_drop_prob=args.drop_prob,
        loss=args.loss,
        ema_decay=args.ema_decay,
        seed=args.seed,
        schedule=ScheduleConfig(args.schedule, args.T),
        precision=args.precision,
    )
    try:
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

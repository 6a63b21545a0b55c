"""Command line: distil a guided teacher into a few-step student that takes w as an input.

python -m ddpm_core.cli.distill --teacher checkpoints/digits-base --minutes 40 --out checkpoints/digits-live
python -m ddpm_core.cli.distill --teacher checkpoints/digits-base --steps 200 --out runs/live-smoke
python -m ddpm_core.cli.distill --teacher checkpoints/fashion-base --dataset fashion --steps 200 --out runs/f-live

The student learns from the teacher's own dataset: --dataset must name it (digits unless said).

See ddpm_core.distillation for the method (Meng et al. 2023; Salimans & Ho 2022).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ddpm_core.checkpoints import CheckpointError, load_checkpoint
from ddpm_core.cli import HUB_SPEC, add_data_arguments, make_parser
from ddpm_core.data import load_dataset
from ddpm_core.distillation import TEACHER_SOLVERS, DistillConfig, check_teacher, distill
from ddpm_core.hub import resolve_checkpoint
from ddpm_core.runtime import PRECISION_ENV, PRECISIONS
from ddpm_core.training import TrainProgress

DEFAULTS = DistillConfig()


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m ddpm_core.cli.distill", __doc__)
    p.add_argument("--teacher", required=True, help=f"the guided teacher: a checkpoint folder or a Hub id {HUB_SPEC}")
    p.add_argument("--out", required=True, help="checkpoint folder to write the student to (atomically, every minute)")
    p.add_argument("--minutes", type=float, default=None, help="time budget (default: 30 if no --steps)")
    p.add_argument("--steps", type=int, default=None, help="step budget (default: none, stop on --minutes)")
    p.add_argument("--student-steps", type=int, default=DEFAULTS.student_steps, help="network passes per sample")
    p.add_argument("--substeps", type=int, default=DEFAULTS.substeps, help="teacher steps per student step")
    p.add_argument(
        "--teacher-solver", choices=TEACHER_SOLVERS, default=DEFAULTS.teacher_solver, help="how the teacher steps"
    )
    p.add_argument("--w-max", type=float, default=DEFAULTS.w_max, help="w is drawn from [0, w_max]")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="images per training step")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr, help="peak learning rate")
    p.add_argument(
        "--ema-decay", type=float, default=DEFAULTS.ema_decay, help="decay of the saved moving average of the weights"
    )
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed of initialisation, batches and noise")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help=f"auto: time fp32 and bf16 here, keep the faster (default: ${PRECISION_ENV} or auto)",
    )
    p.add_argument(
        "--checkpoint-every", type=float, default=DEFAULTS.checkpoint_every_s, help="seconds between checkpoints"
    )
    add_data_arguments(p)
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument("--name", default=None, help="model name stored in config.json (default: the --out folder's name)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    minutes = args.minutes if args.minutes is not None or args.steps is not None else 30.0
    try:
        config = DistillConfig(
            student_steps=args.student_steps, substeps=args.substeps, teacher_solver=args.teacher_solver,
            w_max=args.w_max, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
            max_steps=args.steps, max_minutes=minutes, seed=args.seed,
            checkpoint_every_s=args.checkpoint_every,
            **({"precision": args.precision} if args.precision else {}),
        )  # fmt: skip
        config.validate()
        teacher = load_checkpoint(resolve_checkpoint(args.teacher))
        check_teacher(teacher, args.dataset)  # before the images are read
        data = load_dataset(args.dataset, args.data, args.data_root)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar = tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def on_progress(p: TrainProgress) -> None:
        bar.n = int(p.fraction * 1000)
        bar.set_postfix_str(f"step {p.step} loss {p.loss:.4f} lr {p.lr:.2e}")

    try:
        result = distill(
            config, teacher, data, out_dir=args.out, callback=on_progress, device=args.device,
            name=args.name or Path(args.out).name,
        )  # fmt: skip
    except ValueError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    tail = result.losses[-100:]
    summary = {
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "final_loss_mean_last_100": round(sum(tail) / max(1, len(tail)), 5),
        "checkpoint": str(result.checkpoint),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

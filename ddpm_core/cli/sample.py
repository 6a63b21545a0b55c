r"""Command line: sample images (digits or fashion items, whatever the model draws) from a checkpoint.

    python -m ddpm_core.cli.sample --checkpoint checkpoints/digits-base --w 3 --sampler ddim --steps 25 \
        --per-class 4 --seed 0 --out samples.npz --grid grid.png --gif anim.gif
    python -m ddpm_core.cli.sample --checkpoint checkpoints/fashion-base --classes 5,7,9 --per-class 8 --out shoes.npz

``samples.npz`` holds ``images`` (uint8, N×28×28, white on black), ``labels`` (int64, N), ordered class by
class, and ``class_names`` (the ten names of the model's dataset, so ``class_names[labels]`` names each image).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ddpm_core.checkpoints import CheckpointError, load_checkpoint
from ddpm_core.cli import HUB_SPEC, make_parser
from ddpm_core.hub import resolve_checkpoint
from ddpm_core.image_io import to_uint8
from ddpm_core.pictures import denoising_frames, image_grid, save_gif, save_png
from ddpm_core.runtime import PRECISIONS, RUNTIMES
from ddpm_core.sampling import (
    MID_INTERVAL,
    NO_INTERVAL,
    SAMPLERS,
    SPACINGS,
    SamplerSettings,
    StepInfo,
    Trajectory,
    sample,
    sampling_steps,
)
from ddpm_core.training import pick_device


def parse_classes(text: str) -> list[int]:
    """'0-9' or '1,3,7' → a list of class labels."""
    text = text.strip()
    if "-" in text and "," not in text:
        lo, hi = (int(v) for v in text.split("-", 1))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    d = SamplerSettings()
    p = make_parser("python -m ddpm_core.cli.sample", __doc__)
    p.add_argument("--checkpoint", required=True, help=f"the model: a checkpoint folder or a Hub id {HUB_SPEC}")
    p.add_argument("--w", type=float, default=d.w, help="guidance weight: 0 unconditional, 1 conditional, >1 stronger")
    p.add_argument("--sampler", choices=SAMPLERS, default=d.sampler, help="reverse process to run")
    p.add_argument("--steps", type=int, default=d.steps, help="steps for ddim/dpmpp (ddpm always uses all T)")
    p.add_argument("--eta", type=float, default=d.eta, help="DDIM η: 0 deterministic, 1 DDPM-like")
    p.add_argument("--per-class", type=int, default=1, help="images per class, 1…1000")
    p.add_argument(
        "--classes",
        default="0-9",
        help="class labels to draw, as a range (0-9) or a list (1,3,7); fashion items: 0 T-shirt/top … 9 Ankle boot",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the starting noise and of every step's noise")
    p.add_argument("--spacing", choices=SPACINGS, default=d.spacing, help="which steps ddim/dpmpp visit")
    p.add_argument(
        "--guide-everywhere", action="store_true", help="guide at every step, not only where 1 < σ ≤ 2 (the default)"
    )
    p.add_argument(
        "--precision", choices=PRECISIONS, default=d.precision, help="auto: time fp32 and bf16 here, keep the faster"
    )
    p.add_argument(
        "--runtime", choices=RUNTIMES, default=d.runtime, help="auto: time PyTorch and ONNX Runtime, keep the faster"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument("--out", required=True, help="npz file to write")
    p.add_argument("--grid", default=None, help="also write a PNG grid (one row per class)")
    p.add_argument("--gif", default=None, help="also write a denoising GIF (x_t | predicted x_0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not 1 <= args.per_class <= 1000:
            raise ValueError("--per-class must lie in 1…1000")
        classes = parse_classes(args.classes)
        loaded = load_checkpoint(resolve_checkpoint(args.checkpoint))
        loaded.model.to(pick_device(args.device))
        labels = torch.tensor(classes).repeat_interleave(args.per_class)
        settings = SamplerSettings(
            w=args.w, sampler=args.sampler, steps=args.steps, eta=args.eta, seed=args.seed, spacing=args.spacing,
            precision=args.precision, runtime=args.runtime,
            guidance_interval=NO_INTERVAL if args.guide_everywhere else MID_INTERVAL,
        )  # fmt: skip
        total = sampling_steps(settings, loaded.schedule)
        trajectory = Trajectory.for_frames(total) if args.gif else None
        bar = tqdm(total=total, unit="step", file=sys.stderr)

        def on_step(info: StepInfo) -> None:
            bar.update(1)
            if trajectory is not None:
                trajectory(info)

        result = sample(loaded.model, loaded.schedule, labels, settings, callback=on_step)
        bar.close()
    except (ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    images = to_uint8(result.images)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = np.array(loaded.dataset_info.class_names)  # a str array: np.load reads it without pickle
    np.savez_compressed(out, images=images, labels=result.labels.numpy().astype(np.int64), class_names=names)
    written = [str(out)]
    if args.grid:
        written.append(str(save_png(image_grid(images, nrow=args.per_class, scale=3), args.grid)))
    if trajectory is not None:
        frames = denoising_frames(
            [to_uint8(x) for x in trajectory.xs], [to_uint8(x) for x in trajectory.pred_x0s], args.per_class, scale=3
        )
        written.append(str(save_gif(frames, args.gif, fps=12, hold_last=1.0)))
    summary = {
        "dataset": loaded.dataset,
        "images": len(images),
        "seconds": round(result.seconds, 3),
        "network_evaluations": result.network_evaluations,
        "execution": result.execution.as_dict(),
        "written": written,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: measure a digit model with the project's classifier and record it in the checkpoint.

    python -m ddpm_core.cli.evaluate --checkpoint checkpoints/digits-base --per-class 100 --write

It prints the JSON of :func:`ddpm_core.evaluate.evaluate` (accuracy, Fréchet distance and the memorisation
check for each guidance weight, next to the real-vs-real floor); ``--write`` also stores it under ``metrics``
in the checkpoint's ``config.json``. A distilled student (``checkpoints/digits-live``) is sampled the way
its checkpoint records (DDIM, 4 steps, w as an input); ``--steps`` and ``--guide-everywhere`` are then ignored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ddpm_core.checkpoints import load_checkpoint, update_metadata
from ddpm_core.classifier import load_classifier
from ddpm_core.data import load_digits
from ddpm_core.distillation import student_settings
from ddpm_core.evaluate import evaluate
from ddpm_core.paths import classifier_dir
from ddpm_core.runtime import PRECISIONS, RUNTIMES, default_precision, default_runtime
from ddpm_core.sampling import MID_INTERVAL, NO_INTERVAL, SamplerSettings
from ddpm_core.unet import takes_guidance


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ddpm_core.cli.evaluate", description="Measure a digit model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--classifier", default=str(classifier_dir()))
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--ws", default="0,1,2,3,5", help="comma-separated guidance weights")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=SamplerSettings().steps, help="sampler steps")
    p.add_argument(
        "--guide-everywhere", action="store_true", help="guide at every step, not only where 1 < σ ≤ 2 (the default)"
    )
    p.add_argument(
        "--precision", choices=PRECISIONS, default=default_precision(), help="auto: time fp32 and bf16, keep the faster"
    )
    p.add_argument("--runtime", choices=RUNTIMES, default=default_runtime(), help="auto: time PyTorch and ONNX Runtime")
    p.add_argument("--write", action="store_true", help="store the metrics in the checkpoint's config.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loaded = load_checkpoint(args.checkpoint)
    if takes_guidance(loaded.model):
        settings = student_settings(loaded, seed=args.seed, precision=args.precision, runtime=args.runtime)
    else:
        settings = SamplerSettings(
            seed=args.seed,
            steps=args.steps,
            precision=args.precision,
            runtime=args.runtime,
            guidance_interval=NO_INTERVAL if args.guide_everywhere else MID_INTERVAL,
        )
    metrics = evaluate(
        loaded,
        load_classifier(args.classifier),
        load_digits("bundled"),
        [float(w) for w in args.ws.split(",")],
        args.per_class,
        settings,
    )
    print(json.dumps(metrics, indent=2))
    if args.write:
        update_metadata(Path(args.checkpoint), {"metrics": metrics})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

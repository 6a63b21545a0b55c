"""Command line: measure a model with the project's classifier of its dataset and record it in the checkpoint.

    python -m ddpm_core.cli.evaluate --checkpoint checkpoints/digits-base --per-class 100 --write

It prints the JSON of ddpm_core.evaluate.evaluate (accuracy, Fréchet distance and the memorisation
check for each guidance weight, next to the real-vs-real floor); ``--write`` also stores it under ``metrics``
in the checkpoint's ``config.json``. A distilled student (``checkpoints/digits-live``) is sampled the way
its checkpoint records (DDIM, 4 steps, w as an input); ``--steps`` and ``--guide-everywhere`` are then ignored.
``--checkpoint`` and ``--classifier`` take a folder or a Hugging Face Hub id ``owner/repo[@revision]``; ``--write``
changes only a folder of your own, never a Hub model's cached copy.
"""

from __future__ import annotations

import argparse
import json
import sys

from ddpm_core.checkpoints import CheckpointError, load_checkpoint, update_metadata
from ddpm_core.classifier import load_classifier
from ddpm_core.cli import HUB_SPEC, make_parser
from ddpm_core.data import load_bundled
from ddpm_core.distillation import student_settings
from ddpm_core.evaluate import evaluate
from ddpm_core.files import complete_folder
from ddpm_core.hub import HubError, parse_repo, resolve_checkpoint
from ddpm_core.paths import classifier_dir, hub_cache_dir
from ddpm_core.runtime import PRECISIONS, RUNTIMES, default_precision, default_runtime
from ddpm_core.sampling import MID_INTERVAL, NO_INTERVAL, SamplerSettings
from ddpm_core.unet import takes_guidance


def parse_ws(text: str) -> list[float]:
    """'0,1,2,3,5' → the guidance weights [0.0, 1.0, 2.0, 3.0, 5.0]."""
    try:
        ws = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 0,1,3") from None
    if not ws:
        raise argparse.ArgumentTypeError("give at least one guidance weight, e.g. 0,1,3")
    return ws


def write_refusal(spec: str) -> str | None:
    """Why ``--write`` may not change the checkpoint ``spec`` names, or None if it is a folder of the user's own.

    A Hub model's cached copy must stay as published: the cache shares its files between revisions, and the
    published card would no longer match.
    """
    folder = complete_folder(spec)
    if folder.is_dir():
        if folder.resolve().is_relative_to(hub_cache_dir().resolve()):
            return (
                f"{spec} lies in the Hugging Face Hub cache ({hub_cache_dir()}), whose files must stay as published; "
                "--write changes config.json: copy the folder elsewhere and evaluate the copy, or run without --write"
            )
        return None
    try:
        repo = parse_repo(spec)
    except HubError:
        return f"there is no folder {spec} here; --write stores the metrics in a local checkpoint folder"
    revision = f" --revision {repo.revision}" if repo.revision else ""
    return (
        f"there is no folder {spec} here, and --write changes only a local checkpoint folder, never a Hub model's "
        f"cached copy; run without --write, or download it (hf download {repo.repo_id}{revision} --local-dir DIR), "
        "evaluate DIR with --write and publish DIR (python -m ddpm_core.cli.publish)"
    )


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m ddpm_core.cli.evaluate", __doc__)
    p.add_argument("--checkpoint", required=True, help=f"the model: a checkpoint folder or a Hub id {HUB_SPEC}")
    p.add_argument(
        "--classifier",
        default=None,
        help=f"the quality meter: a classifier folder or a Hub id {HUB_SPEC} (default: the shipped one of the "
        "model's dataset, checkpoints/classifier or checkpoints/fashion-classifier)",
    )
    p.add_argument("--per-class", type=int, default=100, help="images drawn per class and guidance weight")
    p.add_argument("--ws", type=parse_ws, default="0,1,2,3,5", help="comma-separated guidance weights")
    p.add_argument("--seed", type=int, default=1234, help="seed of the starting noise and of every step's noise")
    p.add_argument("--steps", type=int, default=SamplerSettings().steps, help="sampler steps (ignored for a student)")
    p.add_argument(
        "--guide-everywhere", action="store_true", help="guide at every step, not only where 1 < σ ≤ 2 (the default)"
    )
    p.add_argument(
        "--precision", choices=PRECISIONS, default=default_precision(), help="auto: time fp32 and bf16, keep the faster"
    )
    p.add_argument(
        "--runtime", choices=RUNTIMES, default=default_runtime(), help="auto: time PyTorch and ONNX Runtime here"
    )
    p.add_argument(
        "--write", action="store_true", help="store the metrics in the checkpoint's config.json (local folders only)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        refusal = write_refusal(args.checkpoint) if args.write else None
        if refusal:  # before anything is fetched or measured
            raise CheckpointError(refusal)
        folder = resolve_checkpoint(args.checkpoint)
        loaded = load_checkpoint(folder)
        meter = resolve_checkpoint(args.classifier) if args.classifier else classifier_dir(loaded.dataset)
        classifier = load_classifier(meter, loaded.dataset)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    metrics = evaluate(loaded, classifier, load_bundled(loaded.dataset), args.ws, args.per_class, settings)
    print(json.dumps(metrics, indent=2))
    if args.write:
        update_metadata(folder, {"metrics": metrics})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: train the project's classifier of a dataset (its quality meter) and save it.

    python -m ddpm_core.cli.train_classifier --out runs/classifier --steps 2000
    python -m ddpm_core.cli.train_classifier --dataset fashion --data full --steps 8000

Without ``--out`` it overwrites the dataset's shipped classifier (``checkpoints/classifier`` for digits,
``checkpoints/fashion-classifier`` for fashion), atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ddpm_core.classifier import save_classifier, train_classifier
from ddpm_core.cli import add_data_arguments, make_parser
from ddpm_core.data import load_dataset
from ddpm_core.paths import classifier_dir

PROG = "python -m ddpm_core.cli.train_classifier"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    add_data_arguments(p)
    p.add_argument(
        "--out", default=None, help="classifier folder to write, replaced atomically (default: the shipped one)"
    )
    p.add_argument("--steps", type=int, default=2000, help="training steps")
    p.add_argument("--seed", type=int, default=0, help="random seed of initialisation and batches")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        data = load_dataset(args.dataset, args.data, args.data_root)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or str(classifier_dir(args.dataset))
    start = time.perf_counter()
    model, acc = train_classifier(data, steps=args.steps, seed=args.seed)
    seconds = time.perf_counter() - start
    save_classifier(
        model,
        out,
        {
            "dataset": data.dataset,
            "held_out_accuracy": round(acc, 4),
            "held_out_images": len(data.held_out),
            "train_images": len(data.train),
            "steps": args.steps,
            "seconds": round(seconds, 1),
            "data": data.description,
            "command": " ".join([PROG, *(sys.argv[1:] if argv is None else argv)]),
        },
    )
    print(json.dumps({"held_out_accuracy": acc, "seconds": round(seconds, 1), "out": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

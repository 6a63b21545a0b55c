"""The training-recipe ablation: what each idea of the fast recipe buys, on this machine, in one run.

Run it from the repository root (each variant trains for ``--minutes`` from scratch, then is measured)::

    python -m benchmarks.recipes                            # every variant, 3 minutes each (about 40 min)
    python -m benchmarks.recipes --only classic,fast        # the old recipe against the new one
    python -m benchmarks.recipes --precision fp32 --out recipes.jsonl

Every variant trains on the same 4,000 shipped digits with the same seed and time budget, then samples
100 digits per class at the app's defaults (``SamplerSettings()``: DPM-Solver++ 10 steps, w = 4, guidance
only where 1 < σ ≤ 2) and again with guidance at every step. The lines report the steps it managed, the
classifier's accuracy on those 1,000 digits and their Fréchet distance to the 1,000 held-out digits (the
project's classifier features), next to ``cpu_capability`` and the precision it trained in.
To see what the AVX2-only path does on a CPU with native bf16, run it with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 ... --precision fp32``.

A variant is one of the two recipes, or the fast recipe with the differences its name spells out
(``eps_minsnr_b64``: ε-prediction, Min-SNR-γ weighting, batch 64; see :data:`VARIANTS`). The time budget
is wall-clock, so on a busy machine every variant gets fewer steps; the accuracies still rank the ideas,
but one seed each, so read differences of a point or two as noise (``--seed`` repeats a run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from typing import IO, Any

import torch

from ddpm_core.checkpoints import LoadedModel
from ddpm_core.classifier import load_classifier
from ddpm_core.cli import make_parser
from ddpm_core.data import load_bundled
from ddpm_core.evaluate import evaluate
from ddpm_core.paths import classifier_dir
from ddpm_core.runtime import PRECISIONS, cpu_capability
from ddpm_core.sampling import NO_INTERVAL, SamplerSettings
from ddpm_core.training import TrainConfig, train

# name → (recipe, overrides). "fast" is v-prediction, uniform weighting, small width, batch 32; each other name
# spells out how it differs: the prediction (eps or v), min_snr weighting, the batch, and the width or extra idea.
_MIN_SNR_B64 = {"weighting": "min_snr", "batch_size": 64}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "classic": ("classic", {}),
    "eps_b64": ("fast", {"prediction": "eps", "batch_size": 64}),
    "eps_minsnr_b64": ("fast", {"prediction": "eps", **_MIN_SNR_B64}),
    "v_minsnr_b64": ("fast", _MIN_SNR_B64),
    "v_b64": ("fast", {"batch_size": 64}),
    "v_minsnr_b32": ("fast", {"weighting": "min_snr"}),
    "fast": ("fast", {}),
    "v_minsnr_b128": ("fast", {**_MIN_SNR_B64, "batch_size": 128}),
    "v_minsnr_b64_base": ("fast", {**_MIN_SNR_B64, "preset": "base"}),
    "v_minsnr_b64_ema999": ("fast", {**_MIN_SNR_B64, "ema_decay": 0.999}),
    "v_minsnr_b64_lognormal": ("fast", {**_MIN_SNR_B64, "t_sampling": "lognormal"}),
    "v_minsnr_b64_shift1": ("fast", {**_MIN_SNR_B64, "augment_shift": 1}),
}


def run_variant(name: str, minutes: float, precision: str, per_class: int, seed: int) -> dict[str, Any]:
    """Train variant ``name`` from scratch for ``minutes``, then measure it at the app's default sampler."""
    recipe, overrides = VARIANTS[name]
    config = TrainConfig.from_recipe(recipe, **overrides, max_minutes=minutes, precision=precision, seed=seed)
    data = load_bundled()
    result = train(config, data, device="cpu")
    loaded = LoadedModel(result.ema_model, result.schedule, {"name": name})
    settings = SamplerSettings(seed=1234, precision="fp32", runtime="torch")
    start = time.perf_counter()
    classifier = load_classifier(classifier_dir())
    metrics = evaluate(loaded, classifier, data, [settings.w], per_class, settings)
    full = evaluate(loaded, classifier, data, [settings.w], per_class, replace(settings, guidance_interval=NO_INTERVAL))
    row, full_row = metrics["by_w"][0], full["by_w"][0]
    return {
        "metric": "recipe",
        "variant": name,
        "recipe": recipe,
        "overrides": overrides,
        "minutes": minutes,
        "seed": seed,
        "steps": result.steps,
        "images_seen": result.steps * config.batch_size,
        "final_loss": round(sum(result.losses[-50:]) / max(1, len(result.losses[-50:])), 5),
        "w": row["w"],
        "accuracy": row["accuracy"],
        "frechet_distance": row["frechet_distance"],
        "guidance_interval": metrics["sampler"]["guidance_interval"],
        "accuracy_guided_everywhere": full_row["accuracy"],
        "frechet_distance_guided_everywhere": full_row["frechet_distance"],
        "real_vs_real_frechet_distance": metrics["real_vs_real_frechet_distance"],
        "samples": row["samples"],
        "trained_in": result.execution.precision,
        "cpu_capability": cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "eval_seconds": round(time.perf_counter() - start, 1),
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as the README's ablation table: the app's default sampler, then guidance at every step."""
    lines = [
        "| variant | steps | images seen | accuracy | Fréchet distance | accuracy, guided everywhere | its Fréchet |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| `{r['variant']}` | {r['steps']:,} | {r['images_seen']:,} | {100 * r['accuracy']:.1f}% "
        f"| {r['frechet_distance']:.2f} | {100 * r['accuracy_guided_everywhere']:.1f}% "
        f"| {r['frechet_distance_guided_everywhere']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m benchmarks.recipes", __doc__, paragraphs=3)
    p.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants to run (see VARIANTS)")
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per variant, in minutes")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="training precision")
    p.add_argument("--per-class", type=int, default=100, help="digits per class to measure")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    out: IO[str] | None = open(args.out, "a") if args.out else None
    rows = []
    try:
        for name in names:
            row = run_variant(name, args.minutes, args.precision, args.per_class, args.seed)
            rows.append(row)
            line = json.dumps(row)
            print(line, flush=True)
            if out is not None:
                out.write(line + "\n")
                out.flush()
    finally:
        if out is not None:
            out.close()
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

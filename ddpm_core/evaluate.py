"""Command line: measure a digit model with the project's classifier and record it in the checkpoint.

    python -m ddpm_core.evaluate --checkpoint checkpoints/digits-base --per-class 100 --write

For each guidance weight w it samples ``per-class`` digits of every class at the default sampler
settings and reports the classifier's accuracy against the requested labels and the Fréchet distance
(classifier features) to the held-out real digits, next to the real-vs-real floor: the same distance
between the held-out digits and as many training digits.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm_core.checkpoints import LoadedModel, load_checkpoint, update_metadata
from ddpm_core.classifier import DigitClassifier, classify, frechet_distance, load_classifier
from ddpm_core.data import DigitData, load_digits, to_model_range
from ddpm_core.paths import classifier_dir
from ddpm_core.runtime import PRECISIONS, RUNTIMES, default_precision, default_runtime
from ddpm_core.sampling import SamplerSettings, sample


def real_floor(classifier: DigitClassifier, data: DigitData, seed: int = 0) -> float:
    """Fréchet distance between the held-out digits and an equal-sized random draw of training digits."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data.train), size=len(data.held_out), replace=False)
    real = classify(classifier, to_model_range(data.held_out.images)).features
    other = classify(classifier, to_model_range(data.train.images[idx])).features
    return frechet_distance(real, other)


def evaluate(
    loaded: LoadedModel,
    classifier: DigitClassifier,
    data: DigitData,
    ws: list[float],
    per_class: int = 100,
    settings: SamplerSettings | None = None,
    chunk: int = 250,
) -> dict[str, Any]:
    """Accuracy and Fréchet distance of guided samples for each w, with the sample counts."""
    settings = settings or SamplerSettings()
    real = classify(classifier, to_model_range(data.held_out.images)).features
    labels = torch.arange(10).repeat_interleave(per_class)
    rows = []
    executions = {}
    for w in ws:
        images, seconds = [], 0.0
        for i, part in enumerate(labels.split(chunk)):
            result = sample(loaded.model, loaded.schedule, part, replace(settings, w=w, seed=settings.seed + i))
            images.append(result.images)
            seconds += result.seconds
            executions[result.execution.name] = result.execution
        verdict = classify(classifier, torch.cat(images))
        rows.append(
            {
                "w": w,
                "accuracy": round(verdict.accuracy(labels), 4),
                "frechet_distance": round(frechet_distance(verdict.features, real), 3),
                "samples": len(labels),
                "seconds": round(seconds, 1),
            }
        )
    return {
        "sampler": {
            "name": settings.sampler,
            "steps": settings.steps,
            "eta": settings.eta,
            "spacing": settings.spacing,
        },
        "execution": [e.as_dict() for e in executions.values()],
        "held_out_images": len(data.held_out),
        "real_vs_real_frechet_distance": round(real_floor(classifier, data), 3),
        "by_w": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddpm_core.evaluate", description="Measure a digit model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--classifier", default=str(classifier_dir()))
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--ws", default="0,1,2,3,5", help="comma-separated guidance weights")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=SamplerSettings().steps, help="sampler steps")
    p.add_argument(
        "--precision", choices=PRECISIONS, default=default_precision(), help="auto: time fp32 and bf16, keep the faster"
    )
    p.add_argument("--runtime", choices=RUNTIMES, default=default_runtime(), help="auto: time PyTorch and ONNX Runtime")
    p.add_argument("--write", action="store_true", help="store the metrics in the checkpoint's config.json")
    args = p.parse_args(argv)
    loaded = load_checkpoint(args.checkpoint)
    metrics = evaluate(
        loaded,
        load_classifier(args.classifier),
        load_digits("bundled"),
        [float(w) for w in args.ws.split(",")],
        args.per_class,
        SamplerSettings(seed=args.seed, steps=args.steps, precision=args.precision, runtime=args.runtime),
    )
    print(json.dumps(metrics, indent=2))
    if args.write:
        update_metadata(Path(args.checkpoint), {"metrics": metrics})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

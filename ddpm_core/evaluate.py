"""Measure a digit model with the project's classifier.

For each guidance weight w, :func:`evaluate` samples ``per_class`` digits of every class at the given
sampler settings and reports the classifier's accuracy against the requested labels and the Fréchet
distance (classifier features) to the held-out real digits, next to the real-vs-real floor
(:func:`real_floor`): the same distance between the held-out digits and as many training digits.

From the command line, recording the result in the checkpoint's ``config.json``:

    python -m ddpm_core.cli.evaluate --checkpoint checkpoints/digits-base --per-class 100 --write
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ddpm_core.checkpoints import LoadedModel
from ddpm_core.classifier import DigitClassifier, classify, frechet_distance
from ddpm_core.data import DigitData, to_model_range
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

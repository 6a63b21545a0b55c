"""Measure a model with its dataset's classifier, and check that it does not copy its training images.

(Written for the digits; the same holds for the fashion items, with their own classifier and images.)
For each guidance weight w, :func:`evaluate` samples ``per_class`` digits of every class at the given
sampler settings and reports the classifier's accuracy against the requested labels and the Fréchet
distance (classifier features) to the held-out real digits, next to the real-vs-real floor
(:func:`real_floor`): the same distance between the held-out digits and as many training digits.

With 4,000 training digits a strong model could learn them by heart, which a Fréchet distance would
reward. :func:`memorisation_check` puts the samples beside the held-out real digits, which the model never
saw: the distance from each image to its nearest training digit (pixels in [0, 1], Euclidean), and the
share of *near-copies*, images whose nearest training digit is less than a third of the mean distance to
the next 50 (a relative rule in the spirit of Carlini et al. 2023, who normalise by the neighbourhood
the same way, so that a plain "1", close to many training 1s, is not called a copy). A model that
generalises has about the held-out digits' figures; a copying one has far smaller distances and more
near-copies.

From the command line, recording the result in the checkpoint's ``config.json``:

    python -m ddpm_core.cli.evaluate --checkpoint checkpoints/digits-base --per-class 100 --write
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from ddpm_core.checkpoints import LoadedModel
from ddpm_core.classifier import ImageClassifier, classify, frechet_distance
from ddpm_core.data import ImageData, to_model_range
from ddpm_core.sampling import SamplerSettings, interval_as_json, sample

NEAR_COPY_RATIO = 1 / 3
NEIGHBOURS = 50


@dataclass(frozen=True)
class Memorisation:
    """Nearest-training-digit distances and near-copy shares of samples and of held-out real digits."""

    sample_nearest_median: float
    real_nearest_median: float
    sample_near_copy_share: float
    real_near_copy_share: float
    near_copy_ratio: float = NEAR_COPY_RATIO
    neighbours: int = NEIGHBOURS

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def nearest_distances(images: torch.Tensor, reference: torch.Tensor, k: int, chunk: int = 500) -> torch.Tensor:
    """For each image in [−1, 1], the Euclidean distances (pixels in [0, 1]) to its ``k`` nearest references, sorted."""
    ref = ((reference.float().flatten(1) + 1) / 2).contiguous()
    rows = []
    for part in images.float().flatten(1).split(chunk):
        rows.append(torch.cdist((part + 1) / 2, ref).topk(k, dim=1, largest=False).values)
    return torch.cat(rows)


def near_copies(distances: torch.Tensor, ratio: float = NEAR_COPY_RATIO) -> torch.Tensor:
    """True where the nearest distance is below ``ratio`` × the mean distance to the next neighbours."""
    return distances[:, 0] < ratio * distances[:, 1:].mean(dim=1)


def training_neighbours(images: torch.Tensor, data: ImageData, neighbours: int = NEIGHBOURS) -> torch.Tensor:
    """Distances from each image to its nearest training digit and the ``neighbours`` after it (see above)."""
    return nearest_distances(images, to_model_range(data.train.images), neighbours + 1)


def memorisation_check(
    samples: torch.Tensor, data: ImageData, neighbours: int = NEIGHBOURS, real: torch.Tensor | None = None
) -> Memorisation:
    """Samples against the held-out real digits: median distance to the nearest training digit, near-copy shares.

    ``real`` is :func:`training_neighbours` of the held-out digits, for a caller that checks several sets of
    samples against the same data; it is computed here when not given.
    """
    fake = training_neighbours(samples, data, neighbours)
    if real is None:
        real = training_neighbours(to_model_range(data.held_out.images), data, neighbours)
    return Memorisation(
        sample_nearest_median=float(fake[:, 0].median()),
        real_nearest_median=float(real[:, 0].median()),
        sample_near_copy_share=float(near_copies(fake).float().mean()),
        real_near_copy_share=float(near_copies(real).float().mean()),
        neighbours=neighbours,
    )


def real_floor(classifier: ImageClassifier, data: ImageData, seed: int = 0) -> float:
    """Fréchet distance between the held-out digits and an equal-sized random draw of training digits."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data.train), size=len(data.held_out), replace=False)
    real = classify(classifier, to_model_range(data.held_out.images)).features
    other = classify(classifier, to_model_range(data.train.images[idx])).features
    return frechet_distance(real, other)


def evaluate(
    loaded: LoadedModel,
    classifier: ImageClassifier,
    data: ImageData,
    ws: list[float],
    per_class: int = 100,
    settings: SamplerSettings | None = None,
    chunk: int = 250,
) -> dict[str, Any]:
    """Accuracy, Fréchet distance and the memorisation check of guided samples for each w, with the sample counts."""
    settings = settings or SamplerSettings()
    held_out = to_model_range(data.held_out.images)
    real = classify(classifier, held_out).features
    real_neighbours = training_neighbours(held_out, data)  # the memorisation check's reference, the same for every w
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
        samples = torch.cat(images)
        verdict = classify(classifier, samples)
        rows.append(
            {
                "w": w,
                "accuracy": round(verdict.accuracy(labels), 4),
                "frechet_distance": round(frechet_distance(verdict.features, real), 3),
                "memorisation": memorisation_check(samples, data, real=real_neighbours).as_dict(),
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
            "guidance_interval": interval_as_json(settings.guidance_interval),
        },
        "execution": [e.as_dict() for e in executions.values()],
        "held_out_images": len(data.held_out),
        "real_vs_real_frechet_distance": round(real_floor(classifier, data), 3),
        "by_w": rows,
    }

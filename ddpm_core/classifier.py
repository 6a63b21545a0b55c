"""The project's own classifiers: quality meters for generated digits and fashion items.

A small CNN per dataset, trained on its real training images (digits with random shifts, rotations and
scalings; fashion items mirrored left-right and shifted, since a rotated shoe is not a shoe the model will
ever draw), shipped in ``checkpoints/classifier`` (digits) and ``checkpoints/fashion-classifier``. Each
gives three measurements:

* accuracy — the share of samples the classifier reads as the label they were asked for;
* Fréchet distance — between Gaussians fitted to the classifier's 128-d penultimate features of
  generated and of held-out real images (the FID recipe of Heusel et al. 2017, with this classifier
  standing in for Inception);
* diversity — mean pairwise feature distance between samples of the same class.

Train one with ``python -m ddpm_core.cli.train_classifier --dataset fashion --data full``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ddpm_core.data import DEFAULT_DATASET, ImageData, to_model_range
from ddpm_core.files import complete_folder, write_folder_atomically
from ddpm_core.paths import classifier_dir

CLASSIFIER_FORMAT = "ddpm-playground-classifier/1"


class ImageClassifier(nn.Module):
    """Two conv stages (28 → 14 → 7) and a 128-d feature layer; input in [−1, 1]."""

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.GELU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.GELU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.GELU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, self.feature_dim), nn.GELU(),
        )  # fmt: skip
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(self.feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 128-d penultimate features used for the Fréchet distance."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


@dataclass(frozen=True)
class Verdicts:
    """Per-image predicted class, its probability, and the features."""

    predicted: np.ndarray
    confidence: np.ndarray
    features: np.ndarray

    def correct(self, labels: np.ndarray | torch.Tensor | Sequence[int]) -> np.ndarray:
        """Per image: was it read as the label it was asked for?"""
        wanted = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(list(labels))
        if wanted.shape != self.predicted.shape:
            raise ValueError(f"{len(wanted)} labels for {len(self.predicted)} images")
        return self.predicted == wanted

    def accuracy(self, labels: np.ndarray | torch.Tensor | Sequence[int]) -> float:
        """The share of images read as the label they were asked for."""
        return float(self.correct(labels).mean())


def random_affine(x: torch.Tensor, generator: torch.Generator, degrees: float = 12, shift: float = 0.1) -> torch.Tensor:
    """A different small rotation, scaling and shift per image (background −1 stays −1)."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(degrees)
    scale = 1 + (torch.rand(b, generator=generator) * 2 - 1) * 0.1
    tx, ty = ((torch.rand(2, b, generator=generator) * 2 - 1) * shift * 2).unbind(0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


def flip_and_shift(x: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Mirror a random half of the images left-right and move each by up to ``shift`` pixels (background −1)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * shift + 1, (2, x.shape[0]), generator=generator).tolist()
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, a : a + h, b : b + w] for i, (a, b) in enumerate(zip(dy, dx, strict=True))])


AUGMENTATIONS = {"digits": random_affine, "fashion": flip_and_shift}


def train_classifier(
    data: ImageData, steps: int = 2000, batch_size: int = 128, seed: int = 0
) -> tuple[ImageClassifier, float]:
    """Train on ``data.train`` with its dataset's augmentation; returns the model and its held-out accuracy."""
    augment = AUGMENTATIONS[data.dataset]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = to_model_range(data.train.images)
    y = torch.as_tensor(data.train.labels)
    model = ImageClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(augment(x[idx], generator)), y[idx], label_smoothing=0.05)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    verdict = classify(model, to_model_range(data.held_out.images))
    return model, verdict.accuracy(data.held_out.labels)


def save_classifier(model: ImageClassifier, directory: str | Path, metadata: dict) -> Path:
    """Write model.safetensors and config.json into ``directory``, swapping the whole folder in atomically."""

    def write(folder: Path) -> None:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({"format": CLASSIFIER_FORMAT, **metadata}, indent=2) + "\n")

    return write_folder_atomically(directory, write)


def load_classifier(directory: str | Path | None = None, dataset: str | None = None) -> ImageClassifier:
    """Load the shipped digit classifier (or another); safetensors only, strict keys.

    With ``dataset`` given, a classifier trained on another dataset is refused (ValueError): it would read every
    sample as wrong. A classifier whose config names no dataset is a digit classifier (made before there were two).
    """
    directory = complete_folder(directory if directory is not None else classifier_dir())
    config = json.loads((directory / "config.json").read_text())
    if config.get("format") != CLASSIFIER_FORMAT:
        raise ValueError(f"{directory} is not a classifier checkpoint of this project")
    reads = config.get("dataset", DEFAULT_DATASET)
    if dataset is not None and reads != dataset:
        raise ValueError(f"the classifier in {directory} reads {reads}, not {dataset}")
    model = ImageClassifier()
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    return model.eval()


@torch.inference_mode()
def classify(model: ImageClassifier, images: torch.Tensor, batch_size: int = 500) -> Verdicts:
    """Classify images in [−1, 1] ([N, 1, 28, 28]); returns predictions, confidences and features."""
    preds, confs, feats = [], [], []
    for chunk in images.float().split(batch_size):
        f = model.features(chunk)
        p = model.head(f).softmax(dim=1)
        conf, pred = p.max(dim=1)
        preds.append(pred)
        confs.append(conf)
        feats.append(f)
    return Verdicts(torch.cat(preds).numpy(), torch.cat(confs).numpy(), torch.cat(feats).double().numpy())


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2(Σ_a^½ Σ_b Σ_a^½)^½), the Fréchet distance of two fitted Gaussians."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(cross))


def diversity(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean pairwise Euclidean feature distance between images of the same label (0 = all identical)."""
    dists = []
    for c in np.unique(labels):
        f = features[labels == c]
        if len(f) < 2:
            continue
        d = np.sqrt(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1))
        dists.append(d[np.triu_indices(len(f), 1)].mean())
    return float(np.mean(dists)) if dists else 0.0

"""Bundled digits, the quality meter's maths (Fréchet distance, diversity) and its augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddpm_core import files
from ddpm_core.classifier import (
    ImageClassifier,
    classify,
    diversity,
    flip_and_shift,
    frechet_distance,
    load_classifier,
    random_affine,
    save_classifier,
)
from ddpm_core.data import load_bundled, load_dataset, split_per_class, to_model_range
from ddpm_core.image_io import to_uint8


def test_bundled_digits_are_real_balanced_and_split_without_overlap() -> None:
    data = load_bundled()
    assert data.train.images.shape == (4000, 28, 28) and data.held_out.images.shape == (1000, 28, 28)
    assert data.train.images.dtype == np.uint8
    assert np.bincount(data.train.labels).tolist() == [400] * 10
    assert np.bincount(data.held_out.labels).tolist() == [100] * 10
    # white digits on black: the border is background, the centre holds ink
    assert data.train.images[:, 0, :].max() < 50 and data.train.images.max() == 255
    train_rows = {img.tobytes() for img in data.train.images}
    assert not any(img.tobytes() in train_rows for img in data.held_out.images)


def test_range_conversions_round_trip() -> None:
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    x = to_model_range(images)
    assert x.shape == (1, 1, 16, 16) and float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert np.array_equal(to_uint8(x), images)


def test_split_refuses_tiny_classes_and_unknown_sources() -> None:
    with pytest.raises(ValueError, match="class 0 has only"):
        split_per_class(np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.int64), 10)
    with pytest.raises(ValueError, match="unknown data source"):
        load_dataset("digits", "emnist")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no MNIST digits IDX files under /nonexistent-folder"):
        load_dataset("digits", "full", root="/nonexistent-folder")


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    a = mu_a + sd_a * rng.standard_normal((n, 3))
    b = mu_b + sd_b * rng.standard_normal((n, 3))
    # for commuting (diagonal) covariances: ‖μa − μb‖² + Σ (σa − σb)²
    expected = ((mu_a - mu_b) ** 2).sum() + ((sd_a - sd_b) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_diversity_is_zero_for_copies_and_grows_with_spread() -> None:
    labels = np.array([0, 0, 1, 1])
    same = np.zeros((4, 5))
    assert diversity(same, labels) == 0.0
    spread = np.array([[0.0, 0], [3, 4], [1, 1], [1, 1]])
    assert diversity(spread, labels) == pytest.approx(2.5)  # class 0: distance 5; class 1: 0


def test_random_affine_keeps_background_and_ink() -> None:
    x = to_model_range(load_bundled().train.images[:64])
    y = random_affine(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    corners = torch.stack([y[..., :2, :2], y[..., :2, -2:], y[..., -2:, :2], y[..., -2:, -2:]])
    assert float(corners.max()) < -0.9  # corners stay background
    ink_before, ink_after = float((x > 0).float().mean()), float((y > 0).float().mean())
    assert abs(ink_after - ink_before) / ink_before < 0.25
    assert not torch.equal(x, y)


def test_flip_and_shift_mirrors_about_half_and_moves_each_item_whole() -> None:
    x = to_model_range(load_bundled("fashion").train.images[:64])
    y = flip_and_shift(x, torch.Generator().manual_seed(0), shift=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    mirrored = torch.nn.functional.pad(x.flip(-1), (2, 2, 2, 2), value=-1.0)
    flipped = 0
    for i in range(len(x)):  # by brute force: each output is one of the 2 × 25 crops of its input, mirrored or not
        crops = [(f, a, b) for f, src in enumerate((padded, mirrored)) for a in range(5) for b in range(5)
                 if torch.equal(src[i, :, a : a + 28, b : b + 28], y[i])]  # fmt: skip
        assert crops, f"image {i} is no shifted copy of its input"
        flipped += crops[0][0]
    assert 16 <= flipped <= 48  # a fair coin per image: 32 expected, far outside this is (almost) impossible


def test_classify_reports_probabilities_and_features() -> None:
    torch.manual_seed(0)
    verdict = classify(ImageClassifier().eval(), torch.randn(7, 1, 28, 28))
    assert verdict.predicted.shape == (7,) and verdict.features.shape == (7, 128)
    assert ((verdict.confidence >= 0.1) & (verdict.confidence <= 1.0)).all()  # max of 10 probabilities ≥ 1/10


def test_verdict_accuracy_counts_labels_read_correctly() -> None:
    verdict = classify(ImageClassifier().eval(), torch.zeros(4, 1, 28, 28))
    predicted = verdict.predicted.tolist()
    wrong = [(p + 1) % 10 for p in predicted]
    assert verdict.accuracy(predicted) == 1.0 and verdict.accuracy(wrong) == 0.0
    assert verdict.accuracy(torch.tensor(predicted[:2] + wrong[2:])) == 0.5
    assert verdict.correct(np.array(predicted[:1] + wrong[1:])).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        verdict.accuracy(predicted[:3])


def test_a_crash_while_saving_the_classifier_keeps_the_old_one(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    old, new = ImageClassifier().eval(), ImageClassifier().eval()
    folder = save_classifier(old, tmp_path / "clf", {"which": "old"})
    real_replace = files.os.replace
    calls = []

    def crash_on_swap(src, dst) -> None:
        calls.append(src)
        if len(calls) == 2:  # the old folder is moved aside, the new one not yet in place
            raise KeyboardInterrupt("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", crash_on_swap)
    with pytest.raises(KeyboardInterrupt):
        save_classifier(new, folder, {"which": "new"})
    monkeypatch.setattr(files.os, "replace", real_replace)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(load_classifier(folder)(x), old(x))  # read from the complete NAME.previous
    save_classifier(new, folder, {"which": "new"})
    torch.testing.assert_close(load_classifier(folder)(x), new(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf"]

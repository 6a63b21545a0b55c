"""The digit U-Net: shapes, the "no class" row, and that labels and time both reach the output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddpm_core.unet import NULL_LABEL, WIDTH_PRESETS, ContextUNet, UNetConfig, count_parameters


@pytest.mark.parametrize("preset", sorted(WIDTH_PRESETS))
def test_output_matches_input_and_starts_at_zero(preset: str) -> None:
    model = ContextUNet(WIDTH_PRESETS[preset]).eval()
    x = torch.randn(3, 1, 28, 28)
    out = model(x, torch.tensor([0.0, 0.5, 0.99]), torch.tensor([0, 9, NULL_LABEL]))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer: training starts from ε̂ = 0


def test_labels_and_time_change_the_prediction() -> None:
    torch.manual_seed(0)
    model = ContextUNet(WIDTH_PRESETS["tiny"]).eval()
    for p in model.parameters():
        nn.init.normal_(p, std=0.2)
    x = torch.randn(1, 1, 28, 28).repeat(3, 1, 1, 1)
    out = model(x, torch.tensor([0.3, 0.3, 0.8]), torch.tensor([1, NULL_LABEL, 1]))
    assert not torch.allclose(out[0], out[1])  # class vs no class
    assert not torch.allclose(out[0], out[2])  # different t


def test_presets_grow_and_config_round_trips() -> None:
    sizes = [count_parameters(ContextUNet(WIDTH_PRESETS[p])) for p in ("tiny", "small", "base", "wide")]
    assert sizes == sorted(sizes) and sizes[0] < 100_000
    cfg = WIDTH_PRESETS["base"]
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown U-Net settings"):
        UNetConfig.from_dict({"layers": 3})
    with pytest.raises(ValueError, match="divisible by 4"):
        ContextUNet(UNetConfig(image_size=30))

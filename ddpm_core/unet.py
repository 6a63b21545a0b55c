"""A small class-conditional U-Net that predicts ε for 28×28 digits.

The building blocks carry the names used in NVIDIA's DLI course "Generative AI with Diffusion Models"
(GELUConvBlock, RearrangePoolBlock, DownBlock, UpBlock, ResidualConvBlock, SinusoidalPositionEmbedBlock,
EmbedBlock), with three changes that pay on a CPU: the time and class embeddings modulate every decoder
block by scale and shift (FiLM) instead of a single multiply-add, one self-attention block works at the
7×7 bottleneck, and the class embedding has an eleventh, learnable "no class" row used both for context
dropout in training and for the unconditional half of classifier-free guidance.

The network knows nothing of noise schedules: it takes x_t, the step as a number in [0, 1] (t / T) and
the class labels, where ``NULL_LABEL`` means "no class". Its config says what its output means (``prediction``):
the noise ε (Ho et al. 2020) or the velocity v (Salimans & Ho 2022); :func:`ddpm_core.diffusion.eps_from_output`
turns either into ε for the samplers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES  # index of the learnable "no class" embedding
GUIDANCE_SCALE = 10.0  # w enters its embedding as w / 10, so guidance weights 0…10 span the range t/T does
PREDICTIONS: tuple[str, ...] = ("eps", "v")


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`ContextUNet`; stored in every checkpoint's config.json."""

    image_channels: int = 1
    image_size: int = 28
    channels: tuple[int, int, int] = (32, 64, 96)
    embed_dim: int = 128
    num_classes: int = NUM_CLASSES
    attention_heads: int = 4
    groups: int = 8
    prediction: str = "eps"  # what the output means: the noise ε, or the velocity v (Salimans & Ho 2022)
    guidance_input: bool = False  # a distilled student: takes the guidance weight w as a 4th input (Meng et al. 2023)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown U-Net settings: {', '.join(sorted(unknown))}")
        data = dict(data)
        if "channels" in data:
            data["channels"] = tuple(int(c) for c in data["channels"])
        return cls(**data)


WIDTH_PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(channels=(8, 16, 16), embed_dim=32, groups=4, attention_heads=2),
    "small": UNetConfig(channels=(16, 32, 64), embed_dim=64, groups=8),
    "base": UNetConfig(),
    "wide": UNetConfig(channels=(48, 96, 128), embed_dim=192),
}


class GELUConvBlock(nn.Module):
    """3×3 convolution → GroupNorm → GELU."""

    def __init__(self, in_ch: int, out_ch: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm = nn.GroupNorm(math.gcd(groups, out_ch), out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(self.conv(x)))


class RearrangePoolBlock(nn.Module):
    """Halve the resolution without losing pixels: 2×2 space-to-depth, then a GELUConvBlock."""

    def __init__(self, in_ch: int, out_ch: int, groups: int) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.conv = GELUConvBlock(4 * in_ch, out_ch, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.unshuffle(x))


class ResidualConvBlock(nn.Module):
    """Two GELUConvBlocks with a skip connection (a 1×1 projection when the width changes)."""

    def __init__(self, in_ch: int, out_ch: int, groups: int) -> None:
        super().__init__()
        self.conv1 = GELUConvBlock(in_ch, out_ch, groups)
        self.conv2 = GELUConvBlock(out_ch, out_ch, groups)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv2(self.conv1(x))


class DownBlock(nn.Module):
    """A ResidualConvBlock at the current resolution, then a RearrangePoolBlock to half of it."""

    def __init__(self, in_ch: int, out_ch: int, groups: int) -> None:
        super().__init__()
        self.res = ResidualConvBlock(in_ch, in_ch, groups)
        self.pool = RearrangePoolBlock(in_ch, out_ch, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.res(x))


class EmbedBlock(nn.Module):
    """Linear → GELU → Linear, from an embedding to a per-channel (scale, shift) pair."""

    def __init__(self, in_dim: int, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, 2 * channels))
        nn.init.zeros_(self.net[-1].weight)  # start as the identity modulation
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self.net(emb)[:, :, None, None].chunk(2, dim=1)
        return scale, shift


class UpBlock(nn.Module):
    """Double the resolution (transposed conv), join the skip, two GELUConvBlocks, FiLM by the embedding."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, embed_dim: int, groups: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv1 = GELUConvBlock(out_ch + skip_ch, out_ch, groups)
        self.conv2 = GELUConvBlock(out_ch, out_ch, groups)
        self.film = EmbedBlock(embed_dim, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(torch.cat([self.up(x), skip], dim=1))
        scale, shift = self.film(emb)
        return self.conv2(h * (1 + scale) + shift)


class SinusoidalPositionEmbedBlock(nn.Module):
    """Transformer-style sinusoidal embedding of a step in [0, 1] (Vaswani et al. 2017, §3.5)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 1000.0 * t.float()[:, None] * self.freqs[None, :]  # 1000·t/T: the paper's integer scale
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class GuidanceEmbedBlock(nn.Module):
    """The guidance weight w as an embedding added to the time and class ones (Meng et al. 2023, stage one).

    Sinusoidal features of w / ``GUIDANCE_SCALE``, then Linear → GELU → Linear. The last layer starts at
    zero, so a student made from a teacher's weights starts out as the teacher's conditional model.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(SinusoidalPositionEmbedBlock(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w.float() / GUIDANCE_SCALE)


@contextlib.contextmanager
def unfused_attention() -> Iterator[None]:
    """Run nn.MultiheadAttention as plain matmuls: its fused inference kernels are invisible to FLOP counters
    and have no ONNX form. The previous setting comes back on exit."""
    was_enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was_enabled)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels of a low-resolution feature map, with a residual."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(math.gcd(groups, channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class ContextUNet(nn.Module):
    """ε_θ(x_t, t, c): 28 → 14 → 7 → 14 → 28, class and time embeddings added and fed to every decoder block."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        if config.image_size % 4:
            raise ValueError("image_size must be divisible by 4 (two 2× downsamplings)")
        if config.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {config.prediction!r}")
        self.config = config
        c0, c1, c2 = config.channels
        g = config.groups
        self.time_embed = nn.Sequential(
            SinusoidalPositionEmbedBlock(config.embed_dim),
            nn.Linear(config.embed_dim, config.embed_dim),
            nn.GELU(),
            nn.Linear(config.embed_dim, config.embed_dim),
        )
        self.class_embed = nn.Embedding(config.num_classes + 1, config.embed_dim)  # last row: "no class"
        self.guidance_embed = GuidanceEmbedBlock(config.embed_dim) if config.guidance_input else None
        self.stem = ResidualConvBlock(config.image_channels, c0, g)
        self.down1 = DownBlock(c0, c1, g)
        self.down2 = DownBlock(c1, c2, g)
        self.mid_film = EmbedBlock(config.embed_dim, c2)
        self.mid_conv = GELUConvBlock(c2, c2, g)
        self.mid_attn = AttentionBlock(c2, config.attention_heads, g)
        self.up1 = UpBlock(c2, c1, c1, config.embed_dim, g)
        self.up2 = UpBlock(c1, c0, c0, config.embed_dim, g)
        self.out = nn.Conv2d(c0 + c0, config.image_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, w: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict ε (or v) from x_t [B, C, H, W], t/T [B] in [0, 1], labels [B] (``NULL_LABEL`` = no class)
        and, for a guidance-distilled student only, the guidance weight w [B]."""
        emb = self.time_embed(t) + self.class_embed(labels)
        if self.guidance_embed is not None:
            if w is None:
                raise ValueError("this network was distilled to take the guidance weight w as an input")
            emb = emb + self.guidance_embed(w)
        elif w is not None:
            raise ValueError("this network takes no guidance weight: guide it with two passes (guided_eps)")
        h0 = self.stem(x)  # 28×28
        h1 = self.down1(h0)  # 14×14
        h2 = self.down2(h1)  # 7×7
        scale, shift = self.mid_film(emb)
        h = self.mid_attn(self.mid_conv(h2) * (1 + scale) + shift)
        h = self.up1(h, h1, emb)  # 14×14
        h = self.up2(h, h0, emb)  # 28×28
        return self.out(torch.cat([h, h0], dim=1))


def prediction_of(model: nn.Module) -> str:
    """What a network's output means ('eps' or 'v'); a stand-in without a config predicts ε."""
    return getattr(getattr(model, "config", None), "prediction", "eps")


def takes_guidance(model: nn.Module) -> bool:
    """True for a guidance-distilled student, which takes w as an input and needs no unconditional pass."""
    return bool(getattr(getattr(model, "config", None), "guidance_input", False))


def example_inputs(config: UNetConfig, batch: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes for one pass: noise, t/T spread over [0, 1], labels cycling through every
    class and "no class", and (for a student that takes the guidance weight) w spread over 0…8.

    On the ``meta`` device (shapes only, for counting) the noise is an empty tensor.
    """
    gen = torch.Generator().manual_seed(0)
    shape = (batch, config.image_channels, config.image_size, config.image_size)
    x = torch.randn(*shape, generator=gen).to(device) if str(device) != "meta" else torch.empty(*shape, device=device)
    t = torch.linspace(0, 1, batch).to(device)
    labels = (torch.arange(batch) % (config.num_classes + 1)).to(device)
    if config.guidance_input:
        return x, t, labels, torch.linspace(0, 8, batch).to(device)
    return x, t, labels


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

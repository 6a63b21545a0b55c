"""Hostile checkpoint uploads are refused cheaply: every config field is bounded before anything is built, weights
are sized against the config before they are read, zips are read in memory with a byte cap, a network pass is
timed, and a refusal writes nothing.

The probe that prompted this (GitHub issue 13) found: an all-zero 50 M-parameter model that took 66 s per
sampling step; ``image_size: 112`` loading and then breaking every sample; ``channels: [2048, 2048, 2048]``
taking 15 s and 4 GB to build; ``num_steps = 10**7`` holding 0.66 GB; a 194 KB zip of zeros writing 190 MB.
"""

from __future__ import annotations

import json
import re
import resource
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from ddpm_core import checkpoints as ck
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet, UNetConfig, count_parameters

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {name: ROOT / "checkpoints" / name for name in ("digits-base", "digits-live")}
TINY = WIDTH_PRESETS["tiny"]
QUICK_S = 1.0  # a refusal does no real work (milliseconds); a second covers a busy machine
BUILT_S = 10.0  # a refusal after building the network and timing a pass (a second or so on a busy machine)
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # two threads on a busy 2-core machine crawl
LEAKS = re.compile(r"Traceback|File \"|site-packages|/tmp/|\.py\b|torch\.|Error\b|Safetensor|HeaderTooLarge")


# ---------------------------------------------------------------------------------------------
# Independent counts: parameters and FLOPs of ContextUNet from its architecture, by hand
# ---------------------------------------------------------------------------------------------


def hand_parameters(cfg: UNetConfig) -> int:
    """Parameters of ContextUNet written out layer by layer (weights + biases; GroupNorm: scale + shift)."""
    c0, c1, c2 = cfg.channels
    d = cfg.embed_dim

    def conv(i: int, o: int, k: int) -> int:
        return i * o * k * k + o

    def gelu_conv(i: int, o: int) -> int:
        return conv(i, o, 3) + 2 * o

    def res(i: int, o: int) -> int:
        return gelu_conv(i, o) + gelu_conv(o, o) + (0 if i == o else conv(i, o, 1))

    def lin(i: int, o: int) -> int:
        return i * o + o

    def film(c: int) -> int:
        return lin(d, d) + lin(d, 2 * c)

    def up(i: int, skip: int, o: int) -> int:
        return (i * o * 4 + o) + gelu_conv(o + skip, o) + gelu_conv(o, o) + film(o)

    total = 2 * lin(d, d) + (cfg.num_classes + 1) * d  # time embedding MLP, class embedding with its ∅ row
    total += 2 * lin(d, d) if cfg.guidance_input else 0
    total += res(cfg.image_channels, c0)
    total += res(c0, c0) + gelu_conv(4 * c0, c1)  # down1: residual block, space-to-depth + conv
    total += res(c1, c1) + gelu_conv(4 * c1, c2)  # down2
    total += film(c2) + gelu_conv(c2, c2) + 2 * c2 + (4 * c2 * c2 + 4 * c2)  # mid: FiLM, conv, norm + attention
    total += up(c2, c1, c1) + up(c1, c0, c0)
    return total + conv(2 * c0, cfg.image_channels, 3)


def hand_flops(cfg: UNetConfig) -> int:
    """FLOPs of one pass on one image (2 per multiply-add): convolutions, linear layers, attention."""
    c0, c1, c2 = cfg.channels
    d, h = cfg.embed_dim, cfg.image_size

    def conv(i: int, o: int, k: int, size: int) -> int:
        return 2 * size * size * i * o * k * k

    def up_conv(i: int, o: int, size_in: int) -> int:  # 2×2 transposed convolution, counted at its input
        return 2 * size_in * size_in * i * o * 4

    def film(c: int) -> int:
        return 2 * (d * d + d * 2 * c)

    flops = conv(1, c0, 3, h) + conv(c0, c0, 3, h) + conv(1, c0, 1, h)  # stem (1×1 skip: 1 → c0)
    flops += 2 * conv(c0, c0, 3, h) + conv(4 * c0, c1, 3, h // 2)
    flops += 2 * conv(c1, c1, 3, h // 2) + conv(4 * c1, c2, 3, h // 4)
    flops += conv(c2, c2, 3, h // 4)
    flops += up_conv(c2, c1, h // 4) + conv(2 * c1, c1, 3, h // 2) + conv(c1, c1, 3, h // 2)
    flops += up_conv(c1, c0, h // 2) + conv(2 * c0, c0, 3, h) + conv(c0, c0, 3, h)
    flops += conv(2 * c0, 1, 3, h)
    tokens = (h // 4) ** 2
    flops += 2 * tokens * c2 * 3 * c2 + 2 * tokens * c2 * c2 + 2 * 2 * tokens * tokens * c2  # q,k,v; out; QKᵀ, AV
    flops += 2 * 2 * d * d + film(c2) + film(c1) + film(c0)  # time MLP and the three FiLM MLPs
    return flops + (2 * 2 * d * d if cfg.guidance_input else 0)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def warm() -> None:
    """Pay one-off import costs (the first ContextUNet build loads parts of torch) before anything is timed."""
    ck.check_model_config(config_for(TINY))
    ContextUNet(TINY)


def config_for(unet: UNetConfig | dict[str, Any], num_steps: int = 50, **metadata: Any) -> dict[str, Any]:
    model = unet.to_dict() if isinstance(unet, UNetConfig) else unet
    return {
        "name": "t",
        **metadata,
        "format": ck.FORMAT,
        "model": model,
        "schedule": {"name": "cosine", "num_steps": num_steps},
    }


def tiny_folder(tmp_path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = ContextUNet(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return ck.save_checkpoint(tmp_path / "tiny", model, make_schedule("cosine", 50), {"name": "tiny"})


def header_for(unet: UNetConfig) -> tuple[bytes, int]:
    """A float32 safetensors header naming exactly the tensors ``unet`` has; returns it with its data size."""
    with torch.device("meta"):
        state = ContextUNet(unet).state_dict()
    entries, offset = {}, 0
    for key, value in state.items():
        size = 4 * value.numel()
        entries[key] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [offset, offset + size]}
        offset += size
    header = json.dumps(entries).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header, offset


def zero_weights(path: Path, unet: UNetConfig) -> Path:
    """An all-zero model.safetensors for ``unet``: a real header, the data a sparse run of zeros (no disk used)."""
    header, data_size = header_for(unet)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(len(header) + data_size)
    return path


def write_zip(path: Path, members: dict[str, bytes | tuple[bytes, int]], **options: Any) -> Path:
    """A zip of ``members``: bytes, or (prefix, number of zero bytes after it) streamed in, never held whole."""
    options.setdefault("compression", zipfile.ZIP_DEFLATED)
    options.setdefault("compresslevel", 1)
    with zipfile.ZipFile(path, "w", **options) as zf:
        for name, content in members.items():
            if isinstance(content, bytes):
                zf.writestr(name, content)
                continue
            prefix, zeros = content
            with zf.open(name, "w") as out:
                out.write(prefix)
                chunk = bytes(1 << 20)
                for start in range(0, zeros, len(chunk)):
                    out.write(chunk[: min(len(chunk), zeros - start)])
    return path


def refused(load: Callable[[], object], match: str, within_s: float = QUICK_S) -> str:
    """Run ``load``; it must raise CheckpointError matching ``match``, quickly, in words meant for a person."""
    start = time.perf_counter()
    with pytest.raises(ck.CheckpointError, match=match) as raised:
        load()
    elapsed = time.perf_counter() - start
    message = str(raised.value)
    assert elapsed < within_s, f"refusal took {elapsed:.2f} s: {message}"
    assert not LEAKS.search(message), f"message shows internals: {message!r}"
    assert len(message) < 400, message
    return message


def nothing_written(workdir: Path) -> bool:
    """No file under ``workdir`` and no partial folder beside it."""
    inside = list(workdir.rglob("*")) if workdir.exists() else []
    beside = [p for p in workdir.parent.glob(workdir.name + "*") if p != workdir]
    return not inside and not beside


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# ---------------------------------------------------------------------------------------------
# The counts the bounds rest on
# ---------------------------------------------------------------------------------------------


CUSTOM = UNetConfig(channels=(4, 8, 12), embed_dim=6, attention_heads=3, groups=2, guidance_input=True)


@pytest.mark.parametrize("cfg", [*WIDTH_PRESETS.values(), CUSTOM], ids=[*WIDTH_PRESETS, "custom"])
def test_meta_device_counts_match_a_hand_count_and_a_real_build(cfg: UNetConfig) -> None:
    plan = ck.check_model_config(config_for(cfg))
    assert plan.parameters == hand_parameters(cfg) == count_parameters(ContextUNet(cfg))
    assert plan.weight_bytes == 4 * plan.parameters
    assert plan.flops_per_image == hand_flops(cfg)
    assert plan.unet == cfg


def test_hand_counts_agree_with_the_known_sizes() -> None:
    """The counts quoted in the bounds' comments: wide 1.73 M, base 0.82 M, the distilled student 0.86 M."""
    assert hand_parameters(WIDTH_PRESETS["wide"]) == 1_725_729
    assert hand_parameters(WIDTH_PRESETS["base"]) == 824_321
    assert hand_parameters(UNetConfig(prediction="v", guidance_input=True)) == 857_345
    assert hand_flops(WIDTH_PRESETS["base"]) == 229_484_928


def test_sampling_memory_estimate_follows_the_documented_rule() -> None:
    plan = ck.check_model_config(config_for(WIDTH_PRESETS["base"]))
    # weights + 160 images × 4 bytes × (8 maps × (28²·32 + 14²·64 + 7²·96) + 4 heads × 49²)
    assert plan.sampling_bytes == 3_297_284 + 160 * 4 * (8 * (25_088 + 12_544 + 4_704) + 4 * 2_401)
    assert plan.sampling_bytes == 226_204_164


@pytest.mark.parametrize("name", list(WIDTH_PRESETS))
@pytest.mark.parametrize(("prediction", "guidance"), [("eps", False), ("v", False), ("v", True)])
def test_every_preset_passes_the_bounds(name: str, prediction: str, guidance: bool) -> None:
    cfg = UNetConfig(**{**WIDTH_PRESETS[name].to_dict(), "prediction": prediction, "guidance_input": guidance})
    for num_steps in (2, 250, ck.MAX_SCHEDULE_STEPS):
        plan = ck.check_model_config(config_for(cfg, num_steps))
        assert plan.schedule.num_steps == num_steps
    assert plan.parameters <= ck.MAX_PARAMETERS
    assert plan.sampling_bytes <= ck.MAX_SAMPLING_BYTES
    assert plan.flops_per_image <= ck.MAX_FLOPS_PER_IMAGE


@pytest.mark.parametrize("name", list(WIDTH_PRESETS))
def test_every_preset_uploads_and_passes_the_smoke_test(name: str, tmp_path: Path) -> None:
    folder = ck.save_checkpoint(tmp_path / name, ContextUNet(WIDTH_PRESETS[name]), make_schedule("cosine", 250))
    loaded = ck.load_uploaded([ck.zip_checkpoint(folder, tmp_path / "up.zip")], tmp_path / "w")
    assert loaded.model.config == WIDTH_PRESETS[name]
    assert loaded.weight_bytes == 4 * hand_parameters(WIDTH_PRESETS[name])


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_checkpoints_load_with_the_smoke_test(name: str) -> None:
    loaded = ck.load_checkpoint(SHIPPED[name], smoke_test=True)
    assert loaded.plan is not None
    assert loaded.plan.parameters == count_parameters(loaded.model) == hand_parameters(loaded.model.config)
    assert loaded.weight_bytes == 4 * loaded.plan.parameters
    assert loaded.model.config.guidance_input is (name == "digits-live")
    assert (SHIPPED[name] / ck.MODEL_FILE).stat().st_size <= loaded.plan.max_weights_file_bytes


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_checkpoints_upload_as_a_zip_and_as_two_files(name: str, tmp_path: Path) -> None:
    folder = SHIPPED[name]
    archive = ck.zip_checkpoint(folder, tmp_path / "up.zip")
    pair = [folder / ck.MODEL_FILE, folder / ck.CONFIG_FILE]
    for i, upload in enumerate(([archive], pair)):
        work = tmp_path / f"work{i}"
        loaded = ck.load_uploaded(upload, work)
        assert loaded.path == work
        assert sorted(p.name for p in work.iterdir()) == sorted([ck.MODEL_FILE, ck.CONFIG_FILE])
        for file in (ck.MODEL_FILE, ck.CONFIG_FILE):
            assert (work / file).read_bytes() == (folder / file).read_bytes()
        assert ck.load_checkpoint(work).config == loaded.config


# ---------------------------------------------------------------------------------------------
# The probe's findings
# ---------------------------------------------------------------------------------------------


BIG = UNetConfig(channels=(512, 512, 512), embed_dim=512)  # within every per-field bound, not the parameter cap


def test_the_all_zero_50m_parameter_model_is_refused_from_its_config(tmp_path: Path) -> None:
    assert hand_parameters(BIG) > 50_000_000  # what the upload would have built, ten times the cap
    config = tmp_path / ck.CONFIG_FILE
    config.write_text(json.dumps(config_for(BIG)))
    weights = zero_weights(tmp_path / ck.MODEL_FILE, BIG)
    assert weights.stat().st_size == len(header_for(BIG)[0]) + 4 * hand_parameters(BIG)
    before = peak_rss_mb()
    message = refused(lambda: ck.load_uploaded([weights, config], tmp_path / "pair"), r"5,000,000")
    assert f"{hand_parameters(BIG):,} parameters" in message
    assert nothing_written(tmp_path / "pair")
    archive = write_zip(
        tmp_path / "zeros.zip",
        {
            f"big/{ck.CONFIG_FILE}": config.read_bytes(),
            f"big/{ck.MODEL_FILE}": (header_for(BIG)[0], 4 * hand_parameters(BIG)),
        },
    )
    assert archive.stat().st_size < 2_000_000  # 200 MB of weights in a small upload, as in the probe
    refused(lambda: ck.load_uploaded([archive], tmp_path / "zip"), r"parameters; the app accepts at most 5,000,000")
    assert nothing_written(tmp_path / "zip")
    assert peak_rss_mb() - before < 100


def test_a_config_for_another_image_size_is_refused(tmp_path: Path) -> None:
    """The probe's case: tiny weights fit a 112-pixel config exactly (convolutions do not depend on image size)."""
    folder = tiny_folder(tmp_path)
    config = json.loads((folder / ck.CONFIG_FILE).read_text())
    config["model"]["image_size"] = 112
    with torch.device("meta"):
        shapes_112 = {
            k: v.shape for k, v in ContextUNet(UNetConfig(**{**TINY.to_dict(), "image_size": 112})).state_dict().items()
        }
        shapes_28 = {k: v.shape for k, v in ContextUNet(TINY).state_dict().items()}
    assert shapes_112 == shapes_28
    (folder / ck.CONFIG_FILE).write_text(json.dumps(config))
    message = refused(lambda: ck.load_checkpoint(folder), r"image_size must be 28")
    assert "112" in message
    refused(lambda: ck.load_uploaded([folder / ck.MODEL_FILE, folder / ck.CONFIG_FILE], tmp_path / "w"), "image_size")
    assert nothing_written(tmp_path / "w")


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"channels": [2048, 2048, 2048]}, r"channels\[0\] must be between 1 and 512"),
        ({"channels": [512, 512, 512], "embed_dim": 1024}, r"parameters; the app accepts at most"),
    ],
    ids=["2048-wide", "512-wide"],
)
def test_a_huge_network_is_refused_without_building_it(model: dict[str, Any], match: str, tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    config = json.loads((folder / ck.CONFIG_FILE).read_text())
    config["model"].update(model)
    (folder / ck.CONFIG_FILE).write_text(json.dumps(config))
    before = peak_rss_mb()
    refused(lambda: ck.load_uploaded([folder / ck.MODEL_FILE, folder / ck.CONFIG_FILE], tmp_path / "w"), match)
    refused(lambda: ck.load_checkpoint(folder), match)
    assert peak_rss_mb() - before < 100  # building 512-wide for real is 235 MB of weights; 2048-wide was 4 GB
    assert nothing_written(tmp_path / "w")


@pytest.mark.parametrize("num_steps", [10**7, ck.MAX_SCHEDULE_STEPS + 1, 1])
def test_a_schedule_beyond_the_apps_range_is_refused(num_steps: int, tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    config = json.loads((folder / ck.CONFIG_FILE).read_text())
    config["schedule"]["num_steps"] = num_steps
    (folder / ck.CONFIG_FILE).write_text(json.dumps(config))
    refused(lambda: ck.load_uploaded([folder / ck.MODEL_FILE, folder / ck.CONFIG_FILE], tmp_path / "w"), "num_steps")
    assert nothing_written(tmp_path / "w")
    config["schedule"]["num_steps"] = ck.MAX_SCHEDULE_STEPS  # the boundary itself loads
    (folder / ck.CONFIG_FILE).write_text(json.dumps(config))
    assert ck.load_checkpoint(folder).schedule.num_steps == ck.MAX_SCHEDULE_STEPS


def test_a_small_zip_of_zeros_writes_nothing(tmp_path: Path) -> None:
    """The probe's 194 KB zip: a good config and 190 MB of zeros named model.safetensors."""
    folder = tiny_folder(tmp_path)
    archive = write_zip(
        tmp_path / "zeros.zip",
        {f"x/{ck.CONFIG_FILE}": (folder / ck.CONFIG_FILE).read_bytes(), f"x/{ck.MODEL_FILE}": (b"", 190_000_000)},
    )
    assert archive.stat().st_size < 1_000_000
    refused(lambda: ck.load_uploaded([archive], tmp_path / "w"), "not a readable safetensors file")
    assert nothing_written(tmp_path / "w")


# ---------------------------------------------------------------------------------------------
# Zips
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def decompressed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the bytes zipfile hands out while reading members (what a zip bomb would make us hold)."""
    counts: list[int] = []
    real_read = zipfile.ZipExtFile.read

    def counting_read(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        data = real_read(self, n)
        counts.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    return counts


def test_a_zip_bomb_in_the_weights_is_read_only_as_far_as_the_tensors_need(
    tmp_path: Path, decompressed: list[int]
) -> None:
    folder = tiny_folder(tmp_path)
    weights = (folder / ck.MODEL_FILE).read_bytes()
    archive = write_zip(
        tmp_path / "bomb.zip",
        {ck.CONFIG_FILE: (folder / ck.CONFIG_FILE).read_bytes(), ck.MODEL_FILE: (weights, 300_000_000)},
    )
    assert archive.stat().st_size < 2_000_000
    refused(lambda: ck.load_uploaded([archive], tmp_path / "w"), "holds more than its tensors need")
    config_bytes = (folder / ck.CONFIG_FILE).stat().st_size
    assert sum(decompressed) <= config_bytes + len(weights) + 1
    assert nothing_written(tmp_path / "w")


def test_a_zip_bomb_as_the_config_is_capped(tmp_path: Path, decompressed: list[int]) -> None:
    folder = tiny_folder(tmp_path)
    config = (folder / ck.CONFIG_FILE).read_bytes()
    archive = write_zip(tmp_path / "bomb.zip", {ck.CONFIG_FILE: (config, 100_000_000), ck.MODEL_FILE: b"x"})
    refused(lambda: ck.load_uploaded([archive], tmp_path / "w"), "config.json is larger than 1,000,000 bytes")
    assert sum(decompressed) == ck.MAX_CONFIG_BYTES + 1
    assert nothing_written(tmp_path / "w")


def set_stated_size(archive: Path, member: str, size: int) -> None:
    """Make ``member``'s local header and central directory entry claim ``size`` uncompressed bytes."""
    data = bytearray(archive.read_bytes())
    name = member.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = data.find(signature)
        while at >= 0 and data[at + name_at : at + name_at + len(name)] != name:
            at = data.find(signature, at + 1)
        assert at >= 0, (signature, member)
        data[at + size_at : at + size_at + 4] = size.to_bytes(4, "little")
    archive.write_bytes(bytes(data))


def test_a_zip_that_understates_a_size_is_refused(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    archive = ck.zip_checkpoint(folder, tmp_path / "lie.zip")
    set_stated_size(archive, f"tiny/{ck.CONFIG_FILE}", 10)
    assert zipfile.ZipFile(archive).getinfo(f"tiny/{ck.CONFIG_FILE}").file_size == 10
    refused(lambda: ck.load_uploaded([archive], tmp_path / "w"), "not a readable zip file")
    assert nothing_written(tmp_path / "w")


def test_a_zip_that_overstates_a_size_is_still_read_only_to_the_cap(tmp_path: Path, decompressed: list[int]) -> None:
    """The header claims 4 GB for a weights bomb: the cap comes from the config, not from the zip's claim."""
    folder = tiny_folder(tmp_path)
    weights = (folder / ck.MODEL_FILE).read_bytes()
    archive = write_zip(
        tmp_path / "lie.zip",
        {ck.CONFIG_FILE: (folder / ck.CONFIG_FILE).read_bytes(), ck.MODEL_FILE: (weights, 100_000_000)},
    )
    set_stated_size(archive, ck.MODEL_FILE, 0xFFFF_FFF0)
    refused(lambda: ck.load_uploaded([archive], tmp_path / "w"), "holds more than its tensors need")
    assert sum(decompressed) <= (folder / ck.CONFIG_FILE).stat().st_size + len(weights) + 1
    assert nothing_written(tmp_path / "w")


def test_a_zip_listing_many_entries_is_refused_before_it_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tiny_folder(tmp_path)
    archive = ck.zip_checkpoint(folder, tmp_path / "many.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        for i in range(ck.MAX_ZIP_ENTRIES):
            zf.writestr(f"junk/{i}", b"")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the zip was listed")

    monkeypatch.setattr(zipfile.ZipFile, "__init__", never)
    refused(lambda: ck.load_uploaded([archive], tmp_path / "w"), r"the zip lists 66 entries")
    assert nothing_written(tmp_path / "w")


def test_zip_members_are_matched_by_base_name_and_never_used_as_paths(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    archive = write_zip(
        tmp_path / "evil.zip",
        {
            f"../../escape/{ck.CONFIG_FILE}": (folder / ck.CONFIG_FILE).read_bytes(),
            f"/abs\\dir\\{ck.MODEL_FILE}": (folder / ck.MODEL_FILE).read_bytes(),
        },
    )
    work = tmp_path / "deep" / "w"
    loaded = ck.load_uploaded([archive], work)
    assert sorted(p.name for p in work.iterdir()) == sorted([ck.MODEL_FILE, ck.CONFIG_FILE])
    assert not (tmp_path / "escape").exists() and not Path("/abs").exists()
    assert loaded.model.config == TINY


def test_a_zip_holding_two_configs_or_bzip2_is_refused(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    files = {n: (folder / n).read_bytes() for n in (ck.MODEL_FILE, ck.CONFIG_FILE)}
    two = write_zip(tmp_path / "two.zip", {**files, f"other/{ck.CONFIG_FILE}": files[ck.CONFIG_FILE]})
    refused(lambda: ck.load_uploaded([two], tmp_path / "w"), "2 files named config.json")
    bz = write_zip(tmp_path / "bz.zip", files, compression=zipfile.ZIP_BZIP2, compresslevel=9)
    refused(lambda: ck.load_uploaded([bz], tmp_path / "w"), "unusual compression")
    assert nothing_written(tmp_path / "w")


# ---------------------------------------------------------------------------------------------
# Weights sized and typed against the config before they are read
# ---------------------------------------------------------------------------------------------


def test_weights_larger_than_the_config_needs_are_refused_before_reading(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    size = (folder / ck.MODEL_FILE).stat().st_size
    with open(folder / ck.MODEL_FILE, "r+b") as fh:
        fh.truncate(size + 500_000_000)  # sparse: 0.5 GB of nothing after good weights
    message = refused(lambda: ck.load_checkpoint(folder), r"model\.safetensors is 500\.\d MB")
    assert f"{hand_parameters(TINY):,} parameters needs at most {size / 1e6:.1f} MB" in message


def test_float64_weights_are_refused_from_the_header(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder = tiny_folder(tmp_path)
    state = ContextUNet(TINY).state_dict()
    save_file({k: v.double() for k, v in state.items()}, str(folder / ck.MODEL_FILE))
    refused(lambda: ck.load_checkpoint(folder), r"is stored as 'F64'; the app reads float32")


def test_a_header_claiming_a_huge_length_is_refused(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    (folder / ck.MODEL_FILE).write_bytes((10**12).to_bytes(8, "little") + b"{}")
    refused(lambda: ck.load_checkpoint(folder), r"not a readable safetensors file .* header says it is")


def odd_header(change: Callable[[dict[str, Any]], object]) -> bytes:
    """Tiny's real header with one change, followed by the right amount of data."""
    header, data_size = header_for(TINY)
    entries = json.loads(header[8:])
    entries = change(entries) or entries
    text = json.dumps(entries).encode()
    return len(text).to_bytes(8, "little") + text + bytes(data_size)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda e: e["out.bias"].update(dtype=["F32"]), r"tensor 'out\.bias' is stored as a list of 1 item;"),
        (lambda e: e["out.bias"].update(dtype="I64"), r"tensor 'out\.bias' is stored as 'I64'"),
        (lambda e: e["out.bias"].update(shape="1"), r"tensor 'out\.bias' has shape '1', the architecture needs \(1,\)"),
        (lambda e: e["out.bias"].update(shape=[10**40]), r"has shape a list of 1 item, the architecture needs"),
        (lambda e: e["out.bias"].update(shape=[True]), r"has shape a list of 1 item"),
        (
            lambda e: e["out.bias"].update(shape=[2]),
            r"tensor 'out\.bias' has shape \(2,\), the architecture needs \(1,\)",
        ),
        (lambda e: e.update({"out.bias": [1]}), "not a readable safetensors file"),
        (lambda e: [e], "not a readable safetensors file"),
        (lambda e: e.update({"x" * 1000: e.pop("out.bias")}), r"missing 1 tensor.*unexpected 1 tensor.*'x{40}…'"),
    ],
    ids=[
        "dtype-list",
        "dtype-int",
        "shape-string",
        "shape-huge",
        "shape-bool",
        "shape-wrong",
        "entry-list",
        "header-list",
        "long-name",
    ],
)
def test_a_header_with_odd_entries_is_refused_before_the_data(
    change: Callable[[dict[str, Any]], object], match: str, tmp_path: Path
) -> None:
    folder = tiny_folder(tmp_path)
    (folder / ck.MODEL_FILE).write_bytes(odd_header(change))
    refused(lambda: ck.load_checkpoint(folder), match)


# ---------------------------------------------------------------------------------------------
# Ill-typed and out-of-range fields: always a CheckpointError, never TypeError/OverflowError/MemoryError
# ---------------------------------------------------------------------------------------------


BAD_FIELDS = [
    ("model", {"image_size": 112}, "must be 28"),
    ("model", {"image_size": 28.0}, "must be 28"),
    ("model", {"image_channels": 3}, "must be 1"),
    ("model", {"num_classes": 1000}, "must be 10"),
    ("model", {"channels": "abc"}, "must list 3 widths"),
    ("model", {"channels": [8, 16]}, "must list 3 widths"),
    ("model", {"channels": [8, 16, 16, 32]}, "must list 3 widths"),
    ("model", {"channels": [[8], 16, 16]}, r"channels\[0\] must be a whole number"),
    ("model", {"channels": [8, -16, 16]}, r"channels\[1\] must be between"),
    ("model", {"channels": [8, 16, 0]}, r"channels\[2\] must be between"),
    ("model", {"channels": [8, 16, True]}, r"channels\[2\] must be a whole number"),
    ("model", {"channels": {"a": 1}}, "must list 3 widths"),
    ("model", {"embed_dim": float("nan")}, "must be a whole number, got NaN"),
    ("model", {"embed_dim": float("inf")}, "must be a whole number, got an infinite number"),
    ("model", {"embed_dim": "32"}, "must be a whole number"),
    ("model", {"embed_dim": 10**30}, "got a huge number"),
    ("model", {"embed_dim": 33}, "must be even"),
    ("model", {"embed_dim": None}, "must be a whole number, got null"),
    ("model", {"attention_heads": 0}, "must be between"),
    ("model", {"attention_heads": 3}, "must divide"),
    ("model", {"attention_heads": 10**6}, "must be between"),
    ("model", {"groups": False}, "must be a whole number"),
    ("model", {"groups": -1}, "must be between"),
    ("model", {"prediction": "x0"}, "must be one of"),
    ("model", {"prediction": ["eps"]}, "must be one of"),
    ("model", {"guidance_input": "yes"}, "must be true or false"),
    ("model", {"guidance_input": 1}, "must be true or false"),
    ("model", {"depth": 3}, "unknown U-Net settings"),
    ("schedule", {"num_steps": 50.5}, "must be a whole number"),
    ("schedule", {"num_steps": -50}, "must be between"),
    ("schedule", {"num_steps": "50"}, "must be a whole number"),
    ("schedule", {"num_steps": 10**40}, "got a huge number"),
    ("schedule", {"name": None}, "unknown schedule"),
    ("schedule", {"name": "sigmoid"}, "unknown schedule"),
    ("schedule", {"beta_end": 0.5}, "unknown schedule settings"),
    ("schedule", {"name": "linear", "num_steps": 20}, r"between 21 and 1,000"),  # linear β reach 1 at T = 20
]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"format": "ddpm-playground/1", "model": [], "schedule": {}}', r"\"model\" must be an object"),
        ('{"format": "ddpm-playground/1", "model": {}, "schedule": "cosine"}', r"\"schedule\" must be an object"),
        ('{"format": "ddpm-playground/1", "schedule": {"name": "cosine", "num_steps": 50}}', 'no "model" settings'),
        ('{"format": "ddpm-playground/1", "model": {}}', 'no "schedule" settings'),
        ('{"format": "ddpm-playground/1", "model": {"embed_dim": 1' + "0" * 5000 + "}}", "not valid JSON"),
        ('{"format": "ddpm-playground/1", "model": ' + "[" * 100_000 + "]" * 100_000 + "}", "not valid JSON"),
        ('{"format": ' + json.dumps("x" * 10_000) + "}", r"has format 'xxxx.*…'"),
        (
            '{"format": "ddpm-playground/1", "schedule": {}, "model": {'
            + ", ".join(f'"k{i}": 1' for i in range(9))
            + "}}",
            r"unknown U-Net settings: 'k0', 'k1', 'k2' and 6 more",
        ),
    ],
    ids=[
        "model-list",
        "schedule-string",
        "no-model",
        "no-schedule",
        "5000-digits",
        "nested",
        "long-format",
        "many-keys",
    ],
)
def test_malformed_config_json_is_a_plain_checkpoint_error(text: str, match: str, tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    (folder / ck.CONFIG_FILE).write_text(text)
    refused(lambda: ck.load_checkpoint(folder), match)


@pytest.mark.parametrize(
    "value",
    [10**5000, float("inf"), -(10**400), object(), b"28", (28,)],
    ids=["5000-digits", "inf", "minus-400-digits", "object", "bytes", "tuple"],  # str(10**5000) itself raises
)
def test_check_model_config_refuses_python_values_json_cannot_hold(value: object) -> None:
    config = config_for(TINY)
    config["model"]["image_size"] = value
    with pytest.raises(ck.CheckpointError, match="image_size must be 28"):
        ck.check_model_config(config)


def test_the_sampling_memory_and_flop_caps_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    heavy = UNetConfig(channels=(256, 16, 16), embed_dim=32)  # 3.8 M parameters, under the cap; 24× base's FLOPs
    assert hand_parameters(heavy) < ck.MAX_PARAMETERS and hand_flops(heavy) > ck.MAX_FLOPS_PER_IMAGE
    refused(lambda: ck.check_model_config(config_for(heavy)), r"costs 5\.63 GFLOP per image; the app allows 1\.00")
    base = ck.check_model_config(config_for(WIDTH_PRESETS["base"]))
    monkeypatch.setattr(ck, "MAX_SAMPLING_BYTES", base.sampling_bytes - 1)
    refused(lambda: ck.check_model_config(config_for(WIDTH_PRESETS["base"])), r"would need about 0\.2 GB of memory")


# ---------------------------------------------------------------------------------------------
# The smoke test
# ---------------------------------------------------------------------------------------------


def patch_forward(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> None:
    real = ContextUNet.forward

    def forward(self: ContextUNet, x: torch.Tensor, *rest: Any) -> torch.Tensor:
        out = real(self, x, *rest)
        return change(x, out) if x.device.type == "cpu" else out  # the config check's meta pass is left alone

    monkeypatch.setattr(ContextUNet, "forward", forward)


def test_a_slow_network_is_refused_by_the_time_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_folder(tmp_path)
    upload = [folder / ck.MODEL_FILE, folder / ck.CONFIG_FILE]
    real = ContextUNet.forward

    def slow_tiny(self: ContextUNet, x: torch.Tensor, *rest: Any) -> torch.Tensor:
        if x.device.type == "cpu" and self.config.channels == TINY.channels:  # not the reference network
            time.sleep(0.3)
        return real(self, x, *rest)

    monkeypatch.setattr(ContextUNet, "forward", slow_tiny)
    monkeypatch.setattr(ck, "SMOKE_BUDGET_S", 0.05)
    monkeypatch.setattr(ck, "SMOKE_REFERENCE_FACTOR", 0.0)  # the budget alone, whatever the machine's load
    message = refused(lambda: ck.load_uploaded(upload, tmp_path / "w"), r"one network pass took 0\.\d s", BUILT_S)
    assert "the app allows 0.05 s per pass" in message
    assert nothing_written(tmp_path / "w")
    start = time.perf_counter()
    ck.load_checkpoint(folder)  # a folder's smoke test is off unless asked: no pass is run
    assert time.perf_counter() - start < 0.3
    refused(lambda: ck.load_checkpoint(folder, smoke_test=True), "one network pass took", BUILT_S)


class SlowReference(nn.Module):
    """Stands in for the reference network on a machine so busy that the shipped model's size takes 0.2 s."""

    config = WIDTH_PRESETS["base"]

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        time.sleep(0.2)
        return x


def test_the_allowance_grows_with_the_reference_pass_on_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = ContextUNet(TINY).eval()
    real = ContextUNet.forward

    def slow(self: ContextUNet, x: torch.Tensor, *rest: Any) -> torch.Tensor:
        time.sleep(0.3)
        return real(self, x, *rest)

    monkeypatch.setattr(ContextUNet, "forward", slow)
    monkeypatch.setattr(ck, "SMOKE_BUDGET_S", 0.05)
    monkeypatch.setattr(ck, "_reference_network", SlowReference)
    assert ck.run_smoke_test(tiny) >= 0.3  # allowed: 10 × 0.2 s
    monkeypatch.setattr(ck, "SMOKE_REFERENCE_FACTOR", 1.0)
    refused(lambda: ck.run_smoke_test(tiny), r"took 0\.\d s; the app allows 0\.2 s per pass", BUILT_S)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda x, out: out[..., :14],
            r"output has shape \(16, 1, 28, 14\); it must match its input, \(16, 1, 28, 28\)",
        ),
        (lambda x, out: out.mean(dim=(1, 2, 3)), r"output has shape \(16,\)"),
        (lambda x, out: out + float("nan"), "NaN or infinite"),
    ],
    ids=["half-width", "one-number-per-image", "nan"],
)
def test_a_network_with_the_wrong_output_is_refused(
    change: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    match: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tiny_folder(tmp_path)
    patch_forward(monkeypatch, change)
    archive = ck.zip_checkpoint(folder, tmp_path / "up.zip")
    refused(lambda: ck.load_uploaded([archive], tmp_path / "w"), match, BUILT_S)
    assert nothing_written(tmp_path / "w")


def test_the_smoke_test_runs_a_distilled_student_with_its_guidance_input(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = ContextUNet.forward

    def spy(
        self: ContextUNet, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, *w: torch.Tensor
    ) -> torch.Tensor:
        if self.config.guidance_input:  # not the reference network timed beside it
            seen.append(len(w))
        assert sorted(set(labels.tolist())) == list(range(11))  # every class and ∅
        return real(self, x, t, labels, *w)

    monkeypatch.setattr(ContextUNet, "forward", spy)
    student = ContextUNet(UNetConfig(**{**TINY.to_dict(), "guidance_input": True})).eval()
    elapsed = ck.run_smoke_test(student)
    assert seen == [1] and 0 < elapsed < ck.SMOKE_BUDGET_S


# ---------------------------------------------------------------------------------------------
# Names and accepted uploads
# ---------------------------------------------------------------------------------------------


def test_a_hostile_name_is_safe_to_use_in_a_file_name(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    config = json.loads((folder / ck.CONFIG_FILE).read_text())
    for raw, expected in [("../../etc/passwd", "etc-passwd"), ("x" * 500, "x" * ck.MAX_NAME_CHARS), ([1], "tiny")]:
        config["name"] = raw
        (folder / ck.CONFIG_FILE).write_text(json.dumps(config))
        loaded = ck.load_checkpoint(folder)
        assert loaded.name == expected
        assert loaded.summary()["name"] == expected
    config.update(name="ok", data=[1], training="x", metrics=None)
    (folder / ck.CONFIG_FILE).write_text(json.dumps(config))
    summary = ck.load_checkpoint(folder).summary()
    assert summary["data"] is None and summary["training_steps"] is None and summary["metrics"] == {}


def test_an_accepted_upload_replaces_its_folder_atomically(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    work = tmp_path / "w"
    work.mkdir()
    loaded = ck.load_uploaded([folder / ck.MODEL_FILE, folder / ck.CONFIG_FILE], work)
    assert loaded.path == work and loaded.plan is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny", "w"]  # no partial or previous folder left
    reloaded = ck.load_checkpoint(work)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(reloaded.model.state_dict()[key], value)

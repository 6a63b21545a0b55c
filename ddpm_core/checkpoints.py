"""Checkpoint folders: ``model.safetensors`` + ``config.json`` (+ ``training_state.safetensors`` to resume).

* Nothing is ever unpickled: tensors come from safetensors, everything else from JSON.
* Saving is atomic at the folder level: the new checkpoint is written in full beside the old one
  (``NAME.partial``), then swapped in with two renames; a crash at any point leaves either the old or
  the new checkpoint complete, and :func:`load_checkpoint` finds it (``NAME.previous`` is the fallback
  while a swap is half done).
* Loading checks every key and shape against the architecture the config describes and raises
  :class:`CheckpointError` naming what is wrong. Nothing is swapped in until all checks pass, so a
  caller's live model is untouched by a bad file.

Uploads come from strangers, so a checkpoint is checked in the order that keeps every refusal cheap:

1. config.json (at most ``MAX_CONFIG_BYTES``) is parsed and every field bounded by :func:`check_model_config`
   before any real memory is allocated: the network is built on PyTorch's ``meta`` device, which records
   shapes and no data, to count its parameters and the FLOPs of one pass, and to estimate the memory of a
   sampling batch;
2. the safetensors header (at most ``MAX_HEADER_BYTES``) must name exactly those tensors and shapes, and the
   weights may be no larger than they need, before the weights are read;
3. zips are read member by member into memory through a reader that counts the bytes it actually
   decompresses and stops at the cap (a zip's own size fields can lie), never extracted to disk;
4. uploads, and callers that ask, run one timed network pass on a test batch (:func:`run_smoke_test`);
5. only then is an upload written into its folder, in one atomic step: a refusal writes nothing.
"""

from __future__ import annotations

import functools
import json
import lzma
import math
import re
import struct
import time
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensor_bytes
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ddpm_core.data import DATASETS, DEFAULT_DATASET, DatasetInfo
from ddpm_core.files import complete_folder, write_file_atomically, write_folder_atomically
from ddpm_core.schedule import SCHEDULE_NAMES, NoiseSchedule, ScheduleConfig
from ddpm_core.unet import (
    NUM_CLASSES,
    PREDICTIONS,
    WIDTH_PRESETS,
    ContextUNet,
    UNetConfig,
    count_parameters,
    example_inputs,
)

FORMAT = "ddpm-playground/1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "training_state.safetensors"
MAX_CONFIG_BYTES = 1_000_000
MAX_WEIGHTS_BYTES = 200_000_000  # training_state.safetensors (the app's own files); model weights: ModelPlan

# The data: 28×28 one-channel images in 10 classes (MNIST digits, Fashion-MNIST). A network for any other shape
# loads but fails on every sample, so these are fixed, not bounded.
IMAGE_SIZE = 28
IMAGE_CHANNELS = 1
LEVELS = 3  # ContextUNet has three widths: 28×28, 14×14, 7×7
# Per-field bounds, each a few times the largest preset ("wide": widths 48/96/128, embedding 192). They keep
# the meta-device build trivial; the parameter, memory and FLOP caps below are what bind in practice.
MAX_LEVEL_WIDTH = 512
MAX_EMBED_DIM = 1024
MAX_ATTENTION_HEADS = 16
MAX_GROUPS = 64
MAX_SCHEDULE_STEPS = 1000  # the app never uses T above 1000; the shipped models use 250
# Whole-network caps. "wide" has 1.73 M parameters and 0.50 GFLOP per image; the shipped digits-base
# 0.82 M and 0.23 GFLOP. 5 M parameters is a 20 MB file; 1 GFLOP per image keeps a sampling step within
# about 4× the shipped model's time (the probe: a 50 M-parameter model took 66 s per step instead of 0.3 s).
MAX_PARAMETERS = 5_000_000
MAX_FLOPS_PER_IMAGE = 1_000_000_000  # as torch.utils.flop_counter counts them: 2 per multiply-add
# Memory of sampling SAMPLING_BATCH images at once: the largest request is 8 per digit × 10 digits, twice
# over for the unconditional half of classifier-free guidance. Rule of thumb: weights plus ACTIVATION_MAPS
# float32 feature maps at each of the three resolutions per image (plus the attention scores). Measured peak
# growth of one inference pass at batch 160 was 5.7-6.6 such maps for base, wide and 256-wide variants.
SAMPLING_BATCH = 160
ACTIVATION_MAPS = 8
MAX_SAMPLING_BYTES = 1 << 30  # 1 GiB; "wide" needs about 0.31 GiB
# model.safetensors: an 8-byte length, a JSON header (about 7.5 kB for the shipped models: one entry for
# each of ~150 tensors, whatever their size), then the raw tensor data.
MAX_HEADER_BYTES = 65_536
WEIGHT_DTYPES: dict[str, int] = {"F32": 4, "F16": 2, "BF16": 2}  # safetensors dtype -> bytes per number
# The largest model.safetensors the loader accepts: the length field, the header, MAX_PARAMETERS float32 numbers.
MAX_MODEL_FILE_BYTES = 8 + MAX_HEADER_BYTES + WEIGHT_DTYPES["F32"] * MAX_PARAMETERS
# A checkpoint zip holds two files (a README, a folder or two at most): a zip whose central directory is
# larger costs memory and time to even list (200,000 empty entries in 17 MB took 116 MB and 0.9 s).
MAX_ZIP_ENTRIES = 64
MAX_ZIP_DIRECTORY_BYTES = 65_536
ZIP_SLACK_BYTES = 1_000_000  # a zip of incompressible weights is a little larger than the weights
# The smoke test: one timed pass on a small batch (every class and "no class"); normal models take 10-40 ms.
# Wall-clock time on a shared CPU swings by 10× and more (two torch threads on a busy 2-core machine: 0.14-1.7 s
# for the shipped model), so a network of the shipped model's size is timed beside it and the allowance is
# SMOKE_BUDGET_S or SMOKE_REFERENCE_FACTOR × that reference pass, whichever is larger. The FLOP cap keeps an
# accepted network within about 4.4× the reference; the smoke test catches what no static count sees.
SMOKE_BATCH = 16
SMOKE_BUDGET_S = 1.0
SMOKE_REFERENCE_FACTOR = 10.0
MAX_NAME_CHARS = 80
_CHUNK = 1 << 16
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    RuntimeError,
    NotImplementedError,
    ValueError,
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a message that says why."""


@dataclass(frozen=True)
class ModelPlan:
    """What a config.json describes, checked against the app's bounds; nothing real has been allocated."""

    unet: UNetConfig
    schedule: ScheduleConfig
    parameters: int  # numbers in the state dict (every one a trainable parameter)
    weight_bytes: int  # those parameters in float32: in memory, and the data of a float32 model.safetensors
    flops_per_image: int  # one network pass on one image
    sampling_bytes: int  # estimated peak memory to sample SAMPLING_BATCH images at once
    shapes: Mapping[str, tuple[int, ...]] = field(compare=False, repr=False)  # what model.safetensors must hold

    @property
    def max_weights_file_bytes(self) -> int:
        """The largest model.safetensors these weights can come in: length field, header, float32 data."""
        return 8 + MAX_HEADER_BYTES + self.weight_bytes


@dataclass
class LoadedModel:
    """A ready-to-sample model with its schedule and the metadata from config.json."""

    model: ContextUNet
    schedule: NoiseSchedule
    config: dict[str, Any]
    path: Path | None = None
    training_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    plan: ModelPlan | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The model's name, safe to show and to use in a file name (a config is free text from anyone)."""
        raw = self.config.get("name")
        if not isinstance(raw, str) or not raw.strip():
            raw = self.path.name if self.path else "unnamed"
        safe = re.sub(r"[^\w.\- ]+", "-", raw).strip(" .-")  # no separators, no leading dots: no "../"
        return safe[:MAX_NAME_CHARS] or "unnamed"

    @property
    def dataset(self) -> str:
        """What the model draws ("digits" or "fashion"), from config.json's ``data.dataset``; digits if unsaid."""
        return dataset_of(self.config)

    @property
    def dataset_info(self) -> DatasetInfo:
        """The model's dataset: its class names and its words for them."""
        return DATASETS[self.dataset]

    @property
    def weight_bytes(self) -> int:
        """Bytes the network's weights take in memory."""
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())

    def summary(self) -> dict[str, Any]:
        """The facts a user wants about the live model."""
        training = _as_dict(self.config.get("training"))
        return {
            "name": self.name,
            "parameters": count_parameters(self.model),
            "channels": list(self.model.config.channels),
            "prediction": self.model.config.prediction,
            "recipe": _as_dict(training.get("config")).get("recipe"),
            "device": training.get("device"),
            "schedule": f"{self.schedule.name}, T = {self.schedule.num_steps}",
            "training_steps": training.get("steps"),
            "training_minutes": training.get("minutes"),
            "dataset": self.dataset,
            "data": _as_dict(self.config.get("data")).get("description"),
            "metrics": _as_dict(self.config.get("metrics")),
        }


def _as_dict(value: object) -> dict[str, Any]:
    # metadata from an uploaded config.json may have any JSON type where a section is expected
    return value if isinstance(value, dict) else {}


def dataset_of(config: dict[str, Any]) -> str:
    """The dataset config.json names under ``data.dataset`` (checked by :func:`check_model_config`); digits if none.

    Checkpoints from before Fashion-MNIST name none: they are digit models.
    """
    name = _named_dataset(config)
    return name if _known_dataset(name) else DEFAULT_DATASET


def _named_dataset(config: dict[str, Any]) -> object:
    # any JSON value an uploaded config.json holds there; digits when it names none
    return _as_dict(config.get("data")).get("dataset", DEFAULT_DATASET)


def _known_dataset(name: object) -> bool:
    return isinstance(name, str) and name in DATASETS


def _check_dataset(config: dict[str, Any]) -> None:
    name = _named_dataset(config)
    if not _known_dataset(name):
        raise CheckpointError(
            f"{CONFIG_FILE}: data.dataset is {_describe(name)}; the app knows {' and '.join(DATASETS)}"
        )


def save_checkpoint(
    directory: str | Path,
    model: ContextUNet,
    schedule: NoiseSchedule,
    metadata: dict[str, Any] | None = None,
    training_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the checkpoint folder atomically; returns its path."""
    config = dict(metadata or {})
    config.update(
        format=FORMAT,
        model=model.config.to_dict(),
        schedule={"name": schedule.name, "num_steps": schedule.num_steps},
    )

    def write(folder: Path) -> None:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(folder / MODEL_FILE), metadata={"format": FORMAT})
        if training_state:
            save_file({k: v.detach().cpu().contiguous() for k, v in training_state.items()}, str(folder / STATE_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")

    return write_folder_atomically(directory, write)


# ----------------------------------------------------------------------------------------------
# Messages
# ----------------------------------------------------------------------------------------------


def _describe(value: object) -> str:
    """A short, plain description of a JSON value for a message (never its whole text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # str() of a huge int is slow and refused beyond 4,300 digits; the comparison is not
        return f"{value:,}" if abs(value) < 10**15 else "a huge number"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "NaN" if math.isnan(value) else "an infinite number"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item" + ("" if len(value) == 1 else "s")
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _names(keys: list[str]) -> str:
    """Up to three key names for a message, each shortened."""
    shown = ", ".join(_describe(str(k)) for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# ----------------------------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------------------------


def _parse_config(data: bytes) -> dict[str, Any]:
    """config.json's bytes as a dict in this app's format; raises CheckpointError with a plain reason."""
    if len(data) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{CONFIG_FILE} is larger than {MAX_CONFIG_BYTES:,} bytes; not a checkpoint config")
    try:
        config = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{CONFIG_FILE} is not valid JSON (it is not UTF-8 text)") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{CONFIG_FILE} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # a number of over 4,300 digits; lists nested thousands deep
        raise CheckpointError(f"{CONFIG_FILE} is not valid JSON (a number too long or nesting too deep)") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{CONFIG_FILE} must hold a JSON object")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{CONFIG_FILE} has format {_describe(config.get('format'))}, expected {FORMAT!r}")
    return config


def _read_config(path: Path) -> dict[str, Any]:
    return _parse_config(_read_file(path, MAX_CONFIG_BYTES, CONFIG_FILE))


def _whole(value: object, what: str, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) in ``low…high``; CheckpointError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{CONFIG_FILE}: {what} must be a whole number, got {_describe(value)}")
    if not low <= value <= high:
        raise CheckpointError(f"{CONFIG_FILE}: {what} must be between {low:,} and {high:,}, got {_describe(value)}")
    return value


def _exactly(value: object, what: str, wanted: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value != wanted:
        raise CheckpointError(f"{CONFIG_FILE}: {what} must be {wanted} ({why}), got {_describe(value)}")
    return value


def _check_unet(settings: object) -> UNetConfig:
    """The U-Net settings of config.json as a UNetConfig, every field type-checked and bounded."""
    if not isinstance(settings, dict):
        raise CheckpointError(f'{CONFIG_FILE}: "model" must be an object of U-Net settings')
    unknown = sorted(str(k) for k in settings if k not in UNetConfig.__dataclass_fields__)
    if unknown:
        raise CheckpointError(f"{CONFIG_FILE} has unknown U-Net settings: {_names(unknown)}")
    s = {**UNetConfig().to_dict(), **settings}  # a missing field takes its default, as UNetConfig does
    _exactly(s["image_size"], "model.image_size", IMAGE_SIZE, "the app's images are 28×28 pixels")
    _exactly(s["image_channels"], "model.image_channels", IMAGE_CHANNELS, "the app's images are grey")
    _exactly(
        s["num_classes"],
        "model.num_classes",
        NUM_CLASSES,
        "one class for each of the ten classes (digits 0-9, or the ten kinds of fashion item)",
    )
    channels = s["channels"]
    if not isinstance(channels, (list, tuple)) or len(channels) != LEVELS:
        raise CheckpointError(
            f"{CONFIG_FILE}: model.channels must list {LEVELS} widths, one per resolution, got {_describe(channels)}"
        )
    widths = tuple(_whole(c, f"model.channels[{i}]", 1, MAX_LEVEL_WIDTH) for i, c in enumerate(channels))
    embed_dim = _whole(s["embed_dim"], "model.embed_dim", 2, MAX_EMBED_DIM)
    if embed_dim % 2:  # the sinusoidal embedding is sines and cosines in pairs
        raise CheckpointError(f"{CONFIG_FILE}: model.embed_dim must be even, got {embed_dim}")
    heads = _whole(s["attention_heads"], "model.attention_heads", 1, MAX_ATTENTION_HEADS)
    if widths[-1] % heads:  # attention splits the 7×7 width evenly among its heads
        raise CheckpointError(
            f"{CONFIG_FILE}: model.attention_heads ({heads}) must divide the last width model.channels[2] "
            f"({widths[-1]})"
        )
    groups = _whole(s["groups"], "model.groups", 1, MAX_GROUPS)
    prediction = s["prediction"]
    if not isinstance(prediction, str) or prediction not in PREDICTIONS:
        raise CheckpointError(
            f"{CONFIG_FILE}: model.prediction must be one of {', '.join(PREDICTIONS)}, got {_describe(prediction)}"
        )
    if not isinstance(s["guidance_input"], bool):
        raise CheckpointError(
            f"{CONFIG_FILE}: model.guidance_input must be true or false, got {_describe(s['guidance_input'])}"
        )
    return UNetConfig(
        image_channels=IMAGE_CHANNELS,
        image_size=IMAGE_SIZE,
        channels=widths,  # type: ignore[arg-type]
        embed_dim=embed_dim,
        num_classes=NUM_CLASSES,
        attention_heads=heads,
        groups=groups,
        prediction=prediction,
        guidance_input=s["guidance_input"],
    )


def _check_schedule(settings: object) -> ScheduleConfig:
    """The schedule of config.json, bounded: a named schedule with 2…MAX_SCHEDULE_STEPS steps."""
    if not isinstance(settings, dict):
        raise CheckpointError(f'{CONFIG_FILE}: "schedule" must be an object with a name and num_steps')
    unknown = sorted(str(k) for k in settings if k not in ("name", "num_steps"))
    if unknown:
        raise CheckpointError(f"{CONFIG_FILE} has unknown schedule settings: {_names(unknown)}")
    name = settings.get("name")
    if not isinstance(name, str) or name not in SCHEDULE_NAMES:
        raise CheckpointError(
            f"{CONFIG_FILE}: unknown schedule {_describe(name)}; the app knows {', '.join(SCHEDULE_NAMES)}"
        )
    low = 21 if name == "linear" else 2  # linear β grow as 1000/T and reach 1 at T = 20
    steps = _whole(settings.get("num_steps"), "schedule.num_steps", low, MAX_SCHEDULE_STEPS)
    return ScheduleConfig(name=name, num_steps=steps)  # type: ignore[arg-type]


def check_model_config(config: dict[str, Any]) -> ModelPlan:
    """Bound every model and schedule field of a parsed config.json, allocating nothing real; CheckpointError if not."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{CONFIG_FILE} must hold a JSON object")
    if "model" not in config:
        raise CheckpointError(f'{CONFIG_FILE} has no "model" settings')
    if "schedule" not in config:
        raise CheckpointError(f'{CONFIG_FILE} has no "schedule" settings')
    unet = _check_unet(config["model"])
    schedule = _check_schedule(config["schedule"])
    _check_dataset(config)
    try:
        # the meta device records shapes and no data: a network of any size costs a few milliseconds here
        with torch.device("meta"):
            net = ContextUNet(unet)
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        # the field bounds are meant to make this unreachable; say so plainly rather than show PyTorch's text
        raise CheckpointError(f"{CONFIG_FILE} describes a network this app cannot build") from exc
    parameters = sum(math.prod(s) for s in shapes.values())
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(
            f"{CONFIG_FILE} describes a network with {parameters:,} parameters; the app accepts at most "
            f"{MAX_PARAMETERS:,} (its largest preset has {_largest_preset():,})"
        )
    weight_bytes = 4 * parameters
    sampling_bytes = weight_bytes + 4 * SAMPLING_BATCH * _activation_floats(unet)
    if sampling_bytes > MAX_SAMPLING_BYTES:
        raise CheckpointError(
            f"sampling {SAMPLING_BATCH} images at once with this network would need about "
            f"{sampling_bytes / 2**30:.1f} GB of memory; the app allows {MAX_SAMPLING_BYTES / 2**30:.1f} GB"
        )
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            out = net.eval()(*example_inputs(unet, 1, "meta"))
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise CheckpointError(f"{CONFIG_FILE} describes a network this app cannot run") from exc
    if tuple(out.shape) != (1, unet.image_channels, unet.image_size, unet.image_size):
        raise CheckpointError(f"{CONFIG_FILE} describes a network whose output is not an image of the input's size")
    flops = int(counter.get_total_flops())
    if flops > MAX_FLOPS_PER_IMAGE:
        raise CheckpointError(
            f"one pass of this network costs {flops / 1e9:.2f} GFLOP per image; the app allows "
            f"{MAX_FLOPS_PER_IMAGE / 1e9:.2f} (the shipped model needs 0.23)"
        )
    return ModelPlan(unet, schedule, parameters, weight_bytes, flops, sampling_bytes, shapes)


def _activation_floats(unet: UNetConfig) -> int:
    """Rule of thumb for one image in one pass: ACTIVATION_MAPS feature maps per resolution, and attention scores."""
    c0, c1, c2 = unet.channels
    h = unet.image_size
    maps = h * h * c0 + (h // 2) ** 2 * c1 + (h // 4) ** 2 * c2
    return ACTIVATION_MAPS * maps + unet.attention_heads * ((h // 4) ** 2) ** 2


@functools.cache
def _largest_preset() -> int:
    """Parameters of the largest width preset, for messages (counted on the meta device)."""
    with torch.device("meta"):
        return max(count_parameters(ContextUNet(c)) for c in WIDTH_PRESETS.values())


# ----------------------------------------------------------------------------------------------
# model.safetensors
# ----------------------------------------------------------------------------------------------


def _read_up_to(stream: IO[bytes], limit: int) -> bytes:
    """At most ``limit`` bytes from ``stream``, counted as they arrive (a zip member's stated size can lie)."""
    parts, got = [], 0
    while got < limit:
        chunk = stream.read(min(_CHUNK, limit - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _unreadable(what: str, why: str = "") -> CheckpointError:
    return CheckpointError(f"{what} is not a readable safetensors file (truncated or corrupt?){why}")


def _mismatch(missing: list[str], unexpected: list[str]) -> CheckpointError:
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensor(s), e.g. {missing[:3]}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} tensor(s), e.g. [{_names(unexpected)}]")
    return CheckpointError("weights do not match the architecture in config.json: " + "; ".join(parts))


def _check_header(header: bytes, plan: ModelPlan, what: str) -> int:
    """Check a safetensors header names exactly the plan's tensors, shapes and float dtypes; returns the data size."""
    try:
        entries = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _unreadable(what) from exc
    if not isinstance(entries, dict):
        raise _unreadable(what)
    entries = {k: v for k, v in entries.items() if k != "__metadata__"}
    missing = sorted(set(plan.shapes) - set(entries))
    unexpected = sorted(set(entries) - set(plan.shapes))
    if missing or unexpected:
        raise _mismatch(missing, unexpected)
    size = 0
    for key, shape in plan.shapes.items():
        entry = entries[key]
        if not isinstance(entry, dict):
            raise _unreadable(what)
        stated = entry.get("shape")
        ok = isinstance(stated, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in stated)
        if not ok or tuple(stated) != shape:
            small = ok and len(stated) <= 8 and all(abs(d) < 10**9 for d in stated)  # else the text could be huge
            shown = str(tuple(stated)) if small else _describe(stated)
            raise CheckpointError(f"tensor {key!r} has shape {shown}, the architecture needs {shape}")
        dtype = entry.get("dtype")
        if not isinstance(dtype, str) or dtype not in WEIGHT_DTYPES:
            raise CheckpointError(
                f"tensor {key!r} is stored as {_describe(dtype)}; the app reads float32, float16 or bfloat16 weights"
            )
        size += math.prod(shape) * WEIGHT_DTYPES[dtype]
    return size


def _read_weights(stream: IO[bytes], plan: ModelPlan, what: str, size: int | None = None) -> bytes:
    """model.safetensors from ``stream``: header checked against the plan, then the data, never past what it needs.

    ``size``: the file's size where known (a file on disk), checked before the data is read.
    """
    head = _read_up_to(stream, 8)
    if len(head) < 8:
        raise _unreadable(what)
    header_len = int.from_bytes(head, "little")
    if header_len > MAX_HEADER_BYTES:
        raise _unreadable(what, f"; its header says it is {header_len:,} bytes long")
    header = _read_up_to(stream, header_len)
    if len(header) < header_len:
        raise _unreadable(what)
    data_len = _check_header(header, plan, what)  # data_len ≤ plan.weight_bytes: shapes match, ≤ 4 bytes each
    total = 8 + header_len + data_len
    if size is not None and size > total:
        raise CheckpointError(
            f"{what} is {_mb(size)}; a network with {plan.parameters:,} parameters needs at most {_mb(total)}"
        )
    data = _read_up_to(stream, data_len + 1)
    if len(data) > data_len:
        raise CheckpointError(
            f"{what} holds more than its tensors need; a network with {plan.parameters:,} parameters needs "
            f"at most {_mb(total)}"
        )
    return head + header + data


def _tensors(data: bytes, what: str) -> dict[str, torch.Tensor]:
    try:
        return load_tensor_bytes(data)
    except (SafetensorError, KeyError, ValueError, RuntimeError, TypeError, AssertionError, OverflowError) as exc:
        raise _unreadable(what) from exc


def _check_tensors(shapes: Mapping[str, tuple[int, ...]], weights: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(shapes) - set(weights))
    unexpected = sorted(set(weights) - set(shapes))
    if missing or unexpected:
        raise _mismatch(missing, unexpected)
    for key, shape in shapes.items():
        if tuple(weights[key].shape) != tuple(shape):
            raise CheckpointError(
                f"tensor {key!r} has shape {tuple(weights[key].shape)}, the architecture needs {tuple(shape)}"
            )
        if not weights[key].is_floating_point():
            raise CheckpointError(f"tensor {key!r} has dtype {weights[key].dtype}, expected floating point")
        if not bool(torch.isfinite(weights[key]).all()):
            raise CheckpointError(f"tensor {key!r} holds NaN or infinite values")


def check_state_dict(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError unless ``weights`` has exactly the model's keys, shapes and float dtypes."""
    _check_tensors({k: tuple(v.shape) for k, v in model.state_dict().items()}, weights)


def _read_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A safetensors file the app wrote itself (the training state), bounded by MAX_WEIGHTS_BYTES."""
    if not path.is_file():
        raise CheckpointError(f"{what} is missing")
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{what} is larger than {MAX_WEIGHTS_BYTES // 1_000_000} MB")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as exc:
        raise _unreadable(what) from exc


# ----------------------------------------------------------------------------------------------
# The smoke test
# ----------------------------------------------------------------------------------------------


@functools.cache
def _reference_network() -> ContextUNet:
    """A network the shipped model's size (random weights), timed beside a candidate to allow for a busy machine."""
    with torch.random.fork_rng(devices=[]):  # building it must not move anyone's random numbers
        return ContextUNet(WIDTH_PRESETS["base"]).eval()


def _timed_pass(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[object, float]:
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            out = model(*inputs)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError, MemoryError) as exc:
        raise CheckpointError(f"the network failed on a test batch of {SMOKE_BATCH} images") from exc
    return out, time.perf_counter() - start


def run_smoke_test(model: ContextUNet, budget_s: float | None = None) -> float:
    """Time one pass on a test batch and check its output; CheckpointError if wrong or slower than allowed.

    Allowed: ``budget_s`` (default :data:`SMOKE_BUDGET_S`) or :data:`SMOKE_REFERENCE_FACTOR` × a pass of a
    network the shipped model's size timed just before, whichever is larger. Returns the seconds the pass took.
    """
    budget = SMOKE_BUDGET_S if budget_s is None else budget_s
    inputs = example_inputs(model.config, SMOKE_BATCH)
    reference = _reference_network()
    reference_inputs = example_inputs(reference.config, SMOKE_BATCH)
    _, reference_s = _timed_pass(reference, reference_inputs)
    out, elapsed = _timed_pass(model, inputs)
    allowed = max(budget, SMOKE_REFERENCE_FACTOR * reference_s)
    if allowed < elapsed < 4 * allowed:
        # a first pass also sets up kernels for the batch shape and may meet a burst of load: a pass near the
        # limit gets one more try, each timing its best of two; a hopeless one does not (it would double the wait)
        reference_s = min(reference_s, _timed_pass(reference, reference_inputs)[1])
        out, again = _timed_pass(model, inputs)
        elapsed = min(elapsed, again)
        allowed = max(budget, SMOKE_REFERENCE_FACTOR * reference_s)
    x = inputs[0]
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x.shape):
        shown = tuple(out.shape) if isinstance(out, torch.Tensor) else _describe(out)
        raise CheckpointError(f"the network's output has shape {shown}; it must match its input, {tuple(x.shape)}")
    if not out.is_floating_point() or not bool(torch.isfinite(out).all()):
        raise CheckpointError("the network's output on a test batch holds NaN or infinite values")
    if elapsed > allowed:
        raise CheckpointError(f"one network pass took {elapsed:.1f} s; the app allows {allowed:.2g} s per pass")
    return elapsed


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def _read_file(path: Path, limit: int, what: str) -> bytes:
    """A whole file of at most ``limit`` bytes (its size checked before it is read, and again while reading)."""
    try:
        if path.stat().st_size > limit:
            raise CheckpointError(f"{what} is larger than {limit:,} bytes")
        with open(path, "rb") as fh:
            data = _read_up_to(fh, limit + 1)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{what} is missing") from exc
    except OSError as exc:
        raise CheckpointError(f"{what} could not be read") from exc
    if len(data) > limit:
        raise CheckpointError(f"{what} is larger than {limit:,} bytes")
    return data


def _read_weights_file(path: Path, plan: ModelPlan, what: str) -> bytes:
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            return _read_weights(fh, plan, what, size)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{what} is missing") from exc
    except IsADirectoryError as exc:
        raise CheckpointError(f"{what} is a folder, not a file") from exc
    except OSError as exc:
        raise CheckpointError(f"{what} could not be read") from exc


def _assemble(
    config: dict[str, Any], plan: ModelPlan, weights: bytes, smoke_test: bool, path: Path | None
) -> LoadedModel:
    """Build the checked network from checked bytes (and, if asked, time a pass); CheckpointError if anything fails."""
    tensors = _tensors(weights, MODEL_FILE)
    _check_tensors(plan.shapes, tensors)
    try:
        schedule = NoiseSchedule.from_config(plan.schedule)
        model = ContextUNet(plan.unet)
        model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{CONFIG_FILE} describes a model this app cannot build") from exc
    model.eval()
    if smoke_test:
        run_smoke_test(model)
    return LoadedModel(model, schedule, config, path, plan=plan)


def load_checkpoint(
    directory: str | Path, with_training_state: bool = False, *, smoke_test: bool = False
) -> LoadedModel:
    """Load and fully check a checkpoint folder; raises CheckpointError naming the problem.

    ``smoke_test`` also times one network pass (:func:`run_smoke_test`); uploads always get one.
    """
    directory = complete_folder(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {directory.name!r} does not exist")
    config = _read_config(directory / CONFIG_FILE)
    plan = check_model_config(config)
    weights = _read_weights_file(directory / MODEL_FILE, plan, MODEL_FILE)
    loaded = _assemble(config, plan, weights, smoke_test, directory)
    if with_training_state and (directory / STATE_FILE).exists():
        loaded.training_state = _read_tensors(directory / STATE_FILE, STATE_FILE)
    return loaded


def load_uploaded(paths: list[str | Path], workdir: str | Path, *, smoke_test: bool = True) -> LoadedModel:
    """Load a checkpoint uploaded as its two files or as one zip of the folder.

    Everything is checked in memory first; only an accepted checkpoint is written, atomically, as the folder
    ``workdir`` (which it replaces). A refusal writes nothing.
    """
    paths = [Path(p) for p in paths if p]
    if not paths:
        raise CheckpointError("upload model.safetensors and config.json, or a zip of the checkpoint folder")
    if len(paths) == 1 and paths[0].suffix.lower() == ".zip":
        config_bytes, config, plan, weights = _read_zip(paths[0])
    else:
        config_bytes, config, plan, weights = _read_two_files(paths)
    loaded = _assemble(config, plan, weights, smoke_test, None)

    def write(folder: Path) -> None:
        (folder / MODEL_FILE).write_bytes(weights)
        (folder / CONFIG_FILE).write_bytes(config_bytes)

    loaded.path = write_folder_atomically(workdir, write)
    return loaded


def _read_two_files(paths: list[Path]) -> tuple[bytes, dict[str, Any], ModelPlan, bytes]:
    wanted: dict[str, Path | None] = {MODEL_FILE: None, CONFIG_FILE: None}
    for p in paths:
        suffix = p.suffix.lower()
        name = CONFIG_FILE if suffix == ".json" else MODEL_FILE if suffix == ".safetensors" else None
        if name is None:
            raise CheckpointError(f"{_describe(p.name)}: expected a .safetensors file, a config .json or a .zip")
        if wanted[name] is not None:
            raise CheckpointError(f"two files for {name}; upload one of each")
        wanted[name] = p
    for name, p in wanted.items():
        if p is None:
            raise CheckpointError(f"{name} is missing from the upload")
    config_bytes = _read_file(wanted[CONFIG_FILE], MAX_CONFIG_BYTES, CONFIG_FILE)  # type: ignore[arg-type]
    config = _parse_config(config_bytes)
    plan = check_model_config(config)
    weights = _read_weights_file(wanted[MODEL_FILE], plan, MODEL_FILE)  # type: ignore[arg-type]
    return config_bytes, config, plan, weights


def _zip_directory_size(fh: IO[bytes]) -> tuple[int, int] | None:
    """(entries, central directory bytes) from the end record that ``zipfile`` will use, or None if none.

    Found the way ``zipfile`` finds it (the last 22 bytes, else the last signature in the final 64 kB), so that
    the bound checked here is the one it then obeys. A ZIP64 record, never needed by a checkpoint, is refused.
    """
    end_size, signature = 22, b"PK\x05\x06"
    fh.seek(0, 2)
    file_size = fh.tell()
    if file_size < end_size:
        return None
    fh.seek(file_size - end_size)
    record = fh.read(end_size)
    if record[:4] == signature and record[-2:] == b"\0\0":
        at = file_size - end_size
    else:
        start = max(file_size - (1 << 16) - end_size, 0)
        fh.seek(start)
        found = fh.read().rfind(signature)
        if found < 0:
            return None
        at = start + found
        fh.seek(at)
        record = fh.read(end_size)
        if len(record) != end_size:
            return None
    if at >= 20:
        fh.seek(at - 20)
        if fh.read(4) == b"PK\x06\x07":
            raise CheckpointError("the zip uses the ZIP64 format, which a checkpoint never needs; zip it again")
    _sig, _disk, _cd_disk, _here, entries, directory_bytes, _offset, _comment = struct.unpack("<4s4H2LH", record)
    return entries, directory_bytes


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, decompressed in memory and counted: at most ``limit`` + 1 bytes are ever produced."""
    with zf.open(info) as stream:
        return _read_up_to(stream, limit + 1)


def _read_zip(path: Path) -> tuple[bytes, dict[str, Any], ModelPlan, bytes]:
    """config.json and model.safetensors from a zip, read into memory and checked; nothing is extracted."""
    largest = MAX_CONFIG_BYTES + MAX_MODEL_FILE_BYTES + ZIP_SLACK_BYTES
    zip_name = _describe(path.name)
    try:
        with open(path, "rb") as fh:
            if path.stat().st_size > largest:
                raise CheckpointError(
                    f"the zip is {_mb(path.stat().st_size)}; a checkpoint zip is at most {_mb(largest)}"
                )
            entries, listing_bytes = _zip_directory_size(fh) or (0, 0)
            if entries > MAX_ZIP_ENTRIES or listing_bytes > MAX_ZIP_DIRECTORY_BYTES:
                raise CheckpointError(
                    f"the zip lists {entries:,} entries in {listing_bytes:,} bytes; a checkpoint zip holds its two "
                    f"files and a few more (at most {MAX_ZIP_ENTRIES})"
                )
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                members: dict[str, list[zipfile.ZipInfo]] = {}
                for info in zf.infolist():
                    # matched by base name only: the names in a zip are never used as paths
                    base = re.split(r"[/\\]", info.filename)[-1]
                    if not info.is_dir() and base in (MODEL_FILE, CONFIG_FILE):
                        members.setdefault(base, []).append(info)
                for name in (MODEL_FILE, CONFIG_FILE):
                    if name not in members:
                        raise CheckpointError(f"the zip holds no {name}")
                    if len(members[name]) > 1:
                        raise CheckpointError(f"the zip holds {len(members[name])} files named {name}; zip one folder")
                    info = members[name][0]
                    if info.flag_bits & 0x1:
                        raise CheckpointError(f"{name} in the zip is encrypted; zip it without a password")
                    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                        # zipfile decompresses bzip2 and LZMA without an output limit per read: a few kB
                        # of them can expand to tens of MB before the counting reader sees any of it
                        raise CheckpointError(
                            f"{name} in the zip uses an unusual compression; zip it with the standard one (deflate)"
                        )
                config_bytes = _read_member(zf, members[CONFIG_FILE][0], MAX_CONFIG_BYTES)
                config = _parse_config(config_bytes)
                plan = check_model_config(config)
                with zf.open(members[MODEL_FILE][0]) as stream:
                    weights = _read_weights(stream, plan, MODEL_FILE)
    except CheckpointError:
        raise
    except FileNotFoundError as exc:
        raise CheckpointError(f"{zip_name} is missing") from exc
    except _ZIP_ERRORS as exc:
        raise CheckpointError(f"{zip_name} is not a readable zip file (damaged, encrypted or unsupported)") from exc
    return config_bytes, config, plan, weights


# ----------------------------------------------------------------------------------------------
# Other folder operations
# ----------------------------------------------------------------------------------------------


def zip_checkpoint(directory: str | Path, out: str | Path) -> Path:
    """Zip a checkpoint folder's model and config for download."""
    directory, out = Path(directory), Path(out)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in (MODEL_FILE, CONFIG_FILE):
            zf.write(directory / name, arcname=f"{directory.name}/{name}")
    return out


def update_metadata(directory: str | Path, updates: dict[str, Any]) -> Path:
    """Merge ``updates`` into config.json, replacing the file atomically (weights untouched)."""
    directory = Path(directory)
    config = _read_config(directory / CONFIG_FILE)
    config.update(updates)
    write_file_atomically(
        directory / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(config, indent=2, default=str) + "\n")
    )
    return directory

"""Checkpoint folders: ``model.safetensors`` + ``config.json`` (+ ``training_state.safetensors`` to resume).

* Nothing is ever unpickled: tensors come from safetensors, everything else from JSON.
* Saving is atomic at the folder level: the new checkpoint is written in full beside the old one
  (``NAME.partial``), then swapped in with two renames; a crash at any point leaves either the old or
  the new checkpoint complete, and :func:`load_checkpoint` finds it (``NAME.previous`` is the fallback
  while a swap is half done).
* Loading checks every key and shape against the architecture the config describes and raises
  :class:`CheckpointError` naming what is wrong. Nothing is swapped in until all checks pass, so a
  caller's live model is untouched by a bad file.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ddpm_core.files import complete_folder, write_file_atomically, write_folder_atomically
from ddpm_core.schedule import SCHEDULE_NAMES, NoiseSchedule, ScheduleConfig
from ddpm_core.unet import ContextUNet, UNetConfig, count_parameters

FORMAT = "ddpm-playground/1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "training_state.safetensors"
MAX_CONFIG_BYTES = 1_000_000
MAX_WEIGHTS_BYTES = 200_000_000


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a message that says why."""


@dataclass
class LoadedModel:
    """A ready-to-sample model with its schedule and the metadata from config.json."""

    model: ContextUNet
    schedule: NoiseSchedule
    config: dict[str, Any]
    path: Path | None = None
    training_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.config.get("name") or (self.path.name if self.path else "unnamed"))

    def summary(self) -> dict[str, Any]:
        """The facts a user wants about the live model."""
        training = self.config.get("training", {})
        return {
            "name": self.name,
            "parameters": count_parameters(self.model),
            "channels": list(self.model.config.channels),
            "prediction": self.model.config.prediction,
            "recipe": (training.get("config") or {}).get("recipe"),
            "device": training.get("device"),
            "schedule": f"{self.schedule.name}, T = {self.schedule.num_steps}",
            "training_steps": training.get("steps"),
            "training_minutes": training.get("minutes"),
            "data": self.config.get("data", {}).get("description"),
            "metrics": self.config.get("metrics", {}),
        }


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


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{CONFIG_FILE} is missing")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{CONFIG_FILE} is larger than {MAX_CONFIG_BYTES} bytes; not a checkpoint config")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{CONFIG_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{CONFIG_FILE} must hold a JSON object")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{CONFIG_FILE} has format {config.get('format')!r}, expected {FORMAT!r}")
    return config


def _build_from_config(config: dict[str, Any]) -> tuple[ContextUNet, NoiseSchedule]:
    try:
        unet_config = UNetConfig.from_dict(config["model"])
        sched = config["schedule"]
        if sched.get("name") not in SCHEDULE_NAMES:
            raise ValueError(f"unknown schedule {sched.get('name')!r}")
        schedule = NoiseSchedule.from_config(ScheduleConfig(name=sched["name"], num_steps=int(sched["num_steps"])))
        model = ContextUNet(unet_config)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{CONFIG_FILE} does not describe a model this app can build: {exc}") from exc
    return model, schedule


def _read_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{what} is missing")
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{what} is larger than {MAX_WEIGHTS_BYTES // 1_000_000} MB")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{what} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc


def check_state_dict(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError unless ``weights`` has exactly the model's keys, shapes and float dtypes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s), e.g. {unexpected[:3]}")
        raise CheckpointError("weights do not match the architecture in config.json: " + "; ".join(parts))
    for key, tensor in expected.items():
        if tuple(weights[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"tensor {key!r} has shape {tuple(weights[key].shape)}, the architecture needs {tuple(tensor.shape)}"
            )
        if not weights[key].is_floating_point():
            raise CheckpointError(f"tensor {key!r} has dtype {weights[key].dtype}, expected floating point")
        if not bool(torch.isfinite(weights[key]).all()):
            raise CheckpointError(f"tensor {key!r} holds NaN or infinite values")


def load_checkpoint(directory: str | Path, with_training_state: bool = False) -> LoadedModel:
    """Load and fully check a checkpoint folder; raises CheckpointError naming the problem."""
    directory = complete_folder(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {directory} does not exist")
    config = _read_config(directory / CONFIG_FILE)
    model, schedule = _build_from_config(config)
    weights = _read_tensors(directory / MODEL_FILE, MODEL_FILE)
    check_state_dict(model, weights)
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    model.eval()
    state = None
    if with_training_state and (directory / STATE_FILE).exists():
        state = _read_tensors(directory / STATE_FILE, STATE_FILE)
    return LoadedModel(model, schedule, config, directory, state)


def load_uploaded(paths: list[str | Path], workdir: str | Path) -> LoadedModel:
    """Load a checkpoint uploaded as its two files or as one zip of the folder (extracted safely into ``workdir``)."""
    paths = [Path(p) for p in paths if p]
    if not paths:
        raise CheckpointError("upload model.safetensors and config.json, or a zip of the checkpoint folder")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if len(paths) == 1 and paths[0].suffix.lower() == ".zip":
        return load_checkpoint(_extract_zip(paths[0], workdir))
    wanted = {MODEL_FILE: None, CONFIG_FILE: None}
    for p in paths:
        name = (
            CONFIG_FILE if p.suffix.lower() == ".json" else MODEL_FILE if p.suffix.lower() == ".safetensors" else None
        )
        if name is None:
            raise CheckpointError(f"{p.name}: expected a .safetensors file, a config .json or a .zip")
        if wanted[name] is not None:
            raise CheckpointError(f"two files for {name}; upload one of each")
        wanted[name] = p
    for name, p in wanted.items():
        if p is None:
            raise CheckpointError(f"{name} is missing from the upload")
        shutil.copyfile(p, workdir / name)
    return load_checkpoint(workdir)


def _extract_zip(path: Path, workdir: Path) -> Path:
    try:
        with zipfile.ZipFile(path) as zf:
            members = {Path(i.filename).name: i for i in zf.infolist() if not i.is_dir()}
            for name in (MODEL_FILE, CONFIG_FILE):
                if name not in members:
                    raise CheckpointError(f"the zip holds no {name}")
                info = members[name]
                limit = MAX_WEIGHTS_BYTES if name == MODEL_FILE else MAX_CONFIG_BYTES
                if info.file_size > limit:
                    raise CheckpointError(f"{name} in the zip is too large ({info.file_size} bytes)")
                with zf.open(info) as src, open(workdir / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path.name} is not a readable zip file") from exc
    return workdir


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

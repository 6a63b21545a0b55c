"""Checkpoint folders: bit-exact round trip, atomic saves, and clear refusals of bad files."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from ddpm_core import checkpoints as ck
from ddpm_core import files
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet


def tiny_model(seed: int = 0) -> ContextUNet:
    torch.manual_seed(seed)
    model = ContextUNet(WIDTH_PRESETS["tiny"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, ContextUNet]:
    model = tiny_model()
    path = ck.save_checkpoint(tmp_path / "ckpt", model, make_schedule("cosine", 50), {"name": "t"})
    return path, model


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_round_trip_is_bit_exact(saved: tuple[Path, ContextUNet]) -> None:
    path, model = saved
    loaded = ck.load_checkpoint(path)
    assert loaded.schedule.name == "cosine" and loaded.schedule.num_steps == 50
    assert loaded.model.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    config = json.loads((path / ck.CONFIG_FILE).read_text())
    assert config["format"] == ck.FORMAT and config["name"] == "t"


def test_interrupted_save_leaves_the_old_checkpoint_loadable_and_unchanged(
    saved: tuple[Path, ContextUNet], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _model = saved
    before = file_bytes(path)
    real_replace = os.replace
    calls = []

    def crash_on_swap(src: str | Path, dst: str | Path) -> None:
        calls.append((src, dst))
        if len(calls) == 2:  # the old folder has been moved aside, the new one not yet moved in
            raise KeyboardInterrupt("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", crash_on_swap)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, tiny_model(seed=1), make_schedule("cosine", 50))
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert not path.exists()
    recovered = ck.load_checkpoint(path)  # falls back to NAME.previous
    assert file_bytes(recovered.path) == before
    assert not list(path.parent.glob("*.partial-*")), "partial folder left behind"


def test_a_crash_while_writing_files_leaves_the_old_folder_untouched(
    saved: tuple[Path, ContextUNet], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = saved
    before = file_bytes(path)

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(path, tiny_model(seed=2), make_schedule("cosine", 50))
    assert file_bytes(path) == before


def test_truncated_weights_are_refused(saved: tuple[Path, ContextUNet]) -> None:
    path, _ = saved
    data = (path / ck.MODEL_FILE).read_bytes()
    (path / ck.MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.CheckpointError, match="truncated or corrupt"):
        ck.load_checkpoint(path)


def test_weights_from_another_architecture_are_refused(saved: tuple[Path, ContextUNet], tmp_path: Path) -> None:
    path, _ = saved
    other = ck.save_checkpoint(tmp_path / "small", ContextUNet(WIDTH_PRESETS["small"]), make_schedule("cosine", 50))
    (path / ck.MODEL_FILE).write_bytes((other / ck.MODEL_FILE).read_bytes())
    with pytest.raises(ck.CheckpointError, match="shape"):
        ck.load_checkpoint(path)


def test_missing_and_extra_tensors_are_named(saved: tuple[Path, ContextUNet]) -> None:
    from safetensors.torch import load_file, save_file

    path, _ = saved
    weights = load_file(str(path / ck.MODEL_FILE))
    weights.pop("out.bias")
    weights["surprise"] = torch.zeros(1)
    save_file(weights, str(path / ck.MODEL_FILE))
    with pytest.raises(ck.CheckpointError, match=r"missing 1 tensor.*out\.bias.*unexpected 1 tensor.*surprise"):
        ck.load_checkpoint(path)


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"format": "other"}', "format"),
        (
            '{"format": "ddpm-playground/1", "model": {"channels": [8, 16, 16], "depth": 9}, '
            '"schedule": {"name": "cosine", "num_steps": 50}}',
            "unknown U-Net settings",
        ),
        (
            '{"format": "ddpm-playground/1", "model": {}, "schedule": {"name": "sigmoid", "num_steps": 50}}',
            "unknown schedule",
        ),
    ],
)
def test_bad_configs_are_refused(saved: tuple[Path, ContextUNet], config_text: str, message: str) -> None:
    path, _ = saved
    (path / ck.CONFIG_FILE).write_text(config_text)
    with pytest.raises(ck.CheckpointError, match=message):
        ck.load_checkpoint(path)


def test_a_pickle_upload_is_refused_without_unpickling(saved: tuple[Path, ContextUNet], tmp_path: Path) -> None:
    path, _model = saved
    evil = tmp_path / "model.safetensors"

    class Boom:
        def __reduce__(self) -> tuple:
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    evil.write_bytes(pickle.dumps({"state": Boom()}))
    with pytest.raises(ck.CheckpointError, match="not a readable safetensors"):
        ck.load_uploaded([evil, path / ck.CONFIG_FILE], tmp_path / "work")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ck.CheckpointError, match=r"expected a \.safetensors"):
        ck.load_uploaded([tmp_path / "model.pt", path / ck.CONFIG_FILE], tmp_path / "work2")


def test_zip_upload_round_trip_and_bad_zip(saved: tuple[Path, ContextUNet], tmp_path: Path) -> None:
    path, model = saved
    archive = ck.zip_checkpoint(path, tmp_path / "ckpt.zip")
    loaded = ck.load_uploaded([archive], tmp_path / "unzipped")
    assert torch.equal(loaded.model.state_dict()["out.weight"], model.state_dict()["out.weight"])
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ck.CheckpointError, match="not a readable zip"):
        ck.load_uploaded([bad], tmp_path / "w3")
    only_config = tmp_path / "only.zip"
    with zipfile.ZipFile(only_config, "w") as zf:
        zf.write(path / ck.CONFIG_FILE, "ckpt/config.json")
    with pytest.raises(ck.CheckpointError, match=r"no model\.safetensors"):
        ck.load_uploaded([only_config], tmp_path / "w4")


def test_update_metadata_keeps_weights(saved: tuple[Path, ContextUNet]) -> None:
    path, _ = saved
    weights = (path / ck.MODEL_FILE).read_bytes()
    ck.update_metadata(path, {"metrics": {"accuracy": 0.5}})
    assert ck.load_checkpoint(path).config["metrics"] == {"accuracy": 0.5}
    assert (path / ck.MODEL_FILE).read_bytes() == weights


def test_stale_partial_folders_from_a_killed_save_are_cleared(saved: tuple[Path, ContextUNet]) -> None:
    path, _ = saved
    stale = path.with_name(path.name + ".partial-dead")
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    ck.save_checkpoint(path, tiny_model(seed=3), make_schedule("cosine", 50))
    assert not stale.exists()
    assert ck.load_checkpoint(path).model.config == WIDTH_PRESETS["tiny"]


def set_data(path: Path, data: object) -> None:
    """Write ``data`` as config.json's "data" entry (what a hand-edited or foreign config may hold)."""
    config = json.loads((path / ck.CONFIG_FILE).read_text())
    config["data"] = data
    (path / ck.CONFIG_FILE).write_text(json.dumps(config))


def test_a_config_without_a_dataset_is_a_digit_model_and_a_named_one_is_read(saved: tuple[Path, ContextUNet]) -> None:
    path, _ = saved
    old = ck.load_checkpoint(path)  # made before there were two datasets: its config names none
    assert "data" not in old.config and old.dataset == "digits" and old.dataset_info.class_names[3] == "3"
    assert old.summary()["dataset"] == "digits"
    set_data(path, {"source": "bundled", "description": "MNIST digits, the old way"})
    assert ck.load_checkpoint(path).dataset == "digits"
    set_data(path, {"dataset": "fashion", "source": "bundled"})
    fashion = ck.load_checkpoint(path)
    assert fashion.dataset == "fashion" and fashion.dataset_info.class_names[9] == "Ankle boot"
    assert fashion.summary()["dataset"] == "fashion"


@pytest.mark.parametrize(
    ("dataset", "described"), [("cifar", "'cifar'"), (3, "3"), (None, "null"), (["fashion"], "a list of 1 item")]
)
def test_a_dataset_the_app_does_not_know_is_refused(
    saved: tuple[Path, ContextUNet], dataset: object, described: str
) -> None:
    path, _ = saved
    set_data(path, {"dataset": dataset})
    with pytest.raises(ck.CheckpointError) as excinfo:
        ck.load_checkpoint(path)
    assert str(excinfo.value) == f"config.json: data.dataset is {described}; the app knows digits and fashion"

"""Atomic writes, request folders and the locations of shipped files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ddpm_core import files, paths
from ddpm_core.data import bundled_path


def test_write_file_atomically_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    files.write_file_atomically(target, lambda tmp: tmp.write_text("old"))
    assert target.read_text() == "old" and oct(target.stat().st_mode & 0o777) == oct(0o644)

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.write_file_atomically(target, half_then_crash)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no temporary file left behind


def test_only_durable_writes_pay_for_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(files.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    files.write_file_atomically(tmp_path / "cache.png", lambda tmp: tmp.write_bytes(b"png"), durable=False)
    assert synced == [] and (tmp_path / "cache.png").read_bytes() == b"png"
    files.write_file_atomically(tmp_path / "config.json", lambda tmp: tmp.write_text("{}"))
    assert len(synced) == 2  # the file, then the folder holding the rename


def test_write_folder_atomically_swaps_in_a_complete_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    files.write_folder_atomically(folder, lambda f: (f / "a.txt").write_text("1"))
    files.write_folder_atomically(folder, lambda f: (f / "b.txt").write_text("2"))
    assert sorted(p.name for p in folder.iterdir()) == ["b.txt"]
    assert files.complete_folder(folder) == folder
    os.replace(folder, tmp_path / "model.previous")  # as a save cut off between its two renames leaves it
    assert files.complete_folder(folder) == tmp_path / "model.previous"


def test_fresh_folder_clears_old_folders_but_keeps_the_one_asked_for(tmp_path: Path) -> None:
    old, kept, recent = (tmp_path / name for name in ("old", "kept", "recent"))
    for folder in (old, kept, recent):
        folder.mkdir()
    long_ago = time.time() - 7200
    for folder in (old, kept):
        os.utime(folder, (long_ago, long_ago))
    new = files.fresh_folder(tmp_path, max_age_s=3600, keep=kept)
    assert new.is_dir() and new.parent == tmp_path
    assert not old.exists() and kept.exists() and recent.exists()
    assert files.fresh_folder(tmp_path, max_age_s=3600) != new  # every request gets its own


def test_shipped_files_are_found_and_the_environment_overrides_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (paths.ASSETS_ENV, paths.CHECKPOINTS_ENV, paths.HOME_ENV, paths.DATA_ENV):
        monkeypatch.delenv(name, raising=False)
    for dataset in ("digits", "fashion"):
        assert (paths.shipped_model_dir(dataset) / "model.safetensors").is_file()
        assert (paths.classifier_dir(dataset) / "config.json").is_file()
        assert bundled_path(dataset).is_file()
    assert paths.full_data_roots() == [paths.SYSTEM_DATASETS]
    monkeypatch.setenv(paths.ASSETS_ENV, str(tmp_path / "assets"))
    monkeypatch.setenv(paths.CHECKPOINTS_ENV, str(tmp_path / "ckpts"))
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "data"))
    assert bundled_path() == tmp_path / "assets" / "mnist_5k.npz"
    assert bundled_path("fashion") == tmp_path / "assets" / "fashion_5k.npz"
    assert paths.shipped_model_dir() == tmp_path / "ckpts" / "digits-base"
    assert paths.shipped_model_dir("fashion") == tmp_path / "ckpts" / "fashion-base"
    assert paths.classifier_dir() == tmp_path / "ckpts" / "classifier"
    assert paths.classifier_dir("fashion") == tmp_path / "ckpts" / "fashion-classifier"
    assert paths.full_data_roots() == [tmp_path / "data", paths.SYSTEM_DATASETS]  # searched first, Debian's after
    assert paths.runs_dir() == tmp_path / "home" and (tmp_path / "home").is_dir()


def test_an_installed_copy_reads_the_shipped_files_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ddpm_core.checkpoints import load_checkpoint
    from ddpm_core.data import load_bundled

    monkeypatch.setenv(paths.CHECKPOINTS_ENV, str(tmp_path))
    with pytest.raises(Exception, match="does not exist"):
        load_checkpoint(paths.shipped_model_dir())
    monkeypatch.setenv(paths.ASSETS_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_bundled()

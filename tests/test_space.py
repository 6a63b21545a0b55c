"""The repository deploys as a Hugging Face Space: its README front matter passes the Hub's documented schema, and a
push carries every binary file through Git LFS (the Hub refuses binaries committed as plain git objects).

The schema below is written from the Hub's "Spaces Configuration Reference"
(https://huggingface.co/docs/hub/spaces-config-reference) and, for ``license``, the repository-card metadata of
https://huggingface.co/docs/hub/repositories-licenses. Keys outside it are refused, so a typo
(``suggested-hardware``) fails here instead of being ignored by the Hub.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

COLORS = ["red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"]
HARDWARE = [  # the flavours the reference lists
    "cpu-basic", "cpu-upgrade",
    "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8",
    "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8",
    "v5e-1x1", "v5e-2x2", "v5e-2x4",
]  # fmt: skip
LICENSES = ["mit", "apache-2.0", "bsd-3-clause", "cc-by-4.0", "cc0-1.0", "other"]  # the few this project could use
REPO_ID = r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$"  # "gpt2" or "owner/name"

SPACE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "sdk", "sdk_version", "app_file"],
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "emoji": {"type": "string", "minLength": 1, "maxLength": 4},  # "emoji-only character allowed"
        "colorFrom": {"enum": COLORS},
        "colorTo": {"enum": COLORS},
        "sdk": {"enum": ["gradio", "docker", "static", "streamlit"]},
        "python_version": {"type": "string", "pattern": r"^3\.\d+(\.\d+)?$"},
        "sdk_version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "suggested_hardware": {"enum": HARDWARE},
        "suggested_storage": {"enum": ["small", "medium", "large"]},
        "app_file": {"type": "string"},
        "app_port": {"type": "integer"},
        "base_path": {"type": "string", "pattern": "^/"},
        "fullWidth": {"type": "boolean"},
        "header": {"enum": ["mini", "default"]},
        "short_description": {"type": "string", "maxLength": 60},
        "models": {"type": "array", "items": {"type": "string", "pattern": REPO_ID}},
        "datasets": {"type": "array", "items": {"type": "string", "pattern": REPO_ID}},
        "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "thumbnail": {"type": "string"},
        "pinned": {"type": "boolean"},
        "hf_oauth": {"type": "boolean"},
        "disable_embedding": {"type": "boolean"},
        "startup_duration_timeout": {"type": "string", "pattern": r"^\d+[mh]$"},
        "custom_headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "preload_from_hub": {"type": "array", "items": {"type": "string"}},
        "license": {"enum": LICENSES},
    },
}


def front_matter_text() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md does not start with a --- YAML block ---"
    return match.group(1)


def front_matter() -> dict[str, Any]:
    return yaml.safe_load(front_matter_text())


def test_the_front_matter_passes_the_documented_schema() -> None:
    jsonschema.validate(front_matter(), SPACE_SCHEMA)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("colorFrom", "teal"),
        ("suggested_hardware", "h100"),
        ("sdk_version", 6.31),
        ("short_description", "x" * 61),
        ("suggested-hardware", "cpu-basic"),
        ("datasets", "ylecun/mnist"),
    ],
)
def test_the_schema_refuses_what_the_hub_would(key: str, value: Any) -> None:
    """The schema is not a rubber stamp: each of these mistakes fails it."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**front_matter(), key: value}, SPACE_SCHEMA)


def test_the_space_runs_what_we_test_with() -> None:
    import gradio

    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert (ROOT / meta["app_file"]).is_file()
    # Versions must be quoted, or YAML reads python_version 3.10 as the number 3.1.
    raw = front_matter_text()
    assert re.search(r'^sdk_version: "\d+\.\d+\.\d+"$', raw, re.M), "sdk_version must be a quoted x.y.z"
    assert re.search(r'^python_version: "3\.\d+"$', raw, re.M), "python_version must be quoted"
    assert meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert meta["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0]
    requirement = next(r for r in (ROOT / "requirements.txt").read_text().splitlines() if r.startswith("gradio"))
    assert ">=" in requirement and "<" in requirement, f"gradio should be pinned to a range: {requirement}"


def test_huggingface_hub_reads_the_front_matter_as_a_space_card() -> None:
    from huggingface_hub import SpaceCard

    data = SpaceCard.load(ROOT / "README.md").data
    assert (data.sdk, data.app_file, data.license) == ("gradio", "app.py", "mit")
    assert "diffusion" in data.tags


def test_the_space_installs_the_full_fashion_set_where_the_data_module_looks() -> None:
    from ddpm_core import data, paths

    # packages.txt: one Debian package name per line, the form Debian policy (§5.6.7) allows
    packages = [line.strip() for line in (ROOT / "packages.txt").read_text().splitlines() if line.strip()]
    assert packages and all(re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", name) for name in packages), packages
    assert "dataset-fashion-mnist" in packages and data.FASHION.debian_package == "dataset-fashion-mnist"
    # that package installs /usr/share/datasets/fashion-mnist/*-idx?-ubyte.gz (its file list, Debian bookworm);
    # the data module searches there by default, under the dataset's first folder name
    assert paths.SYSTEM_DATASETS == Path("/usr/share/datasets")
    assert data.FASHION.folder_names[0] == "fashion-mnist"
    # the Space's declared datasets are the ones the model cards cite
    assert set(front_matter()["datasets"]) == {info.hub_dataset for info in data.DATASETS.values()}


# ---------------------------------------------------------------------------------------------
# Git LFS
# ---------------------------------------------------------------------------------------------

LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\n"
HUB_MAX_PLAIN_BYTES = 10 * 1024 * 1024  # the Hub refuses plain git files above 10 MB too


def git(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f"git {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def tracked_files() -> list[str]:
    """What a clone of this checkout holds: the tracked files that still exist, and new files git would add."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return sorted({name for name in listed if name and (ROOT / name).is_file()})


def is_binary(path: Path) -> bool:
    """Git's own test (a NUL byte in the first 8,000 bytes), widened to anything that is not UTF-8 text."""
    data = path.read_bytes()
    if b"\0" in data[:8000]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_every_binary_and_every_large_file_is_routed_through_lfs() -> None:
    files = tracked_files()
    binaries = [f for f in files if is_binary(ROOT / f) or (ROOT / f).stat().st_size > HUB_MAX_PLAIN_BYTES]
    assert any(f.endswith(".safetensors") for f in binaries) and "assets/mnist_5k.npz" in binaries  # the test sees them
    attributes = git("check-attr", "filter", "--", *binaries)
    not_lfs = [line for line in attributes.splitlines() if not line.endswith(": filter: lfs")]
    assert not not_lfs, "binary files without an LFS rule in .gitattributes:\n" + "\n".join(not_lfs)


def test_text_files_stay_plain_git() -> None:
    text = [f for f in tracked_files() if f.endswith((".py", ".md", ".json", ".txt", ".toml", ".jsonl"))]
    attributes = git("check-attr", "filter", "--", *text)
    assert ": filter: lfs" not in attributes, "a text file would go through LFS"


def need_git_lfs() -> None:
    """Skip on a developer machine without git-lfs; under CI (``CI=true``) fail, as .ci/run installs it."""
    if shutil.which("git-lfs") or subprocess.run(["git", "lfs", "version"], capture_output=True).returncode == 0:
        return
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail("CI=true but git-lfs is missing (bash .ci/install-git-lfs installs it)", pytrace=False)
    pytest.skip("git-lfs is not installed (bash .ci/install-git-lfs, as root)")


def test_a_space_commit_carries_every_binary_as_an_lfs_pointer(tmp_path: Path) -> None:
    """Commit this checkout's files as README.md's deploy steps do, with git-lfs on in that repository only."""
    need_git_lfs()
    repo = tmp_path / "space"
    for name in tracked_files():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}  # no LFS from the machine's config
    git("init", "-q", "-b", "main", cwd=repo, env=env)
    git("lfs", "install", "--local", cwd=repo, env=env)
    git("add", "-A", cwd=repo, env=env)
    git("-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "space", cwd=repo, env=env)

    lfs_files = set(git("lfs", "ls-files", "--name-only", cwd=repo, env=env).split())
    for name in tracked_files():
        blob = subprocess.run(
            ["git", "cat-file", "-p", f"HEAD:{name}"], cwd=repo, capture_output=True, env=env, check=True
        ).stdout
        if is_binary(ROOT / name):
            assert blob.startswith(LFS_POINTER), f"{name} would be pushed as a plain binary"
            assert name in lfs_files
        else:
            assert blob == (ROOT / name).read_bytes(), f"{name} changed on its way into the commit"
    # The checkout itself still holds the real files, not pointers (LFS was switched on in the scratch repo only).
    assert not (ROOT / "checkpoints/digits-base/model.safetensors").read_bytes().startswith(LFS_POINTER)

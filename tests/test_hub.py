"""Checkpoints from and to the Hugging Face Hub, without the Hub.

Loading is tested offline against a local Hub cache laid out by hand as huggingface_hub lays one out
(``tests/hub_fixtures.cache_repo``), with HF_HUB_OFFLINE=1 and the network blocked. Publishing and online
fetching are tested against ``FakeHub``, a stand-in for the Hub's HTTP API on 127.0.0.1, reached through
``HF_ENDPOINT``: a checkpoint is published there, fetched into a fresh cache, and loaded again offline.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_fixtures import FakeHub, cache_repo, fake_hub, refuse_connections
from huggingface_hub import ModelCard
from huggingface_hub import constants as hub_constants
from safetensors.torch import load_file

from ddpm_core import hub
from ddpm_core.checkpoints import (
    CONFIG_FILE,
    MAX_CONFIG_BYTES,
    MODEL_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from ddpm_core.cli import publish, sample
from ddpm_core.localhost import free_port
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet

ROOT = Path(__file__).resolve().parents[1]
REPO = "someone/tiny"
TAGS = {"diffusion", "ddpm", "mnist", "classifier-free-guidance"}
# Made-up measurements, stored in the tiny checkpoint's config.json; the card must carry exactly these.
METRICS = {
    "sampler": {"name": "ddim", "steps": 5, "spacing": "linspace"},
    "by_w": [
        {"w": 0.0, "accuracy": 0.25, "frechet_distance": 7.5, "samples": 20},
        {"w": 3.0, "accuracy": 0.75, "frechet_distance": 4.25, "samples": 20},
    ],
}
NOTES = "Hand-written notes about this tiny model."


def tiny_checkpoint(folder: Path, seed: int, dataset: str | None = None) -> Path:
    torch.manual_seed(seed)
    model = ContextUNet(WIDTH_PRESETS["tiny"])
    meta = {"name": "tiny", "metrics": METRICS, **({"data": {"dataset": dataset}} if dataset else {})}
    return save_checkpoint(folder, model, make_schedule("cosine", 50), meta)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint (untrained: only its bytes matter here) with a README holding an old header and notes."""
    folder = tiny_checkpoint(tmp_path_factory.mktemp("hub") / "tiny", seed=0)
    (folder / hub.CARD_FILE).write_text(f"---\nlicense: apache-2.0\n---\n\n# tiny\n\n{NOTES}\n", encoding="utf-8")
    return folder


def files_of(folder: Path, names: tuple[str, ...] = (CONFIG_FILE, MODEL_FILE)) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names}


def same_weights(a: Path, b: Path) -> bool:
    """Whether two checkpoint folders hold identical tensors, read straight from their safetensors files."""
    x, y = load_file(str(a / MODEL_FILE)), load_file(str(b / MODEL_FILE))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache, named by HF_HUB_CACHE after huggingface_hub was imported (hub.py reads it per call)."""
    folder = tmp_path / "hub-cache"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    return folder


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """HF_HUB_OFFLINE=1, and every outgoing connection recorded and refused (the list a test checks is empty)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return refuse_connections(monkeypatch)


@pytest.fixture()
def hub_online(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A FakeHub named by HF_ENDPOINT, with offline mode off (tests run with HF_HUB_OFFLINE=1 from import on)."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    with fake_hub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


# ----------------------------------------------------------------------------------------------
# Repo ids
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "repo_id", "revision"),
    [
        ("owner/name", "owner/name", None),
        ("  owner/name@main ", "owner/name", "main"),
        ("Org-1/model.v2_b@v1.0", "Org-1/model.v2_b", "v1.0"),
        ("o/n@refs/pr/3", "o/n", "refs/pr/3"),
        ("o/n@" + "ab" * 20, "o/n", "ab" * 20),
    ],
)
def test_repo_ids_and_revisions_are_read(text: str, repo_id: str, revision: str | None) -> None:
    assert hub.parse_repo(text) == hub.HubRepo(repo_id, revision)


@pytest.mark.parametrize(
    "text",
    [
        "name-only",
        "a/b/c",
        "/abs/path",
        "../up",
        "o/n m",
        "o/n@",
        "o/n@a b",
        "o/n@../x",
        "o--x/n",
        "o/n.",
        "",
        "o/" + "n" * 100,
    ],
)
def test_text_that_is_no_repo_id_is_refused_with_the_form_it_should_take(text: str) -> None:
    with pytest.raises(hub.HubError, match=r"is not a Hub repo id owner/name\[@revision\]"):
        hub.parse_repo(text)


def test_settings_are_read_when_asked_not_when_huggingface_hub_was_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.example:1234/")
    settings = hub.HubSettings.from_environment()
    assert (settings.offline, settings.cache_dir, settings.endpoint) == (
        False,
        tmp_path / "home" / "hub",
        "http://hub.example:1234",
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    settings = hub.HubSettings.from_environment()
    assert (settings.offline, settings.cache_dir) == (True, tmp_path / "cache")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # set when huggingface_hub was imported: still offline
    assert hub.HubSettings.from_environment().offline


# ----------------------------------------------------------------------------------------------
# Local folders first
# ----------------------------------------------------------------------------------------------


def test_an_existing_folder_wins_over_a_cached_repo_of_the_same_name(
    tiny: Path, tmp_path: Path, cache: Path, offline: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tiny_checkpoint(tmp_path / "other", seed=1)
    assert not same_weights(tiny, other)
    cache_repo(cache, REPO, files_of(other))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny, tmp_path / REPO)
    assert hub.resolve_checkpoint(REPO) == Path(REPO)
    assert same_weights(load_checkpoint(hub.resolve_checkpoint(REPO)).path, tiny)
    shutil.rmtree(tmp_path / REPO)
    assert same_weights(hub.resolve_checkpoint(REPO), other)  # no folder: now the cached repo
    assert offline == []


def test_a_folder_caught_mid_save_is_still_that_folder(tiny: Path, tmp_path: Path, cache: Path, offline: list) -> None:
    shutil.copytree(tiny, tmp_path / "run.previous")  # a save swapped NAME out and was killed before NAME was back
    assert hub.resolve_checkpoint(tmp_path / "run") == tmp_path / "run"
    assert same_weights(load_checkpoint(tmp_path / "run").path, tiny)


def test_a_file_is_not_a_checkpoint_folder(tmp_path: Path) -> None:
    (tmp_path / "model.zip").write_bytes(b"PK")
    with pytest.raises(CheckpointError, match="is a file; a checkpoint is a folder"):
        hub.resolve_checkpoint(tmp_path / "model.zip")


def test_neither_a_folder_nor_a_repo_id_says_both(cache: Path, offline: list) -> None:
    with pytest.raises(hub.HubError) as excinfo:
        hub.resolve_checkpoint("no such/dir/here")
    assert str(excinfo.value) == (
        "there is no folder 'no such/dir/here' here, and 'no such/dir/here' is not a Hub repo id owner/name[@revision]"
    )


# ----------------------------------------------------------------------------------------------
# Offline, from a local Hub cache
# ----------------------------------------------------------------------------------------------


def test_a_cached_repo_loads_offline_by_branch_tag_or_commit_without_the_network(
    tiny: Path, cache: Path, offline: list
) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache_repo(cache, REPO, files_of(tiny, (CONFIG_FILE, MODEL_FILE, hub.CARD_FILE)), commit=commit)
    (cache / "models--someone--tiny" / "refs" / "v1").write_text(commit)
    for spec in (REPO, f"{REPO}@main", f"{REPO}@v1", f"{REPO}@{commit}"):
        folder = hub.resolve_checkpoint(spec)
        assert folder == snapshot, spec
        loaded = load_checkpoint(folder)
        assert loaded.name == "tiny" and same_weights(folder, tiny)
    assert offline == []


def test_offline_a_repo_missing_from_the_cache_says_so(tiny: Path, cache: Path, offline: list) -> None:
    cache_repo(cache, REPO, files_of(tiny))
    for spec, missing in ((f"{REPO}-2", f"{REPO}-2"), (f"{REPO}@v9", f"{REPO}@v9")):
        with pytest.raises(hub.HubOfflineError) as excinfo:
            hub.resolve_checkpoint(spec)
        assert str(excinfo.value) == (
            f"there is no folder {spec!r} here, and {missing} is not in the local Hub cache ({cache}) and "
            "HF_HUB_OFFLINE=1 is set; download it once with network access (HF_HUB_OFFLINE unset), or point "
            "HF_HUB_CACHE at a cache that has it"
        )
    assert offline == []


def test_a_cached_repo_without_weights_is_not_a_checkpoint(tiny: Path, cache: Path, offline: list) -> None:
    cache_repo(cache, REPO, files_of(tiny, (CONFIG_FILE,)))
    with pytest.raises(hub.HubError, match=f"the Hub repo {REPO} has no model.safetensors: it is not a DDPM"):
        hub.resolve_checkpoint(REPO)


def test_the_sample_command_takes_a_hub_id_offline(
    tiny: Path, tmp_path: Path, cache: Path, offline: list, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_repo(cache, REPO, files_of(tiny))
    common = ["--classes", "3", "--per-class", "2", "--sampler", "ddim", "--steps", "2", "--seed", "5"]
    common += ["--precision", "fp32", "--runtime", "torch", "--device", "cpu"]
    assert sample.main(["--checkpoint", REPO, "--out", str(tmp_path / "hub.npz"), *common]) == 0
    assert sample.main(["--checkpoint", str(tiny), "--out", str(tmp_path / "local.npz"), *common]) == 0
    from_hub, local = np.load(tmp_path / "hub.npz"), np.load(tmp_path / "local.npz")
    assert from_hub["images"].shape == (2, 28, 28) and from_hub["labels"].tolist() == [3, 3]
    assert np.array_equal(from_hub["images"], local["images"])  # the same weights, the same seed: the same digits
    capsys.readouterr()
    assert sample.main(["--checkpoint", "someone/absent", "--out", str(tmp_path / "x.npz"), *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: there is no folder 'someone/absent' here, and someone/absent is not in the local Hub")
    assert "HF_HUB_OFFLINE=1 is set" in err and not (tmp_path / "x.npz").exists()
    assert offline == []


# ----------------------------------------------------------------------------------------------
# Publishing to, and fetching from, a stand-in Hub
# ----------------------------------------------------------------------------------------------


def test_publish_fetch_and_load_again_offline(
    tiny: Path,
    tmp_path: Path,
    cache: Path,
    hub_online: FakeHub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = shutil.copytree(tiny, tmp_path / "to-publish")
    (folder / "notes.txt").write_text("not part of a checkpoint")
    assert publish.main(["--checkpoint", str(folder), "--repo", REPO, "--message", "first"]) == 0
    summary = json.loads(capsys.readouterr().out)
    published = hub_online.repos[REPO]
    assert summary["commit"] == published.refs["main"]
    tree = published.commits[published.refs["main"]]
    assert set(tree) == {".gitattributes", CONFIG_FILE, MODEL_FILE, hub.CARD_FILE}  # not notes.txt
    assert {name: tree[name] for name in (CONFIG_FILE, MODEL_FILE)} == files_of(tiny)
    assert set(hub_online.authorizations) == {"Bearer hf_test_token"}

    card = ModelCard(tree[hub.CARD_FILE].decode("utf-8"))
    assert hub_online.cards == [tree[hub.CARD_FILE].decode("utf-8")]  # the Hub was asked to check that metadata
    assert card.data.license == "mit" and card.data.library_name == "ddpm-playground"
    assert TAGS <= set(card.data.tags) and card.data.datasets == ["ylecun/mnist"]
    measured = {(r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    assert measured == {
        ("accuracy", "w=0"): 0.25,
        ("frechet_distance", "w=0"): 7.5,
        ("accuracy", "w=3"): 0.75,
        ("frechet_distance", "w=3"): 4.25,
    }
    assert card.text.strip() == f"# tiny\n\n{NOTES}"  # the README's text kept, its old header replaced

    before = len(hub_online.requests)
    snapshot = hub.resolve_checkpoint(REPO)
    asked = [path for _, path in hub_online.requests[before:]]
    sizes_at = next(i for i, path in enumerate(asked) if "/paths-info/" in path)
    assert all(i > sizes_at for i, path in enumerate(asked) if "/resolve/" in path)  # sizes checked before download
    assert snapshot.parent.parent == cache / "models--someone--tiny"
    assert same_weights(load_checkpoint(snapshot).path, tiny)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = len(hub_online.requests)
    assert hub.resolve_checkpoint(REPO) == snapshot
    assert len(hub_online.requests) == seen  # offline: the Hub was not asked again


def test_a_repo_the_loader_would_refuse_for_its_size_is_not_downloaded(
    tiny: Path, cache: Path, hub_online: FakeHub
) -> None:
    hub_online.add_commit("big/model", files_of(tiny))
    hub_online.repos["big/model"].sizes[MODEL_FILE] = hub.MAX_MODEL_FILE_BYTES + 1
    with pytest.raises(hub.HubError) as excinfo:
        hub.resolve_checkpoint("big/model")
    assert f"has a model.safetensors of {hub.MAX_MODEL_FILE_BYTES + 1:,} bytes" in str(excinfo.value)
    assert "nothing was downloaded" in str(excinfo.value)
    hub_online.add_commit("big/config", files_of(tiny))
    hub_online.repos["big/config"].sizes[CONFIG_FILE] = MAX_CONFIG_BYTES + 1
    with pytest.raises(hub.HubError, match=f"has a config.json of {MAX_CONFIG_BYTES + 1:,} bytes"):
        hub.resolve_checkpoint("big/config")
    hub_online.add_commit("no/weights", files_of(tiny, (CONFIG_FILE,)))
    with pytest.raises(hub.HubError, match=r"the Hub repo no/weights has no model\.safetensors"):
        hub.resolve_checkpoint("no/weights")
    assert hub_online.paths("/big/", "/no/") == []  # no file of theirs was asked for
    assert not list(cache.glob("*/blobs/*"))

    hub_online.add_commit("just/fits", files_of(tiny))
    hub_online.repos["just/fits"].sizes[MODEL_FILE] = hub.MAX_MODEL_FILE_BYTES
    assert same_weights(hub.resolve_checkpoint("just/fits"), tiny)


def test_a_missing_repo_or_revision_is_named(tiny: Path, cache: Path, hub_online: FakeHub) -> None:
    hub_online.add_commit(REPO, files_of(tiny))
    with pytest.raises(hub.HubError, match="there is no model repo someone/absent on the Hub"):
        hub.resolve_checkpoint("someone/absent")
    with pytest.raises(hub.HubError, match=f"the Hub repo {REPO} has no revision 'nope'"):
        hub.resolve_checkpoint(f"{REPO}@nope")


def test_an_unreachable_hub_falls_back_on_a_cached_copy(
    tiny: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    snapshot = cache_repo(cache, REPO, files_of(tiny))
    assert hub.resolve_checkpoint(REPO) == snapshot
    with pytest.raises(hub.HubUnreachableError, match="cannot be reached and someone/other is not in the local"):
        hub.resolve_checkpoint("someone/other")


def test_publish_to_a_branch_creates_the_branch(
    tiny: Path, cache: Path, hub_online: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish.main(["--checkpoint", str(tiny), "--repo", REPO, "--revision", "dev"]) == 0
    repo = hub_online.repos[REPO]
    assert hub_online.paths("/api/models/someone/tiny/branch/dev") and set(repo.refs) == {"main", "dev"}
    assert MODEL_FILE in repo.commits[repo.refs["dev"]] and MODEL_FILE not in repo.commits[repo.refs["main"]]
    assert json.loads(capsys.readouterr().out)["revision"] == "dev"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (
            401,
            "error: the Hub refused the token (status 401): log in with `hf auth login`, set HF_TOKEN or pass --token",
        ),
        (403, "error: the token may not write to someone/tiny (status 403): use a token with write access to it"),
    ],
)
def test_publish_says_when_the_hub_refuses_the_token(
    tiny: Path, cache: Path, hub_online: FakeHub, capsys: pytest.CaptureFixture[str], status: int, message: str
) -> None:
    hub_online.fail["/api/repos/create"] = status
    assert publish.main(["--checkpoint", str(tiny), "--repo", REPO]) == 2
    assert capsys.readouterr().err.strip() == message
    assert REPO not in hub_online.repos


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--repo", REPO],
            "error: HF_HUB_OFFLINE=1 is set; publishing needs the network (unset it, or use --card-only)",
        ),
        ([], "error: say where to publish with --repo owner/name (or write only the card with --card-only)"),
        (["--repo", f"{REPO}@dev"], "error: give the branch with --revision, not as owner/name@revision"),
        (["--repo", "not a repo"], "is not a Hub repo id owner/name[@revision]"),
    ],
)
def test_publish_refuses_before_reaching_the_network(
    tiny: Path, offline: list, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert publish.main(["--checkpoint", str(tiny), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")
    assert offline == []


def test_publish_refuses_a_checkpoint_the_loader_refuses(
    tiny: Path, tmp_path: Path, offline: list, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = shutil.copytree(tiny, tmp_path / "broken")
    (broken / MODEL_FILE).write_bytes(b"not weights")
    assert publish.main(["--checkpoint", str(broken), "--repo", REPO, "--card-only", str(tmp_path / "card.md")]) == 2
    assert capsys.readouterr().err.startswith("error: model.safetensors")
    assert not (tmp_path / "card.md").exists() and offline == []


# ----------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------


def test_card_only_writes_the_card_in_place_and_again_the_same(
    tiny: Path, tmp_path: Path, offline: list, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shutil.copytree(tiny, tmp_path / "card")
    readme = folder / hub.CARD_FILE
    assert publish.main(["--checkpoint", str(folder), "--card-only", str(readme)]) == 0
    first = readme.read_text(encoding="utf-8")
    card = ModelCard(first)
    assert card.data.license == "mit" and "apache" not in first and card.text.strip() == f"# tiny\n\n{NOTES}"
    assert publish.main(["--checkpoint", str(folder), "--card-only", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == first
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, MODEL_FILE, hub.CARD_FILE])
    assert offline == []


def test_a_card_that_fails_to_write_leaves_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / hub.CARD_FILE
    out.write_text("the old card")
    with pytest.raises(UnicodeEncodeError):
        publish.write_card("---\nlicense: mit\n---\nhalf a card, then \ud800 that UTF-8 cannot encode", out)
    assert out.read_text() == "the old card" and [p.name for p in tmp_path.iterdir()] == [hub.CARD_FILE]


def test_a_checkpoint_without_a_readme_gets_a_short_card_naming_the_repo(tiny: Path, tmp_path: Path) -> None:
    folder = tiny_checkpoint(tmp_path / "bare", seed=0)
    text = publish.card_text(folder, hub.HubRepo(REPO))
    card = ModelCard(text)
    assert card.text.lstrip().startswith("# Model card: `tiny`")
    assert f"--checkpoint {REPO} " in card.text
    assert card.data.license == "mit" and TAGS <= set(card.data.tags)


def test_a_fashion_models_card_names_fashion_mnist_and_its_task(
    tmp_path: Path, offline: list, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny_checkpoint(tmp_path / "tiny-fashion", seed=0, dataset="fashion")
    out = tmp_path / "card.md"
    assert publish.main(["--checkpoint", str(folder), "--card-only", str(out)]) == 0
    card = ModelCard(out.read_text(encoding="utf-8"))
    assert card.data.datasets == ["zalando-datasets/fashion_mnist"]
    assert "fashion-mnist" in card.data.tags and "mnist" not in card.data.tags
    assert {"diffusion", "ddpm", "classifier-free-guidance"} <= set(card.data.tags)
    assert {r.task_name for r in card.data.eval_results} == {"Class-conditional fashion-item generation"}
    assert {r.dataset_type for r in card.data.eval_results} == {"zalando-datasets/fashion_mnist"}
    assert {r.dataset_name for r in card.data.eval_results} == {"Fashion-MNIST (the app's 1,000 held out)"}
    assert "class-conditional diffusion model for 28×28 Fashion-MNIST" in card.text and "digit" not in card.text
    digits = hub.card_data({"name": "d", "metrics": METRICS})  # no dataset named: a digit model
    assert digits.datasets == ["ylecun/mnist"] and "mnist" in digits.tags and "fashion-mnist" not in digits.tags
    assert {r.task_name for r in digits.eval_results} == {"Class-conditional digit generation"}
    assert offline == []


def test_measurements_that_are_not_numbers_are_left_out_of_the_card() -> None:
    config = {"name": "odd", "metrics": {"by_w": [{"w": "x", "accuracy": 0.5}, {"w": 1, "accuracy": float("nan")}, 5]}}
    assert hub.eval_results(config) == []
    data = hub.card_data(config)
    assert data.eval_results is None and "model-index" not in data.to_yaml() and data.license == "mit"


@pytest.mark.parametrize(
    ("name", "dataset", "tag"),
    [
        ("digits-base", "ylecun/mnist", "mnist"),
        ("digits-live", "ylecun/mnist", "mnist"),
        ("fashion-base", "zalando-datasets/fashion_mnist", "fashion-mnist"),
    ],
)
def test_the_shipped_cards_carry_the_hub_metadata_of_their_config(name: str, dataset: str, tag: str) -> None:
    folder = ROOT / "checkpoints" / name
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    card = ModelCard((folder / hub.CARD_FILE).read_text(encoding="utf-8"))
    data = card.data
    assert data.license == "mit" and data.library_name == "ddpm-playground" and data.datasets == [dataset]
    assert (TAGS - {"mnist"}) | {tag} <= set(data.tags) and data.model_name == name
    accuracy = {r.metric_config: r.metric_value for r in data.eval_results if r.metric_type == "accuracy"}
    assert accuracy == {f"w={row['w']:g}": row["accuracy"] for row in config["metrics"]["by_w"]}
    assert data.to_yaml() == hub.card_data(config).to_yaml()  # the header is what publishing would write today
    assert card.text.lstrip().startswith(f"# Model card: `{name}`")

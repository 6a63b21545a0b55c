"""Tab 3's "Load from the Hugging Face Hub": a Hub model becomes this page's model, from a local Hub cache offline.

The cache is laid out by hand as huggingface_hub lays one out (``hub_fixtures.cache_repo``) and named by
HF_HUB_CACHE, with HF_HUB_OFFLINE=1 and every outgoing connection refused; the online cases talk to
``hub_fixtures.FakeHub`` on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from hub_fixtures import FakeHub, cache_repo, fake_hub, refuse_connections
from huggingface_hub import constants as hub_constants
from safetensors.torch import load_file
from ui_fixtures import error_text, page

from ddpm_core import hub
from ddpm_core.checkpoints import CONFIG_FILE, MODEL_FILE, save_checkpoint
from ddpm_core.localhost import free_port
from ddpm_core.paths import runs_dir
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet
from ddpm_ui import model_card, state, train_tab

pytestmark = pytest.mark.usefixtures("tiny_live")
REPO = "someone/hub-digits"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hub_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint named "hub-digits", unlike the shipped stand-in ("tiny-digits")."""
    torch.manual_seed(7)
    folder = tmp_path_factory.mktemp("hub-model") / "hub-digits"
    return save_checkpoint(
        folder, ContextUNet(WIDTH_PRESETS["tiny"]), make_schedule("cosine", 50), {"name": "hub-digits"}
    )


def files_of(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in (CONFIG_FILE, MODEL_FILE)}


@pytest.fixture()
def cache(tmp_path: Path, hub_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's Hub cache, holding REPO; offline, with the network refused (the list of attempts stays empty)."""
    folder = tmp_path / "hub-cache"
    cache_repo(folder, REPO, files_of(hub_model))
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    return refuse_connections(monkeypatch)


@pytest.fixture()
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # tests import huggingface_hub with it set
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


@pytest.fixture()
def fake(cache: Path, online: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with fake_hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a / MODEL_FILE)), load_file(str(b / MODEL_FILE))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_hub_model_becomes_this_pages_model_only(cache: Path, hub_model: Path, no_network: list) -> None:
    a, b = page("a"), page("b")
    shipped = state.model_for(b)
    info = train_tab.load_from_hub(f"  {REPO}  ", a)
    assert info.startswith(f"Loaded `{REPO}` from the Hugging Face Hub for this page.")
    assert "`hub-digits`" in info and "for this page only" in info
    mine = state.model_for(a)
    assert mine.name == "hub-digits" and same_weights(mine.path, hub_model)
    assert mine.path.parent == runs_dir() / "uploads"  # this page's own copy, not the shared Hub cache
    assert state.model_for(b) is shipped and not state.MODELS.has_own("b")
    assert no_network == []


def test_a_hub_model_of_the_other_dataset_switches_the_page(cache: Path, hub_model: Path, no_network: list) -> None:
    fashion = json.loads((hub_model / CONFIG_FILE).read_text())
    fashion.update(name="hub-fashion", data={"dataset": "fashion"})
    cache_repo(cache, "someone/hub-fashion", {**files_of(hub_model), CONFIG_FILE: json.dumps(fashion).encode()})
    a = page("a")
    model_card.choose_dataset("fashion", a)
    info = train_tab.load_from_hub(REPO, a)
    assert info.startswith(
        f"Loaded `{REPO}` from the Hugging Face Hub for this page. It is a model of MNIST digits: this page has "
        "switched to that dataset. **Dataset:** MNIST digits"
    )
    assert state.dataset_for(a) == "digits" and state.model_for(a).name == "hub-digits"
    info = train_tab.load_from_hub("someone/hub-fashion", a)
    assert "this page has switched to that dataset. **Dataset:** Fashion-MNIST" in info and "`hub-fashion`" in info
    assert state.dataset_for(a) == "fashion" and state.model_for(a).dataset == "fashion"
    assert state.MODELS.get("a", "digits").name == "hub-digits"  # each dataset keeps the page's own model
    assert no_network == []


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (
            "someone/absent",
            "This server works offline (HF_HUB_OFFLINE=1): it can load only Hub models it already keeps",
        ),
        (f"{REPO}@v9", "This server works offline (HF_HUB_OFFLINE=1)"),
        ("not a repo", "is not a Hub repo id owner/name[@revision]"),
        ("x" * 301, "that is 301 characters; a Hub repo id owner/name[@revision] is shorter"),
        ("", "Type the Hub repo to load, like owner/name or owner/name@revision."),
        (None, "Type the Hub repo to load"),
        (5, "Type the Hub repo to load"),
        (["someone/hub-digits"], "Type the Hub repo to load"),
    ],
)
def test_a_refusal_keeps_the_pages_model(cache: Path, no_network: list, typed: object, message: str) -> None:
    a = page("a")
    train_tab.load_from_hub(REPO, a)
    mine = state.model_for(a)
    with pytest.raises(gr.Error) as excinfo:
        train_tab.load_from_hub(typed, a)
    assert message in error_text(excinfo)
    if typed and isinstance(typed, str) and len(typed) < 300:
        assert error_text(excinfo).endswith("This page's model is unchanged.")
    assert state.model_for(a) is mine and no_network == []


def test_only_repo_ids_are_taken_never_folders_on_the_server(cache: Path, no_network: list, tiny_dir: Path) -> None:
    a = page("a")
    with pytest.raises(gr.Error, match="is not a Hub repo id"):
        train_tab.load_from_hub(str(tiny_dir), a)  # an absolute path that exists: refused as text
    assert (ROOT / "checkpoints" / "digits-base").is_dir()
    with pytest.raises(gr.Error, match="checkpoints/digits-base is not one of them"):
        train_tab.load_from_hub("checkpoints/digits-base", a)  # looks like owner/name: only ever asked of the Hub
    assert not state.MODELS.has_own("a") and no_network == []


def test_a_damaged_checkpoint_in_the_cache_gets_the_uploads_checks(
    cache: Path, hub_model: Path, no_network: list
) -> None:
    weights = files_of(hub_model)[MODEL_FILE]
    cache_repo(cache, "someone/damaged", {**files_of(hub_model), MODEL_FILE: weights[: len(weights) // 2]})
    a = page("a")
    with pytest.raises(gr.Error) as excinfo:
        train_tab.load_from_hub("someone/damaged", a)
    message = error_text(excinfo)
    assert message.startswith("The model from the Hub was not loaded: model.safetensors")
    assert message.endswith("This page's model is unchanged.") and not state.MODELS.has_own("a")


def test_an_unreachable_hub_is_said_plainly(cache: Path, online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(gr.Error) as excinfo:
        train_tab.load_from_hub("someone/elsewhere", page("a"))
    assert error_text(excinfo) == (
        "The Hugging Face Hub cannot be reached from this server right now, and it does not keep someone/elsewhere; "
        "please try again later. This page's model is unchanged."
    )
    assert train_tab.load_from_hub(REPO, page("a")).startswith(f"Loaded `{REPO}`")  # a cached copy still loads


def test_online_the_server_sends_no_token_of_its_own(
    fake: FakeHub, hub_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_the_servers_own")
    fake.add_commit("someone/fresh", files_of(hub_model))
    assert train_tab.load_from_hub("someone/fresh", page("a")).startswith("Loaded `someone/fresh`")
    assert fake.paths("/someone/fresh/resolve/") and set(fake.authorizations) == {""}
    fake.add_commit("someone/cli", files_of(hub_model))
    hub.download_checkpoint(hub.HubRepo("someone/cli"))  # the command lines do send the owner's token
    assert "Bearer hf_the_servers_own" in fake.authorizations


def test_the_endpoint_is_named_and_runs_one_at_a_time(app_module) -> None:
    named = {fn.api_name: fn for fn in app_module.demo.fns.values() if fn.api_name}
    assert named["load_from_hub"].concurrency_limit == 1


def test_the_endpoint_loads_from_the_cache_over_the_api(cache: Path, gradio_client: Client) -> None:
    info = gradio_client.predict(REPO, api_name="/load_from_hub")
    assert info.startswith(f"Loaded `{REPO}` from the Hugging Face Hub for this page.")
    with pytest.raises(AppError, match="works offline"):
        gradio_client.predict("someone/absent", api_name="/load_from_hub")

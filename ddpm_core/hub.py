"""Checkpoints on the Hugging Face Hub: fetch one by repo id, and write the model card a published one carries.

A checkpoint on the Hub is a model repo holding the same files as a local checkpoint folder: ``config.json``,
``model.safetensors`` and a ``README.md`` model card. :func:`resolve_checkpoint` turns what a person typed into
a local folder for :func:`ddpm_core.checkpoints.load_checkpoint`:

* an existing local folder always wins (``checkpoints/digits-base`` also looks like a repo id ``owner/name``);
* otherwise ``owner/name`` or ``owner/name@revision`` is fetched with ``huggingface_hub.snapshot_download`` into
  its usual cache, and the snapshot folder is returned.

Fetching is bounded and strict: online, the revision is pinned to one commit first, the sizes of that commit's
files are read (``HfApi.get_paths_info``) and a repo whose files exceed the loader's limits is refused before
anything is downloaded; only the three files the loader reads are downloaded. With ``HF_HUB_OFFLINE=1`` nothing
reaches the network and only the local cache is read. Every failure becomes a :class:`HubError` that says what
to do. Whatever arrives is then checked by the project's strict loader like any upload.

huggingface_hub reads ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` once, when it is imported;
:class:`HubSettings` reads them when it is asked, so a later setting takes effect.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, snapshot_download
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import (
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    HTTPError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    RevisionResolutionError,
)
from huggingface_hub.utils import validate_repo_id

from ddpm_core.checkpoints import (
    CONFIG_FILE,
    MAX_CONFIG_BYTES,
    MAX_MODEL_FILE_BYTES,
    MAX_PARAMETERS,
    MODEL_FILE,
    CheckpointError,
    dataset_of,
)
from ddpm_core.data import DATASETS
from ddpm_core.files import complete_folder
from ddpm_core.paths import hub_cache_dir

CARD_FILE = "README.md"
CHECKPOINT_FILES = (CONFIG_FILE, MODEL_FILE, CARD_FILE)  # all a Hub checkpoint needs; nothing else is downloaded
MAX_CARD_BYTES = 1_000_000  # a bigger README is left on the Hub (the loader never reads it)
MAX_REVISION_CHARS = 200
OFFLINE_ENV, ENDPOINT_ENV = "HF_HUB_OFFLINE", "HF_ENDPOINT"
_TRUE = {"1", "on", "yes", "true"}  # what huggingface_hub counts as "set"
_REVISION = re.compile(r"[\w.\-]+(?:/[\w.\-]+)*")  # a branch, tag, "refs/pr/1" or a commit hash

# The model card's metadata (the YAML header the Hub reads).
LICENSE = "mit"
LIBRARY_NAME = "ddpm-playground"
PIPELINE_TAG = "unconditional-image-generation"  # the Hub's task for image generators without a text prompt
TAGS = ("diffusion", "ddpm", "classifier-free-guidance", "class-conditional", "pytorch", "safetensors")
# per dataset (config.json's data.dataset): its Hub dataset id and tag, the task's name and the held-out set's.
# accuracy: the share of samples the project's classifier reads as the class asked for; Fréchet distance: between
# the samples and the app's 1,000 held-out images, in that classifier's 128-d features (not Inception's: not FID)
CARD_WORDS = {
    "digits": ("mnist", "Class-conditional digit generation", "MNIST digits (the app's 1,000 held out)"),
    "fashion": (
        "fashion-mnist",
        "Class-conditional fashion-item generation",
        "Fashion-MNIST (the app's 1,000 held out)",
    ),
}


class HubError(CheckpointError):
    """A checkpoint that could not be fetched from the Hub, with a message that says why and what to do."""


class HubOfflineError(HubError):
    """HF_HUB_OFFLINE=1 is set and the checkpoint is not in the local Hub cache."""


class HubUnreachableError(HubError):
    """The Hub could not be reached (no connection, a timeout, the Hub down) and the checkpoint is not cached."""


# ----------------------------------------------------------------------------------------------
# What to fetch, and from where
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubRepo:
    """A model repo on the Hub and, optionally, a revision (branch, tag or commit); ``None`` is the default branch."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class HubSettings:
    """How to reach the Hub: its address, the cache folder, offline or not, and the token to send."""

    endpoint: str
    cache_dir: Path
    offline: bool
    token: str | bool | None = None  # None: huggingface_hub's own (HF_TOKEN or a saved login); False: none at all

    @classmethod
    def from_environment(cls, token: str | bool | None = None) -> HubSettings:
        """The settings the environment names now (``HF_ENDPOINT``, ``HF_HUB_CACHE``/``HF_HOME``, ``HF_HUB_OFFLINE``).

        Offline if ``HF_HUB_OFFLINE`` says so now or said so when huggingface_hub was imported: either way the
        person asked for no network.
        """
        endpoint = os.environ.get(ENDPOINT_ENV) or hub_constants.ENDPOINT
        offline = hub_constants.HF_HUB_OFFLINE or os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE
        return cls(endpoint=endpoint.rstrip("/"), cache_dir=hub_cache_dir(), offline=bool(offline), token=token)


def parse_repo(text: str) -> HubRepo:
    """``owner/name`` or ``owner/name@revision`` as a :class:`HubRepo`; HubError if it is not one."""
    text = text.strip()
    repo_id, _, revision = text.partition("@")
    problem = _repo_id_problem(repo_id)
    if problem is None and "@" in text:
        problem = _revision_problem(revision)
    if problem is not None:
        shown = text if len(text) <= 60 else text[:60] + "…"
        raise HubError(f"{shown!r} is not a Hub repo id owner/name[@revision]: {problem}")
    return HubRepo(repo_id, revision or None)


def _repo_id_problem(repo_id: str) -> str | None:
    if repo_id.count("/") != 1:
        return "a model repo id is an owner and a name with one slash between them, like owner/digits"
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return "owner and name are letters, digits, '-', '_' and '.', without '--' or '..', at most 96 in all"
    return None


def _revision_problem(revision: str) -> str | None:
    if not revision:
        return "nothing follows the '@' (a branch, tag or commit, like @main)"
    if len(revision) > MAX_REVISION_CHARS or not _REVISION.fullmatch(revision) or ".." in revision:
        return "a revision is a branch, tag or commit made of letters, digits, '-', '_', '.' and '/'"
    return None


# ----------------------------------------------------------------------------------------------
# Fetching
# ----------------------------------------------------------------------------------------------


def resolve_checkpoint(spec: str | os.PathLike, settings: HubSettings | None = None) -> Path:
    """A local checkpoint folder as it is; otherwise ``owner/repo[@revision]`` fetched from the Hub (or found in the
    local cache when HF_HUB_OFFLINE=1) and returned as the snapshot folder.

    The folder still has to pass :func:`ddpm_core.checkpoints.load_checkpoint`; this only finds it.
    """
    text = os.fspath(spec)
    local = complete_folder(text) if text.strip() else None
    if local is not None and local.exists():
        if not local.is_dir():
            raise CheckpointError(f"{text} is a file; a checkpoint is a folder holding {CONFIG_FILE} and {MODEL_FILE}")
        return Path(text)  # as given: the loader finds NAME.previous itself
    try:
        repo = parse_repo(text)
    except HubError:
        shown = text if len(text) <= 60 else text[:60] + "…"
        raise HubError(
            f"there is no folder {shown!r} here, and {shown!r} is not a Hub repo id owner/name[@revision]"
        ) from None
    try:
        return download_checkpoint(repo, settings)
    except HubError as err:
        raise type(err)(f"there is no folder {text!r} here, and {err}") from err


def download_checkpoint(repo: HubRepo, settings: HubSettings | None = None) -> Path:
    """The snapshot folder of a checkpoint on the Hub: fetched (only the files the loader reads), or, offline, found
    in the local cache. Never a local path that a person typed: only a repo id.
    """
    settings = settings or HubSettings.from_environment()
    try:
        if settings.offline:
            folder = _cached_snapshot(repo, settings, repo.revision)
        else:
            folder = _fetch(repo, settings)
    except HubError:
        raise
    except (HTTPError, OSError, RevisionResolutionError, ValueError) as err:
        kind, message = _explain(err, repo, settings)
        raise kind(message) from err
    missing = [name for name in (CONFIG_FILE, MODEL_FILE) if not (folder / name).is_file()]
    if missing:
        raise HubError(
            f"the Hub repo {repo} has no {' and no '.join(missing)}: it is not a DDPM Playground checkpoint "
            f"(one holds {CONFIG_FILE} and {MODEL_FILE})"
        )
    return folder


def _snapshot(repo: HubRepo, settings: HubSettings, revision: str | None, files: Sequence[str], offline: bool) -> Path:
    folder = snapshot_download(
        repo.repo_id,
        revision=revision,
        cache_dir=settings.cache_dir,
        allow_patterns=list(files),
        local_files_only=offline,
        endpoint=settings.endpoint,
        token=settings.token,
        library_name=LIBRARY_NAME,
    )
    return Path(str(folder))


def _cached_snapshot(repo: HubRepo, settings: HubSettings, revision: str | None) -> Path:
    return _snapshot(repo, settings, revision, CHECKPOINT_FILES, offline=True)


def _fetch(repo: HubRepo, settings: HubSettings) -> Path:
    """Pin the revision to a commit, check that commit's file sizes, then download only what the loader reads."""
    api = HfApi(endpoint=settings.endpoint, token=settings.token, library_name=LIBRARY_NAME)
    # resolve_revision also records branch → commit in the cache (refs/), which offline use reads later; if the
    # Hub cannot be reached it falls back on that record
    revision = api.resolve_revision(repo.repo_id, revision=repo.revision, cache_dir=settings.cache_dir)
    try:
        listed = api.get_paths_info(repo.repo_id, list(CHECKPOINT_FILES), revision=revision.resolved)
    except (HTTPError, ConnectionError) as err:
        if not _unreachable(err):
            raise
        return _cached_snapshot(repo, settings, revision.resolved)  # the Hub is down: a complete cached copy will do
    sizes = {info.path: info.size for info in listed if getattr(info, "size", None) is not None}
    files = _files_to_fetch(repo, sizes)
    return _snapshot(repo, settings, revision, files, offline=False)


def _files_to_fetch(repo: HubRepo, sizes: Mapping[str, int]) -> list[str]:
    """The files to download, after refusing a repo whose checkpoint files the loader would refuse for their size."""
    missing = [name for name in (CONFIG_FILE, MODEL_FILE) if name not in sizes]
    if missing:
        raise HubError(
            f"the Hub repo {repo} has no {' and no '.join(missing)}: it is not a DDPM Playground checkpoint "
            f"(one holds {CONFIG_FILE} and {MODEL_FILE})"
        )
    if sizes[CONFIG_FILE] > MAX_CONFIG_BYTES:
        raise HubError(
            f"the Hub repo {repo} has a {CONFIG_FILE} of {sizes[CONFIG_FILE]:,} bytes; a checkpoint config is at most "
            f"{MAX_CONFIG_BYTES:,} bytes, so nothing was downloaded"
        )
    if sizes[MODEL_FILE] > MAX_MODEL_FILE_BYTES:
        raise HubError(
            f"the Hub repo {repo} has a {MODEL_FILE} of {sizes[MODEL_FILE]:,} bytes; this app loads weights files of "
            f"at most {MAX_MODEL_FILE_BYTES:,} bytes ({MAX_PARAMETERS:,} parameters in float32), so nothing was "
            "downloaded"
        )
    card = [CARD_FILE] if sizes.get(CARD_FILE, MAX_CARD_BYTES + 1) <= MAX_CARD_BYTES else []
    return [CONFIG_FILE, MODEL_FILE, *card]


def _unreachable(err: BaseException) -> bool:
    """Whether an error means the Hub could not be reached (rather than that it answered no)."""
    if isinstance(err, (OfflineModeIsEnabled, ConnectionError)):
        return True
    if isinstance(err, HfHubHTTPError):
        return err.response is not None and err.response.status_code >= 500
    return isinstance(err, HTTPError)  # a transport error: no connection, a timeout, a broken answer


def _explain(err: BaseException, repo: HubRepo, settings: HubSettings) -> tuple[type[HubError], str]:
    """What a huggingface_hub error means for the person who asked for ``repo``, and what they can do."""
    if isinstance(err, IncompleteSnapshotError):
        return HubError, (
            f"the local Hub cache holds only part of {repo} and the Hub could not be asked for the rest; "
            "run again with network access to complete it"
        )
    if settings.offline and isinstance(err, (LocalEntryNotFoundError, RevisionResolutionError, OfflineModeIsEnabled)):
        return HubOfflineError, (
            f"{repo} is not in the local Hub cache ({settings.cache_dir}) and HF_HUB_OFFLINE=1 is set; "
            "download it once with network access (HF_HUB_OFFLINE unset), or point HF_HUB_CACHE at a cache that has it"
        )
    if isinstance(err, GatedRepoError):
        return HubError, (
            f"the Hub repo {repo.repo_id} is gated: accept its conditions on its Hub page and log in "
            "(hf auth login) before loading it"
        )
    if isinstance(err, DisabledRepoError):
        return HubError, f"the Hub repo {repo.repo_id} has been disabled by its owner or by the Hub"
    if isinstance(err, RepositoryNotFoundError):
        return HubError, (
            f"there is no model repo {repo.repo_id} on the Hub (or it is private and the token sent may not see it)"
        )
    if isinstance(err, RevisionNotFoundError):
        return HubError, f"the Hub repo {repo.repo_id} has no revision {repo.revision!r} (a branch, tag or commit)"
    if isinstance(err, HfHubHTTPError) and not _unreachable(err):
        status = err.response.status_code if err.response is not None else "an error"
        if status == 401:
            return HubError, f"the Hub refused the token for {repo.repo_id} (status 401); log in again (hf auth login)"
        return HubError, f"the Hub answered {status} when asked for {repo}"
    if isinstance(err, (HTTPError, ConnectionError, RevisionResolutionError, LocalEntryNotFoundError)):
        return HubUnreachableError, (
            f"the Hub at {settings.endpoint} cannot be reached and {repo} is not in the local Hub cache; "
            "check the network connection and try again"
        )
    if isinstance(err, OSError):
        return HubError, f"the local Hub cache could not be used ({err.strerror or type(err).__name__})"
    return HubError, f"{repo} could not be fetched from the Hub ({type(err).__name__})"


# ----------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A finite JSON number (not a bool) as a float; None for anything else (a config is free text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def model_name(config: Mapping[str, Any]) -> str:
    """The name a card gives the model: config.json's ``name`` (made safe) or a generic one."""
    raw = config.get("name")
    safe = re.sub(r"[^\w.\- ]+", "-", raw).strip(" .-")[:80] if isinstance(raw, str) else ""
    return safe or "ddpm-playground-digits"


def eval_results(config: Mapping[str, Any]) -> list[EvalResult]:
    """config.json's measured quality (``metrics.by_w``) as the Hub's model-index entries: the classifier's accuracy
    and the Fréchet distance at each guidance weight w, with the sampler and sample count as their arguments."""
    dataset = dataset_of(dict(config))
    _, task_name, held_out_name = CARD_WORDS[dataset]
    metrics = _mapping(config.get("metrics"))
    sampler = _mapping(metrics.get("sampler"))
    parts = [str(sampler[k]) for k in ("name", "steps", "spacing") if isinstance(sampler.get(k), (str, int))]
    how = " ".join(parts[:2]) + (f" steps, {parts[2]} spacing" if len(parts) == 3 else "")
    results: list[EvalResult] = []
    rows = metrics.get("by_w")
    for row in rows if isinstance(rows, list) else []:
        row = _mapping(row)
        w = _number(row.get("w"))
        if w is None:
            continue
        args: dict[str, Any] = {"w": w}
        if how:
            args["sampler"] = how
        samples = _number(row.get("samples"))
        if samples is not None:
            args["samples"] = int(samples)
        for metric_type, what in (("accuracy", "accuracy"), ("frechet_distance", "Fréchet distance")):
            value = _number(row.get(metric_type))
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type=PIPELINE_TAG,
                    task_name=task_name,
                    dataset_type=DATASETS[dataset].hub_dataset,
                    dataset_name=held_out_name,
                    metric_type=metric_type,
                    metric_value=value,
                    metric_name=f"{what} at w = {w:g}",
                    metric_config=f"w={w:g}",
                    metric_args=dict(args),
                )
            )
    return results


def card_data(config: Mapping[str, Any]) -> ModelCardData:
    """The Hub metadata (the card's YAML header) for a checkpoint, from its config.json."""
    model = _mapping(config.get("model"))
    dataset = dataset_of(dict(config))
    tags = [*TAGS[:2], CARD_WORDS[dataset][0], *TAGS[2:]]
    prediction = model.get("prediction")
    if prediction in ("eps", "v"):
        tags.append(f"{prediction}-prediction")
    if model.get("guidance_input") is True or "distillation" in config:
        tags.append("distillation")
    results = eval_results(config)
    return ModelCardData(
        license=LICENSE,
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        tags=tags,
        datasets=[DATASETS[dataset].hub_dataset],
        metrics=sorted({r.metric_type for r in results}) or None,
        model_name=model_name(config) if results else None,
        eval_results=results or None,
    )


def default_card_body(config: Mapping[str, Any], repo_id: str | None = None) -> str:
    """A short card for a checkpoint that has none: what it is and how to use it."""
    name = model_name(config)
    model = _mapping(config.get("model"))
    schedule = _mapping(config.get("schedule"))
    source = repo_id or f"path/to/{name}"
    info = DATASETS[dataset_of(dict(config))]
    widths = model.get("channels")
    architecture = f"channels {widths}, " if isinstance(widths, list) else ""
    return (
        f"# Model card: `{name}`\n\n"
        f"A class-conditional diffusion model for 28×28 {info.title} made with DDPM Playground "
        f"({architecture}prediction `{model.get('prediction', 'eps')}`, "
        f"schedule {schedule.get('name', '?')} with T = {schedule.get('num_steps', '?')}). "
        "Classifier-free guidance: the same network also learnt the unconditional model.\n\n"
        "## Use\n\n"
        "```bash\n"
        f"python -m ddpm_core.cli.sample --checkpoint {source} --w 4 --per-class 4 --out samples.npz --grid grid.png\n"
        "```\n\n"
        'In the app: tab "Train or load", *Load from the Hugging Face Hub*. The measured quality, if any, is in '
        "`config.json` under `metrics` and in this card's metadata.\n"
    )


def model_card(config: Mapping[str, Any], body: str | None = None, repo_id: str | None = None) -> ModelCard:
    """The card: the metadata from :func:`card_data` over ``body`` (a README's text without its header), or a
    short default body when there is none."""
    text = body if body and body.strip() else default_card_body(config, repo_id)
    return ModelCard(f"---\n{card_data(config).to_yaml()}\n---\n\n{text.lstrip()}")


def card_body(readme: str) -> str:
    """A README's Markdown without its YAML header (if any); CheckpointError if that header is broken."""
    if not readme.lstrip("\ufeff").startswith("---"):
        return readme  # no header (huggingface_hub would log that it found none)
    try:
        return ModelCard(readme, ignore_metadata_errors=True).text
    except ValueError as err:
        raise CheckpointError(f"{CARD_FILE} has a metadata header that is not valid YAML ({err})") from None

r"""Command line: publish a checkpoint to the Hugging Face Hub, with a model card.

    python -m ddpm_core.cli.publish --checkpoint runs/my-model --repo your-name/my-model
    python -m ddpm_core.cli.publish --checkpoint checkpoints/digits-base --card-only checkpoints/digits-base/README.md

The checkpoint is checked by the strict loader first; then its model card is written: the Hub metadata
(license, library, tags, the dataset named by config.json's "data", and the quality measured in its "metrics"
as a model-index) over the folder's README.md text, or a short default text when it has none. Then
config.json, model.safetensors and README.md, and nothing else, are uploaded in one commit (the repo is
created if needed). --card-only writes the card to a file instead and uploads nothing. The token comes from
--token, else HF_TOKEN or a saved `hf auth login`; HF_ENDPOINT names another Hub.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, HTTPError, OfflineModeIsEnabled

from ddpm_core.checkpoints import CONFIG_FILE, MODEL_FILE, CheckpointError, load_checkpoint
from ddpm_core.cli import make_parser
from ddpm_core.files import write_file_atomically
from ddpm_core.hub import CARD_FILE, HubRepo, HubSettings, card_body, model_card, parse_repo

UPLOADED = (CONFIG_FILE, MODEL_FILE, CARD_FILE)
DEFAULT_MESSAGE = "Upload a DDPM Playground checkpoint"


class PublishError(CheckpointError):
    """Publishing failed; the message says why."""


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m ddpm_core.cli.publish", __doc__)
    p.add_argument("--checkpoint", required=True, help="the checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--repo", default=None, help="the Hub model repo owner/name to publish to (unless --card-only)")
    p.add_argument("--revision", default="main", help="the branch to commit to (created from main if it is missing)")
    p.add_argument("--private", action="store_true", help="create the repo as private (an existing repo keeps its own)")
    p.add_argument(
        "--token",
        default=None,
        help="a Hub token with write access; prefer HF_TOKEN or `hf auth login`, since a command line can be seen "
        "by other users of the machine",
    )
    p.add_argument("--message", default=DEFAULT_MESSAGE, help="the commit message")
    p.add_argument(
        "--card-only",
        default=None,
        metavar="OUT",
        help="write the model card to OUT (say, a README.md); upload nothing",
    )
    return p


def read_body(folder: Path) -> str | None:
    """The folder's README.md text without its metadata header, or None if it has no README.md."""
    readme = folder / CARD_FILE
    if not readme.is_file():
        return None
    try:
        return card_body(readme.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PublishError(f"{readme} is not UTF-8 text") from None


def card_text(folder: Path, repo: HubRepo | None) -> str:
    """The model card for the checkpoint in ``folder`` (checked by the strict loader first)."""
    loaded = load_checkpoint(folder)
    return str(model_card(loaded.config, read_body(folder), repo.repo_id if repo else None))


def write_card(text: str, out: Path) -> Path:
    """Write the card in one step: a reader sees the old file or the whole new one, never half of it."""
    return write_file_atomically(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def publish(
    folder: Path, repo: HubRepo, card: str, *, private: bool, message: str, settings: HubSettings
) -> dict[str, str]:
    """Create the repo (and branch) if needed and upload the three files in one commit; returns where they went."""
    if settings.offline:
        raise PublishError("HF_HUB_OFFLINE=1 is set; publishing needs the network (unset it, or use --card-only)")
    api = HfApi(endpoint=settings.endpoint, token=settings.token)
    revision = repo.revision or "main"
    with tempfile.TemporaryDirectory(prefix="ddpm-publish-") as staging:
        stage = Path(staging)
        for name in (CONFIG_FILE, MODEL_FILE):
            shutil.copyfile(folder / name, stage / name)
        (stage / CARD_FILE).write_text(card, encoding="utf-8")
        try:
            url = api.create_repo(repo.repo_id, private=private or None, exist_ok=True)
            if revision != "main":
                api.create_branch(repo.repo_id, branch=revision, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo.repo_id,
                folder_path=stage,
                revision=revision,
                commit_message=message,
                allow_patterns=list(UPLOADED),
            )
        except (HTTPError, OfflineModeIsEnabled, ConnectionError) as err:
            raise PublishError(_explain(err, repo, settings)) from None
        except ValueError as err:  # the Hub refused the card's metadata (huggingface_hub lists the Hub's reasons)
            raise PublishError(f"the Hub refused the model card: {err}") from None
    return {
        "repo": repo.repo_id,
        "revision": revision,
        "url": str(url),
        "commit": str(getattr(commit, "oid", "")),
        "commit_url": str(getattr(commit, "commit_url", "")),
        "files": ", ".join(UPLOADED),
    }


def _explain(err: BaseException, repo: HubRepo, settings: HubSettings) -> str:
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE=1 is set; publishing needs the network (unset it, or use --card-only)"
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        if status == 401:
            return "the Hub refused the token (status 401): log in with `hf auth login`, set HF_TOKEN or pass --token"
        if status == 403:
            return f"the token may not write to {repo.repo_id} (status 403): use a token with write access to it"
        return f"the Hub answered {status} while publishing to {repo}"
    return f"the Hub at {settings.endpoint} cannot be reached; check the network connection and try again"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        folder = Path(args.checkpoint)
        if not folder.is_dir():
            raise PublishError(f"there is no checkpoint folder {args.checkpoint!r}")
        repo = None
        if args.repo is not None:
            if "@" in args.repo:
                raise PublishError("give the branch with --revision, not as owner/name@revision")
            repo = parse_repo(f"{args.repo}@{args.revision}")
        elif args.card_only is None:
            raise PublishError("say where to publish with --repo owner/name (or write only the card with --card-only)")
        card = card_text(folder, repo)
        if args.card_only is not None:
            out = write_card(card, Path(args.card_only))
            print(json.dumps({"card": str(out)}))
            return 0
        assert repo is not None
        settings = HubSettings.from_environment(token=args.token)
        summary = publish(folder, repo, card, private=args.private, message=args.message, settings=settings)
    except (CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

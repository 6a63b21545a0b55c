"""The command lines of the core, one module each (installed as console scripts by ``pip install -e .``).

* ``python -m ddpm_core.cli.train`` (``ddpm-train``) — train a model of digits or fashion items into a folder.
* ``python -m ddpm_core.cli.sample`` (``ddpm-sample``) — sample from a checkpoint to npz, PNG and GIF.
* ``python -m ddpm_core.cli.evaluate`` (``ddpm-evaluate``) — measure a checkpoint with its dataset's classifier.
* ``python -m ddpm_core.cli.distill`` (``ddpm-distill``) — distil a guided model into a few-step student that takes w.
* ``python -m ddpm_core.cli.train_classifier`` (``ddpm-train-classifier``) — retrain a dataset's classifier.
* ``python -m ddpm_core.cli.digits`` (``ddpm-digits``) — describe a dataset's bundled images, or rebuild them.
* ``python -m ddpm_core.cli.publish`` (``ddpm-publish``) — publish a checkpoint to the Hugging Face Hub with a card.

Each module has ``build_parser()`` (made by :func:`make_parser`: the module docstring's first line as the
description, its examples as the epilog, every flag's default in ``--help``) and ``main(argv=None) -> int``, the
exit code; the library modules they call hold no command line. A flag that takes a model (``--checkpoint``,
``--resume``, ``--teacher``) also takes a Hub id ``owner/repo[@revision]`` (:func:`ddpm_core.hub.resolve_checkpoint`).
"""

from __future__ import annotations

import argparse
import textwrap

COMMAND_LINE_PREFIX = "Command line: "
HUB_SPEC = "owner/repo[@revision]"  # how a help text names a Hugging Face Hub model (see ddpm_core.hub)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the epilog's example lines as written and appends ``(default: …)`` to every flag that has one.

    Unlike :class:`argparse.ArgumentDefaultsHelpFormatter` it says nothing for a default of ``None`` or
    ``False`` (an option left unset, a switch left off) nor for a required flag, and leaves a help that
    already names its default (``default: from --recipe``) alone.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        says_default = "default:" in text or "%(default)" in text
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if says_default or action.required or unset:
            return text
        return f"{text} (default: %(default)s)"


def make_parser(prog: str, doc: str, *, paragraphs: int | None = None) -> argparse.ArgumentParser:
    """A parser whose description is the first line of ``doc`` and whose epilog is the rest (the examples).

    ``doc`` is the command's module docstring; a leading "Command line: " is dropped from the summary, and
    ``paragraphs`` keeps only that many of its blank-line-separated paragraphs (the summary and the examples of
    a long docstring). The help shows every flag's default (see :class:`HelpFormatter`).
    """
    text = "\n\n".join((doc or prog).strip().split("\n\n")[:paragraphs])
    summary, _, rest = text.partition("\n")
    summary = summary.removeprefix(COMMAND_LINE_PREFIX)
    epilog = textwrap.dedent(rest).strip("\n").rstrip().replace("``", "").replace("::\n", ":\n") or None
    return argparse.ArgumentParser(
        prog=prog, description=summary[:1].upper() + summary[1:], epilog=epilog, formatter_class=HelpFormatter
    )


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--data`` and ``--data-root``: which dataset trains, from which source (see ddpm_core.data)."""
    from ddpm_core.data import DATA_SOURCES, DATASETS, DEFAULT_DATASET

    p.add_argument("--dataset", choices=sorted(DATASETS), default=DEFAULT_DATASET, help="what the images are")
    p.add_argument(
        "--data",
        choices=DATA_SOURCES,
        default="bundled",
        help="bundled: the 4,000 shipped training images; full: the 60,000 of the IDX files",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder with the full set's IDX files (default: $DDPM_PLAYGROUND_DATA, then /usr/share/datasets)",
    )

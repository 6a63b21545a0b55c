"""DDPM Playground: a Gradio app that teaches denoising diffusion by letting you poke at it.

Run ``python app.py`` (``--host``, ``--port``, ``--share``). Importing this module builds the UI
(``demo``, so ``gradio app.py`` and Hugging Face Spaces work) but computes nothing: every picture is made
by a handler when a page asks for it. Each tab lives in its own module of :mod:`ddpm_ui`; this file only
assembles them and starts the server.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # must be set before gradio is imported

import argparse
import logging
import threading
from typing import Any

import gradio as gr

from ddpm_core.runtime import default_precision, default_runtime
from ddpm_ui import api_errors, forward_tab, image_cache, links, model_card, oracle_tab, sample_tab, train_tab
from ddpm_ui.common import MAX_FILE_SIZE
from ddpm_ui.state import warm_up

MALLOC_ARENAS = 2  # see limit_malloc_arenas


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``), as ``MALLOC_ARENA_MAX`` would; False where not glibc.

    Gradio runs each request on a worker thread and glibc gives busy threads arenas of their own (up to 8 per
    core), each keeping freed tensor memory to itself. Under eight people at once that held the server at
    about 1.75 GB; two arenas held it under 1.4 GB at the same latency (``python -m benchmarks.crowd``).
    Set before the server's threads start, so their arenas are the shared ones.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):  # the operator chose: glibc has read it already
        return False
    name = ctypes.util.find_library("c")
    try:
        return bool(name) and ctypes.CDLL(name).mallopt(-8, arenas) == 1  # -8: M_ARENA_MAX in malloc.h
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to cap
        return False


limit_malloc_arenas()  # before the server's worker threads start


def build_demo() -> gr.Blocks:
    """The whole app: one gr.Tabs, each tab built and wired by its own module; deep links set the tabs' controls."""
    image_cache.install()  # identical pictures for two users at once must not race in Gradio's cache
    api_errors.install()  # errors Gradio raises before a handler runs reach the client as plain sentences
    with gr.Blocks(title="DDPM Playground", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        # One State per tab that a deep link redraws (ddpm_ui.links): a link sets only its own tab's, so a link
        # to one tab recomputes no other tab's views.
        link = {tab_id: gr.State(None) for tab_id in ("forward", "oracle", "sample")}
        # rendered in tab 3; tabs 2-4 follow the page's model and dataset through it
        card = model_card.model_card_box()
        with gr.Row():
            with gr.Column(scale=4):
                gr.Markdown("# DDPM Playground\nDenoising diffusion, one equation at a time.")
            link_bar = links.build_bar()
        link_note = links.build_note()
        with gr.Tabs() as tabs:
            with gr.Tab("Forward noise", id="forward") as forward:
                forward_inputs = forward_tab.build_tab(demo, link=link["forward"])
            with gr.Tab("Oracle reconstruction", id="oracle") as oracle:
                oracle_inputs = oracle_tab.build_tab(oracle, forward_inputs, link=link["oracle"], model_card=card)
            with gr.Tab("Train or load", id="train") as train:
                train_tab.build_tab(demo, card)  # nothing there for a link to set
            with gr.Tab("Sample", id="sample") as sample:
                sample_inputs = sample_tab.build_tab(demo, link=link["sample"], model_card=card)
        links.wire(
            demo,
            tabs,
            {"forward": forward, "oracle": oracle, "train": train, "sample": sample},
            {"forward": forward_inputs, "oracle": oracle_inputs, "train": {}, "sample": sample_inputs},
            link,
            link_bar,
            link_note,
        )
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def launch_options() -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` shared by ``__main__`` and the tests."""
    return {
        "max_file_size": MAX_FILE_SIZE,
        "show_error": True,
        "footer_links": ["api", "gradio"],
        "app_kwargs": api_errors.app_kwargs(),  # malformed API requests get plain JSON errors, not pydantic's
    }


demo = build_demo()


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from ddpm_core.cli import make_parser  # the command lines' shared parser: defaults shown on every flag

    parser = make_parser("python app.py", "DDPM Playground: a Gradio app that teaches denoising diffusion.")
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="port (default: $GRADIO_SERVER_PORT or 7860)",
    )
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=int(os.environ.get("DDPM_TORCH_THREADS", "1")),
        help="intra-op threads for torch (default: $DDPM_TORCH_THREADS or 1; 0 keeps torch's default). "
        "The views work on small tensors and Gradio already runs requests side by side, so more threads "
        "mostly add contention; on a busy 2-core machine they made each view over 10× slower.",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    args = _parse_args()
    try:  # a mistyped DDPM_PLAYGROUND_PRECISION / _RUNTIME stops the launch, not every later request
        default_precision(), default_runtime()
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    threading.Thread(target=warm_up, name="ddpm-warm-up", daemon=True).start()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options())

"""Heavy requests (sampling, sweeps, comparisons, the oracle chain, the loss curve): bounded and abandonable.

Every such handler is a generator that runs its work in a background thread (:class:`BackgroundWork`) and
yields while it waits. When the page goes away or its Cancel button is pressed, Gradio closes the generator;
its ``finally`` cancels the work, which stops at its next step, and waits for it before the queue slot is
given back. Each page may run one heavy request at a time, each request is bounded in work (images through
the network) before it starts, and in wall time while it runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import gradio as gr

from ddpm_core.background import BackgroundWork, Progress, Report
from ddpm_core.sessions import BusyError
from ddpm_ui import state
from ddpm_ui.common import LOG, refusal, user_error

R = TypeVar("R")

MAX_NETWORK_IMAGES = 50_000  # images through the network in one request: about 15–30 s on two CPU cores
MAX_REQUEST_S = 120.0  # a request still running after this long is stopped (a crowded server)
STREAM_EVERY_S = 0.3  # how often a waiting handler yields (and so notices that its page has gone)
STOP_WAIT_S = 30.0  # how long a cancelled request waits for its work to reach its next step


def check_work(images: int, what: str) -> None:
    """Refuse, before it starts, a request that would pass more than MAX_NETWORK_IMAGES images through the net."""
    if images > MAX_NETWORK_IMAGES:
        raise ValueError(
            f"This {what} would pass {images:,} images through the network; one request may pass at most "
            f"{MAX_NETWORK_IMAGES:,}. Choose fewer samples, fewer steps, fewer w values or a faster sampler."
        )


def _unchanged(outputs: int) -> Any:
    """What a handler with ``outputs`` outputs yields to leave the page as it is."""
    return gr.skip() if outputs == 1 else (gr.skip(),) * outputs


@contextlib.contextmanager
def page_slot(request: Any) -> Iterator[threading.Event]:
    """Hold this page's heavy-request slot (an event set when the page closes); a refusal if it has one running."""
    session = state.seen(request)
    try:
        left = state.HEAVY.hold(session)
    except BusyError as err:
        raise refusal(err) from None
    try:
        yield left
    finally:
        state.HEAVY.release(session, left)


def watch(
    request: Any,
    work: Callable[[Report], R],
    outputs: int,
    progress: gr.Progress | None = None,
    desc: str = "working",
    show: Callable[[Progress], tuple] | None = None,
) -> Generator[tuple, None, R]:
    """Run ``work`` in the background while this generator yields; ``yield from`` it in a handler.

    Between checks it yields ``show(latest progress)`` (or ``outputs`` skips, leaving the page as it is).
    Closing the generator (the page left, Cancel) stops the work within one step. Returns the result.
    """
    with page_slot(request) as page_left:
        job = BackgroundWork(work, deadline_s=MAX_REQUEST_S)
        try:
            for latest in job.updates(STREAM_EVERY_S):
                if page_left.is_set():  # the page closed but its connection lingers: nobody will read this
                    raise user_error("This page has closed; its request was stopped.")
                if latest is not None and latest.total and progress is not None:
                    progress((latest.done, latest.total), desc=desc, unit="steps")
                yield show(latest) if show is not None and latest is not None else _unchanged(outputs)
        finally:
            if not job.cancel(wait_s=STOP_WAIT_S):  # a no-op once the work has ended
                LOG.warning("cancelled work did not stop within %.0f s", STOP_WAIT_S)
        if job.timed_out:
            raise user_error(
                f"This request was stopped after {MAX_REQUEST_S:.0f} s: the server is busy. Please try again, "
                "or ask for less work."
            )
        result = job.outcome()
    if result is None:  # cancelled without the generator being closed (cannot normally happen)
        raise user_error("The request was cancelled.")
    return result

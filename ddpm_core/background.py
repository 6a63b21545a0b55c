"""Long work in a daemon thread that the caller watches, and can cancel, step by step.

A web request that samples for ten seconds must stop when its page goes away or its Cancel button is
pressed, or an abandoned request keeps the CPU busy for everyone else. Python cannot stop a thread from
outside, so the work checks in: it calls ``report(done, total, detail)`` after every step (every network
pass of a sampler, every reverse step of the oracle chain), and that call raises :class:`Cancelled` once
:meth:`BackgroundWork.cancel` has been called or the deadline has passed. Work therefore stops within one
step of being abandoned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

R = TypeVar("R")


class Cancelled(Exception):
    """Raised inside the work by ``report`` once it has been cancelled."""


class DeadlineExceeded(Cancelled):
    """Raised inside the work by ``report`` once its time budget is spent."""


class Report(Protocol):
    def __call__(self, done: int = 0, total: int = 0, detail: Any = None) -> None: ...


@dataclass(frozen=True)
class Progress:
    """The latest step the work reported: ``done`` of ``total``, and anything it wants to show."""

    done: int
    total: int
    detail: Any = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class BackgroundWork(Generic[R]):
    """Run ``work(report)`` in a daemon thread; ``report`` raises :class:`Cancelled` once it should stop.

    ``deadline_s`` bounds the work's wall time (it is stopped at its next report after that). The thread
    starts at once; :meth:`updates` yields the latest :class:`Progress` while it runs; :meth:`outcome` is
    the result, ``None`` if it was cancelled, or the work's error raised again.
    """

    def __init__(self, work: Callable[[Report], R], deadline_s: float | None = None, name: str = "ddpm-work") -> None:
        self.latest: Progress | None = None
        self._work = work
        self._cancel = threading.Event()
        self._deadline = time.monotonic() + deadline_s if deadline_s is not None else None
        self._result: R | None = None
        self._error: BaseException | None = None
        self.timed_out = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _report(self, done: int = 0, total: int = 0, detail: Any = None) -> None:
        if self._cancel.is_set():
            raise Cancelled
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.timed_out = True
            raise DeadlineExceeded
        self.latest = Progress(done, total, detail)

    def _run(self) -> None:
        try:
            self._result = self._work(self._report)
        except Cancelled:
            pass
        except Exception as exc:  # handed to whoever asks for the outcome
            self._error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def updates(self, every_s: float) -> Iterator[Progress | None]:
        """The latest progress every ``every_s`` seconds until the work ends (None before its first report)."""
        while self._thread.is_alive():
            self._thread.join(every_s)
            if self._thread.is_alive():
                yield self.latest

    def cancel(self, wait_s: float | None = None) -> bool:
        """Stop the work at its next report; with ``wait_s``, wait that long for it. True once it has stopped."""
        self._cancel.set()
        if wait_s is not None:
            self._thread.join(wait_s)
        return not self._thread.is_alive()

    def outcome(self, timeout_s: float | None = None) -> R | None:
        """Wait for the end; the result, ``None`` if it was cancelled, or the work's error raised again."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("the work is still running")
        if self._error is not None:
            raise self._error
        return self._result

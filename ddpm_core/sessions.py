"""Which model each visitor samples from, and how many heavy requests each may run at once.

A server is shared (a Space, a link sent to a class), so nothing one visitor does may change what another
sees. :class:`SessionModels` gives every session the shipped model of the dataset it has chosen (digits or
fashion items), shared and read-only, until that session loads a checkpoint or uses the one it trained; only
that session then samples from it.

Memory stays bounded however many people upload models: a session remembers only the folder its model
came from, and the loaded networks sit in a least-recently-used cache with a byte cap. A network pushed
out of the cache is loaded again from its folder the next time its session needs it, so no model is ever
lost while its session lasts. A session ends when its page closes (Gradio's unload event) or after it has
been idle for ``ttl_s``; its folder may then be cleaned up.

:class:`SessionSlots` caps how many heavy requests (sampling, sweeps, comparisons) one session runs at
once, so one visitor cannot fill the queue for everyone.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ddpm_core.checkpoints import CheckpointError, LoadedModel, load_checkpoint
from ddpm_core.data import DEFAULT_DATASET, dataset_info

MEMORY_FACTOR = 3  # weights in PyTorch, again in the ONNX Runtime session, and that session's buffers


class BusyError(RuntimeError):
    """A request refused because the server (or this session) is at a limit; the message is for people."""


def resident_bytes(loaded: LoadedModel) -> int:
    """About how much memory a loaded model holds while it is in use (weights × :data:`MEMORY_FACTOR`)."""
    weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    return MEMORY_FACTOR * weights


@dataclass
class _Session:
    folder: Path  # the checkpoint folder this session's model is loaded from
    name: str
    last_seen: float


class SessionModels:
    """The shipped model of each dataset for everyone; a model of its own for each session that loads or trains one.

    A session chooses a dataset (digits until it picks another) and has at most one model of its own per
    dataset, so switching to the fashion items and back never loses the digit model it trained. ``load_default``
    loads the shipped model of a dataset; ``cap_bytes`` bounds the memory of the loaded networks (the shipped
    ones not counted), ``ttl_s`` how long an idle session keeps its models, ``max_sessions`` how many sessions
    may hold models of their own.
    """

    def __init__(
        self,
        load_default: Callable[[str], LoadedModel],
        cap_bytes: int = 200_000_000,
        ttl_s: float = 3600.0,
        max_sessions: int = 100,
        load_folder: Callable[[Path], LoadedModel] = load_checkpoint,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_default = load_default
        self._load_folder = load_folder
        self.cap_bytes, self.ttl_s, self.max_sessions = cap_bytes, ttl_s, max_sessions
        self._clock = clock
        self._lock = threading.RLock()
        self._defaults: dict[str, LoadedModel] = {}
        self._choices: dict[str, tuple[str, float]] = {}  # session → (its dataset, last seen)
        self._sessions: dict[tuple[str, str], _Session] = {}  # (session, dataset) → its own model
        self._cache: OrderedDict[Path, tuple[LoadedModel, int]] = OrderedDict()  # least recently used first

    # ------------------------------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------------------------------

    def default(self, dataset: str = DEFAULT_DATASET) -> LoadedModel:
        """The shipped model of ``dataset`` (loaded on first use, then shared read-only by every session)."""
        dataset_info(dataset)
        with self._lock:
            if dataset not in self._defaults:
                self._defaults[dataset] = self._load_default(dataset)
            return self._defaults[dataset]

    def dataset(self, session: str) -> str:
        """The dataset ``session`` has chosen (digits until it chooses another)."""
        with self._lock:
            self._expire()
            return self._chosen(session)

    def choose(self, session: str, dataset: str) -> None:
        """Make ``dataset`` the one ``session`` samples, trains and compares on (ValueError if unknown)."""
        dataset_info(dataset)
        with self._lock:
            self._expire()
            if dataset == DEFAULT_DATASET and not any(k[0] == session for k in self._sessions):
                self._choices.pop(session, None)  # the default needs no record
            else:
                self._choices[session] = (dataset, self._clock())

    def get(self, session: str, dataset: str | None = None) -> LoadedModel:
        """``session``'s model of ``dataset`` (its chosen one if None): its own, else the shipped one."""
        with self._lock:
            self._expire()
            chosen = self._choices.get(session)
            if chosen is not None:
                self._choices[session] = (chosen[0], self._clock())
            dataset = dataset or (chosen[0] if chosen else DEFAULT_DATASET)
            own = self._sessions.get((session, dataset))
            if own is None:
                return self.default(dataset)
            own.last_seen = self._clock()
            cached = self._cache.get(own.folder)
            if cached is not None:
                self._cache.move_to_end(own.folder)
                return cached[0]
        # loading from disk happens outside the lock, so other sessions are not held up by it
        loaded = self._load_folder(own.folder)
        with self._lock:
            self._remember(own.folder, loaded)
        return loaded

    def has_own(self, session: str, dataset: str | None = None) -> bool:
        """Whether ``session`` uses a model of its own for ``dataset`` (its chosen one if None)."""
        with self._lock:
            self._expire()
            dataset = dataset or self._chosen(session)
            return (session, dataset) in self._sessions

    def folders_in_use(self) -> set[Path]:
        """Every folder some live session's model comes from, and the shipped ones (clean-up must keep these)."""
        with self._lock:
            self._expire()
            folders = {s.folder for s in self._sessions.values()}
            folders.update(d.path for d in self._defaults.values() if d.path is not None)
            return folders

    def cached_bytes(self) -> int:
        """Memory held by the networks in the cache (the shipped ones not counted)."""
        with self._lock:
            return sum(size for _, size in self._cache.values())

    def session_count(self) -> int:
        """How many sessions hold a model of their own."""
        with self._lock:
            return len({session for session, _ in self._sessions})

    # ------------------------------------------------------------------------------------------
    # Changing one session's models
    # ------------------------------------------------------------------------------------------

    def use(self, session: str, loaded: LoadedModel) -> None:
        """Make ``loaded`` (checked, with a folder on disk) ``session``'s model of its dataset, and choose that."""
        if loaded.path is None:
            raise ValueError("a session's model must come from a checkpoint folder on disk")
        size = resident_bytes(loaded)
        if size > self.cap_bytes:
            raise CheckpointError(
                f"this model needs about {size / 1e6:.0f} MB; the server keeps at most {self.cap_bytes / 1e6:.0f} MB "
                "of uploaded models"
            )
        with self._lock:
            self._expire()
            holders = {s for s, _ in self._sessions}
            if session not in holders and len(holders) >= self.max_sessions:
                raise BusyError(
                    f"the server already holds {self.max_sessions} visitors' own models; please try again later "
                    "(the shipped models are still yours to use)"
                )
            now = self._clock()
            self._sessions[(session, loaded.dataset)] = _Session(Path(loaded.path), loaded.name, now)
            self._choices[session] = (loaded.dataset, now)
            self._remember(Path(loaded.path), loaded)

    def use_default(self, session: str, dataset: str | None = None) -> None:
        """Go back to the shipped model of ``dataset`` (the chosen one if None), and choose that dataset."""
        with self._lock:
            dataset = dataset or self._chosen(session)
            self._drop(session, dataset)
            self.choose(session, dataset)

    def forget(self, session: str) -> None:
        """The session has ended (its page closed): drop its models unless another session shares a folder."""
        with self._lock:
            self._choices.pop(session, None)
            for key in [k for k in self._sessions if k[0] == session]:
                self._drop(*key)

    def clear(self) -> None:
        """Every session back to the shipped models (a test's fresh start)."""
        with self._lock:
            self._sessions.clear()
            self._choices.clear()
            self._cache.clear()

    def _chosen(self, session: str) -> str:
        return self._choices.get(session, (DEFAULT_DATASET, 0.0))[0]

    def _drop(self, session: str, dataset: str) -> None:
        own = self._sessions.pop((session, dataset), None)
        if own is not None and all(s.folder != own.folder for s in self._sessions.values()):
            self._cache.pop(own.folder, None)

    def _remember(self, folder: Path, loaded: LoadedModel) -> None:
        """Put a network in the cache and push out the least recently used ones beyond the byte cap."""
        self._cache[folder] = (loaded, resident_bytes(loaded))
        self._cache.move_to_end(folder)
        total = sum(size for _, size in self._cache.values())
        while total > self.cap_bytes and len(self._cache) > 1:
            _, (_, size) = self._cache.popitem(last=False)  # its session reloads it from its folder when needed
            total -= size

    def _expire(self) -> None:
        cutoff = self._clock() - self.ttl_s
        seen: dict[str, float] = {}
        for (session, _), own in self._sessions.items():
            seen[session] = max(seen.get(session, 0.0), own.last_seen)
        for session, (_, when) in self._choices.items():
            seen[session] = max(seen.get(session, 0.0), when)
        for session in [s for s, when in seen.items() if when < cutoff]:
            self.forget(session)


class SessionSlots:
    """At most ``limit`` heavy requests at a time per session, each told when its session has ended."""

    def __init__(self, limit: int = 1) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._running: dict[str, list[threading.Event]] = {}

    def hold(self, session: str, what: str = "request") -> threading.Event:
        """Take one of ``session``'s slots (BusyError if all are taken); give it back with :meth:`release`.

        The event returned is set once :meth:`leave` is called for the session (its page has closed), so
        work that watches it can stop even while its own connection lingers.
        """
        left = threading.Event()
        with self._lock:
            held = self._running.setdefault(session, [])
            if len(held) >= self.limit:
                raise BusyError(
                    f"this page already has {self.limit} {what}{'s' if self.limit > 1 else ''} running; wait for it "
                    "to finish or cancel it first"
                )
            held.append(left)
        return left

    def release(self, session: str, left: threading.Event) -> None:
        """Give back the slot :meth:`hold` returned ``left`` for."""
        with self._lock:
            held = self._running.get(session, [])
            if left in held:
                held.remove(left)
            if not held:
                self._running.pop(session, None)

    @contextlib.contextmanager
    def slot(self, session: str, what: str = "request") -> Iterator[threading.Event]:
        """:meth:`hold` a slot for the ``with`` block and :meth:`release` it after."""
        left = self.hold(session, what)
        try:
            yield left
        finally:
            self.release(session, left)

    def leave(self, session: str) -> None:
        """``session`` has ended: tell each of its running requests to stop."""
        with self._lock:
            for left in self._running.get(session, []):
                left.set()

    def running(self, session: str) -> int:
        with self._lock:
            return len(self._running.get(session, []))

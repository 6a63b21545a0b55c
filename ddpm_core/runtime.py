"""How the ε-network runs on this machine: precision (fp32 or bf16) and runtime (PyTorch or ONNX Runtime).

The same code is about 20× apart on two CPUs of the same kind: bfloat16 is fast where the CPU has native
bf16 instructions (AVX512-BF16, AMX) and about 20× slower than fp32 where it has only AVX2; ONNX Runtime
beats eager PyTorch on some CPUs and not on others. So nothing is assumed: ``"auto"`` times the real
network on the real batch shape in every candidate way, keeps the fastest, and caches that choice for
the process. The race is short even where a candidate is very slow:

* it starts at a batch of one, where a 20× slower candidate costs milliseconds, and drops every candidate
  that is clearly losing there before timing the real batch (capped at ``PROBE_MAX_BATCH`` images);
* within a batch size, each candidate gets one untimed warm-up call, then timed rounds, and leaves as
  soon as its best time is ``losing_ratio`` × the leader's, or when the time budget is spent.

Candidates are named ``runtime-precision``: ``torch-fp32``, ``torch-bf16`` and, on the CPU when the
``onnxruntime`` package is installed, ``onnx-fp32``. Training only ever runs in PyTorch, so its race is
``torch-fp32`` against ``torch-bf16`` on a forward and backward pass.

``DDPM_PLAYGROUND_PRECISION`` and ``DDPM_PLAYGROUND_RUNTIME`` set the defaults (``auto``) for a process,
such as the app.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ddpm_core import onnx_network
from ddpm_core.unet import example_inputs

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnx")
PRECISION_ENV = "DDPM_PLAYGROUND_PRECISION"
RUNTIME_ENV = "DDPM_PLAYGROUND_RUNTIME"
PROBE_MAX_BATCH = 64  # the real batch up to this size; larger batches are timed at this size
PROBE_MAX_TRAIN_BATCH = 16  # forward + backward costs about 3×: a smaller cap keeps the probe well under a second
LOSING_RATIO = 2.0  # at the real batch: a candidate this many times slower than the leader stops
SMALL_BATCH_LOSING_RATIO = 8.0  # at a batch of one, where fixed overheads weigh more: only the hopeless (bf16 on AVX2)
WARMUP_LOSING_RATIO = 4.0  # × the ratio above, for the untimed first calls (they include one-off set-up)
PREFER_FIRST_MARGIN = 0.05  # a later candidate must beat the first (plain fp32 PyTorch) by 5% to be chosen
INFERENCE = "sample"
TRAINING = "train"


def cpu_capability() -> str:
    """What PyTorch's CPU kernels were built to use here, e.g. 'AVX2' or 'AVX512'."""
    return str(torch.backends.cpu.get_cpu_capability())


def _from_env(name: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "auto").strip().lower() or "auto"
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def default_precision() -> str:
    """``$DDPM_PLAYGROUND_PRECISION`` (auto, fp32 or bf16), else 'auto'."""
    return _from_env(PRECISION_ENV, PRECISIONS)


def default_runtime() -> str:
    """``$DDPM_PLAYGROUND_RUNTIME`` (auto, torch or onnx), else 'auto'."""
    return _from_env(RUNTIME_ENV, RUNTIMES)


# ----------------------------------------------------------------------------------------------
# The race
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RaceResult:
    """The fastest candidate, every timed call (ms), and who was stopped as clearly losing."""

    winner: str
    times_ms: dict[str, list[float]]
    stopped: tuple[str, ...]
    seconds: float

    def median_ms(self, name: str) -> float | None:
        times = self.times_ms.get(name) or []
        return statistics.median(times) if times else None


def race(
    candidates: Mapping[str, Callable[[], Any]],
    *,
    max_rounds: int = 3,
    losing_ratio: float = LOSING_RATIO,
    budget_s: float = 0.25,
    prefer_first_margin: float = PREFER_FIRST_MARGIN,
    clock: Callable[[], float] = time.perf_counter,
) -> RaceResult:
    """Time the candidates in turn and return the fastest by median, dropping clear losers early.

    Each candidate gets one warm-up call, not counted; one whose warm-up took ``WARMUP_LOSING_RATIO`` ×
    ``losing_ratio`` × the fastest warm-up stops there, with that call as its only time. Then up to
    ``max_rounds`` rounds time one call of each remaining candidate; after a round, any whose best call is
    ``losing_ratio`` × the leader's median stops, and the race ends once one candidate is left or
    ``budget_s`` is spent. The first candidate wins ties: another must be ``prefer_first_margin`` faster.
    """
    if not candidates:
        raise ValueError("nothing to race")
    start = clock()
    names = list(candidates)
    times: dict[str, list[float]] = {n: [] for n in names}
    stopped: list[str] = []

    def timed(name: str) -> float:
        t0 = clock()
        candidates[name]()
        return (clock() - t0) * 1e3

    alive = names
    if len(alive) > 1:
        warm = {n: timed(n) for n in alive}
        fastest = min(warm.values())
        limit = WARMUP_LOSING_RATIO * losing_ratio * max(fastest, 1e-6)
        for name in [n for n in alive if warm[n] > limit]:
            stopped.append(name)
            times[name].append(warm[name])  # its only measurement, set-up included
        alive = [n for n in alive if n not in stopped]
    for _ in range(max(1, max_rounds)):
        if len(alive) <= 1 and all(times[n] for n in alive):
            break
        for name in alive:
            times[name].append(timed(name))
        leader = min(statistics.median(times[n]) for n in alive)
        losers = [n for n in alive if min(times[n]) > losing_ratio * leader]
        stopped += losers
        alive = [n for n in alive if n not in losers]
        if clock() - start >= budget_s:
            break
    medians = {n: statistics.median(times[n]) for n in alive}
    winner = min(alive, key=medians.__getitem__)
    first = names[0]
    if first in medians and medians[winner] > (1 - prefer_first_margin) * medians[first]:
        winner = first
    return RaceResult(winner, times, tuple(stopped), clock() - start)


def ladder(
    make: Mapping[str, Callable[[int], Callable[[], Any]]],
    batch: int,
    *,
    budget_s: float = 0.25,
    max_batch: int = PROBE_MAX_BATCH,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[RaceResult, int, dict[str, float]]:
    """Race at a batch of one, then at the real batch (≤ ``max_batch``) among the survivors.

    At the batch of one a candidate stops if it is ``SMALL_BATCH_LOSING_RATIO`` × slower than the leader, or
    ``LOSING_RATIO`` × slower and one call of it at the real batch would take more than twice ``budget_s``.

    Returns the deciding race, the batch it ran at, and the small-batch median (ms) of every candidate
    that stopped there, so a report can still say how slow it was.
    """
    probe_batch = max(1, min(int(batch), max_batch))
    alive = dict(make)
    small: dict[str, float] = {}
    result: RaceResult | None = None
    total = 0.0
    if probe_batch > 1 and len(alive) > 1:
        first = race(
            {n: f(1) for n, f in alive.items()}, losing_ratio=SMALL_BATCH_LOSING_RATIO, budget_s=budget_s, clock=clock
        )
        total += first.seconds
        # Also stop, before it costs anything at the real batch, a candidate that is already losing and whose
        # one call there would take twice the whole budget (a call grows about linearly with the batch).
        leader = min(first.median_ms(n) or math.inf for n in alive if n not in first.stopped)
        too_costly = [
            n for n in alive
            if n not in first.stopped
            and (first.median_ms(n) or 0.0) >= LOSING_RATIO * leader
            and (first.median_ms(n) or 0.0) * probe_batch > 2 * budget_s * 1e3
        ]  # fmt: skip
        for name in (*first.stopped, *too_costly):
            small[name] = first.median_ms(name) or 0.0  # every stopped candidate has at least one time
            del alive[name]
        result = first if len(alive) > 1 else replace(first, winner=next(iter(alive)))
    if len(alive) > 1 or result is None:
        result = race({n: f(probe_batch) for n, f in alive.items()}, budget_s=budget_s, clock=clock)
        total += result.seconds
    else:
        probe_batch = 1
    return RaceResult(result.winner, result.times_ms, result.stopped, total), probe_batch, small


# ----------------------------------------------------------------------------------------------
# Choices, cached per process
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    """How the network runs, and why: what was asked, what was chosen, and what the race measured."""

    runtime: str  # "torch" or "onnx"
    precision: str  # "fp32" or "bf16"
    requested: str  # e.g. "auto/auto" (precision/runtime as asked)
    mode: str  # "sample" (forward) or "train" (forward + backward)
    device: str
    cpu_capability: str
    batch: int  # the batch the choice was timed at (0: not timed, it was asked for)
    timings_ms: dict[str, float | None] = field(default_factory=dict)  # median ms per pass, per candidate
    timed_at: dict[str, int] = field(default_factory=dict)  # the batch each candidate was last timed at
    stopped: tuple[str, ...] = ()  # candidates dropped as clearly losing
    probe_s: float = 0.0  # time spent racing
    setup_s: float = 0.0  # time spent preparing other runtimes (the ONNX export and session)
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.runtime}-{self.precision}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["chosen"] = self.name
        data["stopped"] = list(self.stopped)
        return data

    def describe(self) -> str:
        """One line for a status bar: the choice, each candidate's time per pass, the CPU capability."""
        head = f"{self.precision} · {RUNTIME_LABELS[self.runtime]}"
        if not self.batch:
            how = f"as asked ({self.requested})"
        else:
            parts = []
            for name, ms in sorted(self.timings_ms.items(), key=lambda kv: kv[1] or 0.0):
                at = self.timed_at.get(name, self.batch)
                stop = ", stopped: clearly slower" if name in self.stopped else ""
                parts.append(f"{name} {ms:.1f} ms at batch {at}{stop}" if ms is not None else name)
            how = f"chosen by timing ({'; '.join(parts)})"
        note = f"; {self.note}" if self.note else ""
        return f"{head}, {how}; CPU {self.cpu_capability}{note}"


RUNTIME_LABELS = {"torch": "PyTorch", "onnx": "ONNX Runtime"}

_CACHE: dict[tuple, Execution] = {}
_LOCK = threading.Lock()  # one probe at a time: two at once would time each other


def clear_cache() -> None:
    """Forget every choice made in this process (tests and benchmarks)."""
    with _LOCK:
        _CACHE.clear()


def _check(precision: str, runtime: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "onnx" and precision == "bf16":
        raise ValueError("ONNX Runtime runs the network in fp32 here; choose fp32 or the torch runtime for bf16")


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return torch.device("cpu") if first is None else first.device


def _inference_candidates(model: nn.Module, precision: str, runtime: str) -> tuple[list[str], str]:
    """The runtime-precision pairs worth racing for inference here, and a note on any left out."""
    device = _device_of(model)
    precisions = ["fp32", "bf16"] if precision == "auto" else [precision]
    if device.type not in ("cpu", "cuda"):
        precisions = ["fp32"]
    runtimes = ["torch", "onnx"] if runtime == "auto" else [runtime]
    note = ""
    if "onnx" in runtimes and device.type != "cpu":
        runtimes.remove("onnx")
        note = "ONNX Runtime is used on the CPU only"
    elif "onnx" in runtimes and not onnx_network.available():
        if runtime == "onnx":
            raise ValueError(
                "the onnx runtime needs the onnxruntime and onnx packages (pip install -r requirements.txt)"
            )
        runtimes.remove("onnx")
        note = "onnxruntime is not installed: PyTorch only"
    names = [f"{r}-{p}" for r in runtimes for p in precisions if not (r == "onnx" and p == "bf16")]
    if not names:
        raise ValueError(f"no way to run precision {precision!r} with runtime {runtime!r} on {device.type}")
    return names, note


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dummy_batch(model: nn.Module, batch: int) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shape for timing ``model`` at ``batch`` images (:func:`ddpm_core.unet.example_inputs`)."""
    return example_inputs(model.config, batch, _device_of(model))  # type: ignore[attr-defined]


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """bfloat16 autocast on ``device`` for 'bf16'; nothing for 'fp32'."""
    device_type = torch.device(device).type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def torch_network(model: nn.Module, precision: str) -> Callable[..., torch.Tensor]:
    """ε_θ(x, t/T, labels[, w]) in PyTorch at ``precision``, always returned as float32; call under inference_mode."""
    device = _device_of(model)

    def run(x: torch.Tensor, t_in: torch.Tensor, labels: torch.Tensor, *w: torch.Tensor) -> torch.Tensor:
        with autocast(precision, device):
            return model(x, t_in, labels, *w).float()

    return run


def network(model: nn.Module, execution: Execution) -> Callable[..., torch.Tensor]:
    """The network as ``execution`` says to run it: f(x, t/T, labels[, w]) → its output as float32."""
    return _network_as(model, execution.name)


def _network_as(model: nn.Module, name: str) -> Callable[..., torch.Tensor]:
    """The network for a candidate named ``runtime-precision``."""
    runtime, precision = name.split("-")
    if runtime == "onnx":
        return onnx_network.session_for(model)
    return torch_network(model, precision)


def _probe_cap(mode: str) -> int:
    return PROBE_MAX_TRAIN_BATCH if mode == TRAINING else PROBE_MAX_BATCH


def _cache_key(mode: str, model: nn.Module, batch: int, names: list[str]) -> tuple:
    cfg = model.config  # type: ignore[attr-defined]
    return (mode, str(_device_of(model)), repr(cfg), min(batch, _probe_cap(mode)), torch.get_num_threads(), *names)


def _decide(
    mode: str,
    model: nn.Module,
    batch: int,
    names: list[str],
    requested: str,
    note: str,
    make: Callable[[str], Callable[[int], Callable[[], Any]]],
) -> Execution:
    """Race ``names`` (unless there is only one) and cache the result for this process."""
    device = _device_of(model)
    key = _cache_key(mode, model, batch, names)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if len(names) == 1:
            runtime, precision = names[0].split("-")
            chosen = Execution(runtime, precision, requested, mode, str(device), cpu_capability(), 0, note=note)
        else:
            result, probe_batch, small = ladder({n: make(n) for n in names}, batch, max_batch=_probe_cap(mode))
            timings: dict[str, float | None] = {n: result.median_ms(n) for n in names}
            timed_at = {n: probe_batch for n in names}
            for name, ms in small.items():
                timings[name], timed_at[name] = ms, 1
            stopped = tuple(n for n in names if n in small or n in result.stopped)
            runtime, precision = result.winner.split("-")
            chosen = Execution(
                runtime, precision, requested, mode, str(device), cpu_capability(), probe_batch,
                timings, timed_at, stopped, round(result.seconds, 4), note=note,
            )  # fmt: skip
        _CACHE[key] = chosen
        return chosen


def _plain(model: nn.Module) -> bool:
    """A network the chooser cannot reason about (no config or no weights, e.g. a test's stand-in)."""
    return not hasattr(model, "config") or next(model.parameters(), None) is None


def choose_inference(model: nn.Module, batch: int, precision: str = "auto", runtime: str = "auto") -> Execution:
    """How to run ``model``'s forward pass at ``batch`` images: asked for, or timed once per process."""
    _check(precision, runtime)
    if _plain(model):
        note = "a stand-in network without weights: run as given"
        return Execution("torch", "fp32", f"{precision}/{runtime}", INFERENCE, "cpu", cpu_capability(), 0, note=note)
    names, note = _inference_candidates(model, precision, runtime)
    device = _device_of(model)
    setup_s = 0.0
    if "onnx-fp32" in names and _cache_key(INFERENCE, model, batch, names) not in _CACHE:
        start = time.perf_counter()
        try:
            onnx_network.session_for(model)
        except Exception as exc:  # an exporter or runtime that fails costs this candidate, never the request
            if runtime == "onnx":
                raise ValueError(f"this model cannot run in ONNX Runtime: {exc}") from exc
            names.remove("onnx-fp32")
            note = "; ".join(filter(None, [note, f"ONNX export failed ({type(exc).__name__}): PyTorch only"]))
        setup_s = time.perf_counter() - start

    def make(name: str) -> Callable[[int], Callable[[], Any]]:
        def at(b: int) -> Callable[[], Any]:
            inputs = _dummy_batch(model, b)
            fn = _network_as(model, name)

            def call() -> None:
                with torch.inference_mode():
                    fn(*inputs)
                _sync(device)

            return call

        return at

    was_training = model.training
    model.eval()
    try:
        chosen = _decide(INFERENCE, model, batch, names, f"{precision}/{runtime}", note, make)
    finally:
        model.train(was_training)
    return replace(chosen, setup_s=round(setup_s, 4)) if setup_s else chosen


def choose_training(model: nn.Module, batch: int, precision: str = "auto") -> Execution:
    """The precision for training ``model`` at ``batch`` images: asked for, or timed (forward + backward)."""
    _check(precision, "torch")
    device = _device_of(model)
    names = ["torch-fp32", "torch-bf16"] if precision == "auto" else [f"torch-{precision}"]
    note = ""
    if device.type not in ("cpu", "cuda") and precision == "auto":
        names, note = ["torch-fp32"], f"bf16 autocast is not raced on {device.type}"
    scratch: list[nn.Module] = []

    def make(name: str) -> Callable[[int], Callable[[], Any]]:
        prec = name.split("-")[1]

        def at(b: int) -> Callable[[], Any]:
            if not scratch:  # a private copy, so timing never touches the real weights or their gradients
                scratch.append(copy.deepcopy(model).train())
            net = scratch[0]
            inputs = _dummy_batch(net, b)

            def call() -> None:
                with autocast(prec, device):
                    out = net(*inputs)
                out.float().square().mean().backward()
                net.zero_grad(set_to_none=True)
                _sync(device)

            return call

        return at

    return _decide(TRAINING, model, batch, names, f"{precision}/torch", note, make)

"""Benchmarks for the DDPM Playground on a CPU, printed as one JSON object per line.

Run it from the repository root::

    python -m benchmarks.bench                                  # the shipped model, 5 repeats, < 10 min
    python -m benchmarks.bench --quick                          # a fast look (3 repeats, shorter loops)
    python -m benchmarks.bench --train95                        # also train from scratch until 95% (minutes)
    python -m benchmarks.bench --checkpoint /tmp/ck_tiny --quick --skip-train --out bench.jsonl
    python -m benchmarks.bench --only baseline,default,unet     # a subset (see --help for the names)
    python -m benchmarks.bench --only fashion --repeats 20      # ten fashion items against ten digits

Every line holds ``metric``, ``value``, ``unit``, ``cores`` (os.cpu_count()), ``torch_threads``
(torch.get_num_threads()), ``cpu_capability`` (torch.backends.cpu.get_cpu_capability()) and ``execution``
(the precision and runtime that ``auto`` picked for the default sampler on this machine, with the time of
every candidate), plus extras such as the individual runs, ratios and accuracies. The first line
(``baseline_note``) says what the baseline is; the last (``summary``) gathers the ratios.

How to read the numbers:

* Everything runs in one process on one checkpoint and one starting noise, so the ratios compare like
  with like. Times are medians over ``--repeats`` runs; absolute seconds depend on the machine and on
  whatever else it is doing, the ratios much less. Never compare absolute times across machines or runs.
* ``speedup_vs_baseline`` = baseline median / this median: how many times faster than the course-style
  sampler (:mod:`ddpm_core.reference_sampler`: all T steps, autograd on, fp32), measured in the same run.
  > 1 is faster.
* GFLOP are counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add) over one
  guided forward pass, times the number of network evaluations. GFLOP/s divides by the wall time of the
  whole sampler, so it also pays for the sampler's own arithmetic and Python overhead.
* ``ten_fashion_items_default_s`` samples ten fashion items (one per class, ``--fashion-checkpoint``) and ten
  digits (``--checkpoint``) at the app's default sampler, in the one precision and runtime ``auto`` chose for
  the digit model, taking turns; ``fashion_over_digits`` is the ratio of the medians (1 = as fast).
* Accuracy is the project's digit classifier's verdict on the requested labels. Ten digits give 10%
  steps; the 100-digit figure comes with a Wilson 95% lower bound, which is what a "≥ 99%" claim needs.
* Variants that measure ``SEVERAL`` times slower than the fastest after a few calls (bf16 on a CPU
  without native bf16 is about 20× slower) are reported with those calls and ``"stopped": true`` and not
  timed further, so the bench finishes in minutes on any CPU.
* On a shared 2-core machine, torch's default of 2 threads can run several times *slower* than 1 thread
  while another process keeps a core busy (the threads wait for each other). If the numbers look odd,
  compare a run with ``--threads 1``; every line reports ``torch_threads``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ddpm_core import onnx_network
from ddpm_core.checkpoints import CheckpointError, LoadedModel, load_checkpoint
from ddpm_core.classifier import ImageClassifier, classify, load_classifier
from ddpm_core.cli import make_parser
from ddpm_core.data import load_bundled
from ddpm_core.localhost import free_port, http_ok, stop_process
from ddpm_core.paths import classifier_dir, shipped_model_dir
from ddpm_core.reference_sampler import sample_w
from ddpm_core.runtime import Execution, choose_training, cpu_capability, race
from ddpm_core.sampling import (
    NO_INTERVAL,
    SamplerSettings,
    guided_batch,
    interval_as_json,
    sample,
    sampling_execution,
    starting_noise,
)
from ddpm_core.schedule import NoiseSchedule
from ddpm_core.training import TrainConfig, TrainProgress, train
from ddpm_core.unet import NULL_LABEL, WIDTH_PRESETS, ContextUNet, unfused_attention

REPO_ROOT = Path(__file__).resolve().parent.parent  # where `python app.py` runs for the cold-start metric
GROUPS: tuple[str, ...] = (
    "baseline", "default", "variants", "unet", "ddpm", "fashion", "train", "train95", "forward", "cold", "rss",
)  # fmt: skip
OPT_IN: tuple[str, ...] = ("train95",)  # minutes of training: only with --only train95 (or --train95)
SEVERAL = 5.0  # a variant this many times slower than the fastest after a few calls is not timed further
TEN = tuple(range(10))
TARGET_ACCURACY = 0.95

BASELINE_NOTE = (
    "baseline = ddpm_core.reference_sampler.sample_w, the NVIDIA DLI course's sample_w + reverse_q rewritten "
    "for this model: every one of the T steps builds the doubled batch (x twice; labels, then 'no class'), "
    "calls the U-Net with autograd on (no inference_mode/no_grad around the forward, as in the course), fp32, "
    "combines eps = w*eps_keep + (1-w)*eps_drop and takes u_t = (x_t - beta_t/sqrt(1-abar_t)*eps)/sqrt(alpha_t), "
    "adding sqrt(beta_t)*z except at t = 0 (the update itself runs under no_grad, as the course's "
    "@torch.no_grad reverse_q does; the course indexes the noise as B[t-1], a one-step shift we do not copy). "
    "Same checkpoint, same starting noise, same w and labels 0..9 as the other metrics; only the final "
    "image is clamped to [-1, 1]."
)


# ----------------------------------------------------------------------------------------------
# Output and timing
# ----------------------------------------------------------------------------------------------


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded to ``digits`` significant digits (recursively in lists and dicts); NaN/inf become None."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


@dataclass
class Emitter:
    """Prints one JSON object per line (and writes it to ``out`` if given); keeps every line it emitted."""

    out: IO[str] | None = None
    stream: IO[str] | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    execution: Execution | None = None  # the default sampler's precision and runtime, once chosen

    def emit(self, metric: str, value: Any, unit: str | None, **extra: Any) -> dict[str, Any]:
        """Emit ``{"metric", "value", "unit", "cores", "torch_threads", "cpu_capability", "execution", **extra}``."""
        execution = None if self.execution is None else _execution_summary(self.execution)
        line = {
            "metric": metric,
            "value": rounded(value),
            "unit": unit,
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cpu_capability": cpu_capability(),
            "execution": rounded(execution),
            **rounded(extra),
        }
        text = json.dumps(line, ensure_ascii=False)
        print(text, file=self.stream or sys.stdout, flush=True)
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()
        self.lines.append(line)
        return line


def _execution_summary(execution: Execution) -> dict[str, Any]:
    """The parts of a choice a bench row needs: what was chosen, each candidate's time, who was stopped."""
    return {
        "chosen": execution.name,
        "timings_ms": execution.timings_ms,
        "timed_at_batch": execution.timed_at,
        "stopped": list(execution.stopped),
        "probe_s": execution.probe_s,
    }


def time_runs(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def wilson_lower_bound(successes: int, n: int, z: float = 1.96) -> float:
    """Lower end of the Wilson score interval for a proportion (95% for z = 1.96); 0 when n = 0."""
    if n <= 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


# ----------------------------------------------------------------------------------------------
# Shared helpers: FLOPs
# ----------------------------------------------------------------------------------------------


def forward_flops(model: nn.Module, batch: int) -> int:
    """FLOPs (2 per multiply-add) of one fp32 forward pass of ``model`` at ``batch`` images."""
    size, channels = model.config.image_size, model.config.image_channels  # type: ignore[attr-defined]
    x = torch.zeros(batch, channels, size, size)
    t = torch.full((batch,), 0.5)
    labels = torch.arange(batch) % (NULL_LABEL + 1)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), unfused_attention(), counter:
        model(x, t, labels)
    return int(counter.get_total_flops())


# ----------------------------------------------------------------------------------------------
# The run's shared state
# ----------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every metric shares: the model, its schedule, the classifier, the starting noise and the options."""

    loaded: LoadedModel
    checkpoint: Path
    classifier: ImageClassifier | None
    classifier_note: str | None
    emitter: Emitter
    repeats: int
    quick: bool
    seed: int = 0
    compile: bool = False  # also time torch.compile (Inductor, freezing): tens of seconds to build
    fashion_checkpoint: Path | None = None  # the fashion model timed against this one (default: the shipped one)
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    @property
    def schedule(self) -> NoiseSchedule:
        return self.loaded.schedule

    def noise(self) -> torch.Tensor:
        """The shared starting noise for the ten digits."""
        return starting_noise(self.model, len(TEN), self.seed)

    def accuracy_extra(self, images: torch.Tensor, labels: Sequence[int], key: str = "accuracy_ten") -> dict:
        """``{key: accuracy}`` plus a note when there is no classifier."""
        if self.classifier is None:
            return {key: None, "accuracy_note": self.classifier_note}
        return {key: classify(self.classifier, images).accuracy(labels)}


def load_optional_classifier(path: Path) -> tuple[ImageClassifier | None, str | None]:
    """The classifier at ``path``, or (None, a note saying why accuracy is skipped)."""
    if not (path / "config.json").is_file():
        return None, f"no classifier at {path}; accuracy skipped (train one: python -m ddpm_core.cli.train_classifier)"
    try:
        return load_classifier(path), None
    except Exception as exc:  # a broken classifier costs the accuracy figures, not the run
        return None, f"classifier at {path} could not be loaded ({exc}); accuracy skipped"


def default_execution(model: nn.Module) -> Execution:
    """How ``auto`` runs the default sampler's network here (the race that picks it warms every candidate up)."""
    return sampling_execution(model, len(TEN), SamplerSettings())


def warm_up(model: nn.Module) -> Execution:
    """Choose the default execution, then two untimed fp32 passes with autograd on (the baseline's mode)."""
    execution = default_execution(model)
    x = starting_noise(model, 20, 0)
    t = torch.full((20,), 0.5)
    labels = torch.arange(20) % (NULL_LABEL + 1)
    model.eval()
    for _ in range(2):
        model(x, t, labels)
    return execution


# ----------------------------------------------------------------------------------------------
# Metrics 1, 2 and 4: sampling ten digits
# ----------------------------------------------------------------------------------------------


def bench_baseline(bench: Bench) -> None:
    """Metric 1, ``baseline_ten_digits_s``: the course-style sampler over all T steps."""
    w = SamplerSettings().w
    noise = bench.noise()
    images: list[torch.Tensor] = []

    def run() -> None:
        images.append(sample_w(bench.model, bench.schedule, TEN, w, noise, bench.seed))

    times = time_runs(run, bench.repeats)
    seconds = statistics.median(times)
    gflop = forward_flops(bench.model, guided_batch(len(TEN), w)) * bench.schedule.num_steps / 1e9
    bench.results["baseline_s"] = seconds
    bench.emitter.emit(
        "baseline_ten_digits_s",
        seconds,
        "s",
        runs_s=times,
        network_evaluations=bench.schedule.num_steps,
        gflop_per_run=gflop,
        gflop_per_s=gflop / seconds,
        w=w,
        precision="fp32",
        autograd=True,
        **bench.accuracy_extra(images[-1], TEN),
    )


@dataclass(frozen=True)
class SamplerTiming:
    """Median wall time of the library sampler on ten digits, its runs, last result and GFLOP."""

    times: list[float]
    seconds: float
    result: Any
    gflop: float


def time_sampler(bench: Bench, settings: SamplerSettings, repeats: int) -> SamplerTiming:
    """Sample the ten classes ``repeats`` times from the shared noise; GFLOP = the forward passes each step made."""
    noise = bench.noise()
    results = []

    def run() -> None:
        results.append(sample(bench.model, bench.schedule, TEN, settings, noise=noise))

    times = time_runs(run, repeats)
    # FLOPs are linear in the batch: a pass over ten digits, times the images the sampler sent per digit
    gflop = forward_flops(bench.model, len(TEN)) * results[-1].network_images / len(TEN) / 1e9
    return SamplerTiming(times, statistics.median(times), results[-1], gflop)


def emit_sampler_timing(bench: Bench, metric: str, timing: SamplerTiming, **extra: Any) -> None:
    """One line for a timed sampler: median, runs, speed-up over the baseline, passes, GFLOP, how it ran."""
    bench.emitter.emit(
        metric,
        timing.seconds,
        "s",
        runs_s=timing.times,
        speedup_vs_baseline=ratio(bench.results.get("baseline_s"), timing.seconds),
        network_evaluations=timing.result.network_evaluations,
        gflop_per_run=timing.gflop,
        gflop_per_s=timing.gflop / timing.seconds,
        ran_as=timing.result.execution.name,
        **extra,
    )


def bench_default(bench: Bench) -> None:
    """Metric 2, ``ten_digits_default_s``: the app's default sampler; time, speed-up, GFLOP, accuracy."""
    settings = SamplerSettings()
    timing = time_sampler(bench, settings, bench.repeats)
    extra = bench.accuracy_extra(timing.result.images, TEN)
    extra.update(accuracy_over_seeds(bench, settings, seeds=10))
    bench.results["default_s"] = timing.seconds
    emit_sampler_timing(
        bench, "ten_digits_default_s", timing,
        settings={
            "sampler": settings.sampler, "steps": settings.steps, "spacing": settings.spacing, "w": settings.w,
            "guidance_interval": interval_as_json(settings.guidance_interval),
            "precision": settings.precision, "runtime": settings.runtime,
        },
        **extra,
    )  # fmt: skip


# What made fp32 fast, one change at a time: the old default first, the new default last. Until the guidance
# interval, every step was guided (two network passes) at w = 2; those rows keep that.
FP32_TORCH = {"precision": "fp32", "runtime": "torch"}
EVERYWHERE = {"w": 2.0, "guidance_interval": NO_INTERVAL}
STEPS = SamplerSettings.steps  # the class default: no environment read at import
BEFORE = "before: dpmpp 15 linspace torch-fp32, guided everywhere"
DEFAULT = f"default: dpmpp {STEPS} logsnr auto, guided where 1 < σ ≤ 2"
SAMPLER_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    (BEFORE, {"steps": 15, "spacing": "linspace", **FP32_TORCH, **EVERYWHERE}),
    ("dpmpp 15 trailing torch-fp32", {"steps": 15, "spacing": "trailing", **FP32_TORCH, **EVERYWHERE}),
    ("dpmpp 15 logsnr torch-fp32", {"steps": 15, "spacing": "logsnr", **FP32_TORCH, **EVERYWHERE}),
    ("dpmpp 6 logsnr torch-fp32", {"steps": 6, "spacing": "logsnr", **FP32_TORCH, **EVERYWHERE}),
    ("dpmpp 6 logsnr torch-bf16", {"steps": 6, "precision": "bf16", "runtime": "torch", **EVERYWHERE}),
    ("dpmpp 6 logsnr onnx-fp32", {"steps": 6, "precision": "fp32", "runtime": "onnx", **EVERYWHERE}),
    ("dpmpp 6 logsnr auto, guided everywhere (the previous default)", {"steps": 6, **EVERYWHERE}),
    (f"dpmpp {STEPS} logsnr torch-fp32, guided where 1 < σ ≤ 2", {"steps": STEPS, **FP32_TORCH}),
    (DEFAULT, {}),
)


def screened_timings(
    candidates: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per call of each candidate: a short race first (clear losers stop there), then ``repeats`` runs.

    Returns (timed, stopped): the survivors' ``repeats`` timings, and the few timings of those stopped.
    """
    screen = race(candidates, max_rounds=2, losing_ratio=SEVERAL, budget_s=math.inf)
    timed = {n: time_runs(fn, repeats) for n, fn in candidates.items() if n not in screen.stopped}
    stopped = {n: [ms / 1e3 for ms in screen.times_ms[n]] for n in screen.stopped}
    return timed, stopped


def bench_variants(bench: Bench) -> None:
    """Metric 2b, ``ten_digits_variants_s``: spacing, steps, precision and runtime one at a time, at 1 and 2 threads."""
    noise = bench.noise()
    settings = {name: replace(SamplerSettings(), **change) for name, change in SAMPLER_VARIANTS}
    accuracy_by_variant: dict[str, Any] = {}
    threads_before = torch.get_num_threads()
    try:
        for threads in sorted({1, min(2, os.cpu_count() or 1)}):
            torch.set_num_threads(threads)
            candidates = {
                name: (lambda s=s: sample(bench.model, bench.schedule, TEN, s, noise=noise))
                for name, s in settings.items()
            }
            timed, stopped = screened_timings(candidates, bench.repeats)
            if not accuracy_by_variant:
                for name in timed:
                    accuracy_by_variant[name] = accuracy_over_seeds(bench, settings[name], seeds=10)
            rows = {}
            for name in settings:
                runs = timed.get(name) or stopped.get(name) or []
                rows[name] = {
                    "median_s": statistics.median(runs) if runs else None,
                    "runs_s": runs,
                    "stopped": name in stopped,
                    **accuracy_by_variant.get(name, {}),
                }
            default, before = rows[DEFAULT], rows[BEFORE]
            bench.results[f"variants_{threads}"] = rows
            bench.emitter.emit(
                "ten_digits_variants_s",
                default["median_s"],
                "s",
                threads=threads,
                variants=rows,
                speedup_default_vs_before_fp32=ratio(before["median_s"], default["median_s"]),
                note=(
                    "ten guided digits from the same noise; value = the default. A variant 'stopped' was "
                    f"{SEVERAL:g}× slower than the fastest after its first calls and was not timed further"
                ),
            )
    finally:
        torch.set_num_threads(threads_before)


def accuracy_over_seeds(bench: Bench, settings: Any, seeds: int) -> dict[str, Any]:
    """Accuracy over ``seeds`` × ten digits (seeds 0, 1, …), with its Wilson 95% lower bound."""
    if bench.classifier is None:
        return {"accuracy_100": None}
    images = [sample(bench.model, bench.schedule, TEN, replace(settings, seed=s)).images for s in range(seeds)]
    labels = list(TEN) * seeds
    acc = classify(bench.classifier, torch.cat(images)).accuracy(labels)
    correct = round(acc * len(labels))
    return {
        "accuracy_100": acc,
        "accuracy_100_samples": len(labels),
        "accuracy_100_wilson95_low": wilson_lower_bound(correct, len(labels)),
    }


def bench_ddpm(bench: Bench) -> None:
    """Metric 4, ``ddpm_full_T_ten_digits_s``: the library's ancestral sampler over all T steps (auto, inference)."""
    timing = time_sampler(bench, SamplerSettings(sampler="ddpm"), min(bench.repeats, 3))
    bench.results["ddpm_s"] = timing.seconds
    emit_sampler_timing(
        bench, "ddpm_full_T_ten_digits_s", timing,
        note="same T steps as the baseline: the ratio is what inference_mode + the auto runtime + the library step buy",
        **bench.accuracy_extra(timing.result.images, TEN),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Metric 4b: ten fashion items against ten digits
# ----------------------------------------------------------------------------------------------


def interleaved_runs(candidates: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each candidate, ``repeats`` rounds of one call each, the order reversed every round.

    Interleaving spreads whatever else the machine does over every candidate alike, and reversing the order
    cancels a drift (a CPU warming up or throttling) between first and last in a round.
    """
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, repeats)):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].extend(time_runs(candidates[name], 1))
    return times


def bench_fashion(bench: Bench) -> None:
    """Metric 4b, ``ten_fashion_items_default_s``: ten fashion items, one per class, against ten digits.

    The app's default sampler on both models in one precision and runtime (what ``auto`` chose for the digit
    model), from the same starting noise, one untimed call each first, then timed in turns; value = the
    fashion median, ``fashion_over_digits`` = fashion median / digit median (1 = as fast).
    """
    path = bench.fashion_checkpoint or shipped_model_dir("fashion")
    try:
        fashion = load_checkpoint(path)
    except CheckpointError as exc:
        bench.emitter.emit("ten_fashion_items_default_s", None, "s", skipped=True, note=f"no fashion model: {exc}")
        return
    execution = bench.emitter.execution or default_execution(bench.model)
    settings = replace(SamplerSettings(), precision=execution.precision, runtime=execution.runtime)
    noise = bench.noise()
    models = {"digits": bench.loaded, "fashion": fashion}
    results: dict[str, Any] = {}

    def once(name: str) -> None:
        loaded = models[name]
        results[name] = sample(loaded.model, loaded.schedule, TEN, settings, noise=noise)

    candidates = {name: (lambda name=name: once(name)) for name in models}
    for run in candidates.values():  # untimed: the fashion model's first call builds its ONNX session
        run()
    runs = interleaved_runs(candidates, bench.repeats)
    medians = {name: statistics.median(times) for name, times in runs.items()}
    bench.results["fashion_over_digits"] = ratio(medians["fashion"], medians["digits"])
    bench.emitter.emit(
        "ten_fashion_items_default_s",
        medians["fashion"],
        "s",
        runs_s=runs["fashion"],
        digits_s=medians["digits"],
        digits_runs_s=runs["digits"],
        fashion_over_digits=bench.results["fashion_over_digits"],
        ran_as={name: result.execution.name for name, result in results.items()},
        network_evaluations={name: result.network_evaluations for name, result in results.items()},
        checkpoints={"digits": str(bench.checkpoint), "fashion": str(path)},
        datasets={name: loaded.dataset for name, loaded in models.items()},
        model_channels={name: list(loaded.model.config.channels) for name, loaded in models.items()},
        settings={
            "sampler": settings.sampler, "steps": settings.steps, "spacing": settings.spacing, "w": settings.w,
            "guidance_interval": interval_as_json(settings.guidance_interval),
            "precision": settings.precision, "runtime": settings.runtime,
        },
        note=(
            "ten images, one per class, from the same starting noise; both models in the precision and runtime "
            "auto chose for the digit model; medians of runs taken in turns (the order reversed every round)"
        ),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Metric 3: one U-Net step at batch 20
# ----------------------------------------------------------------------------------------------


def unet_variants(model: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, compile_too: bool):
    """One forward pass at batch ``len(x)`` in each way worth timing, as name → zero-argument callable."""
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last).eval()
    cl_x = x.contiguous(memory_format=torch.channels_last)

    def eager(net: nn.Module, inp: torch.Tensor, bf16: bool) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return net(inp, t, labels)

        return run

    variants: dict[str, Callable[[], Any]] = {
        "torch-fp32": eager(model, x, False),
        "torch-bf16": eager(model, x, True),
        "torch-fp32-channels_last": eager(cl_model, cl_x, False),
        "torch-bf16-channels_last": eager(cl_model, cl_x, True),
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notices: it is measured, not recommended
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model.eval(), (x, t, labels))))
    variants["torch-fp32-jit_frozen"] = eager(frozen, x, False)  # type: ignore[arg-type]
    if onnx_network.available():
        session = onnx_network.session_for(model)
        variants["onnx-fp32"] = lambda: session(x, t, labels)
    if compile_too:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        compiled = torch.compile(model)
        variants["torch-fp32-compile_inductor_freezing"] = eager(compiled, x, False)  # type: ignore[arg-type]
    return variants


def bench_unet(bench: Bench) -> None:
    """Metric 3, ``unet_step_ms_batch20``: every precision, layout and runtime; value = the fastest."""
    n = len(TEN)
    x = bench.noise().repeat(2, 1, 1, 1)
    t = torch.full((2 * n,), 0.5)
    labels = torch.cat([torch.tensor(TEN), torch.full((n,), NULL_LABEL)])
    calls = 10 if bench.quick else max(20, 5 * bench.repeats)
    start = time.perf_counter()
    candidates = unet_variants(bench.model, x, t, labels, bench.compile)
    setup_s = time.perf_counter() - start
    timed, stopped = screened_timings(candidates, calls)
    variants = {name: statistics.median(runs) * 1e3 for name, runs in {**timed, **stopped}.items()}
    fastest = min(timed, key=lambda name: statistics.median(timed[name]))
    bench.results["unet_ms"] = variants
    bench.emitter.emit(
        "unet_step_ms_batch20",
        variants[fastest],
        "ms",
        fastest=fastest,
        variants_ms=variants,
        stopped=sorted(stopped),
        calls_per_variant=calls,
        speedup_bf16_vs_fp32=ratio(variants["torch-fp32"], variants["torch-bf16"]),
        speedup_fastest_vs_fp32=ratio(variants["torch-fp32"], variants[fastest]),
        mode="inference_mode",
        setup_s=setup_s,
        gflop_per_step=forward_flops(bench.model, 2 * n) / 1e9,
        note="setup_s: building the jit, ONNX (and compiled) variants; 'stopped' variants got only a few calls",
    )


# ----------------------------------------------------------------------------------------------
# Metric 5: training
# ----------------------------------------------------------------------------------------------


def train_throughput(precision: str, warmup: int, steps: int, preset: str = "base") -> float:
    """Training images per second at TrainConfig() defaults, measured over ``steps`` steps after ``warmup``."""
    config = replace(
        TrainConfig(), preset=preset, max_steps=warmup + steps, max_minutes=None, precision=precision, report_every=1
    )
    stamps: dict[int, float] = {}

    def record(p: TrainProgress) -> None:
        stamps.setdefault(p.step, p.elapsed_s)

    train(config, load_bundled(), callback=record, device="cpu")
    return steps * config.batch_size / (stamps[warmup + steps] - stamps[warmup])


def bench_train_throughput(bench: Bench) -> None:
    """Metric 5a, ``train_images_per_s``: default preset in fp32 and bf16; value = what ``auto`` trains in."""
    warmup, steps = (3, 8) if bench.quick else (5, 20)
    batch = TrainConfig().batch_size
    choice = choose_training(ContextUNet(WIDTH_PRESETS[TrainConfig().preset]), batch, "auto")
    rates: dict[str, float | None] = {}
    for precision in ("fp32", "bf16"):
        stopped = f"torch-{precision}" in choice.stopped
        rates[precision] = None if stopped else train_throughput(precision, warmup, steps)
    bench.results["train_images_per_s"] = rates
    bench.emitter.emit(
        "train_images_per_s",
        rates[choice.precision],
        "images/s",
        auto_chose=choice.precision,
        probe=_execution_summary(choice),
        fp32_images_per_s=rates["fp32"],
        bf16_images_per_s=rates["bf16"],
        speedup_bf16_vs_fp32=ratio(rates["bf16"], rates["fp32"]),
        preset=TrainConfig().preset,
        batch_size=batch,
        warmup_steps=warmup,
        measured_steps=steps,
        note="a precision the probe stopped as clearly slower (forward + backward) is not trained with: null",
    )


@dataclass
class AccuracyWatch:
    """Training callback: every ``every_s`` seconds of training, sample 100 guided digits and classify them."""

    classifier: ImageClassifier
    every_s: float
    target: float = TARGET_ACCURACY
    eval_seconds: float = 0.0
    next_at: float = 0.0
    evaluations: list[dict[str, float]] = field(default_factory=list)
    reached_s: float | None = None

    def __post_init__(self) -> None:
        self.next_at = self.every_s

    def __call__(self, p: TrainProgress) -> None:
        train_s = p.elapsed_s - self.eval_seconds
        if self.reached_s is not None or (train_s < self.next_at and not p.done):
            return
        if p.done and self.evaluations and self.evaluations[-1]["step"] == p.step:
            return  # the final report repeats the last step, which was just measured
        start = time.perf_counter()
        acc = self.measure(p)
        self.eval_seconds += time.perf_counter() - start
        self.evaluations.append({"train_s": train_s, "step": p.step, "accuracy": acc})
        self.next_at = train_s + self.every_s
        if acc >= self.target:
            self.reached_s = train_s

    def measure(self, p: TrainProgress) -> float:
        """Accuracy of 100 digits (10 per class) sampled at the app's defaults from the current EMA model."""
        labels = [c for c in TEN for _ in range(10)]
        images = sample(p.ema_model, p.schedule, labels, SamplerSettings()).images
        return classify(self.classifier, images).accuracy(labels)

    def should_stop(self) -> bool:
        return self.reached_s is not None


def bench_time_to_accuracy(bench: Bench, minutes: float, every_s: float) -> None:
    """Metric 5b, ``time_to_95pct_guided_accuracy_s``: train from scratch (default preset, auto precision) until 95%."""
    if bench.classifier is None:
        bench.emitter.emit("time_to_95pct_guided_accuracy_s", None, "s", skipped=True, note=bench.classifier_note)
        return
    watch = AccuracyWatch(bench.classifier, every_s)
    config = replace(TrainConfig(), max_minutes=minutes, max_steps=None, report_every=1)
    result = train(config, load_bundled(), callback=watch, should_stop=watch.should_stop, device="cpu")
    best = max((e["accuracy"] for e in watch.evaluations), default=None)
    bench.results["time_to_95_s"] = watch.reached_s
    bench.emitter.emit(
        "time_to_95pct_guided_accuracy_s",
        watch.reached_s,
        "s",
        reached=watch.reached_s is not None,
        best_accuracy=best,
        budget_minutes=minutes,
        eval_every_s=every_s,
        steps=result.steps,
        evaluations=watch.evaluations,
        eval_overhead_s=watch.eval_seconds,
        note="training seconds, evaluation time excluded; the LR schedule's clock (max_minutes) includes it",
    )


# ----------------------------------------------------------------------------------------------
# Metric 6: the image tabs
# ----------------------------------------------------------------------------------------------


def synthetic_rgb(size: int = 512, seed: int = 0) -> np.ndarray:
    """A smooth colour pattern plus a little noise, uint8 [size, size, 3] (stands in for a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * xx) * 0.5 + 0.5, np.cos(5 * yy) * 0.5 + 0.5, (xx + yy) / 2], axis=-1)
    return np.clip(base * 220 + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def bench_forward(bench: Bench) -> None:
    """Metric 6, ``forward_slider_update_ms`` and ``error_curve_s``: the app's tab handlers on a 512×512 RGB image.

    The handlers are imported here, not at the top, so that the other metrics need neither gradio nor the UI.
    """
    from PIL import Image

    from ddpm_ui.common import received_folders
    from ddpm_ui.forward_tab import forward_view
    from ddpm_ui.oracle_tab import error_curve

    schedule_name, num_steps, shown_t = "linear", 1000, 200
    handlers = "ddpm_ui.forward_tab.forward_view / ddpm_ui.oracle_tab.error_curve (server-side, no network or browser)"
    uploads = Path(received_folders()[0])  # the handlers open only files Gradio received, as an upload would be
    uploads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=uploads) as tmp:
        path = Path(tmp) / "synthetic_512.png"
        Image.fromarray(synthetic_rgb()).save(path)
        image = str(path)

        def slider(t: int) -> Any:
            return forward_view(image, t, schedule_name, num_steps, 0)

        def curve(seed: int) -> Any:
            return error_curve(image, shown_t, schedule_name, num_steps, seed)

        first = time_runs(lambda: slider(shown_t), 1)[0]
        steps = [int(s) for s in np.linspace(0, num_steps - 1, 10 if bench.quick else max(20, 4 * bench.repeats))]
        times = [time_runs(lambda s=s: slider(s), 1)[0] for s in steps]
        bench.emitter.emit(
            "forward_slider_update_ms",
            statistics.median(times) * 1e3,
            "ms",
            first_call_ms=first * 1e3,
            max_ms=max(times) * 1e3,
            calls=len(times),
            image="synthetic 512x512 RGB PNG (the handler shrinks it as it does any upload)",
            schedule=f"{schedule_name}, T={num_steps}",
            path=handlers,
        )
        curve_times = [time_runs(lambda s=s: curve(s), 1)[0] for s in range(1, bench.repeats + 1)]
        bench.emitter.emit(
            "error_curve_s",
            statistics.median(curve_times),
            "s",
            runs_s=curve_times,
            schedule=f"{schedule_name}, T={num_steps}",
            path=handlers,
            note="a new seed per run, so the app's per-image cache never answers",
        )


# ----------------------------------------------------------------------------------------------
# Metrics 7 and 8: subprocesses
# ----------------------------------------------------------------------------------------------


def launch_app(port: int, log: IO[str]) -> subprocess.Popen:
    """``python app.py --port P`` from the repository root with analytics off, its output going to ``log``."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_for_page(proc: subprocess.Popen, url: str, timeout_s: float) -> bool:
    """Poll until GET ``url`` answers 200 (True), or the app exits or ``timeout_s`` passes (False)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s and proc.poll() is None:
        if http_ok(url):
            return True
        time.sleep(0.2)
    return False


def cold_start_once(timeout_s: float = 60.0) -> tuple[float | None, str | None]:
    """Seconds from launching ``python app.py --port P`` until GET / answers 200, or (None, why not)."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = launch_app(port, log)
        try:
            if wait_for_page(proc, f"http://127.0.0.1:{port}/", timeout_s):
                return time.perf_counter() - start, None
            exit_code = proc.poll()  # None: still running, it never answered
        finally:
            stop_process(proc)
        log.seek(0)
        tail = log.read()[-400:].strip()
    status = f"no answer within {timeout_s:.0f} s" if exit_code is None else f"exited with code {exit_code}"
    return None, f"app {status}; last output: {tail}"


def bench_cold_start(bench: Bench) -> None:
    """Metric 7, ``cold_start_s``: launch the app and wait for its page."""
    if not (REPO_ROOT / "app.py").is_file():
        bench.emitter.emit("cold_start_s", None, "s", skipped=True, note="app.py is missing")
        return
    runs, failure = [], None
    for _ in range(1 if bench.quick else min(3, bench.repeats)):
        seconds, failure = cold_start_once()
        if seconds is None:
            break
        runs.append(seconds)
    bench.emitter.emit(
        "cold_start_s",
        statistics.median(runs) if runs else None,
        "s",
        runs_s=runs,
        command="python app.py --port <free port>",
        **({"note": failure} if failure else {}),
    )


RSS_CHILD = r"""
import json, resource, sys


def peak_kib():
    # VmHWM is this process's own peak. ru_maxrss is not: Linux carries the parent's peak over fork and exec.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)


import torch
torch.set_num_threads(int(sys.argv[2]))
imported = peak_kib()
from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.sampling import SamplerSettings, sample
loaded = load_checkpoint(sys.argv[1])
sample(loaded.model, loaded.schedule, range(10), SamplerSettings())
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
print(json.dumps({"after_import": imported, "peak": peak_kib(), "ru_maxrss": maxrss}))
"""


def peak_rss_mb(checkpoint: Path) -> dict[str, float]:
    """Peak RSS (MiB) of a fresh Python that imports torch, loads ``checkpoint`` and samples ten digits.

    The child uses as many torch threads as this process. ``peak`` is the child's own high-water mark
    (VmHWM); ``ru_maxrss`` is also returned, though on Linux it includes this (forking) process's peak.
    """
    done = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(checkpoint), str(torch.get_num_threads())],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: v / 1024 for k, v in raw.items()}


def bench_rss(bench: Bench) -> None:
    """Metric 8, ``peak_rss_mb_sampling``."""
    try:
        rss = peak_rss_mb(bench.checkpoint)
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        bench.emitter.emit("peak_rss_mb_sampling", None, "MiB", note=f"child process failed: {exc}")
        return
    bench.emitter.emit(
        "peak_rss_mb_sampling",
        rss["peak"],
        "MiB",
        after_import_torch_mb=rss["after_import"],
        ru_maxrss_mb=rss["ru_maxrss"],
        note=(
            "peak RSS (VmHWM, MiB) of a fresh process that imports torch, loads the checkpoint and samples ten "
            "digits at defaults; ru_maxrss is shown too but on Linux it inherits the forking parent's peak"
        ),
    )


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m benchmarks.bench", __doc__, paragraphs=3)
    p.add_argument("--checkpoint", default=str(shipped_model_dir()), help="digit model folder")
    p.add_argument(
        "--fashion-checkpoint",
        default=str(shipped_model_dir("fashion")),
        help="fashion model folder, timed against the digit model in the fashion group",
    )
    p.add_argument(
        "--classifier", default=str(classifier_dir()), help="classifier folder (accuracy is skipped if missing)"
    )
    p.add_argument("--repeats", type=int, default=5, help="runs per timing; medians are reported")
    p.add_argument("--quick", action="store_true", help="3 repeats, shorter loops, no time-to-95%% training")
    p.add_argument("--train95", action="store_true", help="also run train95: train from scratch until 95%% accuracy")
    p.add_argument("--compile", action="store_true", help="also time torch.compile in the unet group (slow to build)")
    p.add_argument("--train-minutes", type=float, default=10.0, help="budget for time_to_95pct_guided_accuracy_s")
    p.add_argument("--eval-every", type=float, default=60.0, help="seconds of training between accuracy checks")
    p.add_argument("--skip-train", action="store_true", help="skip time_to_95pct_guided_accuracy_s (the default)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(GROUPS)}")
    p.add_argument("--seed", type=int, default=0, help="seed of the shared starting noise")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads for this process (default: torch's)"
    )
    p.add_argument("--out", default=None, help="also write the JSON lines to this file")
    return p


def selected_groups(args: argparse.Namespace) -> list[str]:
    """The metric groups to run, in order; raises ValueError for unknown names."""
    if args.only is None:
        groups = [g for g in GROUPS if g not in OPT_IN or (g == "train95" and args.train95)]
    else:
        groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown metric group(s) {unknown}; choose from {', '.join(GROUPS)}")
    if args.quick or args.skip_train:
        groups = [g for g in groups if g != "train95"]
    return [g for g in GROUPS if g in groups]


def summary_extra(bench: Bench) -> dict[str, Any]:
    """The ratios measured in this run, gathered for the last line."""
    r = bench.results
    unet = r.get("unet_ms") or {}
    train_rates = r.get("train_images_per_s") or {}
    return {
        "speedup_default_vs_baseline": ratio(r.get("baseline_s"), r.get("default_s")),
        "speedup_ddpm_full_T_vs_baseline": ratio(r.get("baseline_s"), r.get("ddpm_s")),
        "fashion_over_digits_default_s": r.get("fashion_over_digits"),
        "speedup_unet_bf16_vs_fp32": ratio(unet.get("torch-fp32"), unet.get("torch-bf16")),
        "speedup_default_vs_before_fp32_1_thread": ratio(
            _median_of(r, "variants_1", BEFORE),
            _median_of(r, "variants_1", DEFAULT),
        ),
        "default_execution": None if bench.emitter.execution is None else bench.emitter.execution.describe(),
        "speedup_train_bf16_vs_fp32": ratio(train_rates.get("bf16"), train_rates.get("fp32")),
        "time_to_95pct_guided_accuracy_s": r.get("time_to_95_s"),
    }


def _median_of(results: dict[str, Any], key: str, variant: str) -> float | None:
    return ((results.get(key) or {}).get(variant) or {}).get("median_s")


def run_groups(bench: Bench, groups: list[str], args: argparse.Namespace) -> None:
    """Run the chosen metric groups in order; a group that raises becomes an ``error`` line and the rest still run."""
    actions: dict[str, Callable[[], None]] = {
        "baseline": lambda: bench_baseline(bench),
        "default": lambda: bench_default(bench),
        "variants": lambda: bench_variants(bench),
        "unet": lambda: bench_unet(bench),
        "ddpm": lambda: bench_ddpm(bench),
        "fashion": lambda: bench_fashion(bench),
        "train": lambda: bench_train_throughput(bench),
        "train95": lambda: bench_time_to_accuracy(bench, args.train_minutes, args.eval_every),
        "forward": lambda: bench_forward(bench),
        "cold": lambda: bench_cold_start(bench),
        "rss": lambda: bench_rss(bench),
    }
    for group in groups:
        try:
            actions[group]()
        except Exception as exc:  # one broken metric (say, an app.py mid-edit) must not lose the others
            message = f"{type(exc).__name__}: {exc}"
            bench.notes.append(f"{group} failed: {message}")
            bench.emitter.emit("error", None, None, group=group, error=message)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        groups = selected_groups(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    checkpoint = Path(args.checkpoint)
    try:
        loaded = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        print(f"error: cannot load checkpoint {checkpoint}: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    classifier, classifier_note = load_optional_classifier(Path(args.classifier))
    started = time.perf_counter()
    with open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext() as out:
        repeats = min(args.repeats, 3) if args.quick else args.repeats
        bench = Bench(
            loaded, checkpoint, classifier, classifier_note, Emitter(out), max(1, repeats), args.quick, args.seed,
            compile=args.compile, fashion_checkpoint=Path(args.fashion_checkpoint),
        )  # fmt: skip
        bench.emitter.execution = warm_up(bench.model)
        bench.emitter.emit(
            "baseline_note",
            None,
            None,
            note=BASELINE_NOTE,
            checkpoint=str(checkpoint),
            schedule=f"{loaded.schedule.name}, T={loaded.schedule.num_steps}",
            model_channels=list(loaded.model.config.channels),
            classifier=None if classifier is None else str(args.classifier),
            torch=torch.__version__,
            repeats=bench.repeats,
            groups=groups,
            default_execution=bench.emitter.execution.describe(),
        )
        run_groups(bench, groups, args)
        if classifier_note:
            bench.notes.append(classifier_note)
        bench.emitter.emit(
            "summary",
            time.perf_counter() - started,
            "s",
            metrics=[line["metric"] for line in bench.emitter.lines[1:]],
            notes=bench.notes,
            **summary_extra(bench),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

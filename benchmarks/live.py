"""Benchmark of live guidance: the distilled student against its teacher, printed as one JSON object per line.

Run it from the repository root::

    python -m benchmarks.live                          # speed, quality (1,000 digits per w each) and the crowd
    python -m benchmarks.live --only speed             # a subset: speed, quality, crowd
    python -m benchmarks.live --quick --out live.jsonl # fewer repeats, 200 digits per w, a 10 s crowd

Groups:

* ``speed`` — one live update (ten digits, one per class, the student's 4 one-pass DDIM steps) at 1 and 2
  torch threads, in the precision and runtime ``auto`` picks at that thread count; the same for the whole
  handler the slider calls (sampling plus the picture); and the teacher's default sampler on the same ten
  digits in the same run, with the ratio; and the student in plain fp32 PyTorch (``torch_fp32_s``, what runs
  without onnxruntime, and the honest figure for an AVX2-only CPU when that is emulated, since ONNX Runtime
  ignores the emulation). Medians over ``--repeats`` runs.
* ``quality`` — accuracy and Fréchet distance per w (0, 1, 2, 3, 5) for the student, next to the teacher
  guided at every step (what the student learnt) and the teacher's default sampler (guided where 1 < σ ≤ 2).
* ``crowd`` — ``python app.py`` (one torch thread, as it starts by default) and eight simulated people,
  each dragging w: a new value as soon as the previous picture arrives, as the slider's ``always_last``
  trigger does. Reports the latency of every update (median, p95, max) and updates per second per person.

Every line carries ``cores``, ``torch_threads`` and ``cpu_capability``; absolute times depend on the machine
and whatever else it runs, the ratios measured in one run much less.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench import Emitter, launch_app, ratio, time_runs, wait_for_page
from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.classifier import load_classifier
from ddpm_core.cli import make_parser
from ddpm_core.data import load_bundled
from ddpm_core.distillation import student_settings
from ddpm_core.evaluate import evaluate
from ddpm_core.localhost import free_port, stop_process
from ddpm_core.paths import classifier_dir, shipped_model_dir, student_model_dir
from ddpm_core.sampling import NO_INTERVAL, SamplerSettings, sample, sampling_execution, starting_noise

GROUPS: tuple[str, ...] = ("speed", "quality", "crowd")
TEN = list(range(10))
QUALITY_WS = (0.0, 1.0, 2.0, 3.0, 5.0)
CROWD_PEOPLE = 8


def bench_speed(emitter: Emitter, repeats: int, student_dir: Path, teacher_dir: Path) -> None:
    """``live_update_s`` (student) and ``teacher_default_s`` at 1 and 2 threads, with their ratio."""
    from ddpm_ui import sample_tab  # the handler the slider calls, with its picture

    student, teacher = load_checkpoint(student_dir), load_checkpoint(teacher_dir)
    noise = starting_noise(teacher.model, len(TEN), 0)
    before = torch.get_num_threads()
    try:
        for threads in sorted({1, min(2, os.cpu_count() or 1)}):
            torch.set_num_threads(threads)
            live = student_settings(student, w=3.0)
            execution = sampling_execution(student.model, len(TEN), live)  # the auto choice at this thread count
            fixed = replace(live, precision=execution.precision, runtime=execution.runtime)
            teacher_settings = SamplerSettings()
            teacher_run = sample(teacher.model, teacher.schedule, TEN, teacher_settings, noise=noise)  # warm-up

            def student_once(settings: SamplerSettings = fixed) -> None:
                sample(student.model, student.schedule, TEN, settings, noise=noise)

            def handler_once(settings: SamplerSettings = fixed) -> None:
                sample_tab.live_sheet(sample(student.model, student.schedule, TEN, settings, noise=noise).images)

            def teacher_once(settings: SamplerSettings = teacher_settings) -> None:
                sample(teacher.model, teacher.schedule, TEN, settings, noise=noise)

            plain = replace(live, precision="fp32", runtime="torch")  # the fallback without onnxruntime
            student_once()
            student_once(plain)
            student_times = time_runs(student_once, repeats)
            plain_times = time_runs(functools.partial(student_once, plain), repeats)
            handler_times = time_runs(handler_once, repeats)
            teacher_times = time_runs(teacher_once, repeats)
            s, h, t = (statistics.median(x) for x in (student_times, handler_times, teacher_times))
            emitter.emit(
                "live_update_s", s, "s", threads=threads, runs_s=student_times, ran_as=execution.name,
                network_passes=live.steps, images_per_pass=len(TEN), handler_s=h, handler_runs_s=handler_times,
                teacher_default_s=t, teacher_runs_s=teacher_runs_summary(teacher_run, teacher_times),
                speedup_vs_teacher_default=ratio(t, s), candidates_ms=execution.timings_ms,
                torch_fp32_s=statistics.median(plain_times), torch_fp32_runs_s=plain_times,
                note="ten digits, one per class, w = 3; handler_s adds the picture the slider shows",
            )  # fmt: skip
    finally:
        torch.set_num_threads(before)


def teacher_runs_summary(result: Any, times: list[float]) -> dict[str, Any]:
    """How the teacher's default sampler ran: its runs, steps, images through the network, runtime."""
    return {
        "runs_s": times,
        "steps": result.network_evaluations,
        "network_images_per_digit": result.network_images / len(TEN),
        "ran_as": result.execution.name,
    }


def bench_quality(emitter: Emitter, per_class: int, student_dir: Path, teacher_dir: Path) -> None:
    """``quality_by_w``: accuracy and Fréchet distance of the student and the teacher (two ways) per w."""
    student, teacher = load_checkpoint(student_dir), load_checkpoint(teacher_dir)
    dataset = teacher.dataset  # the student learnt the teacher's images: measure both against those
    classifier, data = load_classifier(classifier_dir(dataset), dataset), load_bundled(dataset)
    settings = student_settings(student, seed=1234)
    runs = {
        f"student (DDIM {settings.steps} steps, 1 pass each)": (student, settings),
        "teacher guided at every step (DPM-Solver++ 10 steps, 2 passes each)": (
            teacher, SamplerSettings(seed=1234, guidance_interval=NO_INTERVAL),
        ),
        "teacher default (DPM-Solver++ 10 steps, guided where 1 < σ ≤ 2)": (teacher, SamplerSettings(seed=1234)),
    }  # fmt: skip
    table: dict[str, dict[str, Any]] = {}
    floor = None
    for name, (loaded, settings) in runs.items():
        metrics = evaluate(loaded, classifier, data, list(QUALITY_WS), per_class, settings)
        floor = metrics["real_vs_real_frechet_distance"]
        table[name] = {
            f"w={row['w']:g}": {"accuracy": row["accuracy"], "frechet_distance": row["frechet_distance"],
                                "seconds": row["seconds"]}
            for row in metrics["by_w"]
        }  # fmt: skip
    student_name, teacher_name = list(runs)[:2]
    fd_ratio = {
        w: ratio(table[student_name][w]["frechet_distance"], table[teacher_name][w]["frechet_distance"])
        for w in table[student_name]
    }
    emitter.emit(
        "quality_by_w", None, None, samples_per_w=10 * per_class, real_vs_real_frechet_distance=floor,
        runs=table, student_over_teacher_frechet=fd_ratio,
    )  # fmt: skip


class Person(threading.Thread):
    """One simulated person dragging the live w slider: the next value as soon as the last picture arrived."""

    def __init__(self, url: str, index: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.index, self.seconds = url, index, seconds
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        from gradio_client import Client

        client = Client(self.url, verbose=False, analytics_enabled=False)
        ws = np.concatenate([np.linspace(0, 5, 51), np.linspace(5, 0, 51)])
        end = time.perf_counter() + self.seconds
        i = self.index * 7
        while time.perf_counter() < end:
            w = round(float(ws[i % len(ws)]), 1)
            start = time.perf_counter()
            try:
                client.predict([str(c) for c in range(10)], w, self.index, api_name="/live_digits")
                self.latencies.append(time.perf_counter() - start)
            except Exception as exc:  # a failed update is counted, not fatal
                self.errors.append(f"{type(exc).__name__}: {exc}")
            i += 1


def bench_crowd(emitter: Emitter, seconds: float, people: int = CROWD_PEOPLE) -> None:
    """``crowd_live_update_s``: eight people dragging at once against ``python app.py``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryFile("w+") as log:
        proc = launch_app(port, log)
        try:
            wait_for_page(proc, url, timeout_s=90.0)
            warm = Person(url, 0, 3.0)  # first requests load the student and time its runtime
            warm.run()
            crowd = [Person(url, i, seconds) for i in range(people)]
            for person in crowd:
                person.start()
            for person in crowd:
                person.join(seconds + 60)
        finally:
            stop_process(proc)
    latencies = sorted(x for p in crowd for x in p.latencies)
    errors = [e for p in crowd for e in p.errors]
    emitter.emit(
        "crowd_live_update_s",
        statistics.median(latencies) if latencies else None,
        "s",
        people=people,
        seconds=seconds,
        updates=len(latencies),
        p95_s=float(np.percentile(latencies, 95)) if latencies else None,
        max_s=latencies[-1] if latencies else None,
        updates_per_s_per_person=len(latencies) / seconds / people,
        errors=len(errors),
        first_errors=errors[:3],
        server="python app.py (torch threads 1, live event: batch=True, 2 batches at a time)",
        note="value = median latency of one update (request to picture) as each person sees it",
    )


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("python -m benchmarks.live", __doc__, paragraphs=3)
    p.add_argument("--student", default=str(student_model_dir()), help="distilled student folder")
    p.add_argument("--teacher", default=str(shipped_model_dir()), help="teacher folder")
    p.add_argument("--repeats", type=int, default=20, help="runs per timing; medians are reported")
    p.add_argument("--per-class", type=int, default=100, help="digits per class and w for the quality group")
    p.add_argument("--crowd-seconds", type=float, default=30.0, help="how long the eight people drag")
    p.add_argument("--quick", action="store_true", help="5 repeats, 20 digits per class, a 10 s crowd")
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(GROUPS)}")
    p.add_argument("--out", default=None, help="also write the JSON lines to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    groups = list(GROUPS) if args.only is None else [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        print(f"error: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    repeats = 5 if args.quick else args.repeats
    per_class = 20 if args.quick else args.per_class
    crowd_seconds = 10.0 if args.quick else args.crowd_seconds
    student_dir, teacher_dir = Path(args.student), Path(args.teacher)
    with open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext() as out:
        emitter = Emitter(out)
        if "speed" in groups:
            bench_speed(emitter, max(1, repeats), student_dir, teacher_dir)
        if "quality" in groups:
            bench_quality(emitter, per_class, student_dir, teacher_dir)
        if "crowd" in groups:
            bench_crowd(emitter, crowd_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

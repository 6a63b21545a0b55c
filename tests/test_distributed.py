"""Data-parallel training under torchrun: 2 processes on the CPU (gloo), against 1 process.

The torchrun runs are real: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m
ddpm_core.cli.train …`` in a subprocess, as a user types it. The stated tolerance: after the same steps at the same
global batch, every weight, EMA weight and AdamW moment of a 2-process run lies within 1e-5 + 1e-4·|value| of
the 1-process run's (the gradients are the same sums, added in another order: below 1e-6 after 60 steps here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddpm_core.checkpoints import MODEL_FILE, STATE_FILE, load_checkpoint
from ddpm_core.cli import train as train_cli
from ddpm_core.distributed import SINGLE, World, backend_for
from ddpm_core.schedule import NoiseSchedule, ScheduleConfig
from ddpm_core.training import ShardedBatches, StepDraws, TrainConfig, _agreed_execution, step_seed
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
# tiny network, fp32, every random draw switched on (shift, log-normal t, min-SNR weights, context drop)
SETTINGS = [
    "--preset", "tiny", "--precision", "fp32", "--T", "50", "--augment-shift", "2", "--t-sampling", "lognormal",
    "--weighting", "min_snr", "--checkpoint-every", "1000",
]  # fmt: skip
STEPS = 60
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


class Torchrun:
    """``torchrun --nproc-per-node processes -m ddpm_core.cli.train args``, started from the repository root,
    its output going to a file (a pipe nobody reads could fill and stall it)."""

    def __init__(self, processes: int, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        command = [*TORCHRUN, str(processes), "-m", "ddpm_core.cli.train", *args]
        with log.open("w") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait(self, timeout: float = 300) -> tuple[int, str]:
        """The exit status and the output, once it has ended (killed if it takes longer than ``timeout``)."""
        try:
            self.process.wait(timeout=timeout)
        finally:
            self.process.kill()
        return self.process.wait(), self.log.read_text()

    def finished(self) -> str:
        """The output of a run that ended well."""
        status, output = self.wait()
        assert status == 0, output
        return output


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's EMA weights and its training state (raw weights, AdamW moments, step), by file."""
    ema = {f"ema.{k}": v for k, v in load_file(folder / MODEL_FILE).items()}
    return {**ema, **load_file(folder / STATE_FILE)}


def assert_same_training(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys() and any(k.startswith("adam.") for k in ta)
    for key in ta:
        torch.testing.assert_close(ta[key], tb[key], **TOLERANCE, msg=lambda m, key=key: f"{key}: {m}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The same 60 steps trained by 1 process (the plain command) and by 2 under torchrun."""
    root = tmp_path_factory.mktemp("ddp")
    two = Torchrun(2, ["--steps", str(STEPS), *SETTINGS, "--out", str(root / "two")], root / "two.log")
    try:  # the plain run goes on in this process meanwhile
        assert train_cli.main(["--steps", str(STEPS), *SETTINGS, "--out", str(root / "one")]) == 0
    finally:
        output = two.finished()
    yield {"root": root, "one": root / "one", "two": root / "two", "output": output}


def test_two_processes_train_the_same_weights_as_one(runs: dict) -> None:
    assert_same_training(runs["one"], runs["two"])
    records = [load_checkpoint(runs[n]).config["training"] for n in ("one", "two")]
    assert [r["processes"] for r in records] == [1, 2] and [r["steps"] for r in records] == [STEPS, STEPS]


def test_the_tolerance_would_catch_another_run(runs: dict, tmp_path: Path) -> None:
    """The comparison has teeth: one step fewer, or another seed, is far outside the tolerance."""
    for extra in (["--steps", str(STEPS - 1)], ["--steps", str(STEPS), "--seed", "1"]):
        out = tmp_path / "_".join(extra)
        assert train_cli.main([*SETTINGS, *extra, "--out", str(out)]) == 0
        with pytest.raises(AssertionError):
            assert_same_training(runs["one"], out)


def test_only_rank_zero_logs_and_reports(runs: dict) -> None:
    lines = runs["output"].splitlines()
    assert sum(line.startswith("data: ") for line in lines) == 1
    assert sum(line.startswith('{"steps"') for line in lines) == 1
    assert "2 processes (rank 0)" in runs["output"] and '"processes": 2' in runs["output"]
    assert "rank 1" not in runs["output"]


def test_a_run_resumes_with_another_number_of_processes(runs: dict) -> None:
    """Resume the 2-process checkpoint with 1 process and the 1-process checkpoint with 2: the same 20 steps."""
    root, more = runs["root"], ["--steps", "20", *SETTINGS]
    two = Torchrun(2, [*more, "--resume", str(runs["one"]), "--out", str(root / "one_then_two")], root / "r.log")
    try:
        assert train_cli.main([*more, "--resume", str(runs["two"]), "--out", str(root / "two_then_one")]) == 0
    finally:
        two.finished()
    assert_same_training(root / "two_then_one", root / "one_then_two")
    for name, processes in (("two_then_one", 1), ("one_then_two", 2)):
        record = load_checkpoint(root / name).config["training"]
        assert record["steps"] == STEPS + 20 and record["processes"] == processes
    with pytest.raises(AssertionError):  # and they did train on: the weights moved from where they started
        assert_same_training(runs["one"], root / "two_then_one")


def worker_pid(marker: str, rank: int) -> int | None:
    """The process of torchrun's worker ``rank`` in the run whose environment carries ``marker``."""
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"DDPM_TEST_RUN={marker}".encode() in env and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.parametrize("victim", [0, 1])
def test_a_killed_rank_leaves_the_last_checkpoint_whole(victim: int, tmp_path: Path) -> None:
    """Rank 0 saves after every step; a rank killed at any moment leaves a checkpoint that loads and resumes."""
    marker, out = uuid.uuid4().hex, tmp_path / "run"
    # saving after every step; and precision auto, so rank 0 times it and rank 1 takes its choice in a real run
    settings = [*SETTINGS[:-2], "--checkpoint-every", "0"]
    settings[settings.index("fp32")] = "auto"
    env = {**os.environ, "DDPM_TEST_RUN": marker}
    run = Torchrun(2, ["--minutes", "5", *settings, "--out", str(out)], tmp_path / "log", env)
    deadline = time.monotonic() + 120
    while not (out / "config.json").exists() and run.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # a few saves later, mid-run
    pid = worker_pid(marker, victim)
    if pid is not None and run.process.poll() is None:
        os.kill(pid, signal.SIGKILL)
    status, output = run.wait(timeout=120)
    assert pid is not None, output
    assert status != 0, output  # torchrun reports the lost rank and stops the other
    saved = load_checkpoint(out, with_training_state=True)
    assert saved.training_state is not None
    assert int(saved.training_state["step"][0]) == saved.config["training"]["steps"] > 0
    assert saved.config["training"]["execution"]["requested"] == "auto/torch"
    assert train_cli.main(["--steps", "2", *settings, "--resume", str(out), "--out", str(tmp_path / "on")]) == 0


def test_sharded_batches_deal_each_global_batch_across_ranks() -> None:
    """Rank r of N takes positions r, r + N, … of the 1-process batch, over epoch boundaries too."""
    n, batch, seed = 50, 8, 3  # 6 global batches an epoch, 2 images wait for the next shuffle
    one = ShardedBatches(n, batch, seed)
    for size in (2, 4):
        ranks = [ShardedBatches(n, batch, seed, World(r, size, r)) for r in range(size)]
        for step in range(20):
            whole = one.indices(step)
            for r, shard in enumerate(ranks):
                assert torch.equal(shard.indices(step), whole[r::size])
    epoch0 = torch.cat([one.indices(s) for s in range(6)])
    epoch1 = torch.cat([one.indices(s) for s in range(6, 12)])
    assert len(set(epoch0.tolist())) == 48 and len(set(epoch1.tolist())) == 48  # no image twice in an epoch
    assert not torch.equal(epoch0, epoch1)  # reshuffled each epoch
    assert torch.equal(ShardedBatches(n, batch, seed).indices(13), one.indices(13))  # from the step count alone


def test_sharded_batches_refuse_batches_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="larger than the 50 training images"):
        ShardedBatches(50, 64, 0)
    with pytest.raises(ValueError, match="multiple of 3"):
        ShardedBatches(50, 8, 0, World(0, 3, 0))


def test_step_draws_depend_on_the_seed_and_step_only_and_share_by_position() -> None:
    config = TrainConfig(augment_shift=2, t_sampling="lognormal")
    schedule = NoiseSchedule.from_config(ScheduleConfig("cosine", 50))
    shape = (8, 1, 28, 28)
    a, b = StepDraws.of(config, schedule, 7, shape), StepDraws.of(config, schedule, 7, shape)
    assert torch.equal(a.noise, b.noise) and torch.equal(a.t, b.t) and torch.equal(a.offsets, b.offsets)
    assert not torch.equal(a.noise, StepDraws.of(config, schedule, 8, shape).noise)
    assert step_seed(0, 7) != step_seed(1, 7) and step_seed(0, 7) != step_seed(0, 8)
    halves = [a.share(World(r, 2, r)) for r in (0, 1)]
    assert torch.equal(torch.stack([halves[0].noise, halves[1].noise], 1).flatten(0, 1), a.noise)
    assert torch.equal(halves[1].drop, a.drop[1::2]) and torch.equal(halves[0].offsets, a.offsets[0::2])
    assert torch.equal(a.share(SINGLE).noise, a.noise) and torch.equal(a.share(SINGLE).t, a.t)


def test_the_world_comes_from_torchrun_s_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert World.from_environment() == SINGLE and not SINGLE.parallel and SINGLE.is_main
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = World.from_environment()
    assert world == World(3, 4, 1) and world.parallel and not world.is_main
    assert world.place(torch.device("cuda")) == torch.device("cuda", 1)
    assert world.place(torch.device("cuda", 0)) == torch.device("cuda", 0)
    assert world.place(torch.device("cpu")) == torch.device("cpu")
    assert backend_for(torch.device("cpu")) == "gloo" and backend_for(torch.device("cuda", 1)) == "nccl"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "31"], "does not split evenly over 2 processes"),
        (["--data", "full", "--download"], "download the full set once without torchrun"),
    ],
)
def test_the_command_refuses_under_torchrun_what_cannot_split(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for name, value in {"TORCHELASTIC_RUN_ID": "t", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    assert train_cli.main(["--steps", "1", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and "error (rank 1)" in err and not (tmp_path / "x").exists()


class _Rank1(World):
    """Rank 1 of 2, whose broadcast brings rank 0's value without a process group."""

    def from_main(self, value: int, device: torch.device) -> int:
        return 2  # PRECISIONS[2] == "bf16": what rank 0 timed


def test_every_rank_trains_at_the_precision_rank_zero_timed() -> None:
    model = ContextUNet(WIDTH_PRESETS["tiny"])
    chosen = _agreed_execution(model, 4, "auto", _Rank1(1, 2, 1), torch.device("cpu"))
    assert chosen.precision == "bf16" and chosen.batch == 0  # taken up, not timed on this rank
    assert _agreed_execution(model, 4, "fp32", _Rank1(1, 2, 1), torch.device("cpu")).precision == "fp32"


def test_the_plain_command_refuses_a_batch_larger_than_the_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train_cli.main(["--steps", "1", "--batch-size", "4096", "--out", str(tmp_path / "x")]) == 2
    assert "larger than the 4,000 training images" in capsys.readouterr().err and not (tmp_path / "x").exists()

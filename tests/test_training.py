"""The training loop on the bundled real digits, with tiny settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ddpm_core.checkpoints import load_checkpoint
from ddpm_core.data import load_bundled, to_model_range
from ddpm_core.diffusion import eps_from_output, q_sample
from ddpm_core.schedule import NoiseSchedule, ScheduleConfig
from ddpm_core.training import StepDraws, StepLedger, TrainConfig, drop_context, learning_rate, train
from ddpm_core.unet import NULL_LABEL

TINY = TrainConfig(
    preset="tiny", batch_size=32, lr=3e-3, warmup_steps=5, max_steps=60, max_minutes=None,
    schedule=ScheduleConfig("cosine", 50), checkpoint_every_s=1e9, report_every=5,
)  # fmt: skip


def fixed_batch_loss(model: torch.nn.Module, schedule, seed: int = 0) -> float:
    data = load_bundled()
    g = torch.Generator().manual_seed(seed)
    x0 = to_model_range(data.held_out.images[:200])
    t = torch.randint(0, schedule.num_steps, (200,), generator=g)
    x_t, eps = q_sample(schedule, x0, t, generator=g)
    with torch.no_grad():
        out = model(x_t, t.float() / schedule.num_steps, torch.as_tensor(data.held_out.labels[:200]))
    pred = eps_from_output(schedule, x_t, t, out, model.config.prediction)  # a v-model's output, as ε
    return float(((pred - eps) ** 2).mean())


def test_loss_falls_and_progress_is_reported(tmp_path: Path) -> None:
    reports = []
    result = train(TINY, load_bundled(), out_dir=tmp_path / "run", callback=reports.append, device="cpu")
    assert result.steps == 60 and not result.stopped_early
    assert [r.step for r in reports] == [*list(range(5, 61, 5)), 60]
    assert reports[-1].done and reports[-1].fraction == 1.0
    assert all(math.isfinite(r.loss) for r in reports)
    # held-out ε-loss of the trained EMA model well below that of an untrained net (which predicts 0: loss ≈ 1)
    assert fixed_batch_loss(result.ema_model, result.schedule) < 0.6
    loaded = load_checkpoint(tmp_path / "run", with_training_state=True)
    assert loaded.config["training"]["steps"] == 60
    assert loaded.training_state is not None and int(loaded.training_state["step"][0]) == 60


def test_resume_continues_the_step_count_and_the_optimiser(tmp_path: Path) -> None:
    cfg = TrainConfig(**{**TINY.__dict__, "max_steps": 10})
    train(cfg, load_bundled(), out_dir=tmp_path / "a", device="cpu")
    resumed = load_checkpoint(tmp_path / "a", with_training_state=True)
    result = train(cfg, load_bundled(), out_dir=tmp_path / "b", resume=resumed, device="cpu")
    assert result.steps == 20
    assert load_checkpoint(tmp_path / "b").config["training"]["steps"] == 20


def test_stop_request_ends_the_run_and_saves(tmp_path: Path) -> None:
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    result = train(TINY, load_bundled(), out_dir=tmp_path / "s", should_stop=stop_after_three, device="cpu")
    assert result.stopped_early and result.steps == 3
    assert load_checkpoint(tmp_path / "s").config["training"]["steps"] == 3


def test_training_is_seeded() -> None:
    cfg = TrainConfig(**{**TINY.__dict__, "max_steps": 3})
    a = train(cfg, load_bundled(), device="cpu")
    b = train(cfg, load_bundled(), device="cpu")
    assert a.losses == b.losses


def test_context_dropout_rate() -> None:
    labels = torch.zeros(20000, dtype=torch.long)
    config = TrainConfig(context_drop_prob=0.2)
    draws = StepDraws.of(config, NoiseSchedule.from_config(config.schedule), 0, (20000, 1, 1, 1))
    dropped = drop_context(labels, draws.drop)
    share = float((dropped == NULL_LABEL).float().mean())
    assert abs(share - 0.2) < 0.015  # binomial std ≈ 0.003
    assert set(dropped.unique().tolist()) == {0, NULL_LABEL}


def test_learning_rate_warms_up_then_decays() -> None:
    cfg = TrainConfig(lr=1e-3, warmup_steps=10)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 9, 0.0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 500, 0.5) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert learning_rate(cfg, 900, 1.0) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"preset": "huge"}, "preset"),
        ({"max_steps": None, "max_minutes": None}, "limit"),
        ({"context_drop_prob": 1.0}, "context-drop"),
        ({"lr": 0.0}, "learning rate"),
        ({"loss": "hinge"}, "loss"),
    ],
)
def test_bad_training_settings_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**TINY.__dict__, **change}).validate()


def test_resume_from_weights_only_continues_the_step_count(tmp_path: Path) -> None:
    cfg = TrainConfig(**{**TINY.__dict__, "max_steps": 4})
    train(cfg, load_bundled(), out_dir=tmp_path / "a", device="cpu")
    weights_only = load_checkpoint(tmp_path / "a")  # as shipped: no training_state.safetensors read
    assert weights_only.training_state is None
    result = train(cfg, load_bundled(), out_dir=tmp_path / "b", resume=weights_only, device="cpu")
    assert result.steps == 8


def test_step_ledger_counts_reports_saves_and_ends_on_the_step_budget() -> None:
    reports, saves = [], []
    ledger = StepLedger(5, None, report_every=2, checkpoint_every_s=0.0, report=reports.append, save=saves.append)
    assert ledger.fraction() == 0.0 and not ledger.done()
    for loss in (4.0, 2.0, 1.0):
        ledger.record(loss)
    assert reports == [False] and len(saves) == 3  # a report every 2 steps; a save whenever 0 s have passed
    assert ledger.fraction() == pytest.approx(3 / 5) and ledger.window == [1.0]
    ledger.record(3.0)
    ledger.record(5.0)
    assert ledger.done() and ledger.losses == [4.0, 2.0, 1.0, 3.0, 5.0]
    elapsed, _ = ledger.finish()
    assert reports[-1] is True and elapsed >= 0 and len(saves) == 6


def test_step_ledger_judges_the_time_budget_on_the_agreed_clock() -> None:
    """Under torchrun every rank ends on rank 0's clock, handed to ``record``, not on its own."""
    ledger = StepLedger(None, 1.0, 10, 1e9, report=lambda done: None, save=lambda elapsed: None)
    ledger.record(0.5, clock_s=30.0)
    assert ledger.fraction() == pytest.approx(0.5) and not ledger.done()
    ledger.record(0.5, clock_s=60.0)
    assert ledger.done() and ledger.elapsed() < 60.0


def test_step_ledger_progress_reports_the_mean_loss_since_the_last_report() -> None:
    ledger = StepLedger(None, 60.0, 10, 1e9, report=lambda done: None, save=lambda elapsed: None)
    for loss in (1.0, 2.0, 6.0):
        ledger.record(loss)
    progress = ledger.progress(103, 0.01, None, None, None, done=False)  # type: ignore[arg-type]
    assert progress.loss == pytest.approx(3.0) and progress.step == 103 and 0 < progress.fraction < 0.01
    assert progress.eta_s > 0 and ledger.progress(103, 0.01, None, None, None, done=True).eta_s == 0.0  # type: ignore[arg-type]

"""Guidance distillation: the targets against closed forms, the student's w input, sampling it, and a short run."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from ddpm_core import onnx_network
from ddpm_core.checkpoints import LoadedModel, load_checkpoint
from ddpm_core.cli import distill as distill_cli
from ddpm_core.cli import evaluate as evaluate_cli
from ddpm_core.data import load_bundled
from ddpm_core.distillation import (
    DistillConfig,
    distill,
    progressive_distillation_target,
    refine_timesteps,
    student_from_teacher,
    student_settings,
    student_timesteps,
    student_w_range,
    teacher_solve,
    truncated_snr_weight,
)
from ddpm_core.runtime import choose_inference, network
from ddpm_core.sampling import (
    SampleRequest,
    SamplerSettings,
    guided_eps,
    sample,
    sample_together,
)
from ddpm_core.schedule import make_schedule
from ddpm_core.unet import NULL_LABEL, ContextUNet, UNetConfig, takes_guidance

SCHEDULE = make_schedule("cosine", 250)
TINY = UNetConfig(channels=(8, 16, 16), embed_dim=32, groups=4, attention_heads=2, prediction="v")


def alpha_bar(t: int) -> float:
    """ᾱ_t from the betas, multiplied out here rather than read from the schedule (t = −1 is x_0: ᾱ = 1)."""
    return math.prod(1.0 - float(b) for b in SCHEDULE.betas[: t + 1])


def random_teacher(seed: int = 0) -> ContextUNet:
    torch.manual_seed(seed)
    model = ContextUNet(TINY)
    for p in model.parameters():  # the zero-initialised output layer would make every output zero
        nn.init.normal_(p, std=0.2)
    return model.eval()


def random_student(seed: int = 0) -> ContextUNet:
    student = student_from_teacher(random_teacher(seed))
    for p in student.guidance_embed.parameters():  # a trained student's w matters; a fresh one's does not
        nn.init.normal_(p, std=0.2)
    return student.eval()


@pytest.mark.parametrize(("t", "s"), [(249, 239), (239, 154), (154, 20), (20, -1), (100, 99), (5, -1)])
def test_target_is_x0_when_both_points_lie_on_one_ddim_path(t: int, s: int) -> None:
    """For one data point x_0 the DDIM path is x_τ = α_τ x_0 + σ_τ ε with a fixed ε, so the target is x_0 itself."""
    gen = torch.Generator().manual_seed(t)
    x0, eps = torch.randn(3, 1, 4, 4, generator=gen).clamp(-1, 1), torch.randn(3, 1, 4, 4, generator=gen)
    x_t = math.sqrt(alpha_bar(t)) * x0 + math.sqrt(1 - alpha_bar(t)) * eps
    x_s = math.sqrt(alpha_bar(s)) * x0 + math.sqrt(1 - alpha_bar(s)) * eps
    target = progressive_distillation_target(SCHEDULE, x_t.double(), t, x_s.double(), s)
    torch.testing.assert_close(target.float(), x0, atol=2e-3 if t == 249 else 1e-4, rtol=0)


def test_target_for_an_arbitrary_end_point_solves_the_ddim_equation() -> None:
    """x_s = α_s x̃ + σ_s (x_t − α_t x̃)/σ_t, the DDIM jump (Song et al. eq. 12, η = 0), written out by hand."""
    t, s = 180, 90
    gen = torch.Generator().manual_seed(1)
    x_t, x_s = torch.randn(2, 1, 5, 5, generator=gen, dtype=torch.float64).unbind(0)
    target = progressive_distillation_target(SCHEDULE, x_t, t, x_s, s)
    a_t, a_s = math.sqrt(alpha_bar(t)), math.sqrt(alpha_bar(s))
    sig_t, sig_s = math.sqrt(1 - alpha_bar(t)), math.sqrt(1 - alpha_bar(s))
    landed = a_s * target + sig_s * (x_t - a_t * target) / sig_t
    torch.testing.assert_close(landed, x_s, atol=1e-9, rtol=1e-9)


def test_target_refuses_a_jump_that_does_not_go_down() -> None:
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="s < t"):
        progressive_distillation_target(SCHEDULE, x, 10, x, 10)


@pytest.mark.parametrize("t", [0, 20, 125, 200, 249])
def test_truncated_snr_weight(t: int) -> None:
    assert truncated_snr_weight(SCHEDULE, t) == pytest.approx(max(alpha_bar(t) / (1 - alpha_bar(t)), 1.0), rel=1e-4)


def test_student_grid_is_the_apps_four_step_ddim_grid_and_substeps_refine_it() -> None:
    grid = student_timesteps(SCHEDULE, 4)
    assert grid[0] == 249 and len(grid) == 4 and grid == sorted(grid, reverse=True)
    lam = 0.5 * SCHEDULE.log_snr.double()
    for i, t in enumerate(grid):
        end = grid[i + 1] if i + 1 < len(grid) else -1
        steps = refine_timesteps(SCHEDULE, t, end, 3)
        assert steps[0] == t and steps == sorted(set(steps), reverse=True) and min(steps) > end
        assert 1 <= len(steps) <= 3
    wide = refine_timesteps(SCHEDULE, 154, 20, 4)  # a wide segment: four steps evenly spaced in λ
    gaps = [float(lam[b] - lam[a]) for a, b in zip(wide, [*wide[1:], 20], strict=True)]
    assert len(wide) == 4 and max(gaps) - min(gaps) < 0.1 * max(gaps)
    assert refine_timesteps(SCHEDULE, 154, 20, 1) == [154]


def test_student_starts_as_the_conditional_teacher_and_needs_w() -> None:
    teacher = random_teacher()
    student = student_from_teacher(teacher).eval()
    assert takes_guidance(student) and not takes_guidance(teacher)
    x, t, labels = torch.randn(4, 1, 28, 28), torch.rand(4), torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        for w in (0.0, 2.5, 5.0):
            torch.testing.assert_close(student(x, t, labels, torch.full((4,), w)), teacher(x, t, labels))
        with pytest.raises(ValueError, match="take the guidance weight"):
            student(x, t, labels)
        with pytest.raises(ValueError, match="no guidance weight"):
            teacher(x, t, labels, torch.ones(4))
    with pytest.raises(ValueError, match="not a distilled student"):
        student_from_teacher(student)


def test_guided_eps_with_one_w_per_image_is_the_mix_per_image() -> None:
    """ε̃ = w ε_c + (1 − w) ε_∅ per image, against the two network outputs mixed here by hand."""
    model = random_teacher(2)
    x, t, labels = torch.randn(3, 1, 28, 28), torch.tensor([200, 100, 30]), torch.tensor([1, 4, 8])
    ws = torch.tensor([0.0, 1.7, 4.0])
    with torch.no_grad():
        got = guided_eps(model, x, t, labels, ws, SCHEDULE, "eps")
        cond = model(x, t.float() / 250, labels)
        uncond = model(x, t.float() / 250, torch.full_like(labels, NULL_LABEL))
    want = ws[:, None, None, None] * cond + (1 - ws[:, None, None, None]) * uncond
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_student_samples_in_one_pass_per_step_and_batches_requests_without_changing_them() -> None:
    student = random_student(3)
    settings = SamplerSettings(sampler="ddim", steps=4, precision="fp32", runtime="torch", w=2.0)
    alone = sample(student, SCHEDULE, [0, 1, 2], settings)
    assert alone.network_evaluations == 4 and alone.network_images == 3 * 4  # no unconditional half
    requests = [SampleRequest((0, 1, 2), 2.0, 0), SampleRequest((5,), 4.5, 7), SampleRequest((3, 9), 0.0, 1)]
    together = sample_together(student, SCHEDULE, requests, settings)
    assert [len(images) for images in together] == [3, 1, 2]
    torch.testing.assert_close(together[0], alone.images, atol=1e-5, rtol=0)
    for request, images in zip(requests, together, strict=True):
        single = sample(student, SCHEDULE, list(request.labels), replace(settings, w=request.w, seed=request.seed))
        torch.testing.assert_close(images, single.images, atol=1e-5, rtol=0)
    assert not torch.allclose(together[1], sample(student, SCHEDULE, [5], replace(settings, seed=7)).images)


def test_per_image_weights_need_a_student_and_sane_values() -> None:
    settings = SamplerSettings(sampler="ddim", steps=2, precision="fp32", runtime="torch")
    with pytest.raises(ValueError, match="distilled student"):
        sample(random_teacher(), SCHEDULE, [1, 2], settings, ws=[1.0, 2.0])
    with pytest.raises(ValueError, match="one guidance weight per image"):
        sample(random_student(), SCHEDULE, [1, 2], settings, ws=[1.0])
    with pytest.raises(ValueError, match="must lie in"):
        sample(random_student(), SCHEDULE, [1, 2], settings, ws=[1.0, float("nan")])


def test_runtime_times_and_runs_a_student_with_its_w_input() -> None:
    student = random_student(4)
    execution = choose_inference(student, 10, "auto", "auto")
    x, t, labels, w = torch.randn(10, 1, 28, 28), torch.rand(10), torch.arange(10), torch.linspace(0, 5, 10)
    with torch.inference_mode():
        out = network(student, execution)(x, t, labels, w)
        want = student(x, t, labels, w)
    torch.testing.assert_close(out, want, atol=0.05 if execution.precision == "bf16" else 1e-4, rtol=0.05)


@pytest.mark.skipif(not onnx_network.available(), reason="onnxruntime is an optional speed-up")
def test_onnx_graph_of_a_student_takes_w() -> None:
    student = random_student(5)
    session = onnx_network.session_for(student)
    x, t, labels, w = torch.randn(3, 1, 28, 28), torch.rand(3), torch.tensor([1, 5, 9]), torch.tensor([0.0, 2.0, 5.0])
    with torch.no_grad():
        torch.testing.assert_close(session(x, t, labels, w), student(x, t, labels, w), atol=1e-4, rtol=1e-4)
    assert onnx_network.input_names(student) == ("x", "t", "labels", "w")


def test_teacher_solve_with_one_step_is_the_guided_ddim_jump() -> None:
    """One teacher step with the DDIM solver: x̂_0 from ε̃ (clipped), then x_s = α_s x̂_0 + σ_s ε̂ by hand."""
    teacher = random_teacher(6)
    x = torch.randn(2, 1, 28, 28)
    labels, w = torch.tensor([2, 6]), torch.tensor([1.5, 3.0])
    t, s = 120, 60
    with torch.no_grad():
        got = teacher_solve(teacher, SCHEDULE, x, [t], s, labels, w, "v", solver="ddim")
        eps = guided_eps(teacher, x, torch.full((2,), t), labels, w, SCHEDULE, "v")
    a_t, a_s = math.sqrt(alpha_bar(t)), math.sqrt(alpha_bar(s))
    x0 = ((x - math.sqrt(1 - a_t**2) * eps) / a_t).clamp(-1, 1)
    eps_clipped = (x - a_t * x0) / math.sqrt(1 - a_t**2)
    torch.testing.assert_close(got, a_s * x0 + math.sqrt(1 - a_s**2) * eps_clipped, atol=1e-4, rtol=1e-4)


def test_a_short_distillation_writes_a_student_checkpoint(tmp_path) -> None:
    teacher = LoadedModel(random_teacher(7), SCHEDULE, {"name": "tiny-teacher", "training": {"steps": 12}})
    config = DistillConfig(max_steps=4, max_minutes=None, batch_size=4, substeps=2, precision="fp32", report_every=1)
    seen = []
    result = distill(config, teacher, load_bundled(), out_dir=tmp_path / "student", callback=seen.append)
    assert result.steps == 4 and len(result.losses) == 4 and all(math.isfinite(v) for v in result.losses)
    assert [p.step for p in seen] == [1, 2, 3, 4, 4] and seen[-1].done
    loaded = load_checkpoint(tmp_path / "student")
    assert takes_guidance(loaded.model)
    meta = loaded.config["distillation"]
    assert meta["teacher"] == "tiny-teacher"
    assert meta["student_timesteps"] == student_timesteps(SCHEDULE, config.student_steps)
    assert student_w_range(loaded.config) == (0.0, config.w_max) and student_w_range({}) == (0.0, DistillConfig().w_max)
    settings = student_settings(loaded, w=2.0)
    assert (settings.sampler, settings.steps) == ("ddim", config.student_steps)
    # the student differs from the teacher after training (its weights moved), but its shapes are the teacher's
    assert any(not torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                    teacher.model.state_dict().values(), strict=False))  # fmt: skip


def test_distill_refuses_a_student_as_teacher(tmp_path) -> None:
    student = LoadedModel(random_student(), SCHEDULE, {"name": "s"})
    with pytest.raises(ValueError, match="not a distilled student"):
        distill(DistillConfig(max_steps=1, max_minutes=None, batch_size=2), student, load_bundled())


def test_the_student_learns_from_the_teachers_dataset_and_records_it(tmp_path) -> None:
    fashion = {"name": "fashion-teacher", "data": {"dataset": "fashion"}}
    teacher = LoadedModel(random_teacher(9), SCHEDULE, fashion)
    config = DistillConfig(max_steps=1, max_minutes=None, batch_size=2, substeps=1, precision="fp32")
    with pytest.raises(ValueError, match="the teacher fashion-teacher draws Fashion-MNIST, not MNIST digits"):
        distill(config, teacher, load_bundled(), out_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    distill(config, teacher, load_bundled("fashion"), out_dir=tmp_path / "student")
    student = load_checkpoint(tmp_path / "student")
    assert student.dataset == "fashion" and student.config["data"]["source"] == "bundled"


def test_the_distill_command_refuses_data_of_another_dataset(tmp_path, capsys) -> None:
    from ddpm_core.checkpoints import save_checkpoint

    teacher_dir = tmp_path / "fashion-teacher"
    save_checkpoint(
        teacher_dir, random_teacher(10), SCHEDULE, {"name": "fashion-teacher", "data": {"dataset": "fashion"}}
    )
    out = tmp_path / "student"
    assert distill_cli.main(["--teacher", str(teacher_dir), "--out", str(out), "--steps", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the teacher fashion-teacher draws Fashion-MNIST, not MNIST digits; distil it on its own images with "
        "--dataset fashion"
    )
    assert not out.exists()


def test_config_validation() -> None:
    for bad in ({"student_steps": 0}, {"substeps": 0}, {"teacher_solver": "euler"}, {"w_max": 0.0},
                {"max_steps": None, "max_minutes": None}, {"lr": 0.0}, {"precision": "fp8"}):  # fmt: skip
        with pytest.raises(ValueError):
            DistillConfig(**bad).validate()


def test_distill_and_evaluate_command_lines(tmp_path, capsys) -> None:
    teacher_dir = tmp_path / "teacher"
    from ddpm_core.checkpoints import save_checkpoint

    save_checkpoint(teacher_dir, random_teacher(8), SCHEDULE, {"name": "teacher"})
    out = tmp_path / "student"
    code = distill_cli.main(["--teacher", str(teacher_dir), "--out", str(out), "--steps", "2", "--batch-size", "2",
                             "--substeps", "1", "--precision", "fp32"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and (out / "config.json").is_file()
    assert evaluate_cli.main(["--checkpoint", str(out), "--per-class", "2", "--ws", "0,3"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["sampler"]["name"] == "ddim" and metrics["sampler"]["steps"] == DistillConfig().student_steps
    assert [row["w"] for row in metrics["by_w"]] == [0.0, 3.0] and metrics["by_w"][0]["samples"] == 20
    assert distill_cli.main(["--teacher", str(tmp_path / "missing"), "--out", str(out), "--steps", "1"]) == 2
    assert distill_cli.main(["--teacher", str(out), "--out", str(tmp_path / "again"), "--steps", "1"]) == 2

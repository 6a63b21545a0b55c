"""Choosing precision and runtime by measurement: the race with injected timings, and the real chooser."""

from __future__ import annotations

import pytest
import torch

from ddpm_core import onnx_network, runtime
from ddpm_core.runtime import Execution, choose_inference, choose_training, ladder, race
from ddpm_core.unet import WIDTH_PRESETS, ContextUNet


class FakeClock:
    """A clock that only moves when a fake candidate 'runs'."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake(clock: FakeClock, ms: float, calls: list[str], name: str):
    def run() -> None:
        calls.append(name)
        clock.now += ms / 1e3

    return run


def per_image(clock: FakeClock, seen: list, ms_per_image: float, name: str):
    """A ladder candidate: at batch b it 'runs' for b × ms_per_image; every batch it is built at is recorded."""

    def at(batch: int):
        seen.append((name, batch))
        return fake(clock, ms_per_image * batch, [], name)

    return at


def test_race_picks_fp32_when_bf16_measures_slower_and_stops_timing_it() -> None:
    clock, calls = FakeClock(), []
    result = race(
        {"torch-fp32": fake(clock, 40, calls, "fp32"), "torch-bf16": fake(clock, 150, calls, "bf16")}, clock=clock
    )
    assert result.winner == "torch-fp32"
    assert "torch-bf16" in result.stopped
    assert calls.count("bf16") == 2  # a warm-up and one timed call, then it was clearly losing (3.75×)
    assert calls.count("fp32") == 2  # alone and timed once: nothing is left to compare it with


def test_race_picks_bf16_when_it_measures_faster() -> None:
    clock, calls = FakeClock(), []
    result = race(
        {"torch-fp32": fake(clock, 40, calls, "fp32"), "torch-bf16": fake(clock, 25, calls, "bf16")}, clock=clock
    )
    assert result.winner == "torch-bf16"
    assert result.median_ms("torch-bf16") == pytest.approx(25)
    assert result.stopped == ()


def test_a_hopeless_warm_up_is_not_timed_again() -> None:
    clock, calls = FakeClock(), []
    result = race(
        {"torch-fp32": fake(clock, 5, calls, "fp32"), "torch-bf16": fake(clock, 200, calls, "bf16")}, clock=clock
    )
    assert calls.count("bf16") == 1 and result.times_ms["torch-bf16"] == [pytest.approx(200)]  # the warm-up
    assert result.winner == "torch-fp32"


def test_a_near_tie_goes_to_the_first_candidate() -> None:
    clock, calls = FakeClock(), []
    result = race({"torch-fp32": fake(clock, 40, calls, "a"), "torch-bf16": fake(clock, 39, calls, "b")}, clock=clock)
    assert result.winner == "torch-fp32"  # 2.5% faster is inside the 5% margin


def test_the_budget_ends_the_race() -> None:
    clock, calls = FakeClock(), []
    race(
        {"a": fake(clock, 300, calls, "a"), "b": fake(clock, 310, calls, "b")}, clock=clock, budget_s=0.5, max_rounds=9
    )
    assert calls.count("a") == 2  # warm-up + one round: the budget was spent after it


def test_the_ladder_drops_a_hopeless_candidate_at_batch_one_before_the_real_batch() -> None:
    clock, seen = FakeClock(), []
    candidates = {"torch-fp32": per_image(clock, seen, 2, "fp32"), "torch-bf16": per_image(clock, seen, 40, "bf16")}
    result, batch, small = ladder(candidates, 20, clock=clock)
    assert result.winner == "torch-fp32"
    assert ("torch-bf16", 20) not in seen  # never built, let alone timed, at the real batch
    assert batch == 1 and small == {"torch-bf16": pytest.approx(40)}


def test_a_losing_candidate_too_costly_at_the_real_batch_stops_at_batch_one() -> None:
    """3× slower at batch one is not hopeless, but one call at batch 16 (16 × 90 ms) would take 6 budgets."""
    clock, seen = FakeClock(), []
    candidates = {"torch-fp32": per_image(clock, seen, 30, "fp32"), "torch-bf16": per_image(clock, seen, 90, "bf16")}
    result, batch, small = ladder(candidates, 16, clock=clock)
    assert result.winner == "torch-fp32" and batch == 1
    assert ("torch-bf16", 16) not in seen and small == {"torch-bf16": pytest.approx(90)}


def test_the_ladder_times_close_candidates_at_the_real_batch() -> None:
    clock = FakeClock()

    def make(fixed_ms: float, per_image_ms: float):
        return lambda b: fake(clock, fixed_ms + per_image_ms * b, [], "x")

    # b is slower at batch 1 (fixed overhead) but faster at batch 20: the real batch decides
    result, batch, _ = ladder({"a": make(1, 2.0), "b": make(4, 1.0)}, 20, clock=clock)
    assert batch == 20 and result.winner == "b"


def test_an_asked_for_precision_is_not_timed() -> None:
    model = ContextUNet(WIDTH_PRESETS["tiny"])
    chosen = choose_inference(model, 4, "fp32", "torch")
    assert (chosen.runtime, chosen.precision, chosen.batch) == ("torch", "fp32", 0)
    assert chosen.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert "as asked" in chosen.describe()


def test_auto_is_timed_once_and_cached() -> None:
    runtime.clear_cache()
    model = ContextUNet(WIDTH_PRESETS["tiny"])
    first = choose_inference(model, 6, "auto", "torch")
    assert set(first.timings_ms) == {"torch-fp32", "torch-bf16"} and all(first.timings_ms.values())
    # timed at the real batch, unless one candidate was already hopeless at batch one (a busy machine can do that)
    assert first.batch == (1 if first.stopped and set(first.timed_at.values()) == {1} else 6)
    assert first.probe_s > 0
    assert choose_inference(model, 6, "auto", "torch") is first
    assert first.name in first.describe() or first.precision in first.describe()
    assert first.as_dict()["cpu_capability"] == first.cpu_capability


def test_training_choice_leaves_the_weights_and_gradients_alone() -> None:
    runtime.clear_cache()
    model = ContextUNet(WIDTH_PRESETS["tiny"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    chosen = choose_training(model, 8, "auto")
    assert chosen.mode == "train" and chosen.precision in ("fp32", "bf16")
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_onnx_network_matches_pytorch() -> None:
    model = ContextUNet(WIDTH_PRESETS["small"]).eval()
    with torch.no_grad():  # non-zero output layer, so the comparison means something
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t, labels = torch.randn(3, 1, 28, 28), torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0, 7, 10])
    with torch.inference_mode():
        expected = model(x, t, labels)
    got = onnx_network.session_for(model)(x, t, labels)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-3)


def test_onnx_session_follows_weight_updates() -> None:
    model = ContextUNet(WIDTH_PRESETS["tiny"]).eval()
    first = onnx_network.session_for(model)
    assert onnx_network.session_for(model) is first
    with torch.no_grad():
        model.out.bias.add_(1.0)
    assert onnx_network.session_for(model) is not first


def test_without_onnxruntime_auto_falls_back_to_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.clear_cache()
    monkeypatch.setattr(onnx_network, "available", lambda: False)
    model = ContextUNet(WIDTH_PRESETS["tiny"])
    chosen = choose_inference(model, 2, "fp32", "auto")
    assert chosen.runtime == "torch" and "not installed" in chosen.note
    with pytest.raises(ValueError, match="onnxruntime"):
        choose_inference(model, 2, "fp32", "onnx")


@pytest.mark.parametrize(
    ("precision", "rt", "message"),
    [("fp16", "auto", "precision"), ("auto", "tensorrt", "runtime"), ("bf16", "onnx", "fp32")],
)
def test_bad_choices_are_refused_clearly(precision: str, rt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_inference(ContextUNet(WIDTH_PRESETS["tiny"]), 2, precision, rt)


def test_the_environment_sets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddpm_core.sampling import SamplerSettings

    monkeypatch.setenv(runtime.PRECISION_ENV, "FP32")
    monkeypatch.setenv(runtime.RUNTIME_ENV, "torch")
    assert (SamplerSettings().precision, SamplerSettings().runtime) == ("fp32", "torch")
    monkeypatch.setenv(runtime.PRECISION_ENV, "half")
    with pytest.raises(ValueError, match=runtime.PRECISION_ENV):
        SamplerSettings()


def test_describe_names_every_timing_and_the_cpu() -> None:
    chosen = Execution(
        "torch", "fp32", "auto/auto", "sample", "cpu", "AVX2", 20,
        {"torch-fp32": 40.0, "torch-bf16": 60.0, "onnx-fp32": 45.0},
        {"torch-fp32": 20, "torch-bf16": 1, "onnx-fp32": 20},
        ("torch-bf16",),
    )  # fmt: skip
    text = chosen.describe()
    assert text.startswith("fp32 · PyTorch")
    for part in ("torch-fp32 40.0 ms at batch 20", "torch-bf16 60.0 ms at batch 1, stopped", "onnx-fp32 45.0", "AVX2"):
        assert part in text

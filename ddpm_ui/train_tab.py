"""Tab 3, "Train or load": which digit model is live; upload or download one; or train one and watch it learn.

One training run at a time for the whole server (:class:`ddpm_core.live.TrainingJob`); the live model
changes only when someone loads a checkpoint or chooses to use the one just trained.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from ddpm_core import pictures
from ddpm_core.checkpoints import CheckpointError, load_checkpoint, load_uploaded, zip_checkpoint
from ddpm_core.live import JobStatus, TrainingBusyError
from ddpm_core.sampling import SamplerSettings
from ddpm_core.training import RECIPES, TrainConfig
from ddpm_core.unet import WIDTH_PRESETS
from ddpm_ui import state
from ddpm_ui.common import LATEX, file_path, friendly_errors, request_folder, seed_box, user_error

MAX_TRAIN_MINUTES = 30
DEFAULT_MINUTES = 3.0  # the fast recipe reaches ≥ 90% guided accuracy in this (README, "Training recipes")
TRAIN_POLL_S = 1.0
FRESH_CHOICE, RESUME_CHOICE = "start fresh", "continue training the live model"

INTRO = r"""
### A class-conditional model for digits
The network learns to undo noise: the classic recipe has it predict the noise $\epsilon$ in $x_t$, minimising
$\lVert \epsilon - \epsilon_\theta(x_t, t, c) \rVert^2$ (eq. 14). The **fast** recipe (the default) has it
predict the velocity $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0$ instead (Salimans & Ho),
which is well-posed at every noise level, and uses a smaller network, small batches and short schedules; it
reaches readable digits in about three minutes on a laptop CPU. Now and then
the class $c$ is replaced by "no class", so the same network also learns the unconditional model that guidance
needs. Training here uses the 4,000 real MNIST digits that ship with the app and this server's CPU; one run at
a time for everyone using this server. While it trains, the preview samples ten digits of each class at the
Sample tab's defaults and the project's classifier reads them: that is the *guided accuracy* below. The live
model (what the Sample tab uses) changes only when you load one or click *Use the trained model*.
"""


# ----------------------------------------------------------------------------------------------
# The live model
# ----------------------------------------------------------------------------------------------


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = metrics.get("by_w") or []
    if not rows:
        return "_No quality measurements stored with this model._"
    sampler = metrics.get("sampler", {})
    interval = sampler.get("guidance_interval")
    guided = f", guidance where {interval[0]:g} < σ ≤ {interval[1]:g}" if interval and interval[1] is not None else ""
    lines = [
        f"Measured with the project's classifier, {sampler.get('name', '?')} {sampler.get('steps', '?')} steps"
        f" ({sampler.get('spacing', 'linspace')} spacing{guided}); real-vs-real Fréchet floor "
        f"{metrics.get('real_vs_real_frechet_distance', '?')}. *Near-copies*: samples much closer to one training "
        "digit than to its other neighbours (the held-out real digits have "
        f"{_near_copy_text(rows, 'real_near_copy_share')}).",
        "",
        "| w | accuracy | Fréchet distance | near-copies | samples |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['w']:g} | {100 * r['accuracy']:.1f}% | {r['frechet_distance']:.2f} "
        f"| {_near_copy_text([r], 'sample_near_copy_share')} | {r['samples']} |"
        for r in rows
    ]
    return "\n".join(lines)


def _near_copy_text(rows: list[dict[str, Any]], key: str) -> str:
    shares = [r["memorisation"][key] for r in rows if "memorisation" in r]
    return f"{100 * shares[0]:.1f}%" if shares else "not measured"


def model_info() -> str:
    """Markdown describing the live model: name, size, schedule, training, data and measured quality."""
    s = state.live().summary()
    steps, minutes = s["training_steps"], s["training_minutes"]
    trained = f"{steps:,} steps" if steps is not None else "unknown steps"
    if minutes is not None:
        trained += f" in {minutes:g} min"
    predicts = {"eps": "the noise ε", "v": "the velocity v"}.get(s["prediction"], s["prediction"])
    recipe = f" with the {s['recipe']} recipe" if s["recipe"] else ""
    device = f" ({s['device'].upper() if s['device'] == 'cuda' else s['device']})" if s["device"] else ""
    return (
        f"**Live model: `{s['name']}`** — {s['parameters']:,} parameters, channels {s['channels']}, "
        f"predicts {predicts}, {s['schedule']}; trained {trained}{device}{recipe} "
        f"on {s['data'] or 'unknown data'}.\n\n"
        + _metrics_table(s["metrics"])
        + f"\n\n**On this machine** the network runs in {state.default_execution().describe()}."
    )


def _keep_live_folder() -> Any:
    """The folder the live model was loaded from: request-folder clean-up must not delete it."""
    live = state.LIVE.peek()
    return live.path if live is not None else None


@friendly_errors
def load_model(files: Any) -> str:
    """Load an uploaded checkpoint (model.safetensors + config.json, or a zip) and make it live."""
    paths = [file_path(f) for f in (files or [])]
    try:
        loaded = load_uploaded(paths, request_folder("uploads", keep=_keep_live_folder()))
    except CheckpointError as err:
        raise user_error(f"That checkpoint was not loaded: {err}. The live model is unchanged.") from None
    state.LIVE.swap(loaded)
    return "Loaded. " + model_info()


@friendly_errors
def download_model() -> str:
    """A zip of the live model's folder (model.safetensors + config.json)."""
    loaded = state.live()
    if loaded.path is None:
        raise ValueError("The live model has no folder on disk to download.")
    folder = request_folder("downloads", keep=_keep_live_folder())
    return str(zip_checkpoint(loaded.path, folder / f"{loaded.name}.zip"))


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def _loss_frame(status: JobStatus) -> pd.DataFrame:
    return pd.DataFrame({"step": status.steps_seen, "loss": status.losses})


def _accuracy_frame(status: JobStatus) -> pd.DataFrame:
    return pd.DataFrame({"step": status.accuracy_steps, "accuracy (%)": [100 * a for a in status.accuracies]})


def _accuracy_text(status: JobStatus) -> str:
    if not status.accuracies:
        return ""
    return f", guided accuracy **{100 * status.accuracies[-1]:.0f}%** (100 digits, w = {SamplerSettings.w:g})"


def _training_message(status: JobStatus) -> str:
    if status.error:
        return f"**Training failed:** {status.error}"
    loss = f"{status.losses[-1]:.4f}" if status.losses and math.isfinite(status.losses[-1]) else "—"
    if status.running:
        return (
            f"Training… step **{status.step}**, loss {loss}{_accuracy_text(status)}, "
            f"{100 * status.fraction:.0f}% of the budget, {status.elapsed_s:.0f} s elapsed, "
            f"about {status.eta_s:.0f} s left." + (f"\n\nTraining in {status.execution}." if status.execution else "")
        )
    if status.checkpoint is None:
        return "No training run yet."
    how = "stopped" if status.stopped_early else "finished"
    return (
        f"Training {how} at step **{status.step}** (loss {loss}{_accuracy_text(status)}); checkpoint saved. "
        "Use it as the live model or download it below."
    )


def _preview_image(status: JobStatus) -> np.ndarray | None:
    if status.preview is None:
        return None
    return pictures.image_grid(status.preview, nrow=10, scale=4, pad=2, pad_value=40)


def _train_config(
    minutes: Any, max_steps: Any, preset: str, batch: Any, lr: Any, drop: Any, seed: Any, recipe: str
) -> TrainConfig:
    minutes_f = float(minutes) if minutes not in (None, "") else 0.0
    steps_i = int(float(max_steps)) if max_steps not in (None, "") else 0
    if minutes_f <= 0 and steps_i <= 0:
        raise ValueError("Give the run a time budget (minutes) or a number of training steps.")
    if minutes_f > MAX_TRAIN_MINUTES:
        raise ValueError(f"In the app a run may last at most {MAX_TRAIN_MINUTES} minutes; use the CLI for more.")
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}.")
    return TrainConfig.from_recipe(
        recipe,
        preset=preset,
        batch_size=int(float(batch)),
        lr=float(lr),
        max_minutes=minutes_f if minutes_f > 0 else None,
        max_steps=steps_i if steps_i > 0 else None,
        context_drop_prob=float(drop),
        seed=int(float(seed)),
        checkpoint_every_s=30.0,
        report_every=5,
    )


def train_model(
    minutes: Any,
    max_steps: Any,
    preset: str,
    batch: Any,
    lr: Any,
    drop: Any,
    seed: Any,
    start_from: str,
    recipe: str = "fast",
    progress: gr.Progress = gr.Progress(),
) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame, np.ndarray | None]]:
    """Start a training run and stream its status, loss curve, guided-accuracy curve and preview grid until it ends."""
    try:
        config = _train_config(minutes, max_steps, preset, batch, lr, drop, seed, recipe)
        config.validate()
    except (ValueError, TypeError) as err:
        raise user_error(str(err)) from None
    resume = None
    if start_from == RESUME_CHOICE:
        live = state.live()
        resume = load_checkpoint(live.path, with_training_state=True) if live.path else live
    try:
        state.JOB.start(config, state.digit_data(), resume)
    except TrainingBusyError as err:
        raise user_error(str(err).capitalize() + ".") from None
    while True:
        status = state.JOB.status()
        progress(status.fraction, desc=f"step {status.step}")
        yield _training_message(status), _loss_frame(status), _accuracy_frame(status), _preview_image(status)
        if not status.running:
            break
        time.sleep(TRAIN_POLL_S)


def recipe_settings(recipe: str) -> tuple[Any, Any, Any]:
    """The width, batch size and learning rate a recipe starts from (to fill in the form)."""
    config = TrainConfig.from_recipe(recipe if recipe in RECIPES else "fast")
    return gr.update(value=config.preset), gr.update(value=config.batch_size), gr.update(value=config.lr)


def stop_training() -> str:
    """Ask the running job to stop; it saves its last checkpoint within a step."""
    if not state.JOB.running:
        return "No training run is going."
    state.JOB.stop()
    return "Stopping after the current step…"


@friendly_errors
def use_trained_model() -> str:
    """Make the last trained checkpoint the live model."""
    try:
        loaded = state.JOB.load_result()
    except (TrainingBusyError, FileNotFoundError) as err:
        raise user_error(str(err).capitalize() + ".") from None
    state.LIVE.swap(loaded)
    return "The trained model is now live. " + model_info()


@friendly_errors
def download_trained_model() -> str:
    """A zip of the last trained checkpoint."""
    status = state.JOB.status()
    if status.running or status.checkpoint is None:
        raise ValueError("No finished training run to download yet.")
    folder = request_folder("downloads", keep=_keep_live_folder())
    return str(zip_checkpoint(status.checkpoint, folder / f"{status.checkpoint.name}.zip"))


# ----------------------------------------------------------------------------------------------
# Layout and events
# ----------------------------------------------------------------------------------------------


def build_tab(demo: gr.Blocks) -> None:
    """Lay out tab 3 and wire its events (the model card fills in when a page loads)."""
    gr.Markdown(INTRO, latex_delimiters=LATEX)
    info = gr.Markdown(elem_id="model-info")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("#### Load or download a checkpoint")
            upload = gr.File(
                file_count="multiple", file_types=[".safetensors", ".json", ".zip"], type="filepath",
                label="model.safetensors + config.json, or one .zip of the folder", elem_id="ckpt-upload",
            )  # fmt: skip
            load_button = gr.Button("Load and make live", elem_id="ckpt-load")
            download_button = gr.Button("Download the live model (.zip)")
            download_file = gr.File(label="live model", interactive=False)
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("#### Train")
            with gr.Row():
                minutes = gr.Number(DEFAULT_MINUTES, minimum=0, maximum=MAX_TRAIN_MINUTES,
                                    label="minutes (0 = no limit)", elem_id="train-minutes")  # fmt: skip
                max_steps = gr.Number(0, precision=0, minimum=0, label="training steps (0 = no limit)",
                                      elem_id="train-steps")  # fmt: skip
            defaults = TrainConfig  # its class attributes: the defaults, read without checking the environment
            with gr.Row():
                recipe = gr.Dropdown(list(RECIPES), value=defaults.recipe, label="recipe", elem_id="train-recipe",
                                     info="fast: v-prediction, small net, batch 32; classic: ε, base net")  # fmt: skip
                preset = gr.Dropdown(list(WIDTH_PRESETS), value=defaults.preset, label="width", elem_id="train-preset")
            with gr.Row():
                batch = gr.Slider(16, 256, value=defaults.batch_size, step=16, label="batch size")
                lr = gr.Number(defaults.lr, minimum=1e-6, maximum=1.0, label="learning rate")
            with gr.Row():
                drop = gr.Slider(0, 0.5, value=defaults.context_drop_prob, step=0.05, label="context-drop probability")
            with gr.Row():
                seed = seed_box()
                start_from = gr.Radio([FRESH_CHOICE, RESUME_CHOICE], value=FRESH_CHOICE, label="start")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status")
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", title="training loss", height=260, elem_id="train-loss")
        accuracy_plot = gr.LinePlot(x="step", y="accuracy (%)", y_lim=[0, 100], height=260, elem_id="train-accuracy",
                                    title=f"guided accuracy (100 digits, w = {SamplerSettings.w:g})")  # fmt: skip
        preview = gr.Image(label="preview: ten digits per class (columns 0–9), EMA weights", format="png",
                           interactive=False, elem_id="train-preview")  # fmt: skip
    with gr.Row():
        use = gr.Button("Use the trained model", elem_id="train-use")
        download_trained = gr.Button("Download the trained model (.zip)")
    trained_file = gr.File(label="trained model", interactive=False)

    demo.load(model_info, None, info, api_name="model_info")
    load_button.click(load_model, upload, info, api_name="load_model", concurrency_limit=1)
    download_button.click(download_model, None, download_file, api_name="download_model")
    run = start.click(lambda: gr.update(interactive=False), None, start, queue=False, api_visibility="private")
    run = run.then(
        train_model, [minutes, max_steps, preset, batch, lr, drop, seed, start_from, recipe],
        [status, loss_plot, accuracy_plot, preview], api_name="train_model", concurrency_limit=4,
        concurrency_id="train",
    )  # fmt: skip
    recipe.change(recipe_settings, recipe, [preset, batch, lr], queue=False, api_visibility="private")
    run.then(lambda: gr.update(interactive=True), None, start, queue=False, api_visibility="private")
    stop.click(stop_training, None, status, api_name="stop_training", concurrency_limit=None)
    use.click(use_trained_model, None, info, api_name="use_trained_model", concurrency_limit=1)
    download_trained.click(download_trained_model, None, trained_file, api_name="download_trained_model")

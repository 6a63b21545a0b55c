"""Tab 3, "Train or load": this page's dataset and model; upload or download a model; or train one and watch it.

Each page (browser session) chooses a dataset (MNIST digits or Fashion-MNIST) and has its own model of each: the
shipped one until it loads a checkpoint or uses the one it trained, and nobody else's page changes. A checkpoint
of either dataset can be loaded; it becomes the page's model of its own dataset, and the page switches to that.
One training run at a time for the whole server (:class:`ddpm_core.training_job.TrainingJob`), on the dataset of
the page that started it and owned by that page: only it can stop, use or download the run, and the run stops
shortly after the page closes. Everyone else sees when it will end. A run learns from the 4,000 images of its
dataset that ship with the app or, where this server has that dataset's full set installed, from all 60,000.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ddpm_core import pictures
from ddpm_core.checkpoints import (
    CONFIG_FILE,
    MODEL_FILE,
    CheckpointError,
    LoadedModel,
    load_checkpoint,
    load_uploaded,
    zip_checkpoint,
)
from ddpm_core.data import DATA_SOURCES, DEFAULT_DATASET, DatasetInfo, ImageData, dataset_info
from ddpm_core.hub import HubOfflineError, HubSettings, HubUnreachableError, download_checkpoint, parse_repo
from ddpm_core.sessions import BusyError
from ddpm_core.training import RECIPES, TrainConfig
from ddpm_core.training_job import OWNER_GRACE_S, JobStatus, NotYourRunError, TrainingBusyError
from ddpm_core.unet import WIDTH_PRESETS
from ddpm_ui import model_card, state
from ddpm_ui.common import (
    LATEX,
    LOG,
    Picture,
    dataset_radio,
    file_path,
    friendly_errors,
    parse_float,
    parse_int,
    parse_seed,
    picture_view,
    refusal,
    request_folder,
    seed_box,
    user_error,
)

DEFAULT_MINUTES = 3.0  # the fast recipe reaches ≥ 90% guided accuracy in this (README, "Training recipes")
TRAIN_POLL_S = 1.0
BOARD_EVERY_S = 5.0  # how often every page refreshes the trainer's status line
FRESH_CHOICE, RESUME_CHOICE = "start fresh", "continue training this page's model"
MAX_REPO_CHARS = 300  # owner/name (96) and a revision (200) with room to spare; longer is not a repo id
SHIPPED_SOURCE = ("the 4,000 shipped", "bundled")  # the training images' radio: (label, value)
FULL_SOURCE = ("all 60,000 (installed on this server)", "full")

DATASET_INTRO = """
### A class-conditional model of digits or fashion items
Choose this page's dataset: **MNIST digits** (handwritten 0 to 9) or **Fashion-MNIST** (ten kinds of clothing,
shoes and bags). Both are 28 × 28 greyscale pictures in ten classes, so the same network and recipes learn either.
"""

INTRO = r"""
The network learns to undo noise: the classic recipe has it predict the noise $\epsilon$ in $x_t$, minimising
$\lVert \epsilon - \epsilon_\theta(x_t, t, c) \rVert^2$ (eq. 14). The **fast** recipe (the default) has it
predict the velocity $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0$ instead (Salimans & Ho),
which is well-posed at every noise level, and uses a smaller network, small batches and short schedules; it
reaches readable digits in about three minutes on a laptop CPU. Now and then
the class $c$ is replaced by "no class", so the same network also learns the unconditional model that guidance
needs. Training here uses the 4,000 real pictures of the chosen dataset that ship with the app (or all 60,000 of
its training set, where this server has the full set installed) and this server's CPU; one run at a time for
everyone using this server, and the run is yours: only this page can stop, use or download it, and it stops
shortly after you close the page. While it trains, the preview samples ten pictures of
each class at the Sample tab's defaults and the project's classifier for that dataset reads them: that is the
*guided accuracy* below. This page's model (what the Sample and Oracle tabs use) changes only when you load one or
click *Use the trained model*, and only for this page: other visitors keep theirs. Each dataset keeps its own
model, so switching to the other dataset and back loses nothing.
"""


# ----------------------------------------------------------------------------------------------
# This page's model
# ----------------------------------------------------------------------------------------------


def _loaded_text(done: str, chosen_before: str, loaded: LoadedModel, request: gr.Request | None) -> str:
    """``done`` ("Loaded for this page."), a note if the model's dataset switched the page, then the model card."""
    card = model_card.model_info(request)
    if loaded.dataset == chosen_before:
        return f"{done} {card}"
    return f"{done} It is a model of {loaded.dataset_info.title}: this page has switched to that dataset. {card}"


@friendly_errors
def load_model(files: Any, request: gr.Request | None = None) -> str:
    """Load an uploaded checkpoint (model.safetensors + config.json, or a zip) as this page's model of its dataset."""
    session = state.seen(request)
    chosen_before = state.dataset_for(request)
    paths = [file_path(f) for f in (files or [])]
    try:
        loaded = load_uploaded(paths, request_folder("uploads", keep=state.folders_in_use()))
        state.MODELS.use(session, loaded)
    except (CheckpointError, BusyError) as err:
        raise user_error(f"That checkpoint was not loaded: {err}. This page's model is unchanged.") from None
    return _loaded_text("Loaded for this page.", chosen_before, loaded, request)


@friendly_errors
def load_from_hub(repo: Any, request: gr.Request | None = None) -> str:
    """Fetch a checkpoint from the Hugging Face Hub (``owner/name`` or ``owner/name@revision``) as this page's model
    of its dataset.

    Only a repo id is taken, never a path on the server. It is fetched (or, with HF_HUB_OFFLINE=1, found in the
    server's Hub cache) without any token the server holds, so only public repos load; then it gets exactly the
    checks an upload gets and is copied into this page's own folder. On any error the page keeps its model.
    """
    session = state.seen(request)
    chosen_before = state.dataset_for(request)
    text = repo.strip() if isinstance(repo, str) else ""
    if not text:
        raise user_error("Type the Hub repo to load, like owner/name or owner/name@revision.")
    try:
        if len(text) > MAX_REPO_CHARS:
            raise CheckpointError(f"that is {len(text):,} characters; a Hub repo id owner/name[@revision] is shorter")
        spec = parse_repo(text)
        snapshot = download_checkpoint(spec, HubSettings.from_environment(token=False))
        loaded = load_uploaded(
            [snapshot / CONFIG_FILE, snapshot / MODEL_FILE], request_folder("uploads", keep=state.folders_in_use())
        )
        state.MODELS.use(session, loaded)
    except HubOfflineError:
        raise user_error(
            f"This server works offline (HF_HUB_OFFLINE=1): it can load only Hub models it already keeps, and {spec} "
            "is not one of them. This page's model is unchanged."
        ) from None
    except HubUnreachableError:
        raise user_error(
            f"The Hugging Face Hub cannot be reached from this server right now, and it does not keep {spec}; "
            "please try again later. This page's model is unchanged."
        ) from None
    except (CheckpointError, BusyError) as err:
        raise user_error(f"The model from the Hub was not loaded: {err}. This page's model is unchanged.") from None
    return _loaded_text(f"Loaded `{spec}` from the Hugging Face Hub for this page.", chosen_before, loaded, request)


@friendly_errors
def use_shipped_model(request: gr.Request | None = None) -> str:
    """Go back to the shipped model of this page's dataset (this page's own model of it is dropped)."""
    state.MODELS.use_default(state.seen(request), state.dataset_for(request))
    return "Back to the shipped model. " + model_card.model_info(request)


@friendly_errors
def download_model(request: gr.Request | None = None) -> str:
    """A zip of this page's model folder (model.safetensors + config.json)."""
    loaded = state.model_for(request)
    if loaded.path is None:
        raise ValueError("This page's model has no folder on disk to download.")
    folder = request_folder("downloads", keep=state.folders_in_use())
    return str(zip_checkpoint(loaded.path, folder / f"{loaded.name}.zip"))


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def _loss_frame(status: JobStatus) -> pd.DataFrame:
    return pd.DataFrame({"step": status.steps_seen, "loss": status.losses})


def _accuracy_frame(status: JobStatus) -> pd.DataFrame:
    return pd.DataFrame({"step": status.accuracy_steps, "accuracy (%)": [100 * a for a in status.accuracies]})


def _accuracy_text(status: JobStatus, info: DatasetInfo) -> str:
    if not status.accuracies:
        return ""
    return f", guided accuracy **{100 * status.accuracies[-1]:.0f}%** (100 {info.items}, w = {info.default_w:g})"


def images_phrase(data: ImageData) -> str:
    """How many images a run trains on, and from where: "the 4,000 shipped images", "60,000 images"."""
    count = f"{len(data.train):,}"
    return f"the {count} shipped images" if data.source == "bundled" else f"{count} images"


def _training_message(status: JobStatus, info: DatasetInfo, images: str) -> str:
    if status.error:
        return f"**Training failed:** {status.error}"
    loss = f"{status.losses[-1]:.4f}" if status.losses and math.isfinite(status.losses[-1]) else "—"
    if status.running:
        return (
            f"Training… step **{status.step}**, loss {loss}{_accuracy_text(status, info)}, "
            f"{100 * status.fraction:.0f}% of the budget, {status.elapsed_s:.0f} s elapsed, "
            f"about {status.eta_s:.0f} s left.\n\nTraining on {info.title} ({images})"
            + (f" in {status.execution}." if status.execution else ".")
        )
    if status.checkpoint is None:
        return "No training run yet."
    how = "stopped" if status.stopped_early else "finished"
    return (
        f"Training {how} at step **{status.step}** (loss {loss}{_accuracy_text(status, info)}); checkpoint of "
        f"{info.title} saved. "
        "Use it as this page's model or download it below."
    )


PREVIEW_SCALE, PREVIEW_PAD = 4, 2  # each 28-px picture drawn 4× with 2-px gaps (also scaled 4×)
PREVIEW_TITLE_PX = 28  # the page shows the preview about a third of its size: titles stay about 9 px there
# Before any run the preview's alt text says in general what it will show; a run's pictures bring their own, in
# the words of its dataset (preview_alt_text). Both point to the status line for the step and the accuracy.
PREVIEW_ALT = (
    "Preview of the model being trained: a grid of sampled pictures, one column per class under its name and one "
    "row per sample; the status above gives the training step and the classifier's accuracy on them."
)


def preview_alt_text(info: DatasetInfo) -> str:
    """The preview's alt text for a run on ``info``'s dataset: what the grid shows, in that dataset's words."""
    return (
        f"Preview of the {info.title} model being trained: a grid of sampled {info.items}, ten columns for the "
        f"classes {', '.join(info.class_names[:-1])} and {info.class_names[-1]}, named above them, and one row per "
        f"sample; the status above gives the training step and the classifier's accuracy on these {info.items}."
    )


def _preview_image(status: JobStatus, info: DatasetInfo) -> Picture | None:
    """The run's latest preview (ten per class, a column per class) under a band of class names, with its alt text."""
    if status.preview is None:
        return None
    grid = pictures.image_grid(status.preview, nrow=10, scale=PREVIEW_SCALE, pad=PREVIEW_PAD, pad_value=40)
    cell = status.preview.shape[-1] * PREVIEW_SCALE
    titled = pictures.column_titles(
        grid, info.short_names, cell, pad=PREVIEW_PAD * PREVIEW_SCALE, font_size=PREVIEW_TITLE_PX
    )
    return Picture(titled, preview_alt_text(info))


def _train_config(
    minutes: Any, max_steps: Any, preset: str, batch: Any, lr: Any, drop: Any, seed: Any, recipe: str
) -> TrainConfig:
    limits = state.LIMITS
    minutes_f = parse_float(minutes, "The time budget (minutes)", 0.1, limits.max_minutes)
    steps_i = parse_int(max_steps if max_steps not in (None, "") else 0, "The number of training steps",
                        0, limits.max_steps)  # fmt: skip
    if recipe not in RECIPES:
        raise ValueError(f"Choose one of the recipes {', '.join(RECIPES)}.")
    if preset not in WIDTH_PRESETS:
        raise ValueError(f"Choose one of the widths {', '.join(WIDTH_PRESETS)}.")
    return TrainConfig.from_recipe(
        recipe,
        preset=preset,
        batch_size=parse_int(batch, "The batch size", 1, 256),
        lr=parse_float(lr, "The learning rate", 1e-6, 1.0),
        max_minutes=minutes_f,
        max_steps=steps_i if steps_i > 0 else None,
        context_drop_prob=parse_float(drop, "The context-drop probability", 0.0, 0.5),
        seed=parse_seed(seed),
        checkpoint_every_s=30.0,
        report_every=5,
    )


@picture_view
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
    source: str | None = "bundled",
    request: gr.Request | None = None,
    progress: gr.Progress = gr.Progress(),
) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame, Picture | None]]:
    """Start this page's training run on its dataset and stream its status, loss curve, accuracy curve and preview.

    ``source`` picks the images: "bundled" (the 4,000 shipped) or "full" (the whole training set, where this server
    has it). Continuing training resumes the page's model of that dataset. If the page goes away mid-run (the
    stream is closed), the run stops after the owner's grace period.
    """
    session = state.seen(request)
    config = _train_config(minutes, max_steps, preset, batch, lr, drop, seed, recipe)
    dataset, resume = state.dataset_for(request), None
    if start_from == RESUME_CHOICE:
        mine = state.model_for(request)
        dataset = mine.dataset  # a resumed run goes on with the data its model learnt
        resume = load_checkpoint(mine.path, with_training_state=True) if mine.path else mine
    info = dataset_info(dataset)
    data = _training_data(dataset, source)
    try:
        run_id = state.JOB.start(config, data, session, resume, limits=state.LIMITS)
    except TrainingBusyError as err:
        raise refusal(err, state.JOB.busy_text()) from None
    try:
        while True:
            status = state.JOB.status()
            if status.run_id != run_id:  # ours ended and another page's began between two polls: not ours to show
                break
            progress(status.fraction, desc=f"step {status.step}")
            preview = _preview_image(status, info)
            message = _training_message(status, info, images_phrase(data))
            yield message, _loss_frame(status), _accuracy_frame(status), preview
            if not status.running:
                break
            time.sleep(TRAIN_POLL_S)
    finally:
        state.JOB.owner_left(session)  # no-op once the run has ended; else it stops unless the page comes back


def full_set_hint(dataset: str) -> str:
    """How a server gets ``dataset``'s full set: its Debian package where it has one (Fashion-MNIST), else IDX files."""
    info = dataset_info(dataset)
    if info.debian_package:
        return (
            f"The full {info.title} set comes with Debian's {info.debian_package} package: on a Hugging Face Space, "
            f"list it in packages.txt; on your own machine, run apt-get install {info.debian_package}."
        )
    return (
        f"For the full {info.title} set, put its four IDX files (train-images-idx3-ubyte.gz and the other three) "
        "in a folder and name that folder in the DDPM_PLAYGROUND_DATA environment variable before starting the app."
    )


def _training_data(dataset: str, source: str | None) -> ImageData:
    """The images a run on ``dataset`` learns from ``source``, or a message for the page (nothing started)."""
    source = source or "bundled"  # an API client that leaves the choice empty gets the radio's default
    if source not in DATA_SOURCES:
        raise user_error("Choose the training images: 'bundled' (the 4,000 shipped) or 'full' (the whole set).")
    if source == "bundled":
        return state.data(dataset, source)
    title = dataset_info(dataset).title
    if not state.full_set_present(dataset):
        raise user_error(
            f"This server does not have the full {title} set, so no run was started. Train on the 4,000 shipped "
            f"images instead. {full_set_hint(dataset)}"
        )
    try:
        return state.data(dataset, source)
    except (OSError, ValueError):  # files that went missing or are damaged; the log has where and why
        LOG.exception("the %s images (%s) could not be read", dataset, source)
        raise user_error(
            f"The full {title} set on this server could not be read, so no run was started. Train on the 4,000 "
            "shipped images instead."
        ) from None


def source_controls(dataset: str, source: Any = "bundled") -> dict[str, Any]:
    """The training images' radio for ``dataset``: both choices where its full set is here, else only the shipped.

    ``source`` (the radio's value) stays where it is still offered; else the shipped images are chosen.
    """
    info = dataset_info(dataset)
    if state.full_set_present(dataset):
        value = source if source in DATA_SOURCES else "bundled"
        note = f"This server has the full {info.title} training set installed."
        return gr.update(choices=[SHIPPED_SOURCE, FULL_SOURCE], value=value, info=note)
    note = f"Only the shipped images are on this server. {full_set_hint(dataset)}"
    return gr.update(choices=[SHIPPED_SOURCE], value="bundled", info=note)


def recipe_settings(recipe: str) -> tuple[Any, Any, Any]:
    """The width, batch size and learning rate a recipe starts from (to fill in the form)."""
    config = TrainConfig.from_recipe(recipe if recipe in RECIPES else "fast")
    return gr.update(value=config.preset), gr.update(value=config.batch_size), gr.update(value=config.lr)


def stop_training(request: gr.Request | None = None) -> str:
    """Ask this page's run to stop; it saves its last checkpoint within a step. Another page's run is refused."""
    try:
        stopping = state.JOB.stop(state.seen(request))
    except NotYourRunError as err:
        raise refusal(err) from None
    return "Stopping after the current step…" if stopping else "No training run is going."


def _my_result(request: gr.Request | None) -> Path:
    try:
        return state.JOB.result(state.seen(request))
    except (TrainingBusyError, NotYourRunError, FileNotFoundError) as err:
        raise refusal(err) from None


@friendly_errors
def use_trained_model(request: gr.Request | None = None) -> str:
    """Make this page's last trained checkpoint its model of the dataset it learnt (and choose that dataset)."""
    chosen_before = state.dataset_for(request)
    try:
        loaded = load_checkpoint(_my_result(request))
        state.MODELS.use(state.seen(request), loaded)
    except (CheckpointError, BusyError) as err:
        raise user_error(f"The trained model could not be used: {err}.") from None
    return _loaded_text("This page now uses the trained model.", chosen_before, loaded, request)


@friendly_errors
def download_trained_model(request: gr.Request | None = None) -> str:
    """A zip of this page's last trained checkpoint."""
    checkpoint = _my_result(request)
    folder = request_folder("downloads", keep=state.folders_in_use())
    return str(zip_checkpoint(checkpoint, folder / f"{checkpoint.name}.zip"))


def training_board(request: gr.Request | None = None) -> str:
    """Every page's status line for the trainer: this page's run, someone else's (busy until …), or free."""
    session = state.seen(request)
    limits = state.LIMITS
    if state.JOB.running and state.JOB.owns(session):
        status = state.JOB.status()
        return (
            f"**Your run is training**: step {status.step:,}, about {status.eta_s:.0f} s left. It belongs to "
            f"this page: closing the page stops it about {OWNER_GRACE_S:.0f} s later."
        )
    if state.JOB.running:
        return state.JOB.busy_text()
    return (
        f"The trainer is free: one run at a time per server, at most {limits.max_minutes:g} minutes and "
        f"{limits.max_steps:,} steps."
    )


def end_session(request: gr.Request) -> None:
    """The page closed: drop its model, and stop its run after the grace period."""
    state.end_session(request)


# ----------------------------------------------------------------------------------------------
# Layout and events
# ----------------------------------------------------------------------------------------------


def train_heading(dataset: str) -> str:
    """The heading over the training form, naming the dataset a run would learn."""
    return f"#### Train on {dataset_info(dataset).title}"


def dataset_controls(source: Any = "bundled", request: gr.Request | None = None) -> tuple[Any, str, Any]:
    """The tab's dataset radio, training heading and training images' radio (:func:`source_controls`, from its
    value ``source``) for this page's dataset, after its model card changed."""
    dataset = state.dataset_for(request)
    return gr.update(value=dataset), train_heading(dataset), source_controls(dataset, source)


def build_tab(demo: gr.Blocks, info: gr.Markdown | None = None) -> None:
    """Lay out tab 3 and wire its events (the model card ``info`` fills in when a page loads)."""
    gr.Markdown(DATASET_INTRO)
    dataset = dataset_radio("train-dataset", label="this page's dataset")
    info = info if info is not None else model_card.model_card_box()
    info.render()
    gr.Markdown(INTRO, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("#### Load or download a checkpoint")
            upload = gr.File(
                file_count="multiple", file_types=[".safetensors", ".json", ".zip"], type="filepath",
                label="model.safetensors + config.json, or one .zip of the folder", elem_id="ckpt-upload",
            )  # fmt: skip
            load_button = gr.Button("Load for this page", elem_id="ckpt-load")
            with gr.Row(equal_height=True):
                hub_repo = gr.Textbox(
                    label="or load from the Hugging Face Hub", placeholder="owner/name or owner/name@revision",
                    max_length=MAX_REPO_CHARS, scale=3, elem_id="hub-repo",
                )  # fmt: skip
                hub_button = gr.Button("Load from the Hub", scale=1, elem_id="hub-load")
            with gr.Row():
                download_button = gr.Button("Download this page's model (.zip)")
                shipped_button = gr.Button("Back to the shipped model", elem_id="ckpt-shipped")
            download_file = gr.File(label="this page's model", interactive=False)
        with gr.Column(scale=1, min_width=300):
            heading = gr.Markdown(train_heading(DEFAULT_DATASET))
            # Both choices, so an API client may ask for the full set (and is told if it is not here); each page's
            # radio is cut down to what its dataset has as soon as its card is filled in.
            source = gr.Radio([SHIPPED_SOURCE, FULL_SOURCE], value="bundled", label="training images",
                              elem_id="train-source")  # fmt: skip
            with gr.Row():
                minutes = gr.Number(DEFAULT_MINUTES, minimum=0, maximum=state.LIMITS.max_minutes,
                                    label=f"minutes (at most {state.LIMITS.max_minutes:g})",
                                    elem_id="train-minutes")  # fmt: skip
                max_steps = gr.Number(0, precision=0, minimum=0, maximum=state.LIMITS.max_steps,
                                      label="training steps (0 = as many as the minutes allow)",
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
    board = gr.Markdown(elem_id="train-board")
    status = gr.Markdown(elem_id="train-status")
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", title="training loss", height=260, elem_id="train-loss")
        accuracy_plot = gr.LinePlot(x="step", y="accuracy (%)", y_lim=[0, 100], height=260, elem_id="train-accuracy",
                                    title="guided accuracy (10 per class, at the dataset's default w)")  # fmt: skip
        preview = gr.Image(label="preview: ten per class, named above the columns; EMA weights", format="png",
                           interactive=False, elem_id="train-preview", alt_text=PREVIEW_ALT)  # fmt: skip
    with gr.Row():
        use = gr.Button("Use the trained model", elem_id="train-use")
        download_trained = gr.Button("Download the trained model (.zip)")
    trained_file = gr.File(label="trained model", interactive=False)

    demo.load(model_card.model_info, None, info, api_name="model_info")
    # The radio writes the card; every change of the card (this radio, tab 4's, a load) sets the radio, the heading
    # and the training images on offer.
    dataset.input(model_card.choose_dataset, dataset, info, api_name="choose_dataset", show_progress="hidden")
    info.change(dataset_controls, source, [dataset, heading, source], queue=False, api_visibility="private",
                show_progress="hidden")  # fmt: skip
    demo.load(training_board, None, board, api_visibility="private", queue=False)
    gr.Timer(BOARD_EVERY_S).tick(training_board, None, board, api_visibility="private", queue=False,
                                 show_progress="hidden")  # fmt: skip
    demo.unload(end_session)
    load_button.click(load_model, upload, info, api_name="load_model", concurrency_limit=1)
    gr.on([hub_button.click, hub_repo.submit], load_from_hub, hub_repo, info, api_name="load_from_hub",
          concurrency_limit=1)  # fmt: skip
    shipped_button.click(use_shipped_model, None, info, api_name="use_shipped_model")
    download_button.click(download_model, None, download_file, api_name="download_model")
    run = start.click(lambda: gr.update(interactive=False), None, start, queue=False, api_visibility="private")
    # As picture_events wires a view: the API event (plain pictures) is fired by nothing on the page; the page's
    # twin also sets the preview's alt text, and runs after the button is disabled.
    train_inputs = [minutes, max_steps, preset, batch, lr, drop, seed, start_from, recipe, source]
    train_outputs = [status, loss_plot, accuracy_plot, preview]
    training = {"concurrency_limit": 4, "concurrency_id": "train"}
    gr.on([], train_model, train_inputs, train_outputs, api_name="train_model", **training)
    run = run.then(train_model.for_page, train_inputs, train_outputs, api_visibility="private", **training)
    recipe.change(recipe_settings, recipe, [preset, batch, lr], queue=False, api_visibility="private")
    run.then(lambda: gr.update(interactive=True), None, start, queue=False, api_visibility="private")
    run.then(training_board, None, board, queue=False, api_visibility="private")  # at once, not at the next tick
    stop.click(stop_training, None, status, api_name="stop_training", concurrency_limit=None)
    use.click(use_trained_model, None, info, api_name="use_trained_model", concurrency_limit=1)
    download_trained.click(download_trained_model, None, trained_file, api_name="download_trained_model")

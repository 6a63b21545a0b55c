"""The page's model card: which dataset this page works on and which model it samples from.

The card is made in ``app.py`` before the tabs (unrendered) and rendered in tab 3. Every event that changes the
page's model or dataset writes it, so its ``change`` means "this page's model or dataset changed": tabs 2-4 follow
it to refresh their own dataset-dependent controls.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ddpm_core.data import DatasetInfo
from ddpm_ui import state
from ddpm_ui.common import friendly_errors

# What each dataset's pictures are, for the card's first line
DATASET_BLURBS = {
    "digits": "handwritten digits 0 to 9",
    "fashion": "10 kinds of clothing, shoes and bags, from T-shirts to ankle boots",
}


def model_card_box() -> gr.Markdown:
    """The unrendered Markdown of the page's model card; tab 3 renders it and other tabs follow its ``change``."""
    return gr.Markdown(elem_id="model-info", render=False)


def dataset_line(info: DatasetInfo) -> str:
    """The card's first line: the page's dataset and what its pictures show."""
    blurb = DATASET_BLURBS.get(info.name)
    return f"**Dataset:** {info.title}" + (f" ({blurb})" if blurb else "") + "."


def _stored_metrics(metrics: Any, info: DatasetInfo) -> str:
    """The quality table from an uploaded config.json, which may hold anything: a note if it cannot be read."""
    try:
        return _metrics_table(metrics if isinstance(metrics, dict) else {}, info)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return "_The quality measurements stored with this model could not be read._"


def _metrics_table(metrics: dict[str, Any], info: DatasetInfo) -> str:
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
        f"{info.item} than to its other neighbours (the held-out real {info.items} have "
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


def model_info(request: gr.Request | None = None) -> str:
    """Markdown naming this page's dataset and describing its model: size, schedule, training, data and quality."""
    loaded = state.model_for(request)
    info = loaded.dataset_info
    own = state.MODELS.has_own(state.session_id(request), loaded.dataset)
    whose = "loaded by this page, for this page only" if own else "the shipped model, shared by every visitor"
    s = loaded.summary()
    steps, minutes = s["training_steps"], s["training_minutes"]
    trained = f"{steps:,} steps" if steps is not None else "unknown steps"
    if minutes is not None:
        trained += f" in {minutes:g} min"
    predicts = {"eps": "the noise ε", "v": "the velocity v"}.get(s["prediction"], s["prediction"])
    recipe = f" with the {s['recipe']} recipe" if s["recipe"] else ""
    device = f" ({s['device'].upper() if s['device'] == 'cuda' else s['device']})" if s["device"] else ""
    return (
        dataset_line(info)
        + f"\n\n**This page's model: `{s['name']}`** ({whose}) — {s['parameters']:,} parameters, channels "
        f"{s['channels']}, predicts {predicts}, {s['schedule']}; trained {trained}{device}{recipe} "
        f"on {s['data'] or 'unknown data'}.\n\n"
        + _stored_metrics(s["metrics"], info)
        + f"\n\n**On this machine** the network runs in {state.execution_for(loaded).describe()}."
    )


@friendly_errors
def choose_dataset(dataset: Any, request: gr.Request | None = None) -> str:
    """Make ``dataset`` ("digits" or "fashion") this page's dataset and return the card of its model."""
    state.choose_dataset(request, dataset)
    return model_info(request)

"""Deep links: query parameters open a tab with its main controls set, and "Copy link to this view" writes one.

``?tab=forward&schedule=cosine&T=1000&t=500`` opens the Forward noise tab at the cosine schedule, T = 1000,
t = 500; ``?tab=sample&w=5&seed=3`` opens Sample at w = 5, seed 3. The names after ``tab`` are the keys of the
dict each tab's ``build_tab`` returns, and the values are the controls' own values written as text
(``sampler=ddim``, ``digits=1,3,7``, ``mid=1``). A link is checked against each control's own limits (a
slider's minimum, maximum and step, a radio's choices), so it can ask for nothing the page itself would not
offer; whatever it gets wrong is left out and named in a one-line note at the top, and the page opens anyway.

Pure functions first (:class:`LinkLayout` parses and builds links), then the components and their events
(:func:`build_bar`, :func:`build_note`, :func:`wire`). Nothing here touches the network or the disk.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from ddpm_ui.common import InputError, friendly_errors, parse_float, parse_int

TAB_KEY = "tab"
DEFAULT_TAB = "forward"
STEP_KEY, STEPS_KEY = "t", "T"  # on the image tabs t must lie in 0 … T−1, whatever the slider's own maximum
MAX_SHOWN_CHARS = 24  # a value quoted in the note is cut to this length
MAX_NOTED = 4  # items named in the note; the rest are counted
# Query parameters that Gradio or Hugging Face Spaces use themselves: never ours, never worth a note.
FOREIGN_KEYS = frozenset({"view", "ui", "lang", "logs", "write_token"})

LinkValue = int | float | str | bool | list[str]

# Copy the link built by the server, with this page's own address (it works behind a share link or a Space).
COPY_JS = """
(query) => {
    const url = window.location.origin + window.location.pathname + (query ? "?" + query : "");
    if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(url).catch(() => {});  // refused in some iframes: the box still shows it
    }
    return url;
}
"""

_LINKABLE = (gr.Slider, gr.Number, gr.Radio, gr.Dropdown, gr.CheckboxGroup, gr.Checkbox)


# ----------------------------------------------------------------------------------------------
# Reading one control's value from a link, and writing it back
# ----------------------------------------------------------------------------------------------


def is_linkable(component: gr.components.Component) -> bool:
    """True for the controls a link can set (numbers, choices, check boxes); pictures and files cannot travel."""
    return isinstance(component, _LINKABLE)


def _bounds(component: gr.Slider | gr.Number) -> tuple[float, float]:
    lo, hi = component.minimum, component.maximum
    return (-math.inf if lo is None else lo), (math.inf if hi is None else hi)


def _whole(x: float | None) -> bool:
    return x is None or float(x).is_integer()


def _choice_values(component: gr.Radio | gr.Dropdown | gr.CheckboxGroup) -> list[Any]:
    """The values a choice control offers (Gradio stores its choices as (label, value) pairs)."""
    return [value for _, value in component.choices]


def _as_list(text: Any) -> list[str]:
    if isinstance(text, (list, tuple)):
        return [str(item).strip() for item in text]
    return [item.strip() for item in str(text).split(",")] if str(text).strip() else []


def _slider_value(component: gr.Slider, name: str, text: Any) -> int | float:
    lo, hi = _bounds(component)
    step = component.step or 0
    if _whole(step) and _whole(component.minimum):
        return parse_int(text, name, lo, hi)
    value = parse_float(text, name, lo, hi)
    if step > 0:
        k = round((value - lo) / step)
        on_grid = lo + k * step
        if abs(value - on_grid) > 1e-9 * max(1.0, abs(value)):
            raise InputError(f"{name} must be a number between {lo:g} and {hi:g} in steps of {step:g}.")
        value = round(on_grid, 10)  # 0.30000000000000004 is the slider's 0.3
    return float(value)


def _number_value(component: gr.Number, name: str, text: Any) -> int | float:
    lo, hi = _bounds(component)
    if component.precision == 0:
        return parse_int(text, name, lo, hi)
    return parse_float(text, name, lo, hi)


def _choice_value(component: gr.Radio | gr.Dropdown, name: str, text: Any) -> Any:
    choices = _choice_values(component)
    for value in choices:
        if str(value) == str(text).strip():
            return value
    raise InputError(f"{name} must be one of {', '.join(map(str, choices))}.")


def _choices_value(component: gr.CheckboxGroup | gr.Dropdown, name: str, text: Any) -> list[Any]:
    choices = _choice_values(component)
    by_text = {str(value): value for value in choices}
    wanted = _as_list(text)
    if not wanted or any(item not in by_text for item in wanted):
        raise InputError(f"{name} must be one or more of {', '.join(by_text)}, separated by commas.")
    chosen = set(wanted)
    return [by_text[item] for item in by_text if item in chosen]  # in the control's own order, once each


def _checkbox_value(name: str, text: Any) -> bool:
    if isinstance(text, bool):
        return text
    answer = {"1": True, "0": False, "true": True, "false": False}.get(str(text).strip().lower())
    if answer is None:
        raise InputError(f"{name} must be 1 for ticked or 0 for not ticked.")
    return answer


def control_value(component: gr.components.Component, name: str, text: Any) -> LinkValue:
    """The value ``text`` asks of ``component``, checked against the component's own limits and choices.

    ``text`` is what a link carries (a string) or what the page sends (a number, a list, a bool). Raises an
    :class:`InputError` naming ``name`` for anything the control would not accept.
    """
    if isinstance(component, gr.Slider):
        return _slider_value(component, name, text)
    if isinstance(component, gr.Number):
        return _number_value(component, name, text)
    if isinstance(component, gr.CheckboxGroup) or (isinstance(component, gr.Dropdown) and component.multiselect):
        return _choices_value(component, name, text)
    if isinstance(component, (gr.Radio, gr.Dropdown)):
        return _choice_value(component, name, text)
    if isinstance(component, gr.Checkbox):
        return _checkbox_value(name, text)
    raise TypeError(f"a link cannot set a {type(component).__name__} ({name})")


def value_text(value: LinkValue) -> str:
    """A control's value as a link writes it: ``5``, ``0.3``, ``cosine``, ``1,3,7``, ``1`` for ticked."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def _shown(text: Any) -> str:
    """A value from a link, quoted in the note: short, as inline code (so it cannot add links or markup)."""
    text = " ".join(str(text).replace("`", "'").split())
    if len(text) > MAX_SHOWN_CHARS:
        text = text[: MAX_SHOWN_CHARS - 1] + "…"
    return f"`{text}`" if text else "(empty)"


# ----------------------------------------------------------------------------------------------
# Whole links
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedLink:
    """What a link asks for, checked: the tab, the values to set (by control name) and what was left out."""

    tab: str
    values: dict[str, LinkValue]
    ignored: list[str] = field(default_factory=list)

    def note(self) -> str:
        """One line naming what was left out, or "" when the whole link was used."""
        if not self.ignored:
            return ""
        shown = "; ".join(self.ignored[:MAX_NOTED])
        more = len(self.ignored) - MAX_NOTED
        rest = f"; and {more} more" if more > 0 else ""
        return f"⚠️ Part of this link was not used: {shown}{rest}."


@dataclass(frozen=True)
class LinkLayout:
    """The tabs a link can open (id → label) and each tab's linkable controls (query name → component)."""

    labels: Mapping[str, str]
    controls: Mapping[str, Mapping[str, gr.components.Component]]

    @classmethod
    def of(
        cls, tabs: Mapping[str, gr.Tab], controls: Mapping[str, Mapping[str, gr.components.Component]]
    ) -> LinkLayout:
        """From the page's tabs and the dicts their ``build_tab`` returned (pictures and files are left out)."""
        unknown = set(controls) - set(tabs)
        if unknown:
            raise ValueError(f"controls given for tabs that do not exist: {', '.join(sorted(unknown))}")
        return cls(
            labels={tab_id: str(tab.label) for tab_id, tab in tabs.items()},
            controls={
                tab_id: {name: c for name, c in controls.get(tab_id, {}).items() if is_linkable(c)} for tab_id in tabs
            },
        )

    def flat(self) -> list[tuple[str, str, gr.components.Component]]:
        """Every linkable control as (tab id, name, component), tab by tab: the order of the events' outputs.

        Within a tab t comes first. The page applies an event's outputs one at a time and fires each one's
        change as it goes, and T's change keeps t inside 0 … T−1 (``retarget_step``): set after t, T sees the
        link's t; set before, it would clamp the old one (200 → 149 for T = 150) over the link's.
        """
        return [
            (tab_id, name, c)
            for tab_id, named in self.controls.items()
            for name, c in sorted(named.items(), key=lambda item: item[0] != STEP_KEY)
        ]

    def default_tab(self) -> str:
        """The tab a page opens on: Forward noise (or the first tab, for a layout without it)."""
        return DEFAULT_TAB if DEFAULT_TAB in self.labels else next(iter(self.labels))

    def open(self, query: Mapping[str, Any]) -> OpenedLink:
        """Read a link's query parameters: the tab to open, the values to set and what had to be left out."""
        tab = self.default_tab()
        ignored = []
        if TAB_KEY in query:
            asked = str(query[TAB_KEY]).strip().lower()
            if asked in self.labels:
                tab = asked
            else:
                ignored.append(
                    f"{TAB_KEY}={_shown(query[TAB_KEY])} (no such tab; the tabs are {', '.join(self.labels)}; "
                    f"opened {tab})"
                )
        controls = self.controls[tab]
        values: dict[str, LinkValue] = {}
        for name, text in query.items():
            if name == TAB_KEY or not is_ours(name):
                continue
            if name not in controls:
                ignored.append(f"{_shown(name)} (not a setting of the {self.labels[tab]} tab)")
                continue
            try:
                values[name] = control_value(controls[name], name, text)
            except InputError as err:
                ignored.append(f"{name}={_shown(text)} ({str(err).rstrip('.')})")
        problem = self._step_problem(controls, values)
        if problem:
            ignored.append(f"{STEP_KEY}={_shown(query[STEP_KEY])} ({problem})")
            del values[STEP_KEY]
        return OpenedLink(tab, values, ignored)

    @staticmethod
    def _step_problem(controls: Mapping[str, gr.components.Component], values: Mapping[str, LinkValue]) -> str:
        """On a tab with both t and T: t must be a step of the T the page will show (the link's, else the default)."""
        if STEP_KEY not in values or STEPS_KEY not in controls:
            return ""
        T = values.get(STEPS_KEY, controls[STEPS_KEY].value)
        if not isinstance(T, int) or isinstance(T, bool) or 0 <= int(values[STEP_KEY]) <= T - 1:
            return ""
        return f"t must be a whole number between 0 and {T - 1} when T = {T}"

    def query(self, tab: str, values: Mapping[str, Any]) -> str:
        """The query string of a link to ``tab`` with ``values`` (the page's current ones, by control name).

        Only the values that differ from the controls' defaults are written (``tab=sample&w=5&seed=3``, not
        every control); values the controls would refuse, or that are missing, are left out, so the link
        always opens. Round trip: ``open(parse_qs(query(tab, v)))`` gives back ``v``'s non-default values.
        """
        if tab not in self.labels:
            tab = self.default_tab()
        pairs = [(TAB_KEY, tab)]
        for name, component in self.controls[tab].items():
            if values.get(name) is None:
                continue
            try:
                value = control_value(component, name, values[name])
            except InputError:
                continue
            if value != self._default(component, name):
                pairs.append((name, value_text(value)))
        return urllib.parse.urlencode(pairs, safe=",")

    @staticmethod
    def _default(component: gr.components.Component, name: str) -> LinkValue | None:
        try:
            return control_value(component, name, component.value)
        except (InputError, TypeError):
            return None


def is_ours(key: str) -> bool:
    """False for the query parameters Gradio and Spaces use themselves (``view``, ``__theme``, …)."""
    return not key.startswith("_") and key not in FOREIGN_KEYS


def query_params(query: str) -> dict[str, str]:
    """A query string as the mapping :meth:`LinkLayout.open` reads (the last of repeated names wins, as on a page)."""
    return dict(urllib.parse.parse_qsl(query.lstrip("?"), keep_blank_values=True))


# ----------------------------------------------------------------------------------------------
# Components and events
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkBar:
    """The "Copy link to this view" button, the box that shows the link, and the hidden query it is built from."""

    button: gr.Button
    url: gr.Textbox
    query: gr.Textbox


def build_bar() -> LinkBar:
    """A small column: the copy button, then (once pressed) the link in a read-only box with its own copy button."""
    with gr.Column(scale=1, min_width=260):
        button = gr.Button("Copy link to this view", size="sm", elem_id="copy-link")
        url = gr.Textbox(
            label="link to this view",
            info="Copied to the clipboard where the browser allows it; else copy it from here.",
            interactive=False,
            buttons=["copy"],
            visible=False,
            elem_id="view-link",
        )
        query = gr.Textbox(visible="hidden", elem_id="view-query")  # rendered (hidden), so the page can read it
    return LinkBar(button, url, query)


def build_note() -> gr.Markdown:
    """The one-line note that names what a link asked for and did not get (hidden until then)."""
    return gr.Markdown(visible=False, elem_id="link-note")


def wire(
    demo: gr.Blocks,
    tabs: gr.Tabs,
    tab_objects: Mapping[str, gr.Tab],
    controls: Mapping[str, Mapping[str, gr.components.Component]],
    link: Mapping[str, gr.State],
    bar: LinkBar,
    note: gr.Markdown,
) -> LinkLayout:
    """Open the page's link when it loads, track the current tab, and wire the copy button.

    ``link`` holds one State per tab whose views a link redraws (tab id → State, each passed as that tab's
    ``link=``). On load: select the link's tab, set its controls (t before T, see :meth:`LinkLayout.flat`),
    show the note, and set that tab's State, and only that one, to the dict applied (``{"tab": …, name:
    value, …}``); its change redraws that tab's views (a value set by code fires no ``.input``), so a link to
    one tab recomputes no other tab's views. All these events are light and private; only the load is queued.
    """
    layout = LinkLayout.of(tab_objects, controls)
    unknown = set(link) - set(tab_objects)
    if unknown:
        raise ValueError(f"link States given for tabs that do not exist: {', '.join(sorted(unknown))}")
    flat = layout.flat()
    states = list(link.items())
    current = gr.State(layout.default_tab())
    light: dict[str, Any] = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}

    @friendly_errors
    def open_link(request: gr.Request | None = None) -> tuple[Any, ...]:
        """Apply the page's query parameters; nothing changes for a page opened without any."""
        query = dict(getattr(request, "query_params", None) or {})
        if not any(is_ours(key) for key in query):  # no link, or only Gradio's own ?view=… / ?__theme=…
            return (gr.skip(),) * (3 + len(states) + len(flat))
        opened = layout.open(query)
        text = opened.note()
        applied = {TAB_KEY: opened.tab, **opened.values}
        updates = [
            opened.values[name] if tab_id == opened.tab and name in opened.values else gr.skip()
            for tab_id, name, _ in flat
        ]
        return (
            gr.Tabs(selected=opened.tab),
            opened.tab,
            gr.Markdown(text, visible=True) if text else gr.skip(),
            *updates,
            *(applied if tab_id == opened.tab else gr.skip() for tab_id, _ in states),  # last: after the controls
        )

    @friendly_errors
    def link_query(tab: Any, *values: Any) -> tuple[str, Any]:
        """The query string of a link to the current tab with its controls' current values."""
        by_tab: dict[str, dict[str, Any]] = {}
        for (tab_id, name, _), value in zip(flat, values, strict=True):
            by_tab.setdefault(tab_id, {})[name] = value
        tab_id = str(tab) if tab in layout.labels else layout.default_tab()
        return layout.query(tab_id, by_tab.get(tab_id, {})), gr.Textbox(visible=True)

    outputs = [tabs, current, note, *(c for _, _, c in flat), *(state for _, state in states)]
    # Queued, unlike the other link events: Gradio reports a State's change (what the tabs redraw on) only in
    # the queue's answer, so the same event unqueued would set the controls and redraw nothing.
    demo.load(open_link, None, outputs, **{**light, "queue": True})
    for tab_id, tab in tab_objects.items():
        tab.select(_selected(tab_id), None, current, **light)
    bar.button.click(
        link_query, [current, *(c for _, _, c in flat)], [bar.query, bar.url], preprocess=False, **light
    ).then(None, bar.query, bar.url, js=COPY_JS, **light)
    return layout


def _selected(tab_id: str) -> Any:
    """The handler of one tab's ``select``: remember which tab the page shows (for the copy button)."""

    def remember_tab() -> str:
        return tab_id

    return remember_tab

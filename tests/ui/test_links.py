"""ddpm_ui.links: reading deep links against the controls' own limits, writing them back, and the app's wiring.

The expected values are read off the links themselves (``t=500`` means the step 500) and off the limits the
test gives its own controls, never off what the module under test computes.
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import gradio as gr
import pytest

from ddpm_ui import links
from ddpm_ui.links import LinkLayout, control_value, query_params, value_text

DIGITS = [str(d) for d in range(10)]


def make_layout(w_max: float = 8) -> LinkLayout:
    """Two tabs with controls shaped like the app's (the same kinds, limits written out here)."""
    with gr.Blocks():
        with gr.Tab("Forward noise") as forward:
            image = gr.Image()
            t = gr.Slider(0, 999, value=200, step=1)
            schedule = gr.Radio(["linear", "cosine"], value="linear")
            T = gr.Radio([1000, 150], value=1000)
            seed = gr.Number(0, precision=0, minimum=0, maximum=2**31 - 1)
        with gr.Tab("Train or load") as train:
            pass
        with gr.Tab("Sample") as sample:
            w = gr.Slider(0, w_max, value=1.5, step=0.1)
            eta = gr.Slider(0, 1, value=0, step=0.05)
            steps = gr.Slider(1, 250, value=15, step=1)
            sampler = gr.Radio([("DPM-Solver++ (2M)", "dpmpp"), ("DDIM", "ddim")], value="dpmpp")
            digits = gr.CheckboxGroup(DIGITS, value=DIGITS)
            mid = gr.Checkbox(True)
            sample_seed = gr.Number(0, precision=0, minimum=0, maximum=2**31 - 1)
    return LinkLayout.of(
        {"forward": forward, "train": train, "sample": sample},
        {
            "forward": {"image": image, "t": t, "schedule": schedule, "T": T, "seed": seed},
            "train": {},
            "sample": {
                "w": w, "eta": eta, "steps": steps, "sampler": sampler, "digits": digits, "mid": mid,
                "seed": sample_seed,
            },
        },
    )  # fmt: skip


@pytest.fixture(scope="module")
def layout() -> LinkLayout:
    return make_layout()


def opened(layout: LinkLayout, query: str) -> links.OpenedLink:
    return layout.open(query_params(query))


# ----------------------------------------------------------------------------------------------
# Reading links
# ----------------------------------------------------------------------------------------------


def test_the_issues_examples_open_their_tab_with_those_values(layout: LinkLayout) -> None:
    link = opened(layout, "?tab=forward&schedule=cosine&T=1000&t=500")
    assert (link.tab, link.values, link.ignored) == ("forward", {"schedule": "cosine", "T": 1000, "t": 500}, [])
    assert link.note() == ""
    link = opened(layout, "tab=sample&w=5&seed=3")
    assert (link.tab, link.values, link.ignored) == ("sample", {"w": 5.0, "seed": 3}, [])


def test_values_take_the_controls_own_types(layout: LinkLayout) -> None:
    link = opened(layout, "tab=sample&w=2.5&eta=0.35&steps=40&sampler=ddim&digits=7,1,3,1&mid=0&seed=12")
    assert link.ignored == []
    assert link.values == {
        "w": 2.5, "eta": 0.35, "steps": 40, "sampler": "ddim", "digits": ["1", "3", "7"], "mid": False, "seed": 12,
    }  # fmt: skip
    # Whole-step sliders and precision-0 numbers give ints; a radio of ints gives its int; checkboxes bools.
    assert [type(link.values[k]) for k in ("w", "steps", "seed", "mid")] == [float, int, int, bool]
    assert type(opened(layout, "T=150").values["T"]) is int


def test_no_tab_opens_forward_and_an_unknown_tab_says_so(layout: LinkLayout) -> None:
    assert opened(layout, "t=10").tab == "forward"
    assert opened(layout, "tab=Sample").tab == "sample"  # case does not matter for tab names
    link = opened(layout, "tab=gallery&t=10")
    assert link.tab == "forward" and link.values == {"t": 10}
    assert "tab=`gallery`" in link.note() and "no such tab" in link.note()


@pytest.mark.parametrize(
    ("query", "name", "reason"),
    [
        ("t=1000", "t", "between 0 and 999"),
        ("t=-1", "t", "between 0 and 999"),
        ("t=2.5", "t", "whole number"),
        ("t=abc", "t", "must be a number"),
        ("t=nan", "t", "must be a number"),
        ("schedule=quadratic", "schedule", "one of linear, cosine"),
        ("T=500", "T", "one of 1000, 150"),
        ("seed=-3", "seed", "between 0 and 2147483647"),
        ("seed=2147483648", "seed", "between 0 and 2147483647"),
        ("tab=sample&w=9", "w", "between 0 and 8"),
        ("tab=sample&w=2.55", "w", "in steps of 0.1"),
        ("tab=sample&eta=0.33", "eta", "in steps of 0.05"),
        ("tab=sample&steps=0", "steps", "between 1 and 250"),
        ("tab=sample&sampler=DDIM", "sampler", "one of dpmpp, ddim"),  # the value, not the label
        ("tab=sample&digits=1,x", "digits", "one or more of 0, 1"),
        ("tab=sample&digits=", "digits", "one or more of"),
        ("tab=sample&digits=10", "digits", "one or more of"),
        ("tab=sample&mid=yes", "mid", "1 for ticked or 0"),
    ],
)
def test_bad_values_are_left_out_with_a_reason(layout: LinkLayout, query: str, name: str, reason: str) -> None:
    link = opened(layout, query + "&seed=4" if name != "seed" else query)
    assert name not in link.values
    assert len(link.ignored) == 1 and link.ignored[0].startswith(f"{name}=")
    assert reason in link.ignored[0]
    assert link.note().startswith("⚠️ Part of this link was not used:") and "\n" not in link.note()
    if name != "seed":
        assert link.values["seed"] == 4  # the rest of the link is still used


def test_the_slider_limits_come_from_the_component() -> None:
    assert "w" in opened(make_layout(w_max=10), "tab=sample&w=9").values
    assert "w" not in opened(make_layout(w_max=8), "tab=sample&w=9").values
    with gr.Blocks():
        slider = gr.Slider(-2, 2, value=0, step=0.5)
        radio = gr.Radio([("two", 2), ("three", 3)], value=2)
    assert control_value(slider, "x", "-1.5") == -1.5
    with pytest.raises(ValueError, match=r"in steps of 0\.5"):
        control_value(slider, "x", "0.25")
    assert control_value(radio, "x", "3") == 3
    with pytest.raises(ValueError, match="one of 2, 3"):
        control_value(radio, "x", "three")


def test_t_must_be_a_step_of_the_links_T(layout: LinkLayout) -> None:
    assert opened(layout, "T=150&t=149").values == {"T": 150, "t": 149}
    link = opened(layout, "T=150&t=500")
    assert link.values == {"T": 150}
    assert "between 0 and 149 when T = 150" in link.note()
    assert opened(layout, "t=500").values == {"t": 500}  # the default T is 1000


def test_unknown_settings_are_named_and_gradios_own_parameters_pass_silently(layout: LinkLayout) -> None:
    link = opened(layout, "tab=sample&w=5&t=3&__theme=dark&view=api&_x=1")
    assert link.values == {"w": 5.0}
    assert link.ignored == ["`t` (not a setting of the Sample tab)"]
    pictures = opened(layout, "tab=forward&image=/etc/passwd")  # a link cannot point the page at a file
    assert pictures.ignored == ["`image` (not a setting of the Forward noise tab)"]


def test_the_note_quotes_link_text_harmlessly_and_briefly(layout: LinkLayout) -> None:
    link = opened(layout, "schedule=" + "[click](http://evil.example)`x`" * 4)
    note = link.note()
    assert "http://evil.example" not in note  # cut to a few characters …
    quoted = note.split("schedule=", 1)[1].split(" (", 1)[0]
    assert quoted.startswith("`[click](") and quoted.endswith("…`") and quoted.count("`") == 2  # … inside one code span
    many = opened(layout, "a=1&b=2&c=3&d=4&e=5&f=6")
    assert many.note().endswith("; and 2 more.") and "`e`" not in many.note()


# ----------------------------------------------------------------------------------------------
# Writing links
# ----------------------------------------------------------------------------------------------


def test_value_text_is_how_a_person_would_write_it() -> None:
    assert [value_text(v) for v in (5.0, 0.3, 500, True, False, ["1", "3", "7"], "cosine")] == [
        "5", "0.3", "500", "1", "0", "1,3,7", "cosine",
    ]  # fmt: skip


def test_a_link_holds_the_tab_and_only_what_differs_from_the_defaults(layout: LinkLayout) -> None:
    query = layout.query("forward", {"t": 500, "schedule": "cosine", "T": 1000, "seed": 0, "image": "x.png"})
    assert query == "tab=forward&t=500&schedule=cosine"
    assert layout.query("sample", {"w": 5, "seed": 3, "digits": DIGITS, "mid": True}) == "tab=sample&w=5&seed=3"
    assert layout.query("sample", {"digits": ["7", "1"], "mid": False}) == "tab=sample&digits=1,7&mid=0"
    assert layout.query("train", {}) == "tab=train"
    assert layout.query("nowhere", {"t": 5}) == "tab=forward&t=5"


def test_a_link_leaves_out_values_the_page_would_refuse(layout: LinkLayout) -> None:
    # An empty seed box, a seed typed past the limit, a slider value off the grid: the link still opens cleanly.
    assert layout.query("forward", {"seed": None, "t": 500}) == "tab=forward&t=500"
    assert layout.query("sample", {"seed": -1, "w": 2.55, "steps": 40}) == "tab=sample&steps=40"


def test_the_slider_float_noise_of_the_page_is_written_as_the_step_it_is(layout: LinkLayout) -> None:
    assert layout.query("sample", {"w": 0.1 + 0.2, "eta": 0.15000000000000002}) == "tab=sample&w=0.3&eta=0.15"


@pytest.mark.parametrize(
    ("tab", "values"),
    [
        ("forward", {"t": 100, "schedule": "cosine", "T": 150, "seed": 9}),
        ("forward", {"t": 0, "T": 150}),
        ("sample", {"w": 0.3, "eta": 0.95, "steps": 1, "sampler": "ddim", "digits": ["0"], "mid": False, "seed": 7}),
        ("sample", {"w": 8.0, "digits": ["2", "5", "9"]}),
        ("train", {}),
    ],
)
def test_round_trip(layout: LinkLayout, tab: str, values: dict[str, Any]) -> None:
    link = opened(layout, layout.query(tab, values))
    assert (link.tab, link.values, link.ignored) == (tab, values, [])


# ----------------------------------------------------------------------------------------------
# The app's wiring
# ----------------------------------------------------------------------------------------------


def _event(app_module: ModuleType, name: str) -> Any:
    found = [fn for fn in app_module.demo.fns.values() if getattr(fn, "name", None) == name]
    assert len(found) == 1, f"one {name} event expected, found {len(found)}"
    return found[0]


def _by_elem_id(components: list[Any], values: tuple[Any, ...]) -> dict[str, Any]:
    return {c.elem_id: v for c, v in zip(components, values, strict=True) if c.elem_id}


def _redrawn(app_module: ModuleType, event: Any, result: tuple[Any, ...]) -> dict[str, Any]:
    """The handlers a load's answer sets off through the States it sets (by name), with the value each State got.

    The tabs redraw on their link State's change; a State the answer skips does not change, so its listeners
    do not run.
    """
    fired: dict[str, Any] = {}
    for component, value in zip(event.outputs, result, strict=True):
        if isinstance(component, gr.State) and value != gr.skip():
            for fn in app_module.demo.fns.values():
                if (component._id, "change") in fn.targets:
                    fired[fn.name] = value
    return fired


def test_the_app_opens_a_link_into_the_right_controls(app_module: ModuleType) -> None:
    event = _event(app_module, "open_link")
    request = SimpleNamespace(query_params={"tab": "forward", "schedule": "cosine", "T": "1000", "t": "500"})
    result = event.fn(request=request)
    tabs, current, note = result[:3]
    assert isinstance(event.outputs[0], gr.Tabs) and tabs.selected == "forward"
    assert current == "forward"
    assert note == gr.skip()
    link = {"tab": "forward", "schedule": "cosine", "T": 1000, "t": 500}
    assert _redrawn(app_module, event, result) == {"forward_view_for_page": link}
    shown = _by_elem_id(event.outputs, result)
    assert (shown["forward-schedule"], shown["forward-T"], shown["forward-t"]) == ("cosine", 1000, 500)
    assert shown["oracle-t"] == gr.skip() and shown["sample-w"] == gr.skip()  # other tabs are left alone


def test_the_app_knows_every_tabs_controls(app_module: ModuleType) -> None:
    event = _event(app_module, "open_link")
    query = "tab=sample&w=5&seed=3&sampler=ddim&steps=20&eta=0.5&per_class=2&digits=1,3&mid=0&live_w=2"
    result = event.fn(request=SimpleNamespace(query_params=query_params(query)))
    assert result[1] == "sample" and result[2] == gr.skip()  # nothing ignored
    shown = _by_elem_id(event.outputs, result)
    assert (shown["sample-w"], shown["sample-sampler"], shown["sample-classes"], shown["sample-mid-guidance"]) == (
        5.0, "ddim", ["1", "3"], False,
    )  # fmt: skip
    assert shown["live-w"] == 2.0
    oracle = event.fn(request=SimpleNamespace(query_params={"tab": "oracle", "schedule": "cosine", "t": "7"}))
    assert _by_elem_id(event.outputs, oracle)["oracle-t"] == 7


def test_the_app_shows_a_note_for_a_bad_link_and_nothing_for_no_link(app_module: ModuleType) -> None:
    event = _event(app_module, "open_link")
    result = event.fn(request=SimpleNamespace(query_params={"tab": "sample", "w": "99"}))
    note = result[2]
    assert isinstance(note, gr.Markdown) and note.visible is True and "w=`99`" in note.value
    for query in ({}, {"__theme": "dark"}):
        assert all(value == gr.skip() for value in event.fn(request=SimpleNamespace(query_params=query)))
    assert all(value == gr.skip() for value in event.fn(request=None))


@pytest.mark.parametrize(
    ("query", "redrawn"),
    [
        ("tab=sample&w=5", {"live_digits"}),  # the Sample tab's live grid, and nothing on the image tabs
        ("tab=oracle&t=7", {"oracle_view_for_page", "error_curve_for_page"}),
        ("tab=forward&t=7", {"forward_view_for_page"}),
        ("t=7", {"forward_view_for_page"}),  # no tab: Forward noise
        ("tab=train", set()),  # nothing there to redraw
    ],
)
def test_a_link_redraws_only_the_tab_it_opens(app_module: ModuleType, query: str, redrawn: set[str]) -> None:
    event = _event(app_module, "open_link")
    result = event.fn(request=SimpleNamespace(query_params=query_params(query)))
    fired = _redrawn(app_module, event, result)
    assert set(fired) == redrawn
    assert all(value["tab"] == query_params(query).get("tab", "forward") for value in fired.values())


def test_a_link_sets_t_before_T(app_module: ModuleType) -> None:
    # The page applies the outputs in order, firing each one's change; T's change clamps t into 0 … T−1, so T must
    # come after t, or ?T=150&t=100 would clamp the old t = 200 to 149 over the link's 100 (see test_deep_links).
    order = [c.elem_id for c in _event(app_module, "open_link").outputs]
    for tab in ("forward", "oracle"):
        assert order.index(f"{tab}-t") < order.index(f"{tab}-T")
    oracle = _event(app_module, "open_link").fn(
        request=SimpleNamespace(query_params={"tab": "oracle", "T": "150", "t": "100"})
    )
    shown = _by_elem_id(_event(app_module, "open_link").outputs, oracle)
    assert (shown["oracle-T"], shown["oracle-t"]) == (150, 100)


def test_flat_puts_t_first_within_each_tab() -> None:
    with gr.Blocks():
        with gr.Tab("A") as a:
            schedule = gr.Radio(["linear", "cosine"], value="linear")
            T = gr.Radio([1000, 150], value=1000)
            t = gr.Slider(0, 999, value=200, step=1)
        with gr.Tab("B") as b:
            w = gr.Slider(0, 8, value=1.5, step=0.1)
    layout = LinkLayout.of({"a": a, "b": b}, {"a": {"schedule": schedule, "T": T, "t": t}, "b": {"w": w}})
    assert [(tab, name) for tab, name, _ in layout.flat()] == [("a", "t"), ("a", "schedule"), ("a", "T"), ("b", "w")]
    assert layout.query("a", {"schedule": "cosine", "T": 150, "t": 100}) == "tab=a&schedule=cosine&T=150&t=100"


def test_wire_refuses_a_link_state_for_a_tab_that_does_not_exist() -> None:
    with gr.Blocks() as demo:
        with gr.Tabs() as tabs:
            with gr.Tab("A") as a:
                t = gr.Slider(0, 9, value=0, step=1)
        with pytest.raises(ValueError, match="link States given for tabs that do not exist: b"):
            links.wire(demo, tabs, {"a": a}, {"a": {"t": t}}, {"b": gr.State()}, links.build_bar(), links.build_note())


def test_the_copy_button_writes_the_current_tabs_link(app_module: ModuleType) -> None:
    event = _event(app_module, "link_query")
    current, controls = event.inputs[0], event.inputs[1:]
    assert isinstance(current, gr.State)
    values = [c.value for c in controls]  # the page as it opens
    for i, c in enumerate(controls):
        if c.elem_id == "sample-w":
            values[i] = 5.0
        elif c.elem_id == "oracle-t":
            values[i] = 321
    query, box = event.fn("sample", *values)
    assert query == "tab=sample&w=5" and box.visible is True
    assert event.fn("oracle", *values)[0] == "tab=oracle&t=321"
    assert event.fn("forward", *values)[0] == "tab=forward"


def test_link_events_are_private_and_light(app_module: ModuleType) -> None:
    names = ("open_link", "link_query", "remember_tab")
    events = [fn for fn in app_module.demo.fns.values() if getattr(fn, "name", None) in names]
    assert len(events) == 2 + 4  # one select per tab
    assert all(fn.api_visibility == "private" for fn in events)
    # Only the load is queued: Gradio reports the link State's change (which redraws the tabs) only from the queue.
    assert [fn.name for fn in events if fn.queue] == ["open_link"]

"""The DDPM Playground's Gradio interface: one module per tab, built and assembled by ``app.py``.

* :mod:`ddpm_ui.forward_tab` — tab 1, the forward process on a photo;
* :mod:`ddpm_ui.oracle_tab` — tab 2, the oracle reverse process, and the trained model beside it;
* :mod:`ddpm_ui.train_tab` — tab 3, the live model: load, download or train one;
* :mod:`ddpm_ui.sample_tab` — tab 4, guided sampling, the guidance sweep and the sampler comparison;
* :mod:`ddpm_ui.common` — what the tabs share: constants, error messages, parsing, formatting;
* :mod:`ddpm_ui.state` — the live model and the training job.

This package and ``app.py`` are the only code that imports gradio; all the maths is in :mod:`ddpm_core`.
"""

"""Run ``python app.py`` as a separate process on a free port, the way a user starts it.

The launcher is :func:`ddpm_core.localhost.running_app` (the crowd benchmark uses it too); this module puts
the checkout on ``sys.path`` for a script run by hand and names ``ROOT`` for the tests. Used by the browser
tests (``tests/e2e``), the screenshot script, the fault suite and the hostile-input suite. Each server gets
its own ``DDPM_PLAYGROUND_HOME`` (training runs, uploads, samples) and its own ``GRADIO_TEMP_DIR`` (Gradio's
upload cache), so nothing leaks into the real temp folders or between servers, and each runs with the
thread settings of ``python app.py`` rather than those of pytest.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run by hand (python tests/e2e/appserver.py), ddpm_core is not on the path
    sys.path.insert(0, str(ROOT))

from ddpm_core.localhost import AppProcess, running_app  # noqa: E402, F401  (needs the path fix above)

if __name__ == "__main__":  # handy by hand: python tests/e2e/appserver.py /tmp/somewhere
    import tempfile

    with running_app(Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())) as running:
        print(f"serving {running.url} (log: {running.log}); Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while running.alive():
                time.sleep(1)

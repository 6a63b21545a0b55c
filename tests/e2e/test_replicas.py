"""The README's recipe for serving replicas, as written: two ``python app.py`` behind its HAProxy configuration.

The configuration is read from the README itself (only the listening port and the replicas' ports change), so
the documented one is the tested one. Each replica has its own home and Gradio temp folder, as the README asks.
Two people, each a browser context of their own, open the page through the balancer and sample digits; the
cookie pins each to a replica for all the requests a page makes (the queue join, its result stream, the files).
HAProxy comes from Debian (``.ci/install-haproxy``); without it these tests are skipped, except under CI.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from appserver import ROOT, AppProcess, running_app
from e2e_helpers import in_ci, open_page, open_tab

from ddpm_core.localhost import free_port, http_ok, stop_process

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (or fails them under CI) with the reason
    expect = None

pytestmark = pytest.mark.e2e


def readme_haproxy_config() -> str:
    """The HAProxy configuration block of the README's "Many replicas" section."""
    section = (ROOT / "README.md").read_text().split("### Many replicas behind a load balancer", 1)[1]
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)
    return next(block for block in blocks if "backend replicas" in block)


def need_haproxy() -> str:
    found = shutil.which("haproxy")
    if found:
        return found
    problem = "no haproxy on PATH; install it with `sudo .ci/install-haproxy`"
    if in_ci():
        pytest.fail(f"CI=true but the replica test cannot run: {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, AppProcess]]]:
    """Two replicas, each with folders of its own, behind HAProxy with the README's configuration."""
    haproxy = need_haproxy()
    root = tmp_path_factory.mktemp("replicas")
    with running_app(root / "a") as a, running_app(root / "b") as b:
        port = free_port()
        config = readme_haproxy_config().replace("bind :80", f"bind 127.0.0.1:{port}")
        for documented, app in (("127.0.0.1:7861", a), ("127.0.0.1:7862", b)):
            config = config.replace(documented, app.url.removeprefix("http://").rstrip("/"))
        path = root / "haproxy.cfg"
        path.write_text(config)
        check = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        proxy = subprocess.Popen([haproxy, "-db", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 15
            while not http_ok(url) and proxy.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert http_ok(url), f"HAProxy did not answer on {url}"
            yield url, {"a": a, "b": b}
        finally:
            stop_process(proxy)


def test_the_readme_config_names_both_replicas_and_a_cookie() -> None:
    config = readme_haproxy_config()
    assert "cookie ddpm-replica insert" in config
    assert "server a 127.0.0.1:7861 check cookie a" in config and "server b 127.0.0.1:7862 check cookie b" in config
    readme = (ROOT / "README.md").read_text()
    for port, name in (("7861", "a"), ("7862", "b")):  # the launch lines give each replica folders of its own
        assert f"DDPM_PLAYGROUND_HOME=/var/tmp/ddpm-{name} GRADIO_TEMP_DIR=/var/tmp/gradio-{name}" in readme
        assert f"python app.py --port {port}" in readme


def test_two_people_sample_through_the_balancer_each_on_a_replica(browser: Any, replicas: tuple) -> None:
    url, apps = replicas
    pinned = []
    for _ in range(2):
        context, page, errors = open_page(browser, url)
        try:
            open_tab(page, "Sample")
            page.locator("#sample-go").click()
            expect(page.locator("#sample-summary")).to_contain_text("w = 4,")
            expect(page.locator("#sample-sheet img")).to_be_visible()
            pinned += [c["value"] for c in context.cookies() if c["name"] == "ddpm-replica"]
        finally:
            context.close()
        assert not errors, errors
    assert sorted(pinned) == ["a", "b"]  # least connections: the second person went to the other replica
    assert all(app.alive() for app in apps.values())

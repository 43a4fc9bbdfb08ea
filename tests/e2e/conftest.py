"""Browser fixtures for the review app's end-to-end tests: Playwright driving Debian's Chromium.

Browsers cannot be downloaded here, so ``playwright install`` is never run: Playwright launches the
system ``chromium`` (``apt-get install chromium``, which ``.ci/run`` does). Without it the browser
tests are skipped on a developer's machine and fail in CI (``CI=true``), where a skip would hide a
missing install step.

The app runs under uvicorn in a thread of the test process, on a free loopback port; it opens the
state database per request, so the tests can re-run the pipeline (a subprocess) while it serves.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (Playwright's sync API)."""
    executable = chromium_path()
    if executable is None:
        message = "Debian's chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class DialogWatch:
    """Every JavaScript dialog a page opens (alert, confirm, prompt), dismissed and remembered."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, dialog) -> None:
        self.messages.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def page(browser):
    """A fresh browser context and page; ``page.dialogs.messages`` lists any dialog that fired."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.set_default_timeout(15_000)
    watch = DialogWatch()
    p.on("dialog", watch)
    p.dialogs = watch
    try:
        yield p
    finally:
        context.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(config: Path, token: str | None = None) -> Iterator[str]:
    """Serve the review app for ``config`` on 127.0.0.1 in a thread; yield its base URL."""
    import uvicorn

    from dedupe.review.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config, token=token), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the review app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def review_server():
    """review_server(config, token=None): a context manager serving the app, yielding its URL."""
    return serve_app

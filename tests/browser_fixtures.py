"""pytest fixtures for the browser tests: Debian's Chromium (never a downloaded browser) and the app on a
local port; conftest imports them for every test module."""

import re
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:  # reported by each test as a failure, never a skip
            yield exc
            return
        yield browser
        browser.close()


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TIMEOUT_MS = 60_000


def logged_in_page(chromium, live_server, user, password):
    """A new browser context logged in as `user`: (context, page). The caller closes the context."""
    if isinstance(chromium, Exception):
        pytest.fail(f"Chromium ({CHROMIUM}) could not be launched: {chromium}")
    ARTIFACTS.mkdir(exist_ok=True)
    context = chromium.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/$"))
    return context, page

"""Fixtures for the web console tests: the real server in a subprocess, Debian's Chromium driven
by Playwright, and a page that records what the browser sends.

The browser is ``/usr/bin/chromium`` (Debian's ``chromium`` package; ``.ci/run`` installs it),
never a Playwright browser download. Without it the browser tests are skipped with the reason in
the summary, except with ``CI=true``, where they fail.

Screenshots of every view land in ``build/console-screenshots/<backend>/``; with
``EVENTODB_UPDATE_CONSOLE_SCREENSHOTS=1`` the SQLite run also refreshes ``docs/console/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    ViewportSize,
    sync_playwright,
)

from eventodb.core import tokens
from tests.support.server import ADMIN_TOKEN, Server, serve_per_param, unique

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("EVENTODB_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "build" / "console-screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "console"
UPDATE_DOCS = os.environ.get("EVENTODB_UPDATE_CONSOLE_SCREENSHOTS") == "1"

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    # Chromium's own background connections would be refused on a closed network (and slow
    # start-up down); none of them is needed to drive a page.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TOKEN_PATTERN = re.compile(r"ns_[A-Za-z0-9_-]+_[0-9a-fA-F]{64}")
"""Anything shaped like a namespace token."""

LAPTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API, for one module at a time: while it runs, the main thread counts as
    inside a running event loop, which would break every asyncio test collected after it."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Chromium; Playwright gives each launch a new, empty profile directory."""
    chromium = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
    )
    yield chromium
    chromium.close()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A production-mode server per persistent backend, logging at debug level (so the token
    checks see everything it can log)."""
    yield from serve_per_param(request, tmp_path_factory, "console", "--log-level=debug")


@dataclass
class Tab:
    """A browser page on the console plus what it did."""

    page: Page
    server: Server
    requests: list[Request] = field(default_factory=list)
    console: list[ConsoleMessage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, route: str = "") -> None:
        """Load the console at a route (``#/...`` fragment; no server round trip for it)."""
        self.page.goto(f"{self.server.url}/console/{route}")
        self.page.wait_for_selector("#view[data-rendered]:not([aria-busy])")

    def login(self, token: str) -> None:
        self.open("#/login")
        self.page.fill("#token", token)
        with self.rendering():
            self.page.click("button[type=submit]")

    def go(self, route: str) -> None:
        """Navigate inside the loaded console (render again if already there) and wait."""
        with self.rendering():
            self.page.evaluate(
                """route => {
                    if (location.hash !== route) location.hash = route;
                    else window.dispatchEvent(new HashChangeEvent("hashchange"));
                }""",
                route,
            )

    @contextlib.contextmanager
    def rendering(self) -> Iterator[None]:
        """Wait, after the block, until the console finished rendering a new view."""
        self.page.wait_for_selector("#view[data-rendered]:not([aria-busy])")
        before = self.page.get_attribute("#view", "data-rendered")
        yield
        self.page.wait_for_function(
            """before => {
                const view = document.getElementById("view");
                return view.dataset.rendered !== before && !view.hasAttribute("aria-busy");
            }""",
            arg=before,
        )

    def shot(self, name: str) -> None:
        """Screenshot into build/console-screenshots (and docs/console when asked to)."""
        target = SCREENSHOTS / self.server.kind / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(target), full_page=True)
        if UPDATE_DOCS and self.server.kind == "sqlite":
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOCS_SCREENSHOTS / f"{name}.png")

    def cells(self, selector: str, attribute: str) -> list[str]:
        """One data attribute of every row matching ``selector``, in page order."""
        values: list[str] = self.page.eval_on_selector_all(
            selector, f"rows => rows.map(r => r.getAttribute('{attribute}'))"
        )
        return values


@contextlib.contextmanager
def browsing(browser: Browser, server: Server) -> Iterator[Tab]:
    """A fresh browser context (empty storage) with a page on ``server``.

    After the block: no script error happened, every request went to the server itself, and no
    request URL or console line carried a token.
    """
    context = browser.new_context(viewport=LAPTOP, reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(10_000)
    tab = Tab(page, server)
    page.on("request", lambda request: tab.requests.append(request))
    page.on("console", lambda line: tab.console.append(line))
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()
    assert tab.errors == []
    for request in tab.requests:
        assert request.url.startswith(server.url + "/"), request.url
        assert TOKEN_PATTERN.search(request.url) is None, request.url
    for line in tab.console:
        assert TOKEN_PATTERN.search(line.text) is None, line.text


@pytest.fixture
def tab(browser: Browser, server: Server) -> Iterator[Tab]:
    with browsing(browser, server) as opened:
        yield opened


@dataclass
class Namespace:
    """A namespace made for one test through the API, with its token."""

    server: Server
    id: str
    token: str

    def ok(self, *request: Any) -> Any:
        return self.server.ok(self.token, *request)

    def write(self, stream: str, type_: str, data: dict[str, Any], **extra: Any) -> Any:
        return self.ok("stream.write", stream, {"type": type_, "data": data, **extra})


def make_namespace(server: Server, prefix: str = "c") -> Namespace:
    namespace = unique(prefix)
    token = server.ok(ADMIN_TOKEN, "ns.create", namespace)["token"]
    assert tokens.parse(token) == namespace
    return Namespace(server, namespace, token)


@pytest.fixture
def namespace(server: Server) -> Iterator[Namespace]:
    made = make_namespace(server)
    yield made
    server.rpc(ADMIN_TOKEN, "ns.delete", made.id)

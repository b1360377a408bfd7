"""The dashboard in headless Chromium (Debian's package, driven by Playwright through
`executable_path`; no browser is ever downloaded): every page loads without a console error or
a failed request, in light and dark, and leaves a screenshot in `artifacts/screenshots/`; the
main flows work by clicking."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import StackFactory, stack
from tests.e2e.keyed import ADMIN, Keyed, keyed_fixture

pytestmark = pytest.mark.browser
__all__ = ["stack"]
SHOTS = Path(__file__).parents[2] / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/test installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def gateway(stack: StackFactory) -> Keyed:
    k = keyed_fixture(stack)
    made = k.key(budget_sats=1000.0, rpm=100)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
    for _ in range(5):
        httpx.post(k.url + "/v1/chat/completions", json=body,
                   headers={"authorization": f"Bearer {made['key']}"})  # fmt: skip
    k.stack.last_record(5)
    return k


class Watched:
    """A page that collects console errors and failed requests."""

    def __init__(self, page: Any) -> None:
        self.page, self.errors = page, []
        page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on(  # a request the browser itself cancelled (it navigated on) is not a failure
            "requestfailed",
            lambda r: (
                self.errors.append(f"failed: {r.url} ({r.failure})")
                if r.failure != "net::ERR_ABORTED"
                else None
            ),
        )
        page.on(
            "response",
            lambda r: (
                self.errors.append(f"{r.status}: {r.url}")
                if r.status >= 400 and "/ui/login" not in r.url
                else None
            ),
        )


def login(w: Watched, url: str, token: str = ADMIN) -> None:
    w.page.goto(url + "/ui/login")
    w.page.fill("#token", token)
    with w.page.expect_navigation():
        w.page.click("button[type=submit]")


def test_every_page_light_and_dark_without_errors(browser: Any, gateway: Keyed) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    request_id = gateway.stack.sink.records[-1].id
    import time

    time.sleep(0.5)  # the recorder's flush
    pages = {"overview": "/ui", "requests": "/ui/requests", "request": f"/ui/requests/{request_id}",
             "providers": "/ui/providers", "keys": "/ui/keys", "audit": "/ui/audit",
             "playground": "/ui/playground"}  # fmt: skip
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
        w = Watched(context.new_page())
        login(w, gateway.url)
        for name, path in pages.items():
            w.page.goto(gateway.url + path)
            assert w.page.title().endswith("arbstr"), name
            w.page.screenshot(path=str(SHOTS / f"{name}-{scheme}.png"), full_page=True)
        w.page.goto(gateway.url + "/ui/providers")
        w.page.wait_for_timeout(3500)  # one live refresh
        assert w.errors == [], w.errors
        assert ADMIN not in w.page.content()
        context.close()
    assert len(list(SHOTS.glob("*.png"))) >= 14


def test_login_filter_open_create_revoke_and_play(browser: Any, gateway: Keyed) -> None:
    context = browser.new_context()
    w = Watched(context.new_page())
    login(w, gateway.url, "not-the-token")
    assert "not the admin token" in w.page.content()
    w.errors.clear()
    w.page.fill("#token", ADMIN)
    w.page.click("button[type=submit]")
    w.page.wait_for_url(re.compile(r".*/ui$"))
    assert "Overview" in w.page.content()
    import time

    time.sleep(0.5)
    w.page.click("nav >> text=Requests")
    w.page.fill("input[name=provider]", "alpha")
    w.page.click("form.filters button[type=submit]")
    assert "provider=alpha" in w.page.url
    w.page.click("table tbody tr td a")
    assert "Attempts" in w.page.content()
    w.page.click("nav >> text=Keys")
    w.page.fill("form[aria-label='New project'] input[name=name]", "browser-team")
    w.page.click("form[aria-label='New project'] button")
    assert "project browser-team" in w.page.content()
    w.page.select_option("form[aria-label='New key'] select[name=project_id]", label="browser-team")
    w.page.fill("form[aria-label='New key'] input[name=name]", "clicked")
    w.page.click("form[aria-label='New key'] button")
    plaintext = w.page.input_value("#plaintext")
    assert plaintext.startswith("sk-arb-")
    w.page.click("nav >> text=Keys")
    assert plaintext not in w.page.content()
    key_id = plaintext.split("-")[2]
    assert key_id in w.page.content()
    w.page.click(f"form[action='/ui/keys/{key_id}/revoke'] button")
    assert f"key {key_id} revoked" in w.page.content()
    w.page.click("nav >> text=Playground")
    w.page.fill("textarea[name=prompt]", "hello from the browser")
    w.page.click("button[value=run]")
    w.page.wait_for_function(
        "document.getElementById('answer-meta').textContent.includes('provider')"
    )
    assert w.page.text_content("#answer").strip()
    assert "alpha" in w.page.text_content("#answer-meta")
    assert w.errors == [], w.errors
    context.close()


def test_the_dashboard_works_from_the_keyboard(browser: Any, gateway: Keyed) -> None:
    """Log in, move between pages and filter the log with the keyboard alone."""
    context = browser.new_context()
    w = Watched(context.new_page())
    w.page.goto(gateway.url + "/ui/login")
    w.page.focus("#token")  # where `autofocus` puts a visitor (headless pages have no focus)
    w.page.keyboard.type(ADMIN)
    with w.page.expect_navigation():
        w.page.keyboard.press("Enter")
    assert w.page.url.endswith("/ui")
    w.page.keyboard.press("Tab")  # the skip link comes first
    assert w.page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(3):  # skip link, brand, Overview -> Requests
        w.page.keyboard.press("Tab")
    assert w.page.evaluate("document.activeElement.textContent") == "Requests"
    with w.page.expect_navigation():
        w.page.keyboard.press("Enter")
    assert w.page.url.endswith("/ui/requests")
    w.page.focus("input[name=provider]")
    w.page.keyboard.type("alpha")
    with w.page.expect_navigation():
        w.page.keyboard.press("Enter")
    assert "provider=alpha" in w.page.url
    assert w.errors == [], w.errors
    context.close()

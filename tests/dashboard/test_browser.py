"""The dashboard in a real headless Chromium against a real uvicorn on 127.0.0.1.

Signs in through the login form, loads every page, asserts on what a person sees
(model names, alias badges, SVG charts with data points, audit rows), uses the
audit filter (the one script), checks no console error or CSP violation, and
keeps a full-page screenshot of every page under ``test-artifacts/dashboard/``.

Needs ``/usr/bin/chromium`` (Debian packages ``chromium`` and ``chromium-driver``)
and the ``playwright`` Python package; never downloads a browser. Skips when
Chromium is absent, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_seed import FEATURES, MODEL, VIEWER_KEY

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.workspace import Workspace

CHROMIUM = os.environ.get("STEWARD_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_chromium() -> None:
    if Path(CHROMIUM).exists() and shutil.which(CHROMIUM):
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright Python package is not installed (pip install playwright; no browser download needed)"
        else:
            return
    else:
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(seeded: Workspace) -> Iterator[str]:
    """A real uvicorn serving the seeded project on 127.0.0.1 (a free port), in a thread."""
    _require_chromium()
    import uvicorn

    keys = ApiKeys({VIEWER_KEY: ("browser-viewer", "viewer")})
    port = _free_port()
    config = uvicorn.Config(create_app(seeded, api_keys=keys), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser_page(server: str) -> Iterator[tuple[Any, list[str]]]:
    """A signed-out Chromium page and the list its console errors are collected into."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
        page = context.new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield page, errors
        finally:
            context.close()
            browser.close()


def _shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank
    return path


def _chart_points(page: Any) -> list[int]:
    return [int(el.get_attribute("data-points")) for el in page.locator("svg.chart").all()]


def test_dashboard_in_headless_chromium(server: str, browser_page: tuple[Any, list[str]]) -> None:
    page, errors = browser_page

    # signed out: any page sends the browser to the login form
    page.goto(f"{server}/rollouts")
    assert "/login?next=/rollouts" in page.url
    _shot(page, "login")
    page.fill("#key", "not-a-key")
    page.click("button[type=submit]")
    assert page.locator("p.error").inner_text() == "That key is not valid."
    assert any("401" in e for e in errors)  # the refused sign-in answers 401
    errors.clear()
    page.fill("#key", VIEWER_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/rollouts")
    cookie = next(c for c in page.context.cookies() if c["name"] == "steward_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # rollouts: state and the per-variant RED charts
    assert page.locator("h2", has_text=MODEL).first.is_visible()
    assert page.locator(".badge.running").first.inner_text() == "running"
    assert _chart_points(page) == [4, 4, 4, 4]
    assert page.locator("svg.chart circle.pt").count() == 16
    _shot(page, "rollouts")

    # overview
    page.goto(f"{server}/")
    assert page.locator("a", has_text=MODEL).first.is_visible()
    assert page.locator(".badge.alias-champion").first.inner_text() == "v1"
    assert page.locator(".badge.alias-challenger").first.inner_text() == "v2"
    assert "chain verified" in page.locator(".tiles").inner_text()
    _shot(page, "overview")

    # models and one model with its card
    page.goto(f"{server}/models")
    assert page.locator(".badge.alias-champion", has_text="champion → v1").is_visible()
    _shot(page, "models")
    page.click(f"h2 a:has-text('{MODEL}')")
    page.wait_for_url(f"{server}/models/{MODEL}")
    card = page.locator("article.markdown")
    assert "Model card: flights_delay v1" in card.locator("h1").inner_text()
    assert card.locator("table").count() >= 3  # metrics, slices, importance rendered as tables
    _shot(page, "model")

    # drift: a line per feature, threshold lines, action markers
    page.goto(f"{server}/drift")
    assert _chart_points(page) == [len(FEATURES) * 6]
    assert page.locator("svg.chart line.threshold").count() == 2
    assert page.locator("svg.chart g.marker").count() == 5
    box = page.locator("svg.chart").first.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150  # laid out, legible
    _shot(page, "drift")

    page.goto(f"{server}/performance")
    assert _chart_points(page) == [6]
    assert page.locator("svg.chart g.marker").count() == 5
    assert page.locator("tr.loop-row .badge.promoted").inner_text() == "promoted"
    _shot(page, "performance")

    # audit: rows, the verified badge, and the filter select submitting itself (the one script)
    page.goto(f"{server}/audit")
    all_rows = page.locator("tr.audit-row").count()
    assert all_rows >= 7
    assert "chain verified" in page.locator(".badge.verified").inner_text()
    page.select_option("select[name=actor]", "user:alice")  # the seed's actor="alice", in the one grammar
    page.wait_for_url("**/audit?*actor=user*alice*")
    actors = page.locator("tr.audit-row td:nth-child(3)").all_inner_texts()
    assert actors and set(actors) == {"user:alice"} and len(actors) < all_rows
    _shot(page, "audit")

    page.goto(f"{server}/llm")
    assert _chart_points(page)[1:] == [5, 5]  # after the month's cumulative spend and projection
    assert _chart_points(page)[0] >= 3
    assert page.locator("svg.chart rect.bar").count() == 2 * 5 * 2  # per day: two keys on one chart, two models on the other
    _shot(page, "llm")

    page.goto(f"{server}/traces")
    assert page.locator("tr.span-row", has_text="llm.chat").count() == 3
    _shot(page, "traces")

    # sign out: back to the form
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/login")
    page.goto(f"{server}/")
    assert "/login" in page.url

    assert errors == [], f"console errors (CSP violations included): {errors}"

"""Browser tests: a real Herald server process (tests/integration/conftest.py), the demo data made
through the services, and Debian's Chromium driven by Playwright (no downloaded browser)."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User
from django.core.management import call_command

from accounts.models import Tenant

# Fixtures and the report hook of the integration tests, reused as they are.
from tests.integration.conftest import HeraldProcess, herald_processes, pytest_runtest_makereport

__all__ = ["herald_processes", "pytest_runtest_makereport"]

CHROMIUM = os.environ.get("HERALD_CHROMIUM", "/usr/bin/chromium")
# What works in a container without a display, a GPU or a user namespace, and keeps Chromium from
# calling home (updates, sync, field trials) during the tests.
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
DEMO_PASSWORD = "correct horse battery staple"
# A plain-HTTP server on loopback: cookies without Secure, no HSTS, and Herald serving its own
# static files (herald.js, center.js) as it does in the embedded default.
SERVER_ENV = {
    "HERALD_SERVE_STATIC": "1",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
    "SECURE_HSTS_SECONDS": "0",
}


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs Playwright for Python (pip install -r requirements-dev.txt)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"needs Chromium at {CHROMIUM} (scripts/system-packages installs Debian's chromium)")
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _playwright()
    # Playwright's sync API keeps an asyncio loop running in this thread, so Django would refuse
    # the tests' (synchronous, same-thread) ORM calls as if they came from async code. Only this
    # test process is concerned: server processes do not inherit DJANGO_* variables (base_env).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Demo:
    tenant: Tenant
    api_key: str
    username: str = "demo"
    password: str = DEMO_PASSWORD
    end_user: str = "demo"


@pytest.fixture
def demo(transactional_db: Any) -> Demo:
    """The demo tenant, its staff user `demo` (end-user id "demo") and an all-scopes API key, made
    by `manage.py seed_demo` as on a fresh install."""
    output = io.StringIO()
    call_command("seed_demo", password=DEMO_PASSWORD, stdout=output)
    api_key = output.getvalue().strip().splitlines()[-1]
    # The test settings hash passwords with MD5 for speed; the server only knows the real hashers.
    user = User.objects.get(username="demo")
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(DEMO_PASSWORD, hasher.salt())
    user.save(update_fields=["password"])
    return Demo(tenant=Tenant.objects.get(slug="demo"), api_key=api_key)


@pytest.fixture
def center_server(herald_processes: Callable[..., HeraldProcess], demo: Demo) -> Callable[..., HeraldProcess]:
    """Start Herald for the center: `center_server(name)`, or `center_server(name, port=p)` to take
    over the port of a stopped one (start_herald binds `port`; the rest is environment)."""

    def start(name: str = "herald", **overrides: Any) -> HeraldProcess:
        return herald_processes(name, **{**SERVER_ENV, **overrides})

    return start


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    browser_context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    browser_context.set_default_timeout(15_000)
    yield browser_context
    browser_context.close()

"""The operations page in a real browser against a real Herald process: the demo staff member
watches their tenant while a backend publishes over REST to an end user connected with a real
WebSocket client; the page's figures move, the recent-events table fills, the connection state
follows a server restart, and a platform admin switches tenants. Saves the screenshots in
docs/screenshots/."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User

from accounts.services import tenant_create
from tests.browser.conftest import DEMO_PASSWORD, Demo
from tests.integration.client import rest
from tests.integration.conftest import HeraldProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

END_USER = "shopper"
# Listened to live by the end user: seed_demo opens it to clients.
TOPIC = "announcements"
FIGURES = ["fig-connections", "fig-events-in", "fig-deliveries", "fig-frames-out", "fig-p50", "fig-p99"]


class EndUserSocket:
    """An end user of the demo tenant on /ws/v1/, through the `websockets` library's threaded
    client (the test's own thread runs Playwright's event loop): it reads every frame in a thread
    of its own, answers pings and counts notifications, so Herald really delivers."""

    def __init__(self, server: HeraldProcess, demo: Demo) -> None:
        from websockets.sync.client import connect

        status, body = rest(server.url, "POST", "/api/v1/tokens", {"user_id": END_USER}, demo.api_key)
        assert status == 201, body
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(server.ws_url, open_timeout=10, close_timeout=5))
        self.ws.send(json.dumps({"type": "auth", "token": body["token"], "topics": [TOPIC]}))
        self.notifications: list[dict[str, Any]] = []
        self.resumed = threading.Event()
        self.reader = threading.Thread(target=self._read, name="end-user-socket", daemon=True)
        self.reader.start()
        assert self.resumed.wait(10), "the end user's socket did not get to `resumed`"

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for text in self.ws:
                frame = json.loads(text)
                if frame["type"] == "ping":
                    self.ws.send('{"type":"pong"}')
                elif frame["type"] == "resumed":
                    self.resumed.set()
                elif frame["type"] == "notification":
                    self.notifications.append(frame)
        except ConnectionClosed:
            pass

    def wait_for(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len({frame["id"] for frame in self.notifications}) < count:
            assert time.monotonic() < deadline, f"{len(self.notifications)} of {count} notifications arrived"
            time.sleep(0.05)

    def close(self) -> None:
        self.stack.close()
        self.reader.join(10)


@pytest.fixture
def end_user(center_server: Any, demo: Demo) -> Iterator[Any]:
    sockets: list[EndUserSocket] = []

    def open_socket(server: HeraldProcess) -> EndUserSocket:
        socket = EndUserSocket(server, demo)
        sockets.append(socket)
        return socket

    yield open_socket
    for socket in sockets:
        socket.close()


class Load:
    """Publishes `count` events over REST at `per_second`, in a thread, while the test looks at
    the page. Every `topic_every`-th event goes to the topic instead of the user."""

    def __init__(self, server: HeraldProcess, demo: Demo, count: int, per_second: float, topic_every: int = 0):
        self.ids: list[int] = []
        self.errors: list[Any] = []

        def run() -> None:
            for number in range(count):
                to_topic = bool(topic_every) and number % topic_every == 0
                target = {"topics": [TOPIC]} if to_topic else {"recipients": [END_USER]}
                kind = "announcement.posted" if to_topic else "order.shipped"
                fields = {"kind": kind, "title": f"Load {number}", **target}
                status, body = rest(server.url, "POST", "/api/v1/events", fields, demo.api_key)
                if status == 202:
                    self.ids.append(int(body["id"]))
                else:
                    self.errors.append(body)
                time.sleep(1 / per_second)

        self.thread = threading.Thread(target=run, name="load", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60) -> list[int]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the load did not finish"
        assert not self.errors, self.errors
        return self.ids


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def sign_in(page: Any, server: HeraldProcess, username: str) -> None:
    page.goto(f"{server.url}/ops/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/ops/$"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ops/(\?.*)?$"))


def wait_live(page: Any, timeout: float = 15_000) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=timeout)
    expect(page.locator("#connection-state")).to_have_text("Live")


def record_figures(page: Any) -> None:
    """Remember, in the page, the highest value each figure ever showed: the figures are per
    second, so a value can come and go between two looks of Playwright's."""
    page.evaluate(
        """(ids) => {
          window.__highest = {};
          for (const id of ids) {
            const element = document.getElementById(id);
            const note = () => {
              const value = parseFloat(element.dataset.value);
              if (!Number.isNaN(value)) window.__highest[id] = Math.max(window.__highest[id] || 0, value);
            };
            new MutationObserver(note).observe(element, {attributes: true, childList: true, characterData: true});
          }
        }""",
        FIGURES,
    )


def highest(page: Any, *figures: str) -> Any:
    """The highest value each figure has shown: one float, or a list read at one moment (two
    reads apart could straddle a new second's figures)."""
    values = [float(value) for value in page.evaluate("(ids) => ids.map((id) => window.__highest[id] || 0)", figures)]
    return values[0] if len(values) == 1 else values


def test_operations_page_shows_the_load_a_backend_puts_on_herald(center_server, demo, context, end_user):
    server = center_server()
    shopper = end_user(server)
    page = context.new_page()
    sign_in(page, server, demo.username)
    wait_live(page)
    expect(page.locator(".tenant-name")).to_contain_text("Demo Company")
    expect(page.locator("#tenant-select")).to_have_count(0)  # staff: their own tenant only
    # The end user's connection is on the (only) node: connections 1, one row in the nodes table.
    expect(page.locator("#fig-connections")).to_have_text("1", timeout=5_000)
    expect(page.locator("#nodes tr")).to_have_count(1)
    expect(page.locator("#nodes tr td").nth(1)).to_have_text("1")
    expect(page.locator("#charts-missing")).to_be_hidden()
    for chart in ("events", "deliveries", "latency"):
        expect(page.locator(f"#chart-{chart} canvas")).to_have_count(1)
    record_figures(page)

    # 30 events at 10 a second to the connected end user.
    first = Load(server, demo, count=30, per_second=10)
    page.wait_for_function("() => (window.__highest['fig-events-in'] || 0) > 0", timeout=15_000)
    page.wait_for_function("() => (window.__highest['fig-deliveries'] || 0) > 0", timeout=15_000)
    page.wait_for_function("() => (window.__highest['fig-p99'] || 0) > 0", timeout=15_000)
    first_ids = first.join()
    shopper.wait_for(30)
    print(
        f"\nhighest on the page: events in {highest(page, 'fig-events-in')}/s, "
        f"deliveries {highest(page, 'fig-deliveries')}/s, p99 {highest(page, 'fig-p99')} ms"
    )
    frames_out, deliveries = highest(page, "fig-frames-out", "fig-deliveries")
    assert frames_out >= deliveries > 0
    assert highest(page, "fig-p50") > 0
    # The recent-events table (reloaded every 3 s) shows them, newest first, delivered.
    newest = page.locator("#events tr").first
    expect(newest).to_have_attribute("data-id", str(first_ids[-1]), timeout=10_000)
    expect(page.locator("#events tr")).to_have_count(25)
    expect(newest.locator("td.kind")).to_have_text("order.shipped")
    expect(newest.locator("td.targets")).to_have_text(f"user: {END_USER}")
    expect(newest.locator(".badge")).to_have_text("delivered")
    expect(newest.locator("td").nth(4)).to_have_text("1")

    # 20 more at 4 a second, every other one to the topic the end user listens to, while the
    # screenshots are taken: the figures are moving in them.
    second = Load(server, demo, count=20, per_second=4, topic_every=2)
    expect(page.locator("#topics tr").filter(has_text=TOPIC)).to_have_count(1, timeout=15_000)
    page.wait_for_timeout(2500)
    page.evaluate("document.activeElement.blur()")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "operations-desktop.png"), full_page=True, animations="disabled")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(1200)  # the charts follow the new width
    page.screenshot(path=str(SCREENSHOTS / "operations-phone.png"), animations="disabled")
    # Nothing sticks out sideways on a phone: only the tables scroll, inside their cards.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    second_ids = second.join()
    shopper.wait_for(50)
    expect(page.locator("#events tr").first).to_have_attribute("data-id", str(second_ids[-1]), timeout=10_000)
    expect(page.locator("#events tr").filter(has_text=f"topic: {TOPIC}").first).to_be_visible()
    for name in ("desktop", "phone"):
        assert (SCREENSHOTS / f"operations-{name}.png").stat().st_size > 20_000


def test_page_shows_a_dropped_connection_and_comes_back_after_a_restart(center_server, demo, context):
    server = center_server("before")
    page = context.new_page()
    sign_in(page, server, demo.username)
    wait_live(page)
    server.stop()  # by PID (SIGTERM)
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    expect(page.locator("#connection-state")).to_have_text("Reconnecting…")
    center_server("after", port=server.port)
    # Backoff with full jitter: at most 16 s after a few seconds' outage; 45 s leaves room.
    wait_live(page, timeout=45_000)


def test_platform_admin_switches_tenants(center_server, demo, context):
    tenant_create(slug="globex", name="Globex")
    # The test settings hash with MD5; the server knows only the real hashers (as for demo).
    admin = User.objects.get(username="admin")
    admin.password = PBKDF2PasswordHasher().encode(DEMO_PASSWORD, PBKDF2PasswordHasher().salt())
    admin.save(update_fields=["password"])
    server = center_server()
    page = context.new_page()
    sign_in(page, server, "admin")
    wait_live(page)
    select = page.get_by_label("Tenant")
    expect(select.locator("option")).to_have_text(["demo (Demo Company)", "globex (Globex)"])
    expect(select).to_have_value("demo")
    status, _ = rest(server.url, "POST", "/api/v1/events", {"kind": "demo.kind", "recipients": ["x"]}, demo.api_key)
    assert status == 202
    expect(page.locator("#events tr td.kind")).to_have_text(["demo.kind"], timeout=10_000)
    select.select_option("globex")
    expect(page).to_have_url(re.compile(r"/ops/\?tenant=globex$"))
    expect(page).to_have_title("Operations · globex · Herald")
    wait_live(page)
    expect(page.locator("#events-empty")).to_be_visible(timeout=10_000)
    expect(page.locator("#events tr")).to_have_count(0)
    page.reload()  # the address keeps the choice
    expect(select).to_have_value("globex")
    wait_live(page)

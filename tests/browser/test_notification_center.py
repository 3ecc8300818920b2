"""The notification center in a real browser against a real Herald process: sign in through the
page, then what a person sees: a REST publish pops up within a second, read state follows across
tabs, a server restart is survived without losing what was published meanwhile, hostile text stays
text. Also saves the screenshots in docs/screenshots/."""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from notifications import fanout
from notifications.models import Event
from notifications.services import EventInput, events_publish
from tests.browser.conftest import Demo
from tests.integration.client import rest
from tests.integration.conftest import HeraldProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The requirement: a notification published over REST is on screen within one second.
TOAST_LATENCY_BOUND_S = 1.0


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def publish(server: HeraldProcess, demo: Demo, **fields: Any) -> int:
    fields.setdefault("kind", "order.shipped")
    status, body = rest(server.url, "POST", "/api/v1/events", {"recipients": [demo.end_user], **fields}, demo.api_key)
    assert status == 202, body
    return int(body["id"])


def publish_directly(demo: Demo, *, fan_out: bool = False, **fields: Any) -> int:
    """Publish through the service in this process (into the test database), in a thread of its
    own: this thread runs Playwright's event loop, where the best-effort live send after fan-out
    could not run. With fan_out, also fan it out here (when no server is running)."""

    def work() -> int:
        try:
            fields.setdefault("kind", "order.shipped")
            result = events_publish(
                tenant=demo.tenant, api_key=None, items=[EventInput(recipients=(demo.end_user,), **fields)]
            )
            while fan_out and fanout.process_pending() > 0:
                pass
            return result.event_ids[0]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result(timeout=30)


def sign_in(page: Any, server: HeraldProcess, demo: Demo) -> None:
    page.goto(f"{server.url}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill(demo.username)
    page.get_by_label("Password").fill(demo.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/")
    wait_live(page)


def wait_live(page: Any, timeout: float = 15_000) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=timeout)
    expect(page.locator("#connection-state")).to_have_text("Live")


def open_panel(page: Any) -> None:
    bell = page.locator("#bell")
    if bell.get_attribute("aria-expanded") != "true":
        bell.click()
    expect(page.get_by_role("dialog", name="Notifications")).to_be_visible()


def item(page: Any, title: str) -> Any:
    return page.locator("#inbox li.item").filter(has=page.locator(".item-title", has_text=title))


def test_rest_publish_shows_a_toast_and_bumps_the_badge_within_a_second(center_server, demo, context):
    server = center_server()
    page = context.new_page()
    sign_in(page, server, demo)
    badge = page.locator("#unread-count")
    expect(badge).to_be_hidden()
    # Record, in the page, when each toast appears (Date.now() is the same wall clock as time.time()
    # here), so the latency is measured, not bounded by how often Playwright polls.
    page.evaluate(
        """() => {
          window.__toasts = [];
          new MutationObserver((mutations) => {
            for (const mutation of mutations) for (const node of mutation.addedNodes) {
              if (node.classList && node.classList.contains("toast")) {
                window.__toasts.push({at: Date.now(), title: node.querySelector(".toast-title").textContent});
              }
            }
          }).observe(document.getElementById("toasts"), {childList: true});
        }"""
    )
    started = time.time()
    publish(server, demo, title="Your order shipped", body="Order #7 is on its way.", url="/orders/7")
    # Slow CI machines: the bound is the requirement (1 s); the measured value is printed below.
    toast = page.locator("#toasts .toast").filter(has_text="Your order shipped")
    expect(toast).to_be_visible(timeout=TOAST_LATENCY_BOUND_S * 1000)
    expect(badge).to_have_text("1", timeout=TOAST_LATENCY_BOUND_S * 1000)
    appeared = page.evaluate("window.__toasts")
    latency = appeared[0]["at"] / 1000 - started
    print(f"\ntoast latency (REST publish -> toast in the page): {latency * 1000:.0f} ms")
    assert appeared[0]["title"] == "Your order shipped"
    assert latency < TOAST_LATENCY_BOUND_S

    expect(toast.locator(".toast-body")).to_have_text("Order #7 is on its way.")
    expect(page.get_by_role("button", name="Notifications, 1 unread")).to_be_visible()
    expect(page.locator("#toast-announcer")).to_have_text(
        "New notification: Your order shipped. Order #7 is on its way."
    )
    assert page.title().startswith("(1) ")

    # "View" opens the inbox panel with the notification in it, keyboard focus on its first action.
    toast.get_by_role("button", name="View").click()
    panel = page.get_by_role("dialog", name="Notifications")
    expect(panel).to_be_visible()
    entry = item(page, "Your order shipped")
    expect(entry).to_have_class(re.compile(r"\bunread\b"))
    expect(entry.locator(".item-link")).to_have_attribute("href", "/orders/7")
    expect(entry.locator(".item-time")).to_have_text("just now")
    expect(entry.get_by_role("button", name="Mark read")).to_be_focused()
    # Escape closes the panel and gives focus back to the bell.
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.locator("#bell")).to_be_focused()
    expect(page.locator("#bell")).to_have_attribute("aria-expanded", "false")
    # Keyboard only: Enter on the bell opens the panel at its heading; Tab walks its buttons.
    page.keyboard.press("Enter")
    expect(panel).to_be_visible()
    expect(page.locator("#inbox-heading")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Mark all read")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Close notifications")).to_be_focused()
    page.keyboard.press("Tab")
    expect(entry.get_by_role("link")).to_be_focused()
    page.keyboard.press("Tab")
    expect(entry.get_by_role("button", name="Mark read")).to_be_focused()
    page.keyboard.press("Enter")
    expect(entry).not_to_have_class(re.compile(r"\bunread\b"))
    expect(page.locator("#unread-count")).to_be_hidden()
    expect(entry.get_by_role("button", name="Mark unread")).to_be_focused()


def test_read_state_changed_in_one_tab_shows_in_the_other(center_server, demo, context):
    server = center_server()
    first = context.new_page()
    sign_in(first, server, demo)
    second = context.new_page()  # the same session: another tab
    second.goto(f"{server.url}/")
    wait_live(second)
    publish(server, demo, title="Invoice paid")
    publish(server, demo, title="Comment on your post")
    for tab in (first, second):
        expect(tab.locator("#unread-count")).to_have_text("2")

    open_panel(first)
    item(first, "Invoice paid").get_by_role("button", name="Mark read").click()
    expect(first.locator("#unread-count")).to_have_text("1")
    expect(item(first, "Invoice paid")).not_to_have_class(re.compile(r"\bunread\b"))
    # The other tab: its badge from the server's `unread` frame, its list from the inbox it reloads.
    expect(second.locator("#unread-count")).to_have_text("1", timeout=3000)
    expect(item(second, "Invoice paid")).not_to_have_class(re.compile(r"\bunread\b"), timeout=3000)
    expect(item(second, "Comment on your post")).to_have_class(re.compile(r"\bunread\b"))

    # Archived in the second tab: gone from the first one's list.
    open_panel(second)
    item(second, "Invoice paid").get_by_role("button", name="Archive").click()
    expect(item(second, "Invoice paid")).to_have_count(0)
    expect(second.locator("#panel-status")).to_contain_text("Archived “Invoice paid”.")
    expect(item(first, "Invoice paid")).to_have_count(0, timeout=3000)

    # Mark all read in the first tab: both badges go away.
    first.get_by_role("button", name="Mark all read").click()
    for tab in (first, second):
        expect(tab.locator("#unread-count")).to_be_hidden(timeout=3000)
        expect(tab.get_by_role("button", name="Notifications, 0 unread")).to_be_visible()
    expect(item(second, "Comment on your post")).not_to_have_class(re.compile(r"\bunread\b"), timeout=3000)


def test_page_survives_a_server_restart_and_shows_what_was_published_meanwhile(center_server, demo, context):
    server = center_server("before")
    page = context.new_page()
    sign_in(page, server, demo)
    page.evaluate(
        "() => { window.__states = []; window.heraldCenter.herald.on('status', (d) => window.__states.push(d.state)); }"
    )
    publish(server, demo, title="Before the restart")
    expect(page.locator("#unread-count")).to_have_text("1")

    server.stop()  # by PID (SIGTERM)
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    expect(page.locator("#connection-state")).to_have_text("Reconnecting…")

    # Published while no server runs: stored and fanned out by this process, into the same database.
    event_id = publish_directly(demo, title="While you were away", fan_out=True)
    assert Event.objects.get(tenant=demo.tenant, number=event_id).status == Event.Status.DELIVERED

    center_server("after", port=server.port)  # a new process on the same port
    # Backoff with full jitter reaches at most 16 s by the time a server that was down for a few
    # seconds is back; 45 s bounds it with room for a slow machine.
    wait_live(page, timeout=45_000)
    expect(page.locator("#unread-count")).to_have_text("2")
    expect(page.locator("#toasts .toast").filter(has_text="While you were away")).to_be_visible()
    open_panel(page)
    expect(item(page, "While you were away")).to_have_class(re.compile(r"\bunread\b"))
    expect(item(page, "Before the restart")).to_have_count(1)
    states = page.evaluate("window.__states")
    assert "reconnecting" in states and states[-1] == "open", states


def test_a_silently_dead_connection_is_noticed_by_missed_heartbeats_and_replaced(center_server, demo, context):
    # Heartbeat 1 s (instead of 25) so two missed ones take seconds, not a minute.
    server = center_server(HERALD_HEARTBEAT_SECONDS="1")
    page = context.new_page()
    sign_in(page, server, demo)
    assert page.evaluate("window.heraldCenter.herald.welcome.heartbeat") == 1
    # SIGSTOP: the process and its sockets stay, nothing is closed, nothing is sent: a server
    # behind a dead network path as the browser sees it. The browser gets no close event at all.
    server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting", timeout=8_000)
        noticed = time.monotonic() - started
        print(f"\ndead connection noticed after {noticed:.1f} s (2 heartbeats of 1 s, plus 1 s of grace)")
        assert noticed >= 1.5
    finally:
        server.proc.send_signal(signal.SIGCONT)
    wait_live(page, timeout=45_000)
    publish(server, demo, title="After the silence")
    expect(page.locator("#toasts .toast").filter(has_text="After the silence")).to_be_visible(timeout=5_000)
    expect(page.locator("#unread-count")).to_have_text("1")


def test_notification_text_is_rendered_as_text_never_as_html(center_server, demo, context):
    server = center_server()
    page = context.new_page()
    sign_in(page, server, demo)
    hostile = "<img src=x onerror=window.__xss=1>"
    publish(server, demo, title=hostile, body="<script>window.__xss=2</script><b>bold</b>")
    toast = page.locator("#toasts .toast").first
    expect(toast.locator(".toast-title")).to_have_text(hostile)
    expect(toast.locator(".toast-body")).to_have_text("<script>window.__xss=2</script><b>bold</b>")
    # The REST API refuses a javascript: url; stored around it (as an old row could be), the page
    # still does not make it a link. The running server's fan-out sweep delivers it live.
    publish_directly(demo, title="Click me", url="javascript:window.__xss=3")
    open_panel(page)
    entry = item(page, hostile)
    expect(entry.locator(".item-title")).to_have_text(hostile)
    expect(item(page, "Click me").locator(".item-link")).to_be_hidden()
    assert item(page, "Click me").locator("a[href]").count() == 0
    assert page.locator("#toasts img, #inbox img, #toasts b, #inbox b, #toasts script, #inbox script").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"

    # The server-rendered first paint of the same notification, after a reload.
    page.reload()
    wait_live(page)
    open_panel(page)
    expect(item(page, hostile).locator(".item-title")).to_have_text(hostile)
    assert page.locator("#inbox img, #inbox script").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_screenshots_of_the_notification_center(center_server, demo, context):
    server = center_server()
    samples = [
        ("Weekly report is ready", "Your analytics summary for last week.", "/reports/weekly", timedelta(days=2)),
        ("Deploy finished", "Version 2.4.1 is live in production.", "", timedelta(hours=3)),
        (
            "New comment on “Roadmap”",
            "Maria: Looks good to me, shipping Friday?",
            "/posts/12#c4",
            timedelta(minutes=12),
        ),
    ]
    for title, body, url, age in samples:
        event_id = publish(server, demo, title=title, body=body, url=url)
        fanout.wait_for_idle(timeout=10)
        Event.objects.filter(tenant=demo.tenant, number=event_id).update(created_at=timezone.now() - age)
    page = context.new_page()
    sign_in(page, server, demo)
    open_panel(page)
    item(page, "Weekly report is ready").get_by_role("button", name="Mark read").click()
    expect(page.locator("#unread-count")).to_have_text("2")
    publish(server, demo, title="Your order shipped", body="Order #7 is on its way.", url="/orders/7")
    expect(page.locator("#toasts .toast")).to_have_count(1)
    expect(page.locator("#unread-count")).to_have_text("3")
    page.evaluate("document.activeElement.blur()")  # no focus ring in the picture
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "notification-center-desktop.png"), animations="disabled")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / "notification-center-phone.png"), animations="disabled")
    for name in ("desktop", "phone"):
        assert (SCREENSHOTS / f"notification-center-{name}.png").stat().st_size > 10_000

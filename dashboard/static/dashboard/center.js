// The notification center: the demo tenant's end-user page, built on herald.js exactly as a
// tenant's own front end would be (docs/client.md). Its getToken() asks the dashboard's
// session-authenticated, CSRF-protected /token/ endpoint for a connection token.
//
// Every piece of notification text is set with textContent or as an attribute value, never
// parsed as HTML (tests/dashboard/test_center_js.py checks that no HTML-parsing API appears here),
// and a url becomes a link only if safeLink() allows it (http(s) or a /path on this site).

import { Herald, compareCursors, safeLink } from "../herald/herald.js";

// Toasts stay 6 s (long enough to read a title; paused while hovered or focused), at most 3 at
// once so a burst does not cover the page.
const TOAST_MS = 6000;
const MAX_TOASTS = 3;
// Relative times ("2 min ago") are recomputed every 30 s: the finest unit shown is a minute.
const RELATIVE_TIME_REFRESH_MS = 30000;
// `unread` frames often come in twos (the ack's and another tab's): one inbox reload for both.
const REFRESH_DEBOUNCE_MS = 150;
const PAGE_SIZE = 20;
// A token request that has not answered in 10 s will not: fail it, and herald.js backs off.
const TOKEN_TIMEOUT_MS = 10000;
const REFRESH_MAX = 100; // the REST inbox's largest page

const STATE_TEXT = { connecting: "Connecting…", open: "Live", reconnecting: "Reconnecting…", offline: "Offline" };

const configElement = typeof document === "undefined" ? null : document.getElementById("center-config");
if (configElement) {
  startCenter(JSON.parse(configElement.textContent));
  startSendForm(document.getElementById("send-form"));
}

function startCenter(config) {
  const bell = document.getElementById("bell");
  const bellLabel = document.getElementById("bell-label");
  const badge = document.getElementById("unread-count");
  const panel = document.getElementById("inbox-panel");
  const heading = document.getElementById("inbox-heading");
  const panelUnread = document.getElementById("panel-unread");
  const panelStatus = document.getElementById("panel-status");
  const list = document.getElementById("inbox");
  const emptyText = document.getElementById("inbox-empty");
  const loadOlder = document.getElementById("load-older");
  const olderStatus = document.getElementById("older-status");
  const itemTemplate = document.getElementById("item-template");
  const toastList = document.getElementById("toasts");
  const toastTemplate = document.getElementById("toast-template");
  const announcer = document.getElementById("toast-announcer");
  const connection = document.getElementById("connection");
  const connectionState = document.getElementById("connection-state");
  const notice = document.getElementById("notice");

  const items = new Map(); // notification id -> <li>
  for (const element of list.querySelectorAll("li.item")) items.set(Number(element.dataset.id), element);
  let nextCursor = config.nextCursor || null;
  let refreshTimer = null;
  let signedOut = false;
  const baseTitle = document.title.replace(/^\(\d+\) /, "");

  const herald = new Herald({
    url: config.websocketPath,
    apiUrl: new URL(config.apiPath, location.href).href,
    since: config.since || undefined,
    getToken,
    autoConnect: false,
  });

  // --- the connection ---------------------------------------------------------------------

  async function getToken() {
    let response;
    try {
      response = await fetch(config.tokenUrl, {
        method: "POST",
        headers: { "X-CSRFToken": config.csrfToken, Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
        signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS),
      });
    } catch (error) {
      throw new Error(`Could not reach Herald for a token (${error.message || error})`);
    }
    if (response.status === 401 || response.status === 403) {
      // Signed out, or no longer allowed: retrying cannot help until the person signs in again.
      const answer = await response.json().catch(() => null);
      stopSignedOut((answer && answer.error && answer.error.message) || "Your session has ended.");
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error(`The token endpoint answered HTTP ${response.status}`);
    return response.json(); // {token, expires_at, user_id}
  }

  function stopSignedOut(message) {
    signedOut = true;
    herald.close();
    notice.replaceChildren(`${message} `);
    const link = document.createElement("a");
    link.href = `/login/?next=${encodeURIComponent(location.pathname)}`;
    link.textContent = "Sign in again";
    notice.append(link, ".");
    notice.hidden = false;
  }

  herald.on("status", ({ state }) => {
    connection.dataset.state = state;
    connectionState.textContent = STATE_TEXT[state] || state;
  });

  herald.on("open", ({ reconnected }) => {
    if (!signedOut) hideNotice();
    // Read or archived elsewhere while this page was disconnected: the replay does not say.
    if (reconnected) scheduleRefresh();
  });

  herald.on("close", ({ willReconnect, code, reason }) => {
    if (!willReconnect && !signedOut && code !== 1000) {
      showNotice(`Herald closed the connection (${code}${reason ? `: ${reason}` : ""}). Reload the page to try again.`);
    }
  });

  herald.on("unread", ({ count }) => setUnread(count));

  herald.on("inboxchange", () => {
    // An inbox action here, in another tab or on another device changed something; the server
    // does not say which notifications, so reload the part of the inbox the list shows.
    scheduleRefresh();
  });

  herald.on("notification", ({ notification, replayed, upgrade }) => {
    if (notification.inbox) upsertItem(notification);
    // Live ones pop up; so do replayed ones that are new and unread (missed while reconnecting:
    // news to this page). At most MAX_TOASTS show, so a long replay does not flood the screen.
    const fresh = !replayed || (notification.inbox && !notification.read && !notification.archived);
    if (!upgrade && fresh) showToast(notification);
  });

  herald.on("reload", () => {
    // recovered: false: the server could not replay what this page missed; start over.
    reloadInbox();
  });

  // --- the bell and its panel -------------------------------------------------------------

  function setUnread(count) {
    const value = Math.max(0, Number(count) || 0);
    badge.textContent = String(value > 99 ? "99+" : value);
    badge.hidden = value === 0;
    bellLabel.textContent = `Notifications, ${value} unread`;
    panelUnread.textContent = String(value);
    document.title = value > 0 ? `(${value}) ${baseTitle}` : baseTitle;
  }

  function openPanel() {
    panel.hidden = false;
    bell.setAttribute("aria-expanded", "true");
    heading.focus();
  }

  function closePanel({ returnFocus = true } = {}) {
    if (panel.hidden) return;
    panel.hidden = true;
    bell.setAttribute("aria-expanded", "false");
    if (returnFocus) bell.focus();
  }

  bell.addEventListener("click", () => (panel.hidden ? openPanel() : closePanel()));
  document.getElementById("panel-close").addEventListener("click", () => closePanel());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden && (panel.contains(document.activeElement) || document.activeElement === bell)) {
      closePanel();
    }
  });
  // A click outside the panel (and outside the bell and the toasts) closes it, like any menu.
  document.addEventListener("pointerdown", (event) => {
    if (panel.hidden) return;
    const target = event.target;
    if (panel.contains(target) || bell.contains(target) || toastList.contains(target)) return;
    closePanel({ returnFocus: false });
  });

  // --- the list ---------------------------------------------------------------------------

  function upsertItem(notification) {
    const id = notification.id;
    if (notification.archived) {
      removeItem(id);
      return;
    }
    let element = items.get(id);
    if (!element) {
      element = itemTemplate.content.firstElementChild.cloneNode(true);
      fillItem(element, notification);
      // Newest first: find the first item with a lower cursor and go before it.
      const after = [...list.children].find((other) => compareCursors(other.dataset.cursor, notification.cursor) < 0);
      list.insertBefore(element, after || null);
      items.set(id, element);
    }
    setRead(element, notification.read);
    emptyText.hidden = items.size > 0;
  }

  function removeItem(id) {
    const element = items.get(id);
    if (!element) return;
    items.delete(id);
    element.remove();
    emptyText.hidden = items.size > 0;
  }

  function fillItem(element, notification) {
    const titleId = `item-${notification.id}-title`;
    element.dataset.id = String(notification.id);
    element.dataset.cursor = notification.cursor;
    const title = element.querySelector(".item-title");
    title.id = titleId;
    title.textContent = notification.title || notification.kind;
    const body = element.querySelector(".item-body");
    body.textContent = notification.body;
    body.hidden = !notification.body;
    const link = element.querySelector(".item-link");
    const href = safeLink(notification.url);
    if (href) {
      link.setAttribute("href", href);
      link.textContent = href;
      link.hidden = false;
    } else {
      link.removeAttribute("href");
      link.textContent = "";
      link.hidden = true;
    }
    element.querySelector(".item-kind").textContent = notification.kind;
    const time = element.querySelector(".item-time");
    time.setAttribute("datetime", notification.created_at);
    showTime(time);
    for (const button of element.querySelectorAll("button")) button.setAttribute("aria-describedby", titleId);
  }

  function setRead(element, read) {
    element.classList.toggle("unread", !read);
    element.querySelector(".item-state").textContent = read ? "" : "Unread.";
    element.querySelector(".toggle-read").textContent = read ? "Mark unread" : "Mark read";
  }

  function isRead(element) {
    return !element.classList.contains("unread");
  }

  // Inbox actions go over the socket when it is up (answered by its `ack`), else over REST.
  async function act(action, ids) {
    if (herald.state === "open") {
      try {
        return await herald[action](...(ids === undefined ? [] : [ids]));
      } catch (error) {
        if (!["not_connected", "disconnected", "timeout"].includes(error.code)) throw error;
      }
    }
    return herald.rest[action](...(ids === undefined ? [] : [ids]));
  }

  list.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const element = button.closest("li.item");
    const id = Number(element.dataset.id);
    const title = element.querySelector(".item-title").textContent;
    if (button.classList.contains("toggle-read")) {
      const read = isRead(element);
      try {
        const answer = await act(read ? "markUnread" : "markRead", [id]);
        if (answer.not_found.includes(id)) removeItem(id);
        else setRead(element, !read);
      } catch (error) {
        say(`Could not change “${title}”: ${error.message}`);
      }
    } else if (button.classList.contains("archive")) {
      try {
        await act("archive", [id]);
      } catch (error) {
        say(`Could not archive “${title}”: ${error.message}`);
        return;
      }
      const next = element.nextElementSibling || element.previousElementSibling;
      removeItem(id);
      (next ? next.querySelector(".toggle-read") : heading).focus();
      say(`Archived “${title}”.`, "Undo", async () => {
        try {
          await act("unarchive", [id]);
          say(`“${title}” is back in your inbox.`);
          scheduleRefresh();
        } catch (error) {
          say(`Could not undo: ${error.message}`);
        }
      });
    }
  });

  document.getElementById("mark-all-read").addEventListener("click", async () => {
    try {
      await act("markAllRead");
      for (const element of items.values()) setRead(element, true);
      say("All notifications marked read.");
    } catch (error) {
      say(`Could not mark all read: ${error.message}`);
    }
  });

  loadOlder.addEventListener("click", async () => {
    if (!nextCursor) return;
    loadOlder.disabled = true;
    olderStatus.textContent = "Loading…";
    try {
      const page = await herald.inbox({ cursor: nextCursor, limit: PAGE_SIZE });
      for (const notification of page.results) upsertItem(notification);
      nextCursor = page.next_cursor;
      olderStatus.textContent = nextCursor
        ? `Loaded ${page.results.length} older notifications.`
        : `Loaded ${page.results.length} older notifications. That is all of them.`;
    } catch (error) {
      olderStatus.textContent = `Could not load older notifications: ${error.message}`;
    } finally {
      loadOlder.disabled = false;
      if (!nextCursor) {
        if (document.activeElement === loadOlder) heading.focus();
        loadOlder.hidden = true;
      }
    }
  });

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, REFRESH_DEBOUNCE_MS);
  }

  // Reload the part of the inbox the list shows and bring the list in line with it: read state,
  // and items archived elsewhere (the default listing leaves archived ones out).
  async function refresh() {
    const shown = items.size;
    const limit = Math.min(REFRESH_MAX, Math.max(PAGE_SIZE, shown));
    let page;
    try {
      page = await herald.inbox({ limit });
    } catch {
      return; // the next `unread` frame or reconnect tries again
    }
    const fresh = new Set(page.results.map((notification) => notification.id));
    const oldest = page.results.length ? page.results[page.results.length - 1].cursor : null;
    for (const [id, element] of items) {
      const cursor = element.dataset.cursor;
      // Only what this page of the answer covers: not older items beyond it, and not items that
      // arrived live after the server read it (their cursor is past its stream_cursor).
      const covered =
        compareCursors(cursor, page.stream_cursor) <= 0 &&
        (page.next_cursor === null || (oldest !== null && compareCursors(cursor, oldest) >= 0));
      if (covered && !fresh.has(id)) removeItem(id);
    }
    for (const notification of page.results) upsertItem(notification);
    if (shown <= REFRESH_MAX) setNextCursor(page.next_cursor);
  }

  async function reloadInbox() {
    let page;
    try {
      page = await herald.inbox({ limit: PAGE_SIZE });
    } catch (error) {
      showNotice(`Could not reload your inbox: ${error.message}. Reload the page.`);
      return;
    }
    for (const id of [...items.keys()]) removeItem(id);
    for (const notification of page.results) upsertItem(notification);
    setNextCursor(page.next_cursor);
  }

  function setNextCursor(cursor) {
    nextCursor = cursor || null;
    loadOlder.hidden = !nextCursor;
  }

  // A message in the panel's status line, optionally with one action button (e.g. Undo).
  function say(text, actionLabel, action) {
    panelStatus.replaceChildren(text);
    if (actionLabel) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link-button";
      button.textContent = actionLabel;
      button.addEventListener("click", () => {
        button.remove();
        action();
      });
      panelStatus.append(" ", button);
    }
  }

  // --- toasts -----------------------------------------------------------------------------

  function showToast(notification) {
    const element = toastTemplate.content.firstElementChild.cloneNode(true);
    const title = notification.title || notification.kind;
    element.querySelector(".toast-title").textContent = title;
    const body = element.querySelector(".toast-body");
    body.textContent = notification.body;
    body.hidden = !notification.body;
    element.dataset.id = String(notification.id);
    let timer = null;
    const dismiss = () => {
      clearTimeout(timer);
      element.remove();
    };
    const start = () => {
      clearTimeout(timer);
      timer = setTimeout(dismiss, TOAST_MS);
    };
    element.addEventListener("mouseenter", () => clearTimeout(timer));
    element.addEventListener("mouseleave", () => element.contains(document.activeElement) || start());
    element.addEventListener("focusin", () => clearTimeout(timer));
    element.addEventListener("focusout", (event) => element.contains(event.relatedTarget) || start());
    element.querySelector(".toast-dismiss").addEventListener("click", () => {
      dismiss();
      bell.focus();
    });
    element.querySelector(".toast-open").addEventListener("click", () => {
      dismiss();
      openPanel();
      const item = items.get(notification.id);
      if (item) item.querySelector(".toggle-read").focus();
    });
    toastList.append(element);
    while (toastList.children.length > MAX_TOASTS) toastList.firstElementChild.remove();
    // The live region says it once, as text; the toast itself is for eyes and pointers.
    announcer.textContent = `New notification: ${title}${notification.body ? `. ${notification.body}` : ""}`;
    start();
  }

  // --- relative times ---------------------------------------------------------------------

  function showTime(time) {
    const iso = time.getAttribute("datetime");
    const moment = Date.parse(iso);
    if (Number.isNaN(moment)) return;
    time.textContent = relativeTime(moment, Date.now());
    time.title = new Date(moment).toLocaleString();
  }

  setInterval(() => {
    for (const time of document.querySelectorAll("time.item-time")) showTime(time);
  }, RELATIVE_TIME_REFRESH_MS);

  // --- small helpers ----------------------------------------------------------------------

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
  }

  function hideNotice() {
    notice.hidden = true;
    notice.textContent = "";
  }

  for (const time of list.querySelectorAll("time.item-time")) showTime(time);
  herald.connect();
  // For the browser tests and for poking at it from the console.
  window.heraldCenter = { herald };
}

export function relativeTime(moment, now) {
  const seconds = Math.round((now - moment) / 1000);
  if (seconds < 45) return "just now"; // also a clock slightly ahead of this one
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  if (days === 1) return "yesterday";
  if (days < 7) return `${days} days ago`;
  return new Date(moment).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

// The test-notification form posts with fetch() so the page (and its socket) stays; without
// JavaScript it is an ordinary form post.
function startSendForm(form) {
  if (!form) return;
  const status = document.getElementById("send-status");
  const errors = document.getElementById("send-errors");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    showErrors({});
    status.textContent = "Sending…";
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const answer = await response.json().catch(() => null);
      if (response.ok) {
        form.reset();
        status.textContent = "Sent. It arrives in a moment.";
      } else if (answer && answer.error) {
        status.textContent = "";
        showErrors(answer.error.fields || {}, answer.error.fields ? "" : answer.error.message);
      } else {
        status.textContent = "";
        showErrors({}, `Could not send (HTTP ${response.status}). Reload the page and try again.`);
      }
    } catch {
      status.textContent = "";
      showErrors({}, "Could not reach Herald. Check your connection and try again.");
    } finally {
      button.disabled = false;
    }
  });

  function showErrors(fields, message = "") {
    for (const name of ["title", "body"]) {
      document.getElementById(`${name}-error`).textContent = (fields[name] || []).join(" ");
    }
    errors.textContent = message;
    errors.hidden = !message;
  }
}

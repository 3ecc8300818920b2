// Herald's live inbox page: one WebSocket to /ws/v1/, authenticated by the Django session.
// Every piece of notification text is set with textContent or as an attribute value, never
// parsed as HTML (tests/dashboard/test_live_js.py checks that no HTML-parsing API appears here).

// Reconnect after 1 s, doubling up to 30 s: quick after a blip, gentle on a server that is down.
// Each wait is jittered (50-100 %) so clients dropped together do not return together.
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30000;
// Keep the page light on a long-open tab: older items are dropped from the list (not the inbox).
const MAX_ITEMS = 100;
// Close codes after which reconnecting with the same session cannot help (notifications/protocol.py).
const TERMINAL_CLOSE_CODES = new Map([
  [4000, "The server did not accept this page's connection."],
  [4001, "Your session is no longer valid. Reload the page to sign in again."],
  [4003, "Your tenant is deactivated or your access was revoked."],
]);

const root = document.getElementById("live");
if (root) {
  startLivePage(root);
  startSendForm(document.getElementById("send-form"));
}

function startLivePage(root) {
  const list = document.getElementById("inbox");
  const itemTemplate = document.getElementById("item-template");
  const emptyText = document.getElementById("inbox-empty");
  const unreadCount = document.getElementById("unread-count");
  const connection = document.getElementById("connection");
  const connectionState = document.getElementById("connection-state");
  const notice = document.getElementById("notice");
  const announcer = document.getElementById("announcer");

  const items = new Map(); // notification id -> <li>
  for (const element of list.querySelectorAll("li.item")) {
    items.set(Number(element.dataset.id), element);
  }
  reformatTimes(list);

  let socket = null;
  let authenticated = false; // this socket has had its `welcome`
  let gaveUp = null; // why the page stopped reconnecting (a terminal close code)
  let failures = 0; // consecutive connection attempts that did not reach `welcome`
  let reconnectTimer = null;
  let silenceTimer = null;
  let heartbeatMs = 25000;
  // Resume point: the page's stream cursor at render time, then the newest cursor seen.
  let since = root.dataset.since || null;
  // True between `welcome` and `resumed`: replayed frames are already counted in welcome.unread.
  let replaying = false;
  let welcomed = false;
  let requestNumber = 0;
  const pendingRequests = new Map(); // request id -> function(ack)

  // --- connection ---------------------------------------------------------------------------

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    setConnectionState(failures === 0 && !welcomed ? "connecting" : "reconnecting");
    replaying = false;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${root.dataset.websocketPath}`);
    socket = ws;
    expectTraffic(); // also bounds a handshake that never completes
    ws.addEventListener("open", () => {
      const auth = { type: "auth" };
      if (since !== null) auth.since = since;
      ws.send(JSON.stringify(auth));
      expectTraffic();
    });
    ws.addEventListener("message", (event) => {
      if (ws !== socket) return;
      expectTraffic();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      handleFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (ws === socket) connectionLost(event.code);
    });
  }

  function connectionLost(code) {
    socket = null;
    authenticated = false;
    clearTimeout(silenceTimer);
    pendingRequests.clear();
    const terminal = TERMINAL_CLOSE_CODES.get(code);
    if (terminal) {
      gaveUp = terminal;
      setConnectionState("offline", "Disconnected");
      showNotice(terminal);
      return;
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** failures) * (0.5 + Math.random() / 2);
    failures += 1;
    setConnectionState("reconnecting", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    reconnectTimer = setTimeout(connect, delay);
  }

  // The server pings every `heartbeat` seconds; two missed pings mean the connection is dead
  // even if the browser has not noticed (a sleeping laptop, a dropped Wi-Fi).
  function expectTraffic() {
    clearTimeout(silenceTimer);
    silenceTimer = setTimeout(() => {
      const ws = socket;
      if (!ws) return;
      socket = null; // ignore whatever this socket still does
      ws.close();
      connectionLost(1006);
    }, 2 * heartbeatMs + 5000);
  }

  window.addEventListener("online", () => {
    if (reconnectTimer !== null) connect();
  });

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  // A client frame whose `ack` (matched by request id) calls onAck.
  function request(frame, onAck) {
    if (!authenticated) {
      showNotice(gaveUp || "Not connected right now; try again in a moment.");
      return;
    }
    requestNumber += 1;
    const id = `r${requestNumber}`;
    pendingRequests.set(id, onAck);
    send({ ...frame, id });
  }

  // --- frames from the server -----------------------------------------------------------------

  function handleFrame(frame) {
    switch (frame.type) {
      case "welcome":
        failures = 0;
        authenticated = true;
        heartbeatMs = (Number(frame.heartbeat) || 25) * 1000;
        welcomed = true;
        replaying = true;
        advanceCursor(frame.cursor);
        setUnread(frame.unread);
        setConnectionState("open", "Live");
        hideNotice();
        expectTraffic();
        break;
      case "notification":
        advanceCursor(frame.cursor);
        if (frame.inbox && !frame.archived) addItem(frame);
        break;
      case "resumed":
        replaying = false;
        advanceCursor(frame.cursor);
        if (!frame.recovered) {
          showNotice("Some notifications could not be replayed after the connection dropped. Reload the page to see them all.");
        }
        break;
      case "unread":
        setUnread(frame.count);
        break;
      case "ping":
        send({ type: "pong" });
        break;
      case "ack": {
        const onAck = pendingRequests.get(frame.id);
        pendingRequests.delete(frame.id);
        if (onAck) onAck(frame);
        break;
      }
      case "error":
        pendingRequests.delete(frame.id);
        showNotice(String(frame.message || "The server refused that."));
        break;
      default:
        break;
    }
  }

  function advanceCursor(cursor) {
    if (isCursor(cursor) && (since === null || BigInt(cursor) > BigInt(since))) since = cursor;
  }

  // --- the list -------------------------------------------------------------------------------

  function addItem(frame) {
    const id = Number(frame.id);
    if (!Number.isSafeInteger(id) || !isCursor(frame.cursor)) return;
    const existing = items.get(id);
    if (existing) {
      setRead(existing, Boolean(frame.read));
      return;
    }
    const element = itemTemplate.content.firstElementChild.cloneNode(true);
    fillItem(element, frame);
    // Newest first: live frames go on top; a replayed or late frame finds its place by cursor.
    const cursor = BigInt(frame.cursor);
    const after = [...list.children].find((other) => isCursor(other.dataset.cursor) && BigInt(other.dataset.cursor) < cursor);
    list.insertBefore(element, after || null);
    items.set(id, element);
    emptyText.hidden = true;
    while (list.children.length > MAX_ITEMS) {
      const oldest = list.lastElementChild;
      items.delete(Number(oldest.dataset.id));
      oldest.remove();
    }
    // Replayed frames (between welcome and resumed) are already in the welcome's count.
    const isNew = !replaying;
    if (isNew && !frame.read) setUnread(Number(unreadCount.textContent) + 1);
    if (isNew) announce(`New notification: ${frame.title || frame.kind}`);
  }

  function fillItem(element, frame) {
    const titleId = `item-${frame.id}-title`;
    element.dataset.id = String(frame.id);
    element.dataset.cursor = frame.cursor;
    const title = element.querySelector(".item-title");
    title.id = titleId;
    title.textContent = String(frame.title || frame.kind || "");
    const body = element.querySelector(".item-body");
    body.textContent = String(frame.body || "");
    body.hidden = !frame.body;
    const link = element.querySelector(".item-link");
    const url = String(frame.url || "");
    if (isSafeLink(url)) {
      link.setAttribute("href", url);
      link.textContent = url;
      link.hidden = false;
    } else {
      link.removeAttribute("href");
      link.textContent = "";
      link.hidden = true;
    }
    element.querySelector(".item-kind").textContent = String(frame.kind || "");
    const time = element.querySelector(".item-time");
    time.setAttribute("datetime", String(frame.created_at || ""));
    time.textContent = formatTime(frame.created_at);
    element.querySelector(".mark-read").setAttribute("aria-describedby", titleId);
    setRead(element, Boolean(frame.read));
  }

  function setRead(element, read) {
    element.classList.toggle("unread", !read);
    element.querySelector(".mark-read").hidden = read;
  }

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button.mark-read");
    if (!button) return;
    const element = button.closest("li.item");
    const id = Number(element.dataset.id);
    // The server answers with an `unread` frame for the badge, and this ack for the item.
    request({ type: "mark_read", ids: [id] }, (ack) => {
      if (!(ack.not_found || []).includes(id)) setRead(element, true);
    });
  });

  document.getElementById("mark-all-read").addEventListener("click", () => {
    request({ type: "mark_all_read" }, () => {
      for (const element of items.values()) setRead(element, true);
    });
  });

  // --- small helpers --------------------------------------------------------------------------

  function setUnread(count) {
    const value = Math.max(0, Number(count) || 0);
    unreadCount.textContent = String(value);
    document.title = document.title.replace(/^\(\d+\) /, "");
    if (value > 0) document.title = `(${value}) ${document.title}`;
  }

  function setConnectionState(state, text) {
    connection.dataset.state = state;
    connectionState.textContent =
      text || { connecting: "Connecting…", reconnecting: "Reconnecting…", open: "Live", offline: "Disconnected" }[state];
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
  }

  function hideNotice() {
    notice.hidden = true;
    notice.textContent = "";
  }

  function announce(text) {
    announcer.textContent = text;
  }

  connect();
}

// Same rule as dashboard/selectors.py notification_link: an http(s) URL or a path on this site,
// with no whitespace, control character or backslash anywhere.
function isSafeLink(url) {
  return /^(?:https?:\/\/|\/(?![/\\]))[^\x00-\x20\x7f\\]*$/i.test(url);
}

function isCursor(value) {
  return typeof value === "string" && /^\d{1,18}$/.test(value);
}

function formatTime(iso) {
  const date = new Date(String(iso || ""));
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

// Server-rendered times are in UTC; show them in the reader's own time zone like live ones.
function reformatTimes(container) {
  for (const time of container.querySelectorAll("time.item-time")) {
    const text = formatTime(time.getAttribute("datetime"));
    if (text) time.textContent = text;
  }
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
        status.textContent = "Sent. It appears in your inbox in a moment.";
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

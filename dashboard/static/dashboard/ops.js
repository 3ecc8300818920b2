// The operations page: a tenant's live figures from every Herald node over /ws/v1/ops/ (each node
// sends one `stats` frame per second for each tenant it has connections or traffic of; see
// docs/operations.md), added up here, drawn as rolling charts with uPlot, and the tenant's recent
// events from the dashboard's JSON view, reloaded every few seconds.
//
// Everything the server sends is set with textContent or as an attribute value, never parsed as
// HTML (tests/dashboard/test_center_js.py checks that no HTML-parsing API appears here).

import { backoffDelay } from "../herald/herald.js";

const STATE_TEXT = { connecting: "Connecting…", open: "Live", reconnecting: "Reconnecting…", offline: "Offline" };

// A node reports every second. One whose last frame is more than 3 s old (two missed reports and
// some slack) has nothing of this tenant any more: a node sends nothing for a tenant without
// connections or traffic there. It then drops out of the totals and the nodes table.
const NODE_FRESH_MS = 3000;
// The charts keep 5 minutes, one point per second; rate-limit and error counts cover the same
// span. A page opened a moment ago shows at least its last minute, widening up to the 5 minutes.
const HISTORY_SECONDS = 300;
const MIN_CHART_SECONDS = 60;
const COUNT_WINDOW_MS = HISTORY_SECONDS * 1000;
// Topic activity is summed over the last minute (each node sends its 10 busiest topics a second).
const TOPIC_WINDOW_MS = 60_000;
const TOPICS_SHOWN = 10;
// /ws/v1/ops/ has no ping of its own and stats frames stop when a tenant is idle, so silence
// proves nothing: every 20 s the page sends `watch` again, and a connection that has not answered
// `watching` (or, at first, sent `tenants`) within 10 s is presumed dead and replaced.
const PROBE_EVERY_MS = 20_000;
const ANSWER_TIMEOUT_MS = 10_000;
// A JSON request that has not answered in 10 s will not; the next refresh tries again.
const FETCH_TIMEOUT_MS = 10_000;
const CHART_HEIGHT = 170;

const configElement = typeof document === "undefined" ? null : document.getElementById("ops-config");
if (configElement) startOps(JSON.parse(configElement.textContent));

function startOps(config) {
  const connection = document.getElementById("connection");
  const connectionState = document.getElementById("connection-state");
  const notice = document.getElementById("notice");
  const select = document.getElementById("tenant-select"); // platform admins only
  const nodesSummary = document.getElementById("nodes-summary");
  const nodesBody = document.getElementById("nodes");
  const nodesEmpty = document.getElementById("nodes-empty");
  const topicsBody = document.getElementById("topics");
  const topicsEmpty = document.getElementById("topics-empty");
  const eventsBody = document.getElementById("events");
  const eventsEmpty = document.getElementById("events-empty");
  const eventsStatus = document.getElementById("events-status");

  let wanted = config.tenant; // the tenant this page shows
  let watched = null; // the tenant the server confirmed with `watching`
  let socket = null;
  let attempt = 0;
  let everOpen = false;
  let stopped = false;
  let reconnectTimer = null;
  let probeTimer = null;
  let answerTimer = null;
  let eventsTimer = null;
  let eventsRequest = 0;

  // node -> {frame, receivedAt}: each node's latest `stats` frame.
  const nodes = new Map();
  // One entry per frame received (a node's second): the counts and topics summed over a window.
  let frames = [];
  // The charts' data, one point per second: [times (s), events in/s, deliveries/s, p50 ms, p99 ms].
  let points = [[], [], [], [], []];
  const charts = makeCharts();

  // --- the connection -------------------------------------------------------------------------

  function setState(state) {
    connection.dataset.state = state;
    connectionState.textContent = STATE_TEXT[state] || state;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (stopped) return;
    setState(everOpen ? "reconnecting" : "connecting");
    const url = new URL(config.websocketPath, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(url.href);
    } catch {
      scheduleReconnect();
      return;
    }
    socket = ws;
    expectAnswer(ws);
    ws.addEventListener("message", (event) => {
      if (socket === ws) receive(ws, event.data);
    });
    ws.addEventListener("close", () => {
      if (socket !== ws) return;
      socket = null;
      watched = null;
      clearTimeout(probeTimer);
      clearTimeout(answerTimer);
      if (!stopped) scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    setState(everOpen ? "reconnecting" : "connecting");
    reconnectTimer = setTimeout(connect, backoffDelay(attempt++)); // as herald.js reconnects
  }

  function expectAnswer(ws) {
    clearTimeout(answerTimer);
    answerTimer = setTimeout(() => {
      if (socket === ws) ws.close(); // dead or stuck: the close handler reconnects
    }, ANSWER_TIMEOUT_MS);
  }

  function watch(ws, slug) {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: "watch", tenant: slug }));
    expectAnswer(ws);
  }

  function receive(ws, text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "tenants" && Array.isArray(frame.tenants)) {
      attempt = 0;
      const slugs = frame.tenants.map(String);
      syncTenants(slugs);
      if (slugs.includes(wanted)) watch(ws, wanted);
      else if (slugs.length) switchTo(slugs[0]); // watches it
    } else if (frame.type === "watching") {
      clearTimeout(answerTimer);
      if (frame.tenant !== wanted) return; // an answer to a watch the person has switched away from
      if (watched !== wanted) hideNotice();
      watched = wanted;
      everOpen = true;
      setState("open");
      clearTimeout(probeTimer);
      probeTimer = setTimeout(() => watch(ws, wanted), PROBE_EVERY_MS);
    } else if (frame.type === "stats") {
      // Frames of the tenant watched before a switch can still be on their way: drop them.
      if (watched !== null && frame.tenant === watched) record(frame);
    } else if (frame.type === "error") {
      showNotice(`Herald refused: ${frame.message || frame.code}`);
    }
  }

  function syncTenants(slugs) {
    // The socket's list is what this person may watch now (a tenant may have been added since
    // the page was rendered); the page keeps the names it rendered for the others.
    if (select) {
      for (const option of [...select.options]) if (!slugs.includes(option.value)) option.remove();
      const present = new Set([...select.options].map((option) => option.value));
      for (const slug of slugs) {
        if (!present.has(slug)) select.append(new Option(slug, slug));
      }
    }
  }

  function switchTo(slug) {
    wanted = slug;
    watched = null;
    if (select) select.value = slug;
    nodes.clear();
    frames = [];
    points = [[], [], [], [], []];
    document.title = `Operations · ${slug} · Herald`;
    if (config.canSwitch) {
      // The address says which tenant is shown, so a reload or a bookmark keeps it.
      const url = new URL(location.href);
      url.searchParams.set("tenant", slug);
      window.history.replaceState(null, "", url.pathname + url.search);
    }
    render();
    eventsBody.replaceChildren();
    eventsEmpty.hidden = true;
    eventsStatus.textContent = "(loading…)";
    if (socket && socket.readyState === WebSocket.OPEN) watch(socket, slug);
    pollEvents();
  }

  function stopSignedOut(message) {
    stopped = true;
    clearTimeout(reconnectTimer);
    clearTimeout(eventsTimer);
    if (socket) socket.close(1000);
    setState("offline");
    notice.replaceChildren(`${message} `);
    const link = document.createElement("a");
    link.href = config.loginUrl;
    link.textContent = "Sign in again";
    notice.append(link, ".");
    notice.hidden = false;
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
  }

  function hideNotice() {
    if (!stopped) notice.hidden = true;
  }

  // --- the figures ----------------------------------------------------------------------------

  function record(frame) {
    const receivedAt = Date.now();
    nodes.set(String(frame.node), { frame, receivedAt });
    frames.push({
      receivedAt,
      rateLimited: number(frame.rate_limited),
      errors: number(frame.errors),
      topics: frame.topics && typeof frame.topics === "object" ? frame.topics : {},
    });
  }

  function number(value) {
    return typeof value === "number" && Number.isFinite(value) ? value : 0;
  }

  function latency(frame, key) {
    const value = frame.latency_ms && frame.latency_ms[key];
    return typeof value === "number" && Number.isFinite(value) ? value : null;
  }

  function totals(fresh) {
    const sum = (key) => fresh.reduce((total, { frame }) => total + number(frame[key]), 0);
    // A percentile of the whole cannot be made from the nodes' percentiles: show the slowest
    // node's (the highest), which is never better than the truth.
    const highest = (key) => {
      const values = fresh.map(({ frame }) => latency(frame, key)).filter((value) => value !== null);
      return values.length ? Math.max(...values) : null;
    };
    return {
      connections: sum("connections"),
      eventsIn: sum("events_in_per_s"),
      deliveries: sum("deliveries_per_s"),
      framesOut: sum("frames_out_per_s"),
      framesIn: sum("frames_in_per_s"),
      p50: highest("p50"),
      p99: highest("p99"),
    };
  }

  // Once a second: drop what is too old, then show the sum of every node's latest second.
  function tick() {
    const now = Date.now();
    for (const [node, entry] of nodes) if (now - entry.receivedAt > NODE_FRESH_MS) nodes.delete(node);
    frames = frames.filter((entry) => now - entry.receivedAt <= COUNT_WINDOW_MS);
    const live = watched !== null;
    const sums = totals([...nodes.values()]);
    const times = points[0];
    times.push(now / 1000);
    // While disconnected the charts get a gap, not a misleading zero.
    points[1].push(live ? sums.eventsIn : null);
    points[2].push(live ? sums.deliveries : null);
    points[3].push(live ? sums.p50 : null);
    points[4].push(live ? sums.p99 : null);
    while (times.length && times[0] < now / 1000 - HISTORY_SECONDS) for (const column of points) column.shift();
    render(sums);
  }

  function render(sums = totals([...nodes.values()])) {
    setFigure("fig-connections", sums.connections, formatCount);
    setFigure("fig-events-in", sums.eventsIn, formatRate);
    setFigure("fig-deliveries", sums.deliveries, formatRate);
    setFigure("fig-frames-out", sums.framesOut, formatRate);
    setFigure("fig-frames-in", sums.framesIn, formatRate);
    setFigure("fig-p50", sums.p50, formatLatency);
    setFigure("fig-p99", sums.p99, formatLatency);
    setFigure(
      "fig-rate-limited",
      frames.reduce((total, entry) => total + entry.rateLimited, 0),
      formatCount,
    );
    setFigure(
      "fig-errors",
      frames.reduce((total, entry) => total + entry.errors, 0),
      formatCount,
    );
    const count = nodes.size;
    nodesSummary.textContent =
      count === 0 ? "(no node has reported yet)" : `(${count} node${count === 1 ? "" : "s"}, latest second)`;
    renderNodes();
    renderTopics();
    for (const chart of charts) chart.draw(points);
  }

  function setFigure(id, value, format) {
    const element = document.getElementById(id);
    element.dataset.value = value === null ? "" : String(value);
    element.textContent = format(value);
  }

  function renderNodes() {
    const rows = [...nodes.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([node, { frame }]) =>
        row([
          [node, "node"],
          [formatCount(number(frame.connections)), "num"],
          [formatRate(number(frame.events_in_per_s)), "num"],
          [formatRate(number(frame.deliveries_per_s)), "num"],
          [formatRate(number(frame.frames_out_per_s)), "num"],
          [formatLatency(latency(frame, "p50")), "num"],
          [formatLatency(latency(frame, "p99")), "num"],
        ]),
      );
    nodesBody.replaceChildren(...rows);
    nodesEmpty.hidden = rows.length > 0;
  }

  function renderTopics() {
    const now = Date.now();
    const counts = new Map();
    for (const entry of frames) {
      if (now - entry.receivedAt > TOPIC_WINDOW_MS) continue;
      for (const [topic, value] of Object.entries(entry.topics)) {
        counts.set(topic, (counts.get(topic) || 0) + number(value));
      }
    }
    const rows = [...counts.entries()]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, TOPICS_SHOWN)
      .map(([topic, value]) => row([[topic, "topic"], [formatCount(value), "num"]]));
    topicsBody.replaceChildren(...rows);
    topicsEmpty.hidden = rows.length > 0;
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const [content, className] of cells) {
      const td = document.createElement("td");
      if (className) td.className = className;
      if (content instanceof Node) td.append(content);
      else td.textContent = content;
      tr.append(td);
    }
    return tr;
  }

  // --- charts (uPlot, when installed) -----------------------------------------------------------

  function makeCharts() {
    const uPlot = window.uPlot;
    if (typeof uPlot !== "function") {
      document.getElementById("charts-missing").hidden = false;
      return [];
    }
    const line = (label, stroke, format, fill) => ({
      label,
      stroke,
      fill,
      width: 2,
      points: { show: false },
      spanGaps: false,
      value: (chart, value) => (value === null || value === undefined ? "—" : format(value)),
    });
    return [
      chart("chart-events", [1], [line("events in/s", "#2454d6", formatRate, "rgba(36, 84, 214, 0.08)")], uPlot),
      chart("chart-deliveries", [2], [line("deliveries/s", "#1a7f45", formatRate, "rgba(26, 127, 69, 0.08)")], uPlot),
      chart(
        "chart-latency",
        [3, 4],
        [line("p50 ms", "#5b6478", formatLatency), line("p99 ms", "#b26a00", formatLatency)],
        uPlot,
      ),
    ];
  }

  function chart(id, columns, series, uPlot) {
    const element = document.getElementById(id);
    const title = element.getAttribute("aria-label");
    const width = () => Math.max(200, element.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: CHART_HEIGHT,
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: {
            time: true,
            range: (u, min, max) => [max - Math.min(HISTORY_SECONDS, Math.max(MIN_CHART_SECONDS, max - min)), max],
          },
          y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
        },
        axes: [
          {
            stroke: "#5b6478",
            grid: { stroke: "#eef0f4" },
            ticks: { stroke: "#d9dde6" },
            space: 70,
            values: (u, splits) => splits.map((split) => formatClock(new Date(split * 1000))),
          },
          { stroke: "#5b6478", grid: { stroke: "#eef0f4" }, ticks: { stroke: "#d9dde6" }, size: 52 },
        ],
        series: [{ label: "time", value: (u, seconds) => (seconds ? formatClock(new Date(seconds * 1000)) : "—") }, ...series],
      },
      [[], ...columns.map(() => [])],
      element,
    );
    new ResizeObserver(() => plot.setSize({ width: width(), height: CHART_HEIGHT })).observe(element);
    return {
      draw(data) {
        plot.setData([data[0], ...columns.map((column) => data[column])]);
        // Not hovered: the legend shows the latest second (hovered, the second under the cursor).
        if (data[0].length && !(plot.cursor.left >= 0)) plot.setLegend({ idx: data[0].length - 1 });
        const latest = columns.map((column) => data[column][data[column].length - 1]);
        const label = series.map((line, index) => `${line.label} now ${line.value(plot, latest[index])}`);
        element.setAttribute("aria-label", `${title}: ${label.join(", ")}`);
      },
    };
  }

  // --- recent events ----------------------------------------------------------------------------

  async function pollEvents() {
    clearTimeout(eventsTimer);
    if (stopped) return;
    const request = ++eventsRequest;
    const slug = wanted;
    if (!document.hidden) {
      try {
        const url = new URL(config.eventsUrl, location.href);
        url.searchParams.set("tenant", slug);
        const response = await fetch(url, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
          cache: "no-store",
          signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        });
        const answer = await response.json().catch(() => null);
        if (response.status === 401 || response.status === 403) {
          stopSignedOut((answer && answer.error && answer.error.message) || "Your session has ended.");
          return;
        }
        if (!response.ok) throw new Error((answer && answer.error && answer.error.message) || `HTTP ${response.status}`);
        // A newer request (a tenant switch) has started meanwhile: its answer is the one to show.
        if (request === eventsRequest && answer && answer.tenant === wanted) renderEvents(answer.events || []);
      } catch (error) {
        if (request === eventsRequest) eventsStatus.textContent = `(could not refresh: ${error.message || error})`;
      }
    }
    if (request === eventsRequest && !stopped) eventsTimer = setTimeout(pollEvents, config.eventsRefreshMs);
  }

  function renderEvents(events) {
    eventsStatus.textContent = `(refreshed ${formatClock(new Date())})`;
    const rows = events.map((event) => {
      const status = document.createElement("span");
      status.className = `badge status-${String(event.status)}`;
      status.textContent = String(event.status);
      let delivered = "—";
      if (event.delivered_at) {
        const took = Date.parse(event.delivered_at) - Date.parse(event.created_at);
        // Browsers parse times to the millisecond: whole milliseconds are all this can show.
        delivered = timeElement(event.delivered_at, Number.isFinite(took) ? ` (+${formatCount(took)} ms)` : "");
      }
      const tr = row([
        [String(event.id), "num"],
        [String(event.kind), "kind"],
        [targets(event.targets || {}), "targets"],
        [status, ""],
        [formatCount(number(event.recipient_count)), "num"],
        [timeElement(event.created_at, ""), "time"],
        [delivered, "time"],
      ]);
      tr.dataset.id = String(event.id);
      return tr;
    });
    eventsBody.replaceChildren(...rows);
    eventsEmpty.hidden = rows.length > 0;
  }

  function targets(target) {
    const parts = [];
    if (target.broadcast) parts.push("everyone");
    const users = number(target.users);
    if (users) {
      const sample = Array.isArray(target.users_sample) ? target.users_sample.map(String) : [];
      const more = users - sample.length;
      parts.push(`${users === 1 ? "user" : `${users} users`}: ${sample.join(", ")}${more > 0 ? ` +${more}` : ""}`);
    }
    if (Array.isArray(target.topics) && target.topics.length) {
      parts.push(`topic${target.topics.length === 1 ? "" : "s"}: ${target.topics.map(String).join(", ")}`);
    }
    return parts.join(" · ") || "nobody";
  }

  function timeElement(iso, suffix) {
    const element = document.createElement("time");
    element.setAttribute("datetime", String(iso));
    element.title = String(iso);
    const moment = new Date(String(iso));
    element.textContent = Number.isNaN(moment.getTime()) ? String(iso) : formatClock(moment);
    const wrapper = document.createElement("span");
    wrapper.append(element, suffix);
    return wrapper;
  }

  // --- formats --------------------------------------------------------------------------------

  function formatRate(value) {
    if (!value) return "0";
    return value < 10 ? value.toFixed(1) : Math.round(value).toLocaleString("en-US");
  }

  function formatCount(value) {
    return Math.round(value).toLocaleString("en-US");
  }

  function formatLatency(value) {
    if (value === null || value === undefined) return "—";
    if (value < 10) return value.toFixed(2);
    return value < 100 ? value.toFixed(1) : Math.round(value).toLocaleString("en-US");
  }

  function formatClock(moment) {
    return moment.toLocaleTimeString("en-GB", { hour12: false });
  }

  // --- start ----------------------------------------------------------------------------------

  if (select) select.addEventListener("change", () => switchTo(select.value));
  window.addEventListener("online", () => {
    if (!socket && !stopped) connect();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollEvents();
  });
  setInterval(tick, 1000);
  render();
  connect();
  pollEvents();
  // For the browser tests and a curious operator's console.
  window.heraldOps = { nodes, totals: () => totals([...nodes.values()]) };
}

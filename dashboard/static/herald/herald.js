// herald.js: the browser client of Herald's WebSocket protocol (docs/protocol.md) and of the
// inbox REST endpoints (docs/api.md). One ES module, no dependencies, no build step. Reference
// and examples: docs/client.md.
//
//   import { Herald } from "/static/herald/herald.js";
//   const herald = new Herald({ url: "wss://herald.example.com/ws/v1/", getToken });
//   herald.on("notification", ({ notification }) => show(notification));
//   herald.on("unread", ({ count }) => setBadge(count));

export const PROTOCOL_VERSION = 1;

// The connection's state, as `herald.state` and in `status` events.
export const State = Object.freeze({
  CONNECTING: "connecting", // the first connection is being made
  OPEN: "open", // authenticated, replay done: notifications arrive live
  RECONNECTING: "reconnecting", // the connection was lost; waiting or retrying (with backoff)
  OFFLINE: "offline", // stopped: close() was called, or the server said not to retry
});

// Close codes after which retrying cannot help (docs/protocol.md, "Close codes"): 4000 the client
// sent a bad `auth`, 4003 the tenant is deactivated or the credentials were revoked. 4001 is
// terminal only the second time in a row (the first time, a fresh token may fix it).
const STOP_CODES = new Set([4000, 4003]);
const UNAUTHORIZED = 4001;
const TOKEN_EXPIRED = 4004;
// This server is going away (deploy): another node takes the client at once.
const SERVICE_RESTART = 4012;
// Too many connections (4009) or too many frames / failed logins (4029): wait at least a minute.
const SLOW_DOWN_CODES = new Set([4009, 4029]);
const SLOW_DOWN_MS = 60_000;

const DEFAULTS = {
  // Backoff before reconnecting: a random delay between 0 and min(maxMs, baseMs * 2^attempt)
  // ("full jitter": clients dropped together by a restart spread out instead of returning
  // together). 0.5 s first, so a blip is short; 30 s at most, the protocol's example cap.
  backoffBaseMs: 500,
  backoffMaxMs: 30000,
  // The server pings every `welcome.heartbeat` seconds (25 by default). Nothing at all for
  // two intervals (plus a little slack for a busy machine) means the connection is dead even if
  // the browser has not noticed (a sleeping laptop, a Wi-Fi that went away).
  deadAfterHeartbeats: 2,
  heartbeatGraceMs: 1000,
  // From opening the socket to `welcome` (or the next replayed frame).
  connectTimeoutMs: 15000,
  // An inbox action or subscription not answered within this time is rejected ("timeout").
  requestTimeoutMs: 10000,
  // Ids remembered to drop duplicates (the server remembers 512 per connection; this survives
  // reconnects, so it is larger).
  maxSeenIds: 5000,
  // A token whose expiry is known is not reused for REST within this margin of it.
  tokenExpiryMarginMs: 30000,
};

/** An error from Herald (an `error` frame, a REST error body) or from the client itself. */
export class HeraldError extends Error {
  constructor(code, message, { fields = null, retryAfter = null, status = null, requestId = null } = {}) {
    super(message || code);
    this.name = "HeraldError";
    this.code = code; // e.g. "forbidden", "invalid", "timeout", "disconnected", "not_connected"
    this.fields = fields;
    this.retryAfter = retryAfter;
    this.status = status; // the HTTP status, for REST errors
    this.requestId = requestId;
  }
}

/** The reconnect delay after `attempt` failed tries: random between 0 and
 *  min(maxMs, baseMs * 2^attempt) ("full jitter"). The operations page uses it too. */
export function backoffDelay(attempt, { baseMs = DEFAULTS.backoffBaseMs, maxMs = DEFAULTS.backoffMaxMs, random = Math.random } = {}) {
  return Math.floor(random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30)));
}

/** Compare two cursors (strings of decimal digits that may exceed 2^53): <0, 0 or >0. */
export function compareCursors(a, b) {
  const x = String(a).replace(/^0+(?=\d)/, "");
  const y = String(b).replace(/^0+(?=\d)/, "");
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

export function isCursor(value) {
  return typeof value === "string" && /^[0-9]{1,18}$/.test(value);
}

// The same rule as the server's (dashboard/selectors.py): an http(s) URL or a path on this site,
// with no whitespace, control character or backslash anywhere ("/\t/evil" would become "//evil").
const SAFE_LINK = /^(?:https?:\/\/|\/(?![/\\]))[^\x00-\x20\x7f\\]*$/i;

/** The url if it is safe to use as a link's href (http(s) or a local /path), else "". */
export function safeLink(url) {
  return typeof url === "string" && SAFE_LINK.test(url) ? url : "";
}

/**
 * A notification as herald.js hands it out, from a WebSocket frame or a REST inbox item alike:
 * {id, cursor, kind, topics, data, title, body, url, created_at, inbox, read, archived}.
 */
export function normalizeNotification(raw) {
  const read = typeof raw.read === "boolean" ? raw.read : raw.read_at != null;
  const archived = typeof raw.archived === "boolean" ? raw.archived : raw.archived_at != null;
  return {
    id: Number(raw.id),
    cursor: String(raw.cursor ?? ""),
    kind: String(raw.kind ?? ""),
    topics: Array.isArray(raw.topics) ? raw.topics.map(String) : [],
    data: raw.data && typeof raw.data === "object" ? raw.data : {},
    title: String(raw.title ?? ""),
    body: String(raw.body ?? ""),
    url: String(raw.url ?? ""),
    created_at: String(raw.created_at ?? ""),
    inbox: typeof raw.inbox === "boolean" ? raw.inbox : true, // REST items are inbox rows
    read,
    archived,
  };
}

export class Herald extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.url  the WebSocket URL, e.g. "wss://herald.example.com/ws/v1/"
   *   (a path such as "/ws/v1/" is resolved against the page's own host)
   * @param {string} [options.token]  a connection token (it cannot be renewed: prefer getToken)
   * @param {() => Promise<string|{token: string, expires_at?: string}>} [options.getToken]
   *   fetches a fresh connection token from YOUR backend; called before every connection
   * @param {string} [options.apiUrl]  REST base, default derived from url ("https://host/api/v1")
   * @param {string} [options.since]  resume after this cursor (e.g. the inbox's stream_cursor)
   * @param {string[]} [options.topics]  topics to listen to live from the start
   * @param {boolean} [options.autoConnect=true]  connect at once
   */
  constructor(options = {}) {
    super();
    if (!options.url) throw new TypeError("Herald: `url` (the /ws/v1/ WebSocket URL) is required");
    if (!options.token && typeof options.getToken !== "function") {
      throw new TypeError("Herald: pass `getToken` (recommended) or `token`");
    }
    this.options = { ...DEFAULTS, ...options };
    this.url = resolveWebSocketUrl(options.url);
    this.apiUrl = (options.apiUrl || defaultApiUrl(this.url)).replace(/\/+$/, "");
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._fetch = options.fetch || ((...args) => globalThis.fetch(...args));
    this._random = options.random || Math.random;

    this._state = null;
    this._cursor = isCursor(options.since) ? options.since : null;
    this._topics = new Set(options.topics || []); // live topics, re-sent in every `auth`
    this._seen = new Map(); // notification id -> inbox flag (insertion order = age)
    this._unread = null;
    this._countEpoch = 0; // bumped by every frame that changes the count (see _setUnreadFromRest)
    this._pending = new Map(); // request id -> {resolve, reject, timer, kind}
    this._requestNumber = 0;
    this._connectionNumber = 0;

    this._token = options.token ? { token: options.token, expiresAt: null } : null;
    this._socket = null;
    this._authenticated = false; // this socket has had its `welcome`
    this._replaying = false; // between `welcome` and `resumed`
    this._everOpen = false;
    this._stopped = true;
    this._attempt = 0; // reconnects since the last `welcome` (the backoff exponent)
    this._unauthorizedInARow = 0;
    this._expiredInARow = 0;
    this._heartbeatMs = null;
    this._watchdog = null;
    this._reconnectTimer = null;
    this._welcome = null;

    this._onOnline = () => {
      // The network is back: do not sit out the rest of a long backoff.
      if (this._reconnectTimer !== null) this._openSocket();
    };
    if (options.autoConnect !== false) this.connect();
  }

  // --- public state ---------------------------------------------------------------------------

  /** "connecting", "open", "reconnecting" or "offline". */
  get state() {
    return this._state || State.OFFLINE;
  }

  /** The highest cursor processed (send it as `since` to resume), or null. */
  get cursor() {
    return this._cursor;
  }

  /** The unread count as last told by the server and kept current since; null before `welcome`. */
  get unread() {
    return this._unread;
  }

  /** The topics this client listens to live (re-subscribed after every reconnect). */
  get topics() {
    return [...this._topics].sort();
  }

  /** The last `welcome` frame (user, tenant, connection_id, heartbeat...), or null. */
  get welcome() {
    return this._welcome;
  }

  /** Listen with a function that receives the event's detail; returns a function that stops it. */
  on(type, listener) {
    const wrapped = (event) => listener(event.detail);
    (this._wrapped ||= new Map()).set(listener, { type, wrapped });
    this.addEventListener(type, wrapped);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    const entry = this._wrapped && this._wrapped.get(listener);
    if (entry && entry.type === type) {
      this.removeEventListener(type, entry.wrapped);
      this._wrapped.delete(listener);
    }
  }

  // --- connecting and closing ----------------------------------------------------------------

  /**
   * Start (or restart, after `close()` or a terminal close) connecting. `since`: resume after
   * this cursor, if it is newer than the one the client has.
   */
  connect({ since } = {}) {
    this._advanceCursor(since);
    if (!this._stopped) return;
    this._stopped = false;
    this._attempt = 0;
    this._unauthorizedInARow = 0;
    this._expiredInARow = 0;
    if (typeof globalThis.addEventListener === "function") globalThis.addEventListener("online", this._onOnline);
    this._openSocket();
  }

  /** Close the connection and stop reconnecting. */
  close() {
    if (this._stopped) return;
    this._stop();
    const socket = this._socket;
    this._socket = null;
    if (socket) safeClose(socket, 1000, "closed by the client");
    this._connectionLost();
    this._emit("close", { code: 1000, reason: "closed by the client", byClient: true, willReconnect: false });
    this._setState(State.OFFLINE);
  }

  _stop() {
    this._stopped = true;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (typeof globalThis.removeEventListener === "function") {
      globalThis.removeEventListener("online", this._onOnline);
    }
  }

  async _openSocket() {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    const number = ++this._connectionNumber;
    this._setState(this._everOpen || this._attempt > 0 ? State.RECONNECTING : State.CONNECTING);
    let token;
    try {
      token = await this._freshToken();
    } catch (error) {
      if (number !== this._connectionNumber || this._stopped) return;
      this._emit("error", { code: "token_unavailable", message: describe(error), error });
      this._scheduleReconnect(this._backoffDelay());
      return;
    }
    if (number !== this._connectionNumber || this._stopped) return;
    let socket;
    try {
      socket = new this._WebSocket(this.url);
    } catch (error) {
      this._emit("error", { code: "connect_failed", message: describe(error), error });
      this._scheduleReconnect(this._backoffDelay());
      return;
    }
    this._socket = socket;
    this._armWatchdog(this.options.connectTimeoutMs);
    socket.onopen = () => {
      if (socket !== this._socket) return;
      // The credential goes in the first frame, never in the URL (docs/protocol.md).
      const auth = { type: "auth", token, id: `auth-${number}` };
      if (this._cursor !== null) auth.since = this._cursor;
      if (this._topics.size) auth.topics = [...this._topics].sort();
      this._sendRaw(auth);
    };
    socket.onmessage = (event) => {
      if (socket !== this._socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // the server only sends JSON; ignore anything else
      }
      if (!frame || typeof frame !== "object") return;
      this._armWatchdog(this._heartbeatMs === null ? this.options.connectTimeoutMs : this._deadAfterMs());
      this._handleFrame(frame);
    };
    socket.onclose = (event) => {
      if (socket !== this._socket) return;
      this._socket = null;
      this._onClosed(event.code, event.reason || "");
    };
    socket.onerror = () => {}; // a `close` event always follows
  }

  async _freshToken() {
    if (typeof this.options.getToken !== "function") return this._token.token;
    // Bounded: a backend that never answers (a half-open connection) must not stall reconnecting.
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("getToken() did not answer in time")), this.options.connectTimeoutMs);
    });
    let answer;
    try {
      answer = await Promise.race([this.options.getToken(), timeout]);
    } finally {
      clearTimeout(timer);
    }
    const token = typeof answer === "string" ? answer : answer && answer.token;
    if (typeof token !== "string" || !token) throw new Error("getToken() returned no token");
    const expires = answer && typeof answer === "object" && (answer.expires_at || answer.expiresAt);
    const expiresAt = expires ? Date.parse(expires) : NaN;
    this._token = { token, expiresAt: Number.isNaN(expiresAt) ? null : expiresAt };
    return token;
  }

  _deadAfterMs() {
    return this.options.deadAfterHeartbeats * this._heartbeatMs + this.options.heartbeatGraceMs;
  }

  _armWatchdog(ms) {
    clearTimeout(this._watchdog);
    this._watchdog = setTimeout(() => {
      const socket = this._socket;
      if (!socket) return;
      // Do not wait for a close handshake that a dead connection never completes.
      this._socket = null;
      safeClose(socket, 1000, "no frame from the server in time");
      this._onClosed(1006, `no frame from the server for ${Math.round(ms / 1000)} s`, { timedOut: true });
    }, ms);
  }

  _connectionLost() {
    clearTimeout(this._watchdog);
    this._watchdog = null;
    this._authenticated = false;
    this._replaying = false;
    this._heartbeatMs = null;
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new HeraldError(this._stopped ? "closed" : "disconnected", "The connection closed before the answer.", { requestId: id }));
    }
    this._pending.clear();
  }

  _onClosed(code, reason, extra = {}) {
    this._connectionLost();
    if (this._stopped) return;
    let delay = null; // null: stop
    let why = null;
    if (STOP_CODES.has(code)) {
      why = code === 4003 ? "forbidden" : "bad_request";
    } else if (code === UNAUTHORIZED) {
      this._expiredInARow = 0;
      this._unauthorizedInARow += 1;
      // Once, at once, with a fresh token; a second refusal in a row needs fixing, not retrying.
      if (this._unauthorizedInARow === 1 && this.options.getToken) delay = 0;
      else why = "unauthorized";
    } else if (code === TOKEN_EXPIRED) {
      this._unauthorizedInARow = 0;
      this._expiredInARow += 1;
      if (!this.options.getToken) why = "token_expired"; // a fixed token cannot be renewed
      // A fresh token right away; if even that one is "expired" (a clock far off?), back off.
      else delay = this._expiredInARow === 1 ? 0 : this._backoffDelay();
    } else {
      this._unauthorizedInARow = 0;
      this._expiredInARow = 0;
      delay = this._backoffDelay();
      if (code === SERVICE_RESTART) delay = Math.min(delay, 250); // spread a little, but go now
      if (SLOW_DOWN_CODES.has(code)) delay = SLOW_DOWN_MS + delay;
    }
    this._emit("close", { code, reason, willReconnect: delay !== null, delay, ...extra });
    if (delay === null) {
      this._stop();
      this._emit("error", { code: why, message: `Herald refused the connection (${code}${reason ? `: ${reason}` : ""}); not reconnecting.`, closeCode: code });
      this._setState(State.OFFLINE, { code, reason: why });
      return;
    }
    this._scheduleReconnect(delay);
  }

  _backoffDelay() {
    const { backoffBaseMs: baseMs, backoffMaxMs: maxMs } = this.options;
    return backoffDelay(this._attempt++, { baseMs, maxMs, random: this._random });
  }

  _scheduleReconnect(delay) {
    clearTimeout(this._reconnectTimer);
    this._setState(State.RECONNECTING, { delay, attempt: this._attempt });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (!this._stopped) this._openSocket();
    }, delay);
  }

  _setState(state, extra = {}) {
    const previous = this._state;
    if (previous === state && !("delay" in extra)) return;
    this._state = state;
    this._emit("status", { state, previous, ...extra });
  }

  // --- frames from the server ----------------------------------------------------------------

  _handleFrame(frame) {
    switch (frame.type) {
      case "welcome":
        return this._onWelcome(frame);
      case "notification":
        return this._onNotification(frame);
      case "resumed":
        return this._onResumed(frame);
      case "unread":
        this._countEpoch += 1;
        this._setUnread(frame.count);
        // The server sends `unread` to every connection of the user whenever an inbox action
        // (on any tab or device, or over REST) changed something, even when the count stayed the
        // same (archiving a read notification): the app's cue to refresh the list it shows.
        return this._emit("inboxchange", { count: this._unread });
      case "ack":
        return this._onAck(frame);
      case "error":
        return this._onError(frame);
      case "ping":
        return this._sendRaw({ type: "pong" });
      default:
        return undefined; // pong, or a frame type from a newer server: ignore
    }
  }

  _onWelcome(frame) {
    this._authenticated = true;
    this._replaying = true;
    this._welcome = frame;
    this._attempt = 0;
    this._unauthorizedInARow = 0;
    this._expiredInARow = 0;
    const seconds = Number(frame.heartbeat);
    this._heartbeatMs = (Number.isFinite(seconds) && seconds > 0 ? seconds : 25) * 1000;
    this._armWatchdog(this._deadAfterMs());
    // welcome.cursor is where the replay starts: storing it gains nothing (it is our `since`,
    // or for a fresh connection a position that `resumed` repeats), so the cursor only advances
    // with notifications and `resumed`.
    // welcome.unread already counts the notifications about to be replayed (rule 1).
    this._countEpoch += 1;
    this._setUnread(frame.unread);
  }

  _onNotification(frame) {
    const id = Number(frame.id);
    if (!Number.isSafeInteger(id) || !isCursor(frame.cursor)) return;
    const notification = normalizeNotification(frame);
    const before = this._seen.get(id);
    this._advanceCursor(notification.cursor);
    // De-duplicate by id: new, or an upgrade (seen live-only, now in the inbox); else drop it.
    if (before === true || (before === false && !notification.inbox)) return;
    const upgrade = before === false;
    this._remember(id, notification.inbox);
    const replayed = this._replaying;
    this._emit("notification", { notification, replayed, upgrade });
    // Rule 2: after `resumed`, a new (or upgraded) unread inbox notification adds one.
    if (!replayed && notification.inbox && !notification.read && !notification.archived && this._unread !== null) {
      this._countEpoch += 1;
      this._setUnread(this._unread + 1);
    }
  }

  _onResumed(frame) {
    this._replaying = false;
    this._advanceCursor(frame.cursor);
    const reconnected = this._everOpen;
    this._everOpen = true;
    const welcome = this._welcome || {};
    this._setState(State.OPEN);
    this._emit("open", {
      user: welcome.user,
      tenant: welcome.tenant,
      connectionId: welcome.connection_id,
      heartbeat: welcome.heartbeat,
      recovered: frame.recovered !== false,
      replayed: Number(frame.replayed) || 0,
      reason: frame.reason || null,
      cursor: this._cursor,
      reconnected,
    });
    if (frame.recovered === false) {
      // Nothing was replayed: the app must reload its inbox over REST (herald.inbox()) and
      // replace what it shows. The connection itself is fine and live.
      this._emit("reload", { reason: frame.reason || null, cursor: this._cursor });
    }
  }

  _onAck(frame) {
    if (isCursor(frame.cursor)) this._advanceCursor(frame.cursor);
    if (Array.isArray(frame.topics)) this._topics = new Set(frame.topics);
    if (typeof frame.unread === "number") {
      this._countEpoch += 1;
      this._setUnread(frame.unread);
    }
    const pending = this._pending.get(frame.id);
    if (!pending) return;
    this._pending.delete(frame.id);
    clearTimeout(pending.timer);
    pending.resolve(frame);
  }

  _onError(frame) {
    const error = new HeraldError(String(frame.code || "internal"), String(frame.message || ""), {
      fields: frame.fields || null,
      retryAfter: frame.retry_after ?? null,
      requestId: frame.id ?? null,
    });
    const pending = frame.id != null ? this._pending.get(frame.id) : null;
    if (pending) {
      this._pending.delete(frame.id);
      clearTimeout(pending.timer);
      pending.reject(error);
      return;
    }
    if (typeof frame.id === "string" && frame.id.startsWith("auth-") && frame.code === "forbidden") {
      // Topics in `auth` that were refused: the others were joined. Do not ask for them again.
      for (const topic of refusedTopics(frame.fields)) this._topics.delete(topic);
    }
    this._emit("error", { code: error.code, message: error.message, fields: error.fields, requestId: error.requestId, error });
  }

  // --- requests ------------------------------------------------------------------------------

  /**
   * Listen live to more topics. Resolves with the `ack` ({topics: [...]} and, with since,
   * {recovered, replayed, cursor}). While disconnected the topics are remembered and sent with
   * the next `auth`; the promise then resolves at once with {topics, queued: true}.
   */
  subscribe(topics, { since } = {}) {
    const keys = topicList(topics);
    if (!this._authenticated) {
      for (const key of keys) this._topics.add(key);
      return Promise.resolve({ type: "ack", topics: this.topics, queued: true });
    }
    const frame = { type: "subscribe", topics: keys };
    if (since != null) frame.since = String(since);
    return this._request(frame);
  }

  /** Stop listening live to topics; resolves with the `ack` (the topics still listened to). */
  unsubscribe(topics) {
    const keys = topicList(topics);
    if (!this._authenticated) {
      for (const key of keys) this._topics.delete(key);
      return Promise.resolve({ type: "ack", topics: this.topics, queued: true });
    }
    return this._request({ type: "unsubscribe", topics: keys });
  }

  /** Each resolves with the `ack`: {updated, not_found, unread}. */
  markRead(ids) {
    return this._request({ type: "mark_read", ids: idList(ids) });
  }

  markUnread(ids) {
    return this._request({ type: "mark_unread", ids: idList(ids) });
  }

  markAllRead() {
    return this._request({ type: "mark_all_read" });
  }

  archive(ids) {
    return this._request({ type: "archive", ids: idList(ids) });
  }

  unarchive(ids) {
    return this._request({ type: "unarchive", ids: idList(ids) });
  }

  _request(frame) {
    if (!this._authenticated || !this._socket) {
      return Promise.reject(new HeraldError("not_connected", "Not connected to Herald right now."));
    }
    const id = `h${++this._requestNumber}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this._pending.delete(id)) reject(new HeraldError("timeout", "Herald did not answer in time.", { requestId: id }));
      }, this.options.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      this._sendRaw({ ...frame, id });
    });
  }

  _sendRaw(frame) {
    const socket = this._socket;
    // 1 is WebSocket.OPEN (not every implementation has the static constant).
    if (socket && socket.readyState === 1) socket.send(JSON.stringify(frame));
  }

  // --- REST: the inbox, with the same connection token as the bearer credential -------------

  /**
   * One page of the inbox, newest first: {results, next_cursor, unread, stream_cursor}, each
   * result normalised like a live notification. Options: cursor (the previous page's
   * next_cursor), limit (1-100), unread (only unread), archived ("exclude", "only", "include").
   */
  async inbox({ cursor, limit, unread, archived } = {}) {
    const query = new URLSearchParams();
    if (cursor != null) query.set("cursor", String(cursor));
    if (limit != null) query.set("limit", String(limit));
    if (unread) query.set("unread", "true");
    if (archived) query.set("archived", archived);
    const epoch = this._countEpoch;
    const search = query.toString();
    const page = await this._rest("GET", `/inbox${search ? `?${search}` : ""}`);
    const results = (page.results || []).map(normalizeNotification);
    for (const item of results) this._remember(item.id, true);
    // The recommended start (docs/protocol.md): read the first page, then connect from its
    // stream_cursor, so everything delivered after the read is replayed and nothing is missed.
    if (cursor == null && this._cursor === null && !this._authenticated) this._advanceCursor(page.stream_cursor);
    this._setUnreadFromRest(page.unread, epoch);
    return { ...page, results };
  }

  /** The exact unread count, over REST. */
  async unreadCount() {
    const epoch = this._countEpoch;
    const answer = await this._rest("GET", "/inbox/unread-count");
    this._setUnreadFromRest(answer.count, epoch);
    return answer.count;
  }

  /** The inbox actions over REST, for when the socket is down: each answers {updated, not_found, unread}. */
  get rest() {
    const action = (path, ids) => async () => {
      const answer = await this._rest("POST", path, ids === undefined ? undefined : { ids: idList(ids) });
      this._countEpoch += 1;
      this._setUnread(answer.unread);
      return answer;
    };
    return {
      inbox: (options) => this.inbox(options),
      unreadCount: () => this.unreadCount(),
      markRead: (ids) => action("/inbox/read", ids)(),
      markUnread: (ids) => action("/inbox/unread", ids)(),
      markAllRead: () => action("/inbox/read-all")(),
      archive: (ids) => action("/inbox/archive", ids)(),
      unarchive: (ids) => action("/inbox/unarchive", ids)(),
    };
  }

  async _rest(method, path, body) {
    for (let attempt = 0; ; attempt += 1) {
      const token = await this._restToken(attempt > 0);
      const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await this._fetch(this.apiUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit", // the token is the credential; cookies are not needed
        cache: "no-store",
      });
      const answer = await response.json().catch(() => null);
      if (response.ok) return answer || {};
      const error = (answer && answer.error) || {};
      // An expired (or otherwise refused) token: fetch a fresh one and try once more.
      if (response.status === 401 && attempt === 0 && typeof this.options.getToken === "function") continue;
      throw new HeraldError(String(error.code || `http_${response.status}`), String(error.message || `HTTP ${response.status}`), {
        fields: error.fields || null,
        retryAfter: error.retry_after ?? null,
        status: response.status,
      });
    }
  }

  async _restToken(forceFresh) {
    const current = this._token;
    const fresh =
      current && (current.expiresAt === null || current.expiresAt - Date.now() > this.options.tokenExpiryMarginMs);
    if (!forceFresh && fresh) return current.token;
    if (typeof this.options.getToken !== "function") return current.token;
    return this._freshToken();
  }

  // --- bookkeeping ---------------------------------------------------------------------------

  _advanceCursor(cursor) {
    if (isCursor(cursor) && (this._cursor === null || compareCursors(cursor, this._cursor) > 0)) this._cursor = cursor;
  }

  _remember(id, inbox) {
    this._seen.delete(id);
    this._seen.set(id, inbox);
    if (this._seen.size > this.options.maxSeenIds) this._seen.delete(this._seen.keys().next().value);
  }

  _setUnread(value) {
    const count = Number(value);
    if (!Number.isSafeInteger(count) || count < 0) return;
    if (count === this._unread) return;
    this._unread = count;
    this._emit("unread", { count });
  }

  // A REST answer's count is exact when it was read, but a frame that arrived while the request
  // was in flight is newer: only take the REST count if no frame changed the count meanwhile.
  _setUnreadFromRest(value, epoch) {
    if (epoch === this._countEpoch) this._setUnread(value);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function resolveWebSocketUrl(url) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  const resolved = new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}

function defaultApiUrl(wsUrl) {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = "/api/v1";
  url.search = "";
  url.hash = "";
  return url.href;
}

function safeClose(socket, code, reason) {
  try {
    socket.close(code, reason);
  } catch {
    // already closing or closed
  }
}

function describe(error) {
  return error && error.message ? error.message : String(error);
}

function topicList(topics) {
  const list = typeof topics === "string" ? [topics] : [...(topics || [])];
  if (!list.length || !list.every((topic) => typeof topic === "string" && topic)) {
    throw new TypeError("Herald: topics must be a non-empty list of topic keys");
  }
  return list;
}

function idList(ids) {
  const list = Array.isArray(ids) ? ids : [ids];
  return list.map(Number);
}

// `fields.topics` of a refused `auth` lists "Not allowed: <key>" messages.
function refusedTopics(fields) {
  const messages = (fields && fields.topics) || [];
  return messages.map((message) => String(message).replace(/^Not allowed:\s*/, ""));
}

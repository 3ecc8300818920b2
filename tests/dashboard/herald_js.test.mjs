// Behaviour of herald.js against a scripted server (a fake WebSocket): what it sends, how it counts
// unread, keeps its cursor, de-duplicates, answers requests, reconnects and gives up. Run by
// tests/dashboard/test_herald_js.py with `node --test`; every wait is bounded.
import assert from "node:assert/strict";
import { test } from "node:test";

import { compareCursors, Herald, safeLink } from "../../dashboard/static/herald/herald.js";

const WAIT_MS = 2000;

function fakeSocketClass() {
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedByClient = null;
      FakeSocket.instances.push(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {
      this.readyState = 3;
      this.closedByClient = { code, reason };
    }
    // --- the scripted server
    accept() {
      this.readyState = 1;
      this.onopen({});
    }
    frame(frame) {
      this.onmessage({ data: JSON.stringify(frame) });
    }
    drop(code = 1006, reason = "") {
      this.readyState = 3;
      this.onclose({ code, reason });
    }
  }
  FakeSocket.instances = [];
  return FakeSocket;
}

async function until(check, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function setup(options = {}) {
  const Socket = fakeSocketClass();
  let tokens = 0;
  const events = [];
  const herald = new Herald({
    url: "ws://herald.test/ws/v1/",
    getToken: async () => `token-${++tokens}`,
    WebSocket: Socket,
    backoffBaseMs: 1,
    backoffMaxMs: 5,
    ...options,
  });
  for (const type of ["open", "notification", "unread", "inboxchange", "status", "error", "close", "reload"]) {
    herald.on(type, (detail) => events.push({ type, ...detail }));
  }
  const socket = async (index) => {
    await until(() => Socket.instances.length > index, `socket #${index}`);
    return Socket.instances[index];
  };
  return { herald, Socket, events, socket, tokenCount: () => tokens, of: (type) => events.filter((e) => e.type === type) };
}

// Open socket #index, answer its auth with welcome (+ replay) + resumed.
async function connected(context, index = 0, { unread = 0, cursor = "10", replay = [], recovered = true, heartbeat = 25 } = {}) {
  const socket = await context.socket(index);
  socket.accept();
  socket.frame({ type: "welcome", protocol: 1, connection_id: `c${index}`, user: "alice", tenant: "acme", heartbeat, unread, cursor });
  for (const frame of replay) socket.frame(frame);
  const last = replay.length ? replay[replay.length - 1].cursor : cursor;
  socket.frame(recovered ? { type: "resumed", recovered, replayed: replay.length, cursor: last } : { type: "resumed", recovered, replayed: 0, cursor: last, reason: "too_many" });
  return socket;
}

function note(id, cursor, extra = {}) {
  return { type: "notification", id, cursor, kind: "k", topics: [], data: {}, title: `n${id}`, body: "", url: "", created_at: "2026-11-26T09:57:42.419018Z", inbox: true, read: false, archived: false, ...extra };
}

test("the first frame is auth with a fresh token, the since cursor and the live topics; nothing in the URL", async () => {
  const context = setup({ since: "41", topics: ["deploys"] });
  const socket = await context.socket(0);
  assert.equal(socket.url, "ws://herald.test/ws/v1/");
  assert.equal(context.herald.state, "connecting");
  socket.accept();
  assert.deepEqual(socket.sent, [{ type: "auth", token: "token-1", id: "auth-1", since: "41", topics: ["deploys"] }]);
  context.herald.close();
});

test("unread count: welcome, replay not added, live added, duplicates dropped, upgrades added, unread frame replaces", async () => {
  const context = setup();
  const socket = await connected(context, 0, { unread: 3, replay: [note(1, "11"), note(2, "12", { read: true })] });
  assert.equal(context.herald.unread, 3);
  assert.equal(context.herald.state, "open");
  assert.deepEqual(context.of("notification").map((e) => [e.notification.id, e.replayed]), [[1, true], [2, true]]);
  socket.frame(note(3, "13"));
  assert.equal(context.herald.unread, 4);
  socket.frame(note(3, "13")); // a seam duplicate
  socket.frame(note(1, "11"));
  assert.equal(context.of("notification").length, 3);
  socket.frame(note(4, "14", { inbox: false, topics: ["deploys"] })); // live-only: not counted
  assert.equal(context.herald.unread, 4);
  socket.frame(note(4, "14", { inbox: false })); // live-only duplicate: dropped
  socket.frame(note(4, "14", { inbox: true })); // the upgrade: it is in the inbox after all
  const upgrades = context.of("notification").filter((e) => e.upgrade);
  assert.deepEqual(upgrades.map((e) => e.notification.id), [4]);
  assert.equal(context.herald.unread, 5);
  socket.frame({ type: "unread", count: 2 });
  assert.equal(context.herald.unread, 2);
  assert.deepEqual(context.of("unread").map((e) => e.count), [3, 4, 5, 2]);
  // Every `unread` frame says the inbox changed somewhere, even when the count did not.
  socket.frame({ type: "unread", count: 2 });
  assert.deepEqual(context.of("inboxchange").map((e) => e.count), [2, 2]);
  assert.equal(context.of("unread").length, 4);
  context.herald.close();
});

test("the cursor is the highest seen, compared as digits (beyond 2^53, and by length)", async () => {
  assert.ok(compareCursors("9007199254740993", "9007199254740992") > 0);
  assert.ok(compareCursors("10", "9") > 0);
  assert.equal(compareCursors("42", "42"), 0);
  const context = setup({ since: "9" });
  const socket = await connected(context, 0, { cursor: "9", replay: [note(1, "10")] });
  assert.equal(context.herald.cursor, "10");
  socket.frame(note(2, "9007199254740993"));
  socket.frame(note(3, "9007199254740992", { inbox: false }));
  assert.equal(context.herald.cursor, "9007199254740993");
  context.herald.close();
});

test("recovered: false asks the app to reload its inbox; the connection stays open", async () => {
  const context = setup({ since: "1" });
  await connected(context, 0, { recovered: false, cursor: "500" });
  assert.deepEqual(context.of("reload").map((e) => e.reason), ["too_many"]);
  assert.equal(context.herald.state, "open");
  assert.equal(context.herald.cursor, "500");
  context.herald.close();
});

test("requests resolve with their ack, reject on an error frame, a timeout or a disconnect", async () => {
  const context = setup({ requestTimeoutMs: 30 });
  await assert.rejects(context.herald.markRead([1]), { code: "not_connected" });
  const socket = await connected(context, 0, { unread: 2 });
  const read = context.herald.markRead([1, 999]);
  const sent = socket.sent.at(-1);
  assert.deepEqual({ ...sent, id: undefined }, { type: "mark_read", ids: [1, 999], id: undefined });
  socket.frame({ type: "ack", id: sent.id, updated: 1, not_found: [999], unread: 1 });
  assert.deepEqual(await read, { type: "ack", id: sent.id, updated: 1, not_found: [999], unread: 1 });
  assert.equal(context.herald.unread, 1);

  const archive = context.herald.archive(["x"]);
  socket.frame({ type: "error", id: socket.sent.at(-1).id, code: "invalid", message: "Invalid `ids`", fields: { ids: ["bad"] } });
  await assert.rejects(archive, (error) => error.code === "invalid" && error.message === "Invalid `ids`" && error.fields.ids[0] === "bad");

  await assert.rejects(context.herald.markAllRead(), { code: "timeout" });

  const pending = context.herald.unarchive([1]);
  socket.drop(1006);
  await assert.rejects(pending, { code: "disconnected" });
  context.herald.close();
});

test("server pings are answered with pong", async () => {
  const context = setup();
  const socket = await connected(context);
  socket.frame({ type: "ping" });
  assert.deepEqual(socket.sent.at(-1), { type: "pong" });
  context.herald.close();
});

test("after a drop it reconnects with a fresh token, resumes from its cursor and re-subscribes its topics", async () => {
  const context = setup();
  const first = await connected(context, 0, { cursor: "10" });
  const subscribed = context.herald.subscribe(["deploys"]);
  first.frame({ type: "ack", id: first.sent.at(-1).id, topics: ["deploys"] });
  assert.deepEqual((await subscribed).topics, ["deploys"]);
  first.frame(note(5, "15"));
  first.drop(1006);
  assert.equal(context.herald.state, "reconnecting");
  const second = await context.socket(1);
  second.accept();
  assert.deepEqual(second.sent[0], { type: "auth", token: "token-2", id: "auth-2", since: "15", topics: ["deploys"] });
  second.frame({ type: "welcome", heartbeat: 25, unread: 1, cursor: "15" });
  second.frame(note(5, "15")); // replayed again at the seam: dropped
  second.frame({ type: "resumed", recovered: true, replayed: 1, cursor: "15" });
  assert.equal(context.of("notification").length, 1);
  assert.deepEqual(context.of("open").map((e) => e.reconnected), [false, true]);
  context.herald.close();
});

test("backoff is full jitter: a random delay below min(max, base * 2^attempt)", async () => {
  const context = setup({ backoffBaseMs: 4, backoffMaxMs: 20, random: () => 0.999 });
  for (let index = 0; index < 5; index += 1) {
    const socket = await context.socket(index);
    socket.drop(1006);
  }
  const delays = context.of("status").filter((e) => "delay" in e).map((e) => e.delay);
  assert.deepEqual(delays, [3, 7, 15, 19, 19]);
  context.herald.close();
});

test("4001 is retried once at once with a fresh token; a second 4001 in a row stops", async () => {
  const context = setup();
  (await context.socket(0)).drop(4001);
  const second = await context.socket(1);
  assert.equal(context.tokenCount(), 2);
  second.drop(4001);
  await until(() => context.herald.state === "offline", "offline");
  assert.equal(context.of("error").at(-1).code, "unauthorized");
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(context.Socket.instances.length, 2);
});

test("4004 fetches a fresh token and reconnects at once", async () => {
  const context = setup({ backoffBaseMs: 10000, backoffMaxMs: 10000 });
  await connected(context, 0);
  context.Socket.instances[0].drop(4004);
  const second = await context.socket(1);
  second.accept();
  assert.equal(second.sent[0].token, "token-2");
  context.herald.close();
});

test("4003 and 4000 stop reconnecting", async () => {
  for (const code of [4003, 4000]) {
    const context = setup();
    await connected(context, 0);
    context.Socket.instances[0].drop(code, "tenant deactivated");
    assert.equal(context.herald.state, "offline");
    assert.equal(context.of("close").at(-1).willReconnect, false);
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(context.Socket.instances.length, 1);
  }
});

test("a fixed token that expired cannot be renewed: 4004 stops", async () => {
  const Socket = fakeSocketClass();
  const herald = new Herald({ url: "ws://herald.test/ws/v1/", token: "static", WebSocket: Socket });
  await until(() => Socket.instances.length === 1, "socket");
  Socket.instances[0].drop(4004);
  assert.equal(herald.state, "offline");
});

test("no frame for two heartbeats: the connection is presumed dead, closed and replaced", async () => {
  const context = setup({ heartbeatGraceMs: 0 });
  const first = await connected(context, 0, { heartbeat: 0.02 });
  const second = await context.socket(1);
  assert.deepEqual(first.closedByClient.code, 1000);
  const close = context.of("close").at(-1);
  assert.equal(close.timedOut, true);
  assert.equal(close.willReconnect, true);
  assert.ok(second);
  context.herald.close();
});

test("topics subscribed while disconnected go in the next auth; refused ones are dropped", async () => {
  const context = setup();
  const queued = await context.herald.subscribe(["news", "payroll"]);
  assert.equal(queued.queued, true);
  const socket = await context.socket(0);
  socket.accept();
  assert.deepEqual(socket.sent[0].topics, ["news", "payroll"]);
  socket.frame({ type: "welcome", heartbeat: 25, unread: 0, cursor: "1" });
  socket.frame({ type: "error", id: socket.sent[0].id, code: "forbidden", message: "Not allowed to subscribe to: payroll", fields: { topics: ["Not allowed: payroll"] } });
  assert.deepEqual(context.herald.topics, ["news"]);
  assert.equal(context.of("error").at(-1).code, "forbidden");
  context.herald.close();
});

test("close() stops for good: offline, pending requests rejected, no reconnect", async () => {
  const context = setup();
  const socket = await connected(context);
  const pending = context.herald.markAllRead();
  context.herald.close();
  await assert.rejects(pending, { code: "closed" });
  assert.equal(context.herald.state, "offline");
  assert.equal(socket.closedByClient.code, 1000);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(context.Socket.instances.length, 1);
});

test("REST: the inbox with the token as bearer, a fresh token after a 401, the count only if no frame changed it", async () => {
  const calls = [];
  const answers = [
    { status: 401, body: { error: { code: "token_expired", message: "expired" } } },
    { status: 200, body: { results: [{ id: 7, cursor: "3", kind: "k", topics: [], data: {}, title: "t", body: "", url: "", created_at: "x", read_at: "y", archived_at: null }], next_cursor: null, unread: 4, stream_cursor: "9" } },
  ];
  const fetch = async (url, init) => {
    calls.push({ url, authorization: init.headers.Authorization, credentials: init.credentials });
    const answer = answers.shift();
    return { ok: answer.status < 400, status: answer.status, json: async () => answer.body };
  };
  const context = setup({ fetch });
  const socket = await connected(context, 0, { unread: 1 });
  const page = await context.herald.inbox({ limit: 5 });
  assert.deepEqual(calls.map((c) => c.url), ["http://herald.test/api/v1/inbox?limit=5", "http://herald.test/api/v1/inbox?limit=5"]);
  assert.deepEqual(calls.map((c) => c.authorization), ["Bearer token-1", "Bearer token-2"]);
  assert.equal(calls[0].credentials, "omit");
  assert.deepEqual(page.results[0], { id: 7, cursor: "3", kind: "k", topics: [], data: {}, title: "t", body: "", url: "", created_at: "x", inbox: true, read: true, archived: false });
  assert.equal(context.herald.unread, 4);

  // A frame changing the count while the request is in flight wins over the REST answer.
  answers.push({ status: 200, body: { count: 9 } });
  const counting = context.herald.unreadCount();
  socket.frame({ type: "unread", count: 6 });
  assert.equal(await counting, 9);
  assert.equal(context.herald.unread, 6);
  context.herald.close();
});

test("safeLink lets through http(s) URLs and local paths only", () => {
  assert.equal(safeLink("https://example.com/a"), "https://example.com/a");
  assert.equal(safeLink("/orders/7"), "/orders/7");
  for (const bad of ["javascript:alert(1)", "//evil.example", "/\\evil.example", "/\t/evil.example", "data:text/html,x", "", null]) {
    assert.equal(safeLink(bad), "");
  }
});

test("a getToken() that never answers is given up on, and retried with backoff", async () => {
  const Socket = fakeSocketClass();
  let calls = 0;
  const herald = new Herald({
    url: "ws://herald.test/ws/v1/",
    getToken: () => (++calls === 1 ? new Promise(() => {}) : Promise.resolve("fresh")),
    WebSocket: Socket,
    connectTimeoutMs: 20,
    backoffBaseMs: 1,
    backoffMaxMs: 2,
  });
  const errors = [];
  herald.on("error", (detail) => errors.push(detail.code));
  await until(() => Socket.instances.length === 1, "a socket after the retry");
  assert.deepEqual(errors, ["token_unavailable"]);
  assert.equal(calls, 2);
  herald.close();
});

test("the first inbox page read before connecting gives the cursor to resume from", async () => {
  const fetch = async () => ({ ok: true, status: 200, json: async () => ({ results: [], next_cursor: null, unread: 0, stream_cursor: "77" }) });
  const context = setup({ fetch, autoConnect: false });
  await context.herald.inbox();
  assert.equal(context.herald.cursor, "77");
  context.herald.connect();
  const socket = await context.socket(0);
  socket.accept();
  assert.equal(socket.sent[0].since, "77");
  context.herald.close();
});

'use strict';
// Adapter for Herald (this repository), installed into a copy of the shared harness as
// gen/adapters/herald.js by bench/run_side_by_side.sh.
//   subscribe: ws://HOST:PORT/ws/v1/, first frame {"type":"auth","token":T,"topics":[ROOM]} (W1/W2: room
//              "bench" = the topic `bench`, joined before `welcome`); W3 rooms "u<i>" are end users: the
//              connection authenticates as user u<i> ({"type":"auth","token":T}, its user group is joined at
//              auth). Ready when `resumed` arrives (from then on everything is live).
//   publish:   POST /api/v1/events, Authorization: Bearer <API key>,
//              {"kind":"bench","topics":[ROOM],"data":PAYLOAD}  (keep-alive agent; returns a Promise so the
//              generator bounds in-flight requests; anything but 202 is a publish error)
//   payload:   {"type":"notification",...,"data":{"seq":..,"ts":..,"body":..},...}: "seq" and "ts" occur only
//              inside data, so the default extractor (lib.extractSeqTs) reads them from the raw frame.
// Env: BENCH_API_KEY, BENCH_TOKENS_FILE (one token per line; line i = end user u<i>), written by
// bench/setup_herald.py (run from peers/herald/peer.sh before the server starts).
const fs = require('fs');
const http = require('http');
const lib = require('../lib');

let tokens = null;
function tokenFor(ctx, index) {
  if (!tokens) {
    const file = ctx.env.BENCH_TOKENS_FILE;
    if (!file) throw new Error('BENCH_TOKENS_FILE is not set (run bench/setup_herald.py)');
    tokens = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  }
  const token = tokens[index];
  if (!token) throw new Error(`no token for subscriber ${index} (${tokens.length} in BENCH_TOKENS_FILE)`);
  return token;
}

const RESUMED = Buffer.from('"type":"resumed"');
const ERROR = Buffer.from('"type":"error"');

// Send `auth`, resolve once `resumed` arrives; frames after it go to onMessage (first through ws's own
// receiver for anything it already buffered, then through the fast raw-frame reader).
function authenticate(ws, auth, onMessage, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    let ready = false;
    const timer = setTimeout(() => { if (!ready) { ready = true; lib.resetWs(ws); reject(new Error('auth timeout')); } }, timeoutMs);
    const onFrame = (data) => {
      if (ready) { onMessage(data, 0, data.length); return; }
      if (data.indexOf(ERROR) >= 0) { // e.g. the topic was refused: the subscriber would never hear it
        ready = true; clearTimeout(timer); lib.resetWs(ws); reject(new Error(`auth refused: ${data.toString().slice(0, 120)}`));
        return;
      }
      if (data.indexOf(RESUMED) < 0) return; // welcome (and an empty replay)
      ready = true; clearTimeout(timer); lib.tapFast(ws, onMessage); resolve();
    };
    ws.on('message', onFrame);
    ws.on('close', (code) => { if (!ready) { ready = true; clearTimeout(timer); reject(new Error(`closed ${code} before resumed`)); } });
    ws.send(JSON.stringify(auth));
  });
}

module.exports = {
  name: 'herald',
  async subscribe(ctx, { room, index, onMessage }) {
    const token = tokenFor(ctx, index);
    const auth = /^u\d+$/.test(room) ? { type: 'auth', token } : { type: 'auth', token, topics: [room] };
    const ws = await lib.openWs(`ws://${ctx.host}:${ctx.port}/ws/v1/`);
    await authenticate(ws, auth, onMessage);
    return { close: () => lib.resetWs(ws) };
  },
  async publisher(ctx, { room }) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    const key = ctx.env.BENCH_API_KEY;
    if (!key) throw new Error('BENCH_API_KEY is not set (run bench/setup_herald.py)');
    const publish = (payload) => new Promise((resolve, reject) => {
      const body = JSON.stringify({ kind: 'bench', topics: [room], data: payload });
      const req = http.request({ host: ctx.host, port: ctx.port, path: '/api/v1/events', method: 'POST', agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
          Authorization: `Bearer ${key}` },
        timeout: 15000 }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 202 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
      });
      req.on('timeout', () => req.destroy(new Error('publish timeout')));
      req.on('error', reject);
      req.end(body);
    });
    return { publish, close: () => agent.destroy() };
  },
  // extract: omitted -> lib.extractSeqTs
};

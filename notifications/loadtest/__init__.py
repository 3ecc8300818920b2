"""`manage.py herald_loadtest`: a load test to point at a running Herald deployment. It only talks HTTP
and WebSocket to the target (no database, no Redis), so it runs anywhere Herald's code is installed.

- `options`: what the command line describes, checked once;
- `rest`: the REST calls (stdlib `http.client`, one keep-alive connection per thread);
- `connection`: one client socket: connect, `auth` (with `since` to resume), `welcome`, replay, `resumed`;
- `stats`: latency percentiles, per-client seen sets, the final report;
- `churn`: when to close a client and which one, for `--churn`;
- `server_memory`: the server's RSS from its Prometheus /metrics;
- `runner`: the asyncio run: mint tokens, connect clients, publish at a rate or as fast as a window
  allows, drain, close.
"""

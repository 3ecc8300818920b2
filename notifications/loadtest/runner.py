"""One load-test run against a Herald deployment, on asyncio: mint a connection token per client over
REST, connect and authenticate the clients (bounded concurrency), publish events to the topic over
REST at a fixed rate or as fast as a delivery window allows, wait for late deliveries, report, close.

Every phase is bounded in count (clients, `planned_messages`) and in time (connect budget, duration,
drain, request timeouts, and one hard deadline for the whole run); Ctrl-C ends the current phase and
still prints the report (a second Ctrl-C stops at once).

Churn (`--churn R`): while publishing, R clients a second are closed, stay away `--churn-gap` seconds
and reconnect on a new socket, sending `since` = the highest cursor they processed, as
docs/protocol.md tells a client to; what was published meanwhile must come back in the replay between
`welcome` and `resumed`. Loss accounting stays per client and exact: a `Client` keeps its seen set
across its connections, so a churned client must end up with every accepted publish like any other.
Per connection, a second seen set tells the protocol's two kinds of repeat apart:

- the same sequence number twice on ONE connection is a `duplicate` (the server promises to drop
  those: it remembers the ids it sent on each connection);
- one that an EARLIER connection of the client already delivered is `replayed_again`: the protocol
  allows it at resume seams ("de-duplicate by id"), so it is counted, not an error.

First deliveries inside a replay are `replayed`; their latency (publish -> replayed, which includes
the time away) goes to its own percentiles, not to the live ones.

Server memory: `process_resident_memory_bytes` from the target's /metrics after connecting, every
10 s, and at the end (server_memory.py); a /metrics that cannot be read is reported, not fatal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import resource
import secrets
import signal
import time
from array import array
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from notifications.loadtest.churn import ChurnPicker, ChurnSchedule
from notifications.loadtest.connection import PONG, ConnectFailed, close_quietly, loads, open_socket, parse_cursor
from notifications.loadtest.options import Options
from notifications.loadtest.rest import Answer, RestClient
from notifications.loadtest.server_memory import SAMPLE_SECONDS, MetricsReader, Sample, memory_summary
from notifications.loadtest.stats import LatencyRecorder, Report, SeenSet

# --max mode: the publish phase ends if the last client saw nothing new for this long.
STALL_SECONDS = 15.0
# A drain ends early when nothing new arrived for this long (the rest is not coming).
DRAIN_IDLE_SECONDS = 3.0
# Closing every socket at the end may take this long at most.
CLOSE_TIMEOUT_SECONDS = 10.0
# Latencies kept for the per-progress-line percentiles (the final ones use LatencyRecorder).
INTERVAL_SAMPLES_KEPT = 200_000
# A churned client tries to reconnect this many times (each bounded by --connect-timeout), backing
# off 0.5 s, then 1 s between attempts, as docs/protocol.md's "Reconnecting" suggests; after that it is
# gone and what it missed counts as lost.
RECONNECT_ATTEMPTS = 3
RECONNECT_BACKOFF_SECONDS = 0.5
# Close codes after which a reconnect needs a fresh token (docs/protocol.md, "Close codes").
FRESH_TOKEN_REASONS = ("closed 4001", "closed 4004")


@dataclass(eq=False)
class Client:
    index: int
    ws: ClientConnection
    token: str = ""
    cursor: int | None = None  # the highest stream position processed (welcome/resumed/notification)
    seen: SeenSet = field(default_factory=SeenSet)  # over all of this client's connections
    # Sequence numbers seen on the CURRENT connection; None until the first reconnect (until then
    # `seen` is the same thing).
    connection_seen: SeenSet | None = None
    task: asyncio.Task[None] | None = None
    away: bool = False  # closed by the churn, not reconnected yet
    gone: bool = False  # disconnected for good (by the server, or every reconnect failed)
    leaving: bool = False  # the churn is closing its socket: not a disconnect to report


class LoadTest:
    def __init__(self, options: Options, *, progress: Callable[[str], None]) -> None:
        self.options = options
        self.say = progress
        self.run_id = secrets.token_hex(4)
        self.rest = RestClient(options)
        mode = f"rate {options.rate:g}/s" if options.rate is not None else f"max (window {options.window})"
        churn = f", churn {options.churn:g}/s ({options.churn_gap:g} s away)" if options.churn else ""
        self.report = Report(
            url=options.url,
            topic=options.topic,
            run=self.run_id,
            mode=f"{mode} for {options.duration:g} s{churn}",
            clients_requested=options.clients,
            churn=options.churn,
            churn_gap=options.churn_gap if options.churn else 0.0,
            metrics_url=options.metrics_url or "",
        )
        self.clients: list[Client] = []
        self.designated: Client | None = None
        self.latency = LatencyRecorder()
        self.interval_latencies = array("d")
        self.connect_latency = LatencyRecorder()
        self.publish_latency = LatencyRecorder()
        self.accepted = SeenSet()
        self.delivered = 0  # first deliveries of this run's messages, all clients together
        self.foreign = 0
        self.published = 0
        self.publish_errors: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        # Churn and replay accounting (see the module docstring).
        self.track_cursor = options.churn > 0
        self.reconnects = 0
        self.reconnect_errors: Counter[str] = Counter()
        self.churn_skipped = 0
        self.churn_tasks: set[asyncio.Task[None]] = set()
        self.replayed = 0
        self.replayed_again = 0
        self.replay_incomplete: Counter[str] = Counter()
        self.replay_latency = LatencyRecorder()
        # Server memory.
        self.metrics: MetricsReader | None = None
        if options.metrics_url:
            self.metrics = MetricsReader(options.metrics_url, token=options.metrics_token, ca_file=options.ca_file)
        self.memory_samples: list[Sample] = []
        self.memory_failures: Counter[str] = Counter()
        self.memory_news = ""  # the latest sample, for the next progress line
        self.progress_event = asyncio.Event()
        self.phase = "starting"
        self.stopping = False  # Ctrl-C once: end the current phase, report
        self.closing = False
        self._started = time.monotonic()

    # --- the run ---------------------------------------------------------------------------------------

    async def run(self) -> Report:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        self._install_interrupt(loop, main)
        _raise_file_limit(self.options.clients + 256)
        ticker = loop.create_task(self._progress_loop())
        options = self.options
        hard_deadline = 2 * options.connect_budget + options.duration + options.drain + 4 * options.request_timeout + 30
        if options.churn:
            hard_deadline += options.churn_gap + options.connect_timeout
        sampler: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(hard_deadline):
                await self._check_topic()
                if not self.report.error:
                    tokens = await self._mint_tokens()
                    await self._connect_all(tokens)
                if self.clients and not self.report.error and not self.stopping:
                    if await self._sample_memory(first=True):
                        sampler = loop.create_task(self._memory_loop())
                    await asyncio.sleep(0.5)  # let every subscription settle before the first publish
                    await self._publish_phase()
                    await self._drain()
                    if sampler is not None:
                        sampler.cancel()
                        await self._sample_memory()
                elif not self.clients and not self.report.error:
                    self.report.error = "no client could connect"
        except TimeoutError:
            self.report.error = f"hard deadline of {hard_deadline:.0f} s reached"
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            self.report.error = "stopped (second Ctrl-C)"
        finally:
            self.phase = "closing"
            ticker.cancel()
            if sampler is not None:
                sampler.cancel()
            await self._stop_churn()
            await self._close_clients()
            self.rest.close()
            self._finish_report()
        return self.report

    def _install_interrupt(self, loop: asyncio.AbstractEventLoop, main: asyncio.Task[Any] | None) -> None:
        def interrupted() -> None:
            if self.stopping and main is not None:
                main.cancel()
                return
            self.stopping = True
            self.report.interrupted = True
            self.progress_event.set()
            self.say("interrupted: ending this phase (Ctrl-C again to stop at once)")

        # Only possible in the main thread (a management command); elsewhere Ctrl-C is not ours to handle.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, interrupted)

    async def _check_topic(self) -> None:
        self.phase = "topic"
        loop = asyncio.get_running_loop()
        topic = self.options.topic
        answer = await loop.run_in_executor(None, self.rest.topic_status, topic)
        if answer.status == 200:
            return
        if answer.status == 404 and self.options.create_topic:
            created = await loop.run_in_executor(None, self.rest.topic_create, topic)
            if created.status in (201, 409):
                self.say(f"created topic {topic!r}")
                return
            self.report.error = f"could not create topic {topic!r}: {_describe(created)}"
        elif answer.status == 404:
            self.report.error = f"topic {topic!r} does not exist (create it, or pass --create-topic with an admin key)"
        elif answer.status in (401, 0):
            self.report.error = f"the target refused the API key or did not answer: {_describe(answer)}"
        # 403: the key may publish but not read topics; the connects will tell whether the topic exists.

    async def _mint_tokens(self) -> list[str | None]:
        self.phase = "tokens"
        options = self.options
        loop = asyncio.get_running_loop()
        tokens: list[str | None] = [None] * options.clients
        errors: Counter[str] = Counter()
        started = loop.time()
        deadline = started + options.connect_budget
        slots = asyncio.Semaphore(options.token_threads)
        executor = ThreadPoolExecutor(options.token_threads, thread_name_prefix="loadtest-token")

        async def mint(index: int) -> None:
            try:
                call = functools.partial(self.rest.token_mint, f"{options.user_prefix}{index}", options.topic)
                answer = await loop.run_in_executor(executor, call)
            finally:
                slots.release()
            if answer.status == 201 and isinstance(answer.body, dict) and isinstance(answer.body.get("token"), str):
                tokens[index] = answer.body["token"]
            else:
                errors[_error_key(answer)] += 1

        tasks: set[asyncio.Task[None]] = set()
        try:
            for index in range(options.clients):
                if self.stopping or loop.time() > deadline:
                    break
                if index >= options.token_threads and errors and not any(tokens[:index]):
                    break  # every request so far failed: the key or the target is wrong
                await slots.acquire()
                task = loop.create_task(mint(index))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.report.tokens_minted = sum(1 for token in tokens if token)
            if tasks:
                await asyncio.wait(tasks, timeout=options.request_timeout * 2 + 5)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
        self.report.tokens_minted = sum(1 for token in tokens if token)
        self.report.token_errors = dict(errors)
        self.report.token_seconds = round(loop.time() - started, 2)
        if not self.report.tokens_minted:
            self.report.error = f"no connection token could be minted ({dict(errors)})"
        return tokens

    async def _connect_all(self, tokens: list[str | None]) -> None:
        self.phase = "connecting"
        options = self.options
        loop = asyncio.get_running_loop()
        errors: Counter[str] = Counter()
        slots = asyncio.Semaphore(options.connect_concurrency)
        started = loop.time()
        deadline = started + options.connect_budget
        last_success = started

        async def connect_one(index: int, token: str) -> None:
            nonlocal last_success
            started = time.monotonic()
            try:
                ws, cursor = await self._open(token, since=None, client=None)
            except ConnectFailed as failure:
                errors[failure.reason] += 1
                return
            finally:
                slots.release()
            self.connect_latency.add(time.monotonic() - started)
            client = Client(index=index, ws=ws, token=token, cursor=cursor)
            last_success = loop.time()
            self.clients.append(client)
            self.designated = client  # the last one to connect, as in the shared harness's W1
            client.task = loop.create_task(self._receive(client))

        tasks: set[asyncio.Task[None]] = set()
        for index, token in enumerate(tokens):
            if token is None:
                continue
            if self.stopping or loop.time() > deadline:
                break
            await slots.acquire()
            task = loop.create_task(connect_one(index, token))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=options.connect_timeout + 5)
        self.report.clients_connected = len(self.clients)
        self.report.connect_errors = dict(errors)
        self.report.connect_seconds = round(last_success - started, 2)
        if self.clients and last_success > started:
            self.report.connects_per_s = round(len(self.clients) / (last_success - started), 1)
        self.report.connect_latency_ms = self.connect_latency.percentiles_ms()

    async def _open(
        self, token: str, *, since: int | None, client: Client | None
    ) -> tuple[ClientConnection, int | None]:
        """One authenticated socket (connection.open_socket). On a reconnect the replayed notifications
        are accounted to `client` as they arrive; a first connect has nothing of this run to replay.
        Returns the socket and the cursor of `resumed`."""
        on_replayed = None
        if client is not None:

            def on_replayed(frame: dict[str, Any], now: float) -> None:
                self._account(client, frame, now, replay=True)

        ws, resumed = await open_socket(self.options, token, since=since, on_replayed=on_replayed)
        if client is not None and not resumed.get("recovered", True):
            self.replay_incomplete[str(resumed.get("reason") or "unknown")] += 1
        return ws, parse_cursor(resumed.get("cursor"))

    async def _receive(self, client: Client) -> None:
        ws = client.ws
        try:
            while True:
                raw = await ws.recv(decode=False)
                now = time.monotonic()
                try:
                    frame = loads(raw)
                except ValueError:
                    self.foreign += 1
                    continue
                kind = frame.get("type")
                if kind == "notification":
                    self._account(client, frame, now, replay=False)
                elif kind == "ping":
                    await ws.send(PONG)
        except ConnectionClosed as closed:
            if not self.closing and not client.leaving:
                code = closed.rcvd.code if closed.rcvd else 1006
                self.disconnects[f"closed {code}"] += 1
                client.gone = True

    def _account(self, client: Client, frame: dict[str, Any], now: float, *, replay: bool) -> None:
        """One notification frame received by `client`: its cursor, and whether it is a first delivery,
        a duplicate on this connection, or a re-send of what an earlier connection delivered."""
        if self.track_cursor:
            cursor = parse_cursor(frame.get("cursor"))
            if cursor is not None and (client.cursor is None or cursor > client.cursor):
                client.cursor = cursor
        data = frame.get("data")
        seq = data.get("seq") if isinstance(data, dict) and data.get("run") == self.run_id else None
        if not isinstance(seq, int) or not 0 <= seq < self.options.planned_messages:
            self.foreign += 1
            return
        assert isinstance(data, dict)
        seen, on_connection = client.seen, client.connection_seen
        if on_connection is not None:  # the client has reconnected: tell the two kinds of repeat apart
            if not on_connection.add(seq):
                seen.duplicates += 1  # twice on one connection: the server should have dropped it
                return
            if seq in seen:
                self.replayed_again += 1  # an earlier connection had it: allowed at resume seams
                return
        if not seen.add(seq):
            return  # a duplicate (first connection), counted by the seen set
        self.delivered += 1
        sent = data.get("sent")
        if isinstance(sent, float | int):
            if replay:
                self.replay_latency.add(now - sent)
            else:
                self.latency.add(now - sent)
                if len(self.interval_latencies) < INTERVAL_SAMPLES_KEPT:
                    self.interval_latencies.append(now - sent)
        if replay:
            self.replayed += 1
        if client is self.designated:
            self.progress_event.set()

    # --- churn -----------------------------------------------------------------------------------------

    async def _churn_loop(self) -> None:
        """While publishing: close --churn clients a second (ChurnSchedule), chosen round-robin in a
        shuffled order among those connected (ChurnPicker); each is resumed by its own task. At most
        --connect-concurrency clients are away at once; a close that finds none available is skipped."""
        options = self.options
        loop = asyncio.get_running_loop()
        schedule = ChurnSchedule(options.churn)
        picker = ChurnPicker(len(self.clients), random.Random(self.run_id))
        clients = self.clients

        def available(index: int) -> bool:
            return not clients[index].away and not clients[index].gone

        started = loop.time()
        while not self.stopping:
            elapsed = loop.time() - started
            for _ in range(schedule.due(elapsed)):
                index = picker.pick(available) if len(self.churn_tasks) < options.connect_concurrency else None
                if index is None:
                    self.churn_skipped += 1
                    continue
                task = loop.create_task(self._churn_one(clients[index]))
                self.churn_tasks.add(task)
                task.add_done_callback(self.churn_tasks.discard)
            self.churn_skipped += schedule.dropped
            schedule.dropped = 0
            await asyncio.sleep(schedule.wait(loop.time() - started))

    async def _churn_one(self, client: Client) -> None:
        """Close the client's socket, stay away --churn-gap seconds, reconnect resuming from its cursor."""
        client.away = True
        try:
            client.leaving = True
            await close_quietly(client.ws)
            if client.task is not None:
                await asyncio.wait([client.task], timeout=CLOSE_TIMEOUT_SECONDS)
                client.task.cancel()
            client.leaving = False
            await asyncio.sleep(self.options.churn_gap)
            for attempt in range(RECONNECT_ATTEMPTS):
                if self.closing:
                    return
                if attempt:
                    await asyncio.sleep(RECONNECT_BACKOFF_SECONDS * 2 ** (attempt - 1))
                client.connection_seen = SeenSet()
                try:
                    ws, cursor = await self._open(client.token, since=client.cursor, client=client)
                except ConnectFailed as failure:
                    self.reconnect_errors[failure.reason] += 1
                    if failure.reason in FRESH_TOKEN_REASONS:
                        await self._fresh_token(client)
                    continue
                if cursor is not None and (client.cursor is None or cursor > client.cursor):
                    client.cursor = cursor  # `resumed.cursor`: "your position now; continue from it"
                client.ws = ws
                client.task = asyncio.get_running_loop().create_task(self._receive(client))
                self.reconnects += 1
                return
            client.gone = True
        finally:
            client.away = False

    async def _fresh_token(self, client: Client) -> None:
        """The token expired (a soak longer than its 15-minute lifetime) or was refused: mint another."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.rest.token_mint, f"{self.options.user_prefix}{client.index}", self.options.topic)
        answer = await loop.run_in_executor(None, call)
        if answer.status == 201 and isinstance(answer.body, dict) and isinstance(answer.body.get("token"), str):
            client.token = answer.body["token"]
        else:
            self.reconnect_errors[f"token: {_error_key(answer)}"] += 1

    async def _stop_churn(self) -> None:
        """Cancel the reconnects still running (each aborts its half-open socket), bounded."""
        tasks = list(self.churn_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_SECONDS)

    # --- server memory ---------------------------------------------------------------------------------

    async def _sample_memory(self, *, first: bool = False) -> bool:
        """One RSS sample from /metrics; False if it could not be read. A first sample that fails ends
        the sampling (the run goes on without it); a later one is counted and sampling continues."""
        if self.metrics is None:
            return False
        loop = asyncio.get_running_loop()
        rss, problem = await loop.run_in_executor(None, self.metrics.read_rss)
        if rss is None:
            self.memory_failures[problem] += 1
            if first:
                self.say(f"server memory: cannot read {self.metrics.url}: {problem}; going on without it")
            return False
        elapsed = time.monotonic() - self._started
        self.memory_samples.append(Sample(elapsed, rss))
        self.memory_news = f"server RSS {rss / 1e6:,.1f} MB"
        if first:
            self.say(f"server memory: RSS {rss / 1e6:,.1f} MB at start ({self.metrics.url})")
        return True

    async def _memory_loop(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            await self._sample_memory()

    async def _publish_phase(self) -> None:
        self.phase = "publishing"
        options = self.options
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(options.max_in_flight, thread_name_prefix="loadtest-publish")
        slots = asyncio.Semaphore(options.max_in_flight)
        filler = "x" * options.payload_bytes
        planned = options.planned_messages
        tasks: set[asyncio.Task[None]] = set()
        max_lag = 0.0
        designated = self.designated
        assert designated is not None

        async def publish_one(seq: int) -> None:
            try:
                call = functools.partial(
                    self.rest.publish, topic=options.topic, run=self.run_id, seq=seq, filler=filler
                )
                answer = await loop.run_in_executor(executor, call)
            finally:
                slots.release()
            self.publish_latency.add(answer.seconds)
            if answer.status == 202:
                self.accepted.add(seq)
            else:
                self.publish_errors[_error_key(answer)] += 1

        churner = loop.create_task(self._churn_loop()) if options.churn else None
        cpu_before, delivered_before = time.process_time(), self.delivered
        started = loop.time()
        end = started + options.duration
        progress_at, highest = started, designated.seen.highest
        seq = 0
        try:
            while seq < planned and not self.stopping:
                now = loop.time()
                if now >= end:
                    break
                if options.rate is not None:
                    due = started + seq / options.rate
                    if due > now:
                        await asyncio.sleep(min(due, end) - now)
                        continue
                    max_lag = max(max_lag, now - due)
                else:
                    if designated.seen.highest != highest:
                        highest, progress_at = designated.seen.highest, now
                    if seq - 1 - highest >= options.window:
                        if now - progress_at > STALL_SECONDS:
                            self.report.stalled = True
                            self.say(f"stalled: the last client saw nothing new for {STALL_SECONDS:g} s")
                            break
                        self.progress_event.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.progress_event.wait(), timeout=0.1)
                        continue
                await slots.acquire()
                task = loop.create_task(publish_one(seq))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                seq += 1
                self.published = seq
            publishing_ended = loop.time()
            if churner is not None:
                churner.cancel()  # no new closes; the reconnects under way finish during the drain
            delivered_during = self.delivered - delivered_before
            cpu_during = time.process_time() - cpu_before
            if tasks:
                await asyncio.wait(tasks, timeout=2 * options.request_timeout + 5)
        finally:
            if churner is not None:
                churner.cancel()
            executor.shutdown(wait=False, cancel_futures=True)
        wall = max(publishing_ended - started, 1e-6)
        self.report.publish_seconds = round(wall, 2)
        self.report.publishes_per_s = round(self.accepted.unique / wall, 1)
        self.report.deliveries_per_s = round(delivered_during / wall, 1)
        self.report.loadtest_cpu_pct = round(100 * cpu_during / wall, 1)
        if options.rate is not None:
            self.report.publish_max_lag_ms = round(1000 * max_lag, 1)

    async def _drain(self) -> None:
        self.phase = "draining"
        loop = asyncio.get_running_loop()
        started = loop.time()
        last_count, last_change = -1, started
        reason = "complete"
        while self.delivered < self.accepted.unique * len(self.clients):
            now = loop.time()
            if self.stopping:
                reason = "interrupted"
                break
            if now - started >= self.options.drain:
                reason = "timeout-still-arriving"
                break
            if self.delivered != last_count or self.churn_tasks:  # a reconnect under way will replay
                last_count, last_change = self.delivered, now
            elif now - last_change >= DRAIN_IDLE_SECONDS:
                reason = f"nothing-new-for-{DRAIN_IDLE_SECONDS:g}s"
                break
            await asyncio.sleep(0.05)
        self.report.drain_end = reason
        self.report.drain_seconds = round(loop.time() - started, 2)

    async def _close_clients(self) -> None:
        self.closing = True
        if not self.clients:
            return
        closers = [asyncio.create_task(client.ws.close()) for client in self.clients]
        await asyncio.wait(closers, timeout=CLOSE_TIMEOUT_SECONDS)
        receivers = [client.task for client in self.clients if client.task is not None]
        for task in receivers + closers:
            task.cancel()
        await asyncio.wait(receivers + closers, timeout=CLOSE_TIMEOUT_SECONDS)

    def _finish_report(self) -> None:
        report = self.report
        report.published = self.published
        report.accepted = self.accepted.unique
        report.publish_errors = dict(self.publish_errors)
        report.publish_latency_ms = self.publish_latency.percentiles_ms()
        report.latency_ms = self.latency.percentiles_ms()
        report.disconnects = dict(self.disconnects)
        received = sum(client.seen.count_in(self.accepted) for client in self.clients)
        report.expected = self.accepted.unique * len(self.clients)
        report.delivered = received
        report.lost = report.expected - received
        report.clients_incomplete = sum(
            1 for client in self.clients if client.seen.count_in(self.accepted) < self.accepted.unique
        )
        report.duplicates = sum(client.seen.duplicates for client in self.clients)
        report.unexpected = sum(client.seen.unique for client in self.clients) - received
        report.reconnects = self.reconnects
        report.reconnect_errors = dict(self.reconnect_errors)
        report.churn_skipped = self.churn_skipped
        report.clients_gone = sum(1 for client in self.clients if client.gone)
        report.replayed = self.replayed
        report.replayed_again = self.replayed_again
        report.replay_incomplete = dict(self.replay_incomplete)
        report.replay_latency_ms = self.replay_latency.percentiles_ms()
        report.server_memory = memory_summary(self.memory_samples)
        if self.memory_failures:
            report.server_memory_error = "; ".join(
                f"{problem} ({count}x)" if count > 1 else problem for problem, count in self.memory_failures.items()
            )
        if self.phase == "closing" and not report.drain_end and report.accepted:
            report.drain_end = "not reached"

    # --- progress --------------------------------------------------------------------------------------

    async def _progress_loop(self) -> None:
        interval = self.options.progress_interval
        last_time, last_delivered, last_accepted = time.monotonic(), 0, 0
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            elapsed = now - self._started
            span = max(now - last_time, 1e-6)
            if self.phase == "tokens":
                self.say(f"{elapsed:6.1f}s tokens: {self.report.tokens_minted:,}/{self.options.clients:,}")
            elif self.phase == "connecting":
                self.say(f"{elapsed:6.1f}s connected: {len(self.clients):,}/{self.options.clients:,}")
            elif self.phase in ("publishing", "draining"):
                samples = sorted(self.interval_latencies)
                self.interval_latencies = array("d")
                latency = "no deliveries"
                if samples:
                    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
                    latency = f"p50 {1000 * p50:.1f} ms p99 {1000 * p99:.1f} ms"
                accepted, errors = self.accepted.unique, sum(self.publish_errors.values())
                connected = sum(1 for client in self.clients if not client.away and not client.gone)
                churn = ""
                if self.options.churn:
                    churn = (
                        f", away {len(self.churn_tasks):,}; reconnects {self.reconnects:,} "
                        f"(failed {sum(self.reconnect_errors.values()):,}), replayed {self.replayed:,}"
                    )
                memory, self.memory_news = (f"; {self.memory_news}" if self.memory_news else ""), ""
                self.say(
                    f"{elapsed:6.1f}s {self.phase}: published {self.published:,} "
                    f"({(accepted - last_accepted) / span:,.1f}/s accepted, errors {errors}) "
                    f"delivered {self.delivered:,} ({(self.delivered - last_delivered) / span:,.0f}/s) {latency}; "
                    f"clients {connected:,}{churn}{memory}"
                )
                last_accepted = accepted
            last_time, last_delivered = now, self.delivered


def _error_key(answer: Answer) -> str:
    if answer.status:
        code = answer.body.get("error", {}).get("code") if isinstance(answer.body, dict) else None
        return f"HTTP {answer.status}" + (f" {code}" if code else "")
    return answer.error.split(":", 1)[0] or "no answer"


def _describe(answer: Answer) -> str:
    if answer.status:
        return f"HTTP {answer.status} {json.dumps(answer.body)[:200]}"
    return answer.error or "no answer"


def _raise_file_limit(needed: int) -> None:
    """One descriptor per client: raise the soft limit towards the hard one if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(options: Options, *, progress: Callable[[str], None]) -> Report:
    """Run one load test to completion (blocking) and return its report."""
    return asyncio.run(LoadTest(options, progress=progress).run())

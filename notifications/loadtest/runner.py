"""One load-test run against a Herald deployment, on asyncio: mint a connection token per client over
REST, connect and authenticate the clients (bounded concurrency), publish events to the topic over
REST at a fixed rate or as fast as a delivery window allows, wait for late deliveries, report, close.

Every phase is bounded in count (clients, `planned_messages`) and in time (connect budget, duration,
drain, request timeouts, and one hard deadline for the whole run); Ctrl-C ends the current phase and
still prints the report (a second Ctrl-C stops at once)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
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

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from notifications.loadtest.options import Options
from notifications.loadtest.rest import Answer, RestClient
from notifications.loadtest.stats import LatencyRecorder, Report, SeenSet

try:  # orjson is one of Herald's own dependencies; parsing every frame is this tool's main cost
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

PONG = '{"type":"pong"}'
# --max mode: the publish phase ends if the last client saw nothing new for this long.
STALL_SECONDS = 15.0
# A drain ends early when nothing new arrived for this long (the rest is not coming).
DRAIN_IDLE_SECONDS = 3.0
# Closing every socket at the end may take this long at most.
CLOSE_TIMEOUT_SECONDS = 10.0
# Latencies kept for the per-progress-line percentiles (the final ones use LatencyRecorder).
INTERVAL_SAMPLES_KEPT = 200_000


@dataclass(eq=False)
class Client:
    index: int
    ws: ClientConnection
    seen: SeenSet = field(default_factory=SeenSet)
    task: asyncio.Task[None] | None = None


class LoadTest:
    def __init__(self, options: Options, *, progress: Callable[[str], None]) -> None:
        self.options = options
        self.say = progress
        self.run_id = secrets.token_hex(4)
        self.rest = RestClient(options)
        mode = f"rate {options.rate:g}/s" if options.rate is not None else f"max (window {options.window})"
        self.report = Report(
            url=options.url,
            topic=options.topic,
            run=self.run_id,
            mode=f"{mode} for {options.duration:g} s",
            clients_requested=options.clients,
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
        try:
            async with asyncio.timeout(hard_deadline):
                await self._check_topic()
                if not self.report.error:
                    tokens = await self._mint_tokens()
                    await self._connect_all(tokens)
                if self.clients and not self.report.error and not self.stopping:
                    await asyncio.sleep(0.5)  # let every subscription settle before the first publish
                    await self._publish_phase()
                    await self._drain()
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
            try:
                client = await self._connect_client(index, token)
            except _ConnectFailed as failure:
                errors[failure.reason] += 1
                return
            finally:
                slots.release()
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

    async def _connect_client(self, index: int, token: str) -> Client:
        options = self.options
        started = time.monotonic()
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(options.connect_timeout):
                ws = await connect(
                    options.ws_url,
                    ssl=options.ssl_context(),
                    open_timeout=None,  # bounded by the timeout above
                    ping_interval=None,  # Herald's own heartbeat frames are answered below
                    compression=None,
                    max_size=2**20,
                    close_timeout=2,
                    user_agent_header="herald-loadtest",
                )
                await ws.send(json.dumps({"type": "auth", "token": token, "topics": [options.topic]}))
                while True:  # welcome, an (empty) replay, then resumed
                    frame = _loads(await ws.recv(decode=False))
                    kind = frame.get("type")
                    if kind == "resumed":
                        break
                    if kind == "error":
                        raise _ConnectFailed(f"auth error: {frame.get('code')}")
                    if kind == "ping":
                        await ws.send(PONG)
        except _ConnectFailed:
            await _close_quietly(ws)
            raise
        except TimeoutError:
            await _close_quietly(ws)
            raise _ConnectFailed("timeout") from None
        except InvalidStatus as error:
            raise _ConnectFailed(f"HTTP {error.response.status_code}") from None
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006
            raise _ConnectFailed(f"closed {code}") from None
        except (OSError, InvalidHandshake, ValueError) as error:
            await _close_quietly(ws)
            raise _ConnectFailed(type(error).__name__) from None
        self.connect_latency.add(time.monotonic() - started)
        return Client(index=index, ws=ws)

    async def _receive(self, client: Client) -> None:
        run, limit = self.run_id, self.options.planned_messages
        ws, seen = client.ws, client.seen
        try:
            while True:
                raw = await ws.recv(decode=False)
                now = time.monotonic()
                try:
                    frame = _loads(raw)
                except ValueError:
                    self.foreign += 1
                    continue
                kind = frame.get("type")
                if kind == "notification":
                    data = frame.get("data")
                    seq = data.get("seq") if isinstance(data, dict) and data.get("run") == run else None
                    if not isinstance(seq, int) or not 0 <= seq < limit:
                        self.foreign += 1
                        continue
                    if seen.add(seq):
                        self.delivered += 1
                        sent = data.get("sent")
                        if isinstance(sent, float | int):
                            self.latency.add(now - sent)
                            if len(self.interval_latencies) < INTERVAL_SAMPLES_KEPT:
                                self.interval_latencies.append(now - sent)
                        if client is self.designated:
                            self.progress_event.set()
                elif kind == "ping":
                    await ws.send(PONG)
        except ConnectionClosed as closed:
            if not self.closing:
                code = closed.rcvd.code if closed.rcvd else 1006
                self.disconnects[f"closed {code}"] += 1

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
            delivered_during = self.delivered - delivered_before
            cpu_during = time.process_time() - cpu_before
            if tasks:
                await asyncio.wait(tasks, timeout=2 * options.request_timeout + 5)
        finally:
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
            if self.delivered != last_count:
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
        report.duplicates = sum(client.seen.duplicates for client in self.clients)
        report.unexpected = sum(client.seen.unique for client in self.clients) - received
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
                self.say(
                    f"{elapsed:6.1f}s {self.phase}: published {self.published:,} "
                    f"({(accepted - last_accepted) / span:,.1f}/s accepted, errors {errors}) "
                    f"delivered {self.delivered:,} ({(self.delivered - last_delivered) / span:,.0f}/s) {latency}; "
                    f"clients {len(self.clients) - sum(self.disconnects.values()):,}"
                )
                last_accepted = accepted
            last_time, last_delivered = now, self.delivered


class _ConnectFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _close_quietly(ws: ClientConnection | None) -> None:
    if ws is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), timeout=2)


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

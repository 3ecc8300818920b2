#!/usr/bin/env python3
"""Side-by-side table of one run sequence of the shared harness: every peer's figure per workload, with
its ratio to node-ws and to py-websockets computed per repetition (same sequence, same repetition, run
minutes apart) and then the median of those ratios, as the harness's tools/summarize.py does.

    side_by_side.py RESULTS.jsonl --seq SEQ_ID [--pg-dir results/raw] [--focus herald]

Columns: W1 deliveries/s (+ server CPU µs per delivery), W2 p50/p99 ms and delivered/s, W3 conn/s and
server KB/connection; generator / server / Redis CPU; missing and duplicate deliveries. With --pg-dir,
Herald's PostgreSQL backend CPU (bench/tools/pgcpu.py) is shown as a share of its server process's CPU
over the same run."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections import defaultdict
from pathlib import Path

BASELINES = ("node-ws", "py-websockets")
NONE = "\N{EN DASH}"  # an empty cell, as in the harness's tables


def key_of(row: dict) -> tuple[str, int, float | None]:
    workload = row["workload"]
    return (workload.upper(), int(row["meta"]["n"]), row["params"].get("rate") if workload == "w2" else None)


def title(key: tuple[str, int, float | None]) -> str:
    workload, n, rate = key
    if workload == "W1":
        return f"W1 fan-out throughput, N={n}"
    if workload == "W2":
        return f"W2 latency, N={n} @ {rate:g} msg/s ({n * rate:,.0f} deliveries/s offered)"
    return f"W3 idle connections, C={n}"


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return NONE
    return f"{value:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--seq", action="append", required=True)
    parser.add_argument("--pg-dir", help="directory with herald-pgcpu-<pid>.json files (pgcpu.py)")
    parser.add_argument("--focus", default="herald", help="peer whose ratios are repeated at the end")
    args = parser.parse_args()

    rows = []
    for line in Path(args.file).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("meta", {}).get("seq_id") in args.seq:
                rows.append(row)
    if not rows:
        raise SystemExit(f"no result lines for {args.seq} in {args.file}")
    pg: dict[str, dict] = {}
    if args.pg_dir:
        for path in Path(args.pg_dir).glob("herald-pgcpu-*.json"):
            with contextlib.suppress(ValueError, OSError):
                pg[path.stem.rsplit("-", 1)[1]] = json.loads(path.read_text())

    peers: list[str] = []
    by_key: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    by_rep: dict[tuple, dict] = {}
    for row in rows:
        peer = row["meta"]["peer"]
        if peer not in peers:
            peers.append(peer)
        by_key[key_of(row)][peer].append(row)
        by_rep[(row["meta"].get("seq_id"), row["meta"].get("rep"), key_of(row), peer)] = row

    def ratio(key: tuple, peer: str, baseline: str, get) -> float | None:  # type: ignore[no-untyped-def]
        out = []
        for (seq, rep, k, p), row in by_rep.items():
            if k != key or p != peer or not row.get("ok"):
                continue
            base = by_rep.get((seq, rep, key, baseline))
            if base and base.get("ok") and get(row) is not None and get(base):
                out.append(get(row) / get(base))
        return statistics.median(out) if out else None

    def ratios(key: tuple, peer: str, get, digits: int = 3) -> str:  # type: ignore[no-untyped-def]
        cells = []
        for baseline in BASELINES:
            value = ratio(key, peer, baseline, get)
            cells.append(NONE if value is None else f"{value:.{digits}f}")
        return " | ".join(cells)

    def cpu(row: dict, who: str) -> float | None:
        return (row.get("proc_cpu_pct") or {}).get(who)

    def pg_share(rows_: list[dict]) -> str:
        shares = []
        for row in rows_:
            sample = pg.get(str(row["meta"].get("runid", "")).rsplit("-", 1)[-1])
            if sample and sample.get("server_cpu_s"):
                shares.append(100 * sample["db_cpu_s"] / sample["server_cpu_s"])
        return f"{median(shares):.0f} %" if shares else NONE

    summary: list[str] = []
    print(f"_sequence {', '.join(args.seq)}: {len(rows)} runs; ratios are medians of per-repetition ratios_\n")
    for key in sorted(by_key, key=lambda k: (k[0], k[1], k[2] or 0)):
        workload = key[0]
        print(f"### {title(key)}\n")
        if workload == "W1":
            print(
                "| peer | reps | deliveries/s | ÷ node-ws | ÷ py-websockets | server CPU µs/delivery | missing / dup | "
                "drain | gen CPU % | server CPU % | redis CPU % | postgres CPU (% of server's) |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        elif workload == "W2":
            print(
                "| peer | reps | p50 ms | p99 ms | max ms | delivered/s | p50 ÷ node-ws | p50 ÷ py-websockets | "
                "sustained | missing / dup | gen CPU % | server CPU % | redis CPU % | postgres CPU (% of server's) |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        else:
            print(
                "| peer | reps | reached | conn/s | ÷ node-ws | ÷ py-websockets | server KB/conn | redis KB/conn | "
                "gen CPU % | server CPU % | postgres CPU (% of server's) |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|")
        for peer in peers:
            runs = [r for r in by_key[key].get(peer, []) if r.get("ok")]
            if not runs:
                if by_key[key].get(peer):
                    print(f"| {peer} | 0 | failed: {str(by_key[key][peer][0].get('error'))[:80]} |")
                continue
            lost = f"{sum(r.get('lost', 0) for r in runs):,} / {sum(r.get('duplicates', 0) for r in runs):,}"
            gen = num(max(r.get("gen_cpu_pct") or 0 for r in runs), 1)
            server = num(median([cpu(r, "server") for r in runs]), 1)
            redis = num(median([cpu(r, "redis") for r in runs]), 1)
            if workload == "W1":
                rate = median([r["delivered_per_s"] for r in runs])
                per_delivery = median(
                    [
                        1e6 * cpu(r, "server") / 100 / r["delivered_per_s"]
                        for r in runs
                        if cpu(r, "server") and r.get("delivered_per_s")
                    ]
                )
                drains = ",".join(sorted({str(r.get("drain_end")) for r in runs}))
                print(
                    f"| {peer} | {len(runs)} | {num(rate)} | {ratios(key, peer, lambda r: r.get('delivered_per_s'))} | "
                    f"{num(per_delivery, 1)} | {lost} | {drains} | {gen} | {server} | {redis} | {pg_share(runs)} |"
                )
                if peer == args.focus:
                    summary.append(
                        f"- {title(key)}: {num(rate)} deliveries/s = "
                        f"{ratios(key, peer, lambda r: r.get('delivered_per_s')).replace(' | ', ' of node-ws, ')}"
                        " of py-websockets"
                    )
            elif workload == "W2":
                if not any(r.get("latency_ms") for r in runs):
                    cells = [peer, str(len(runs)), "nothing delivered", "", "", "", "", "", f"0/{len(runs)}", lost, gen]
                    print("| " + " | ".join([*cells, server]) + " |")
                    continue
                runs = [r for r in runs if r.get("latency_ms")]
                p50 = median([r["latency_ms"]["p50"] for r in runs])
                p99 = median([r["latency_ms"]["p99"] for r in runs])
                sustained = sum(1 for r in runs if r.get("sustained"))

                def lat50(r: dict) -> float | None:
                    return (r.get("latency_ms") or {}).get("p50")

                print(
                    f"| {peer} | {len(runs)} | {num(p50, 1)} | {num(p99, 1)} | "
                    f"{num(median([r['latency_ms']['max'] for r in runs]), 0)} | "
                    f"{num(median([r['delivered_per_s'] for r in runs]))} | {ratios(key, peer, lat50, 1)} | "
                    f"{sustained}/{len(runs)} | {lost} | {gen} | {server} | {redis} | {pg_share(runs)} |"
                )
                if peer == args.focus:
                    summary.append(
                        f"- {title(key)}: p50 {num(p50, 1)} ms, p99 {num(p99, 1)} ms, "
                        f"{num(median([r['delivered_per_s'] for r in runs]))} delivered/s, "
                        f"sustained {sustained}/{len(runs)}"
                    )
            else:
                rate = median([r["conn_per_s"] for r in runs])
                print(
                    f"| {peer} | {len(runs)} | {min(r['connections'] for r in runs):,} | {num(rate)} | "
                    f"{ratios(key, peer, lambda r: r.get('conn_per_s'))} | "
                    f"{num(median([(r.get('rss_per_conn_kb') or {}).get('server') for r in runs]), 1)} | "
                    f"{num(median([(r.get('rss_per_conn_kb') or {}).get('redis') for r in runs]), 2)} | "
                    f"{gen} | {server} | {pg_share(runs)} |"
                )
                if peer == args.focus:
                    summary.append(
                        f"- {title(key)}: {num(rate)} conn/s = "
                        f"{ratios(key, peer, lambda r: r.get('conn_per_s')).replace(' | ', ' of node-ws, ')}"
                        " of py-websockets"
                    )
        print()
    if summary:
        print(f"**{args.focus}:**\n")
        print("\n".join(summary))
        print()


if __name__ == "__main__":
    main()

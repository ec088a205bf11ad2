"""Producer benchmark with the RocketMQ C++ client, in the spirit of RocketMQ's benchmark/Producer.

Runs ``--procs`` worker processes, each with one C++ producer shared by ``--threads`` sending
threads, each thread sending one message at a time (send_sync, or send_oneway with ``--oneway``)
for ``--duration`` seconds. Every ``--interval`` seconds it prints the send TPS and the send
round-trip time (avg, p50, p99, max) over that interval; at the end the totals without the
``--warmup`` seconds.

    .venv/bin/python bench/producer.py -n 127.0.0.1:9876 -t BenchTopic -s 1024 --procs 4 -d 30

Needs a running NameServer + Broker (``twistd -n rmq-standalone --data DIR`` or Apache RocketMQ).
The C++ client logs under ``$HOME/logs/rocketmq-cpp``; ``--home`` moves that.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from typing import Any

import cppstats


def worker(cfg: dict[str, Any]) -> None:
    """One process: a C++ producer, N sending threads, a JSON stats line per second."""
    from rocketmq.client import Message, Producer
    from rocketmq.ffi import dll

    producer = Producer(cfg["group"], timeout=cfg["timeout_ms"])
    producer.set_namesrv_addr(cfg["namesrv"])
    dll.SetProducerLogLevel(producer._handle, 2)  # errors only: logging costs throughput
    producer.start()
    body = random.Random(cfg["seed"]).randbytes(cfg["size"]).replace(b"\0", b"\1")
    lock = threading.Lock()
    state: dict[str, Any] = {"hist": cppstats.Histogram(), "failed": 0, "errors": []}
    stop_at = time.monotonic() + cfg["duration"]

    def send_loop() -> None:
        while time.monotonic() < stop_at:
            msg = Message(cfg["topic"])
            dll.SetByteMessageBody(msg._handle, body, len(body))
            if cfg["tags"]:
                msg.set_tags(cfg["tags"])
            t0 = time.perf_counter()
            try:
                if cfg["oneway"]:
                    producer.send_oneway(msg)
                else:
                    producer.send_sync(msg)
            except Exception as e:  # noqa: BLE001 - counted and reported, the benchmark goes on
                with lock:
                    state["failed"] += 1
                    if len(state["errors"]) < 3:
                        state["errors"].append(f"{type(e).__name__}: {e}"[:200])
                continue
            us = (time.perf_counter() - t0) * 1e6
            with lock:
                state["hist"].add(us)

    threads = [threading.Thread(target=send_loop) for _ in range(cfg["threads"])]
    for t in threads:
        t.start()
    last = time.monotonic()
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        with lock:
            hist, failed, errors = state["hist"], state["failed"], state["errors"]
            state.update(hist=cppstats.Histogram(), failed=0, errors=[])
        now = time.monotonic()
        span, last = now - last, now
        cppstats.emit({"span": span, "hist": hist.to_json(), "failed": failed, "errors": errors})
    producer.shutdown()


def main() -> None:
    """Parse options, run the workers, print interval and total figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--namesrv", default=os.environ.get("NAMESRV_ADDR", "127.0.0.1:9876"))
    parser.add_argument("-t", "--topic", default="BenchmarkTest")
    parser.add_argument("-g", "--group", default="benchmark_producer")
    parser.add_argument("-s", "--size", type=int, default=1024, help="body size in bytes")
    parser.add_argument("--tags", default="", help="tags on every message")
    parser.add_argument("--procs", type=int, default=1, help="producer processes")
    parser.add_argument("--threads", type=int, default=1, help="sending threads per process")
    parser.add_argument("-d", "--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("-i", "--interval", type=float, default=5.0, help="report every N s")
    parser.add_argument("-w", "--warmup", type=float, default=5.0, help="seconds left out")
    parser.add_argument("--oneway", action="store_true", help="send_oneway instead of send_sync")
    parser.add_argument("--timeout-ms", type=int, default=3000, help="send timeout")
    parser.add_argument("--home", help="HOME for the C++ client (its logs go to HOME/logs)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    if args.home:
        os.environ["HOME"] = args.home
    argv_list = []
    for i in range(args.procs):
        cfg = {
            "namesrv": args.namesrv,
            "topic": args.topic,
            "group": args.group,
            "size": args.size,
            "tags": args.tags,
            "threads": args.threads,
            "duration": args.duration,
            "oneway": args.oneway,
            "timeout_ms": args.timeout_ms,
            "seed": i,
        }
        argv_list.append([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)])
    mode = "send_oneway" if args.oneway else "send_sync"
    print(
        f"C++ client producer benchmark: {args.procs} process(es) x {args.threads} thread(s), "
        f"{mode}, {args.size} B bodies, topic {args.topic}, namesrv {args.namesrv}",
        flush=True,
    )
    procs, lines = cppstats.spawn_workers(argv_list)
    start = time.monotonic()
    running = len(procs)
    window, total = cppstats.Histogram(), cppstats.Histogram()
    window_failed = total_failed = 0
    total_span = 0.0  # worker-seconds measured after the warm-up
    next_report = start + args.interval
    errors: list[str] = []
    try:
        while running:
            try:
                item = lines.get(timeout=max(0.05, next_report - time.monotonic()))
            except Exception:  # noqa: BLE001 - queue.Empty: time to report
                item = "tick"
            if item is None:
                running -= 1
            elif isinstance(item, dict):
                window.merge(item["hist"])
                window_failed += item["failed"]
                errors.extend(item["errors"])
                if time.monotonic() - start > args.warmup + 0.5:
                    total.merge(item["hist"])
                    total_failed += item["failed"]
                    total_span += item["span"]
            now = time.monotonic()
            span = now - (next_report - args.interval)
            if now >= next_report or (not running and span >= 1.0):
                print(
                    f"[{now - start:6.1f}s] send TPS {window.count / span:9.0f}  "
                    f"{window.summary_ms()}  failed {window_failed}",
                    flush=True,
                )
                for err in errors[:3]:
                    print(f"    error: {err}", flush=True)
                errors = []
                window, window_failed = cppstats.Histogram(), 0
                next_report = now + args.interval
    finally:
        cppstats.stop_workers(procs)
    measured = max(0.001, total_span / args.procs)
    print(
        f"TOTAL (after {args.warmup:g}s warm-up, {measured:.1f}s): {total.count} sent, "
        f"{total.count / measured:.0f} msg/s, {total.summary_ms()}, failed {total_failed}",
        flush=True,
    )


if __name__ == "__main__":
    main()

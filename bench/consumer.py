"""Consumer benchmark with the RocketMQ C++ PushConsumer, like RocketMQ's benchmark/Consumer.

Runs ``--procs`` worker processes, each a C++ PushConsumer (clustering) in group ``--group`` on
``--topic``. Every ``--interval`` seconds it prints the receive TPS and the born-to-consume time
(avg, p50, p99, max; milliseconds, both clocks on this machine). With ``--expect N`` it stops once
N messages arrived and prints the drain rate (N divided by first-to-last arrival time).

Drain measurement: fill a topic first (bench/producer.py with no consumer running), then start a
consumer with a NEW group: a new group starts at each queue's first offset and reads everything.

    .venv/bin/python bench/producer.py -n 127.0.0.1:9876 -t Drain -s 1024 --procs 4 -d 20 -w 0
    .venv/bin/python bench/consumer.py -n 127.0.0.1:9876 -t Drain -g drain_$RANDOM --expect 200000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

import cppstats


def worker(cfg: dict[str, Any]) -> None:
    """One process: a C++ PushConsumer; a JSON stats line per second until told to stop."""
    from rocketmq.client import PushConsumer
    from rocketmq.ffi import MSG_CALLBACK_FUNC, dll

    consumer = PushConsumer(cfg["group"])
    consumer.set_namesrv_addr(cfg["namesrv"])
    consumer.set_instance_name(cfg["instance"])
    dll.SetPushConsumerLogLevel(consumer._handle, 2)  # errors only
    if cfg["threads"]:
        consumer.set_thread_count(cfg["threads"])
    if cfg["batch"]:
        consumer.set_message_batch_max_size(cfg["batch"])
    lock = threading.Lock()
    state: dict[str, Any] = {"hist": cppstats.Histogram(), "first": 0.0, "last": 0.0}
    get_born = dll.GetMessageBornTimestamp

    def on_message(_consumer: int, handle: int) -> int:
        now = time.time()
        latency_us = (now * 1000 - get_born(handle)) * 1000
        with lock:
            state["hist"].add(max(0.0, latency_us))
            if not state["first"]:
                state["first"] = now
            state["last"] = now
        return 0

    callback = MSG_CALLBACK_FUNC(on_message)
    dll.Subscribe(consumer._handle, cfg["topic"].encode(), cfg["expression"].encode())
    dll.RegisterMessageCallback(consumer._handle, callback)
    consumer.start()
    deadline = time.monotonic() + cfg["duration"]
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        with lock:
            hist, first, last = state["hist"], state["first"], state["last"]
            state.update(hist=cppstats.Histogram(), first=0.0)
        cppstats.emit({"hist": hist.to_json(), "first": first, "last": last})
    consumer.shutdown()


def main() -> None:
    """Parse options, run the consumers, print interval figures and the drain rate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--namesrv", default=os.environ.get("NAMESRV_ADDR", "127.0.0.1:9876"))
    parser.add_argument("-t", "--topic", default="BenchmarkTest")
    parser.add_argument("-g", "--group", default="benchmark_consumer")
    parser.add_argument("-e", "--expression", default="*", help="tag expression")
    parser.add_argument("--procs", type=int, default=1, help="consumer processes (same group)")
    parser.add_argument("--threads", type=int, default=0, help="C++ consume threads (0: default)")
    parser.add_argument("--batch", type=int, default=0, help="message batch max size (0: default)")
    parser.add_argument("-d", "--duration", type=float, default=60.0, help="seconds at most")
    parser.add_argument("-i", "--interval", type=float, default=5.0, help="report every N s")
    parser.add_argument("--expect", type=int, default=0, help="stop after N messages")
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
            "expression": args.expression,
            "threads": args.threads,
            "batch": args.batch,
            "duration": args.duration,
            "instance": f"bench{i}",
        }
        argv_list.append([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)])
    print(
        f"C++ PushConsumer benchmark: {args.procs} process(es), group {args.group}, "
        f"topic {args.topic}, namesrv {args.namesrv}",
        flush=True,
    )
    procs, lines = cppstats.spawn_workers(argv_list)
    start = time.monotonic()
    running = len(procs)
    window, total = cppstats.Histogram(), cppstats.Histogram()
    first = last = 0.0
    next_report = start + args.interval
    try:
        while running:
            try:
                item = lines.get(timeout=max(0.05, next_report - time.monotonic()))
            except Exception:  # noqa: BLE001 - queue.Empty: time to report
                item = "tick"
            if item is None:
                running -= 1
            elif isinstance(item, dict) and item["hist"]["n"]:
                first = min(first or item["first"], item["first"])
                last = max(last, item["last"])
                window.merge(item["hist"])
                total.merge(item["hist"])
            now = time.monotonic()
            span = now - (next_report - args.interval)
            if now >= next_report or (not running and span >= 1.0):
                print(
                    f"[{now - start:6.1f}s] consume TPS {window.count / span:9.0f}  "
                    f"born-to-consume {window.summary_ms()}  total {total.count}",
                    flush=True,
                )
                window = cppstats.Histogram()
                next_report = now + args.interval
            if args.expect and total.count >= args.expect:
                break
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        cppstats.stop_workers(procs)
    span = max(0.001, last - first)
    print(
        f"TOTAL: {total.count} received, {total.count / span:.0f} msg/s over {span:.1f}s "
        f"(first to last arrival), born-to-consume {total.summary_ms()}",
        flush=True,
    )


if __name__ == "__main__":
    main()

"""Benchmark rmq's client, measured like bench/producer.py and bench/consumer.py (C++ client).

Producer: ``--inflight`` sends kept in flight (rmq's client is asynchronous: one process, one
thread) for ``--duration`` seconds; prints send TPS and round-trip times (avg, p50, p99, max)
without the ``--warmup`` seconds. Consumer (``--consume N``): a PushConsumer in a NEW group reads
the topic from its first offset until N messages arrived and prints the drain rate.

    python examples/bench.py -n 127.0.0.1:9876 -t Bench -s 1024 --inflight 64 -d 20
    python examples/bench.py -n 127.0.0.1:9876 -t Bench --consume 100000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react

from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeFromWhere,
    MessageExt,
    Producer,
    PushConsumer,
    new_message,
)


def pct(sorted_ms: list[float], p: float) -> float:
    """The ``p`` percentile of sorted values."""
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))]


async def produce(reactor: Any, a: argparse.Namespace) -> None:
    """Keep ``a.inflight`` sends running for ``a.duration`` seconds; print the figures."""
    producers = [
        Producer(a.group, a.namesrv, reactor, max_in_flight=max(a.inflight, 1))
        for _ in range(a.connections)
    ]
    for producer in producers:
        await producer.start()
    body = random.Random(1).randbytes(a.size).replace(b"\0", b"\1")
    start = time.perf_counter()
    end = start + a.duration
    warm = start + a.warmup
    rtts: list[float] = []
    counts = {"ok": 0, "failed": 0, "measured": 0}

    async def sender(producer: Producer) -> None:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                await producer.send(new_message(a.topic, body, tags=a.tags or None))
            except Exception as e:  # noqa: BLE001 - a benchmark counts failures
                counts["failed"] += 1
                if counts["failed"] < 4:
                    print("send failed:", e, file=sys.stderr)
                continue
            t1 = time.perf_counter()
            counts["ok"] += 1
            if t0 >= warm:
                counts["measured"] += 1
                rtts.append((t1 - t0) * 1000)

    senders = [
        Deferred.fromCoroutine(sender(producers[i % len(producers)])) for i in range(a.inflight)
    ]
    for d in senders:
        await d
    elapsed = time.perf_counter() - warm
    for producer in producers:
        await producer.shutdown()
    rtts.sort()
    print(
        f"rmq producer size={a.size} inflight={a.inflight} connections={a.connections}: "
        f"sent={counts['ok']} "
        f"failed={counts['failed']} TPS={counts['measured'] / elapsed:.0f} "
        f"rtt avg={sum(rtts) / max(len(rtts), 1):.2f} ms p50={pct(rtts, 0.5):.2f} "
        f"p99={pct(rtts, 0.99):.2f} max={rtts[-1] if rtts else 0:.2f}"
    )


async def consume(reactor: Any, a: argparse.Namespace) -> None:
    """Drain ``a.consume`` messages with a new group; print the drain rate."""
    got = {"n": 0, "first": 0.0, "last": 0.0}
    done: Deferred[None] = Deferred()

    def listener(msgs: list[MessageExt]) -> object:
        now = time.perf_counter()
        if got["n"] == 0:
            got["first"] = now
        got["n"] += len(msgs)
        got["last"] = now
        if got["n"] >= a.consume and not done.called:
            done.callback(None)
        return CONSUME_SUCCESS

    group = a.group if a.group != "benchmark_producer" else f"bench_rmq_{os.getpid()}"
    consumer = PushConsumer(
        group,
        a.namesrv,
        reactor,
        listener=listener,
        consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        consume_batch_size=a.batch,
        consume_concurrency=64,
    )
    consumer.subscribe(a.topic, "*")
    await consumer.start()
    await done
    rate = (got["n"] - 1) / max(got["last"] - got["first"], 1e-9)
    print(f"rmq consumer: received={got['n']} drain={rate:.0f} msg/s")
    await consumer.shutdown()
    await deferLater(reactor, 0, lambda: None)


def run(reactor: Any, *argv: str) -> Deferred[None]:
    """Entry point for ``react``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--namesrv", default=os.environ.get("NAMESRV_ADDR", "127.0.0.1:9876"))
    p.add_argument("-t", "--topic", default="BenchmarkTest")
    p.add_argument("-g", "--group", default="benchmark_producer")
    p.add_argument("-s", "--size", type=int, default=1024)
    p.add_argument("--tags", default="")
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument(
        "--connections", type=int, default=1, help="producers (client instances, connections)"
    )
    p.add_argument("-d", "--duration", type=float, default=20.0)
    p.add_argument("-w", "--warmup", type=float, default=3.0)
    p.add_argument("--consume", type=int, default=0, help="drain N messages instead")
    p.add_argument("--batch", type=int, default=1, help="consume batch size")
    a = p.parse_args(argv)
    if a.consume:
        return Deferred.fromCoroutine(consume(reactor, a))
    return Deferred.fromCoroutine(produce(reactor, a))


if __name__ == "__main__":
    react(run, sys.argv[1:])

"""Latency histograms and worker-process plumbing shared by bench/producer.py and bench/consumer.py.

Workers (child processes running the RocketMQ C++ client) print one JSON line per second with a
latency histogram; the coordinator merges them and prints a report every few seconds. Standard
library only.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any, TextIO


def bucket_us(us: float) -> int:
    """Round a latency in microseconds to a histogram bucket (about 2 significant digits)."""
    v = int(us)
    if v < 100:
        return v
    if v < 1_000:
        return v - v % 10
    if v < 10_000:
        return v - v % 100
    if v < 100_000:
        return v - v % 1_000
    return v - v % 10_000


class Histogram:
    """Counts of latencies (microseconds, bucketed), with count/sum/max kept exactly."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total_us = 0.0
        self.max_us = 0.0

    def add(self, us: float) -> None:
        """Record one latency."""
        self.buckets[bucket_us(us)] += 1
        self.count += 1
        self.total_us += us
        if us > self.max_us:
            self.max_us = us

    def merge(self, other: dict[str, Any]) -> None:
        """Add a histogram received as JSON (see :meth:`to_json`)."""
        for k, n in other["b"].items():
            self.buckets[int(k)] += n
        self.count += other["n"]
        self.total_us += other["sum"]
        self.max_us = max(self.max_us, other["max"])

    def to_json(self) -> dict[str, Any]:
        """A compact JSON-able form."""
        return {"b": dict(self.buckets), "n": self.count, "sum": self.total_us, "max": self.max_us}

    def percentile(self, p: float) -> float:
        """The bucket holding the p-th percentile (0 < p <= 100), in microseconds."""
        if not self.count:
            return 0.0
        rank = max(1, int(self.count * p / 100 + 0.999999))
        seen = 0
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if seen >= rank:
                return float(k)
        return self.max_us

    def summary_ms(self) -> str:
        """ "RT avg/p50/p99/max" in milliseconds."""
        if not self.count:
            return "RT -"
        avg = self.total_us / self.count / 1000
        return (
            f"RT(ms) avg {avg:.3f} p50 {self.percentile(50) / 1000:.3f} "
            f"p99 {self.percentile(99) / 1000:.3f} max {self.max_us / 1000:.3f}"
        )


def emit(obj: dict[str, Any], out: TextIO = sys.stdout) -> None:
    """Write one JSON line and flush (worker → coordinator)."""
    out.write(json.dumps(obj) + "\n")
    out.flush()


def spawn_workers(
    argv_list: list[list[str]],
) -> tuple[list[subprocess.Popen[str]], queue.Queue[Any]]:
    """Start worker processes; a reader thread per worker puts each parsed JSON line on a queue.

    Lines that are not JSON go to stderr unchanged; a worker's end is signalled by ``None``.
    """
    lines: queue.Queue[Any] = queue.Queue()
    procs = []
    for argv in argv_list:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, bufsize=1)
        procs.append(proc)

        def read(p: subprocess.Popen[str] = proc) -> None:
            assert p.stdout is not None
            for line in p.stdout:
                try:
                    lines.put(json.loads(line))
                except ValueError:
                    sys.stderr.write(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
    return procs, lines


def stop_workers(procs: list[subprocess.Popen[str]], grace: float = 10.0) -> None:
    """Wait for workers to exit; kill (by PID) any still running after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

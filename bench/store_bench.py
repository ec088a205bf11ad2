"""Store benchmark, in-process, 1 KiB bodies: ``python bench/store_bench.py [--count N]``.

Measures on a real FileMessageStore in a temp directory (default RocketMQ file sizes):
  * ASYNC_FLUSH puts/s (put_message one by one, results ignored, reactor turned every 1000),
    with and without the index;
  * get of 32-message batches through the consume queues, msgs/s;
  * recovery after a crash (abort present, checkpoint zeroed so the whole log is checked with
    CRCs), MB/s, with consume queues and index intact and with both deleted (full rebuild);
  * SYNC_FLUSH puts/s with 1 and with 64 puts outstanding (group commit, fsync in a thread).
Messages carry TAGS and a UNIQ_KEY (indexed) like a Java producer's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from rmq.common.message import (  # noqa: E402
    BrokerMessage,
    UniqueIdGenerator,
    properties_to_string,
    tags_hash,
)
from rmq.store.config import ASYNC_FLUSH, SYNC_FLUSH, MessageStoreConfig  # noqa: E402
from rmq.store.filestore import FileMessageStore  # noqa: E402

QUEUES = 4


def make_messages(n: int, body_size: int) -> list[BrokerMessage]:
    """``n`` messages with TAGS and UNIQ_KEY, spread over QUEUES queues."""
    gen = UniqueIdGenerator("10.0.0.1")
    body = b"x" * body_size
    code = tags_hash("TagA")
    out = []
    for i in range(n):
        props = {"TAGS": "TagA", "UNIQ_KEY": gen.next_id(), "WAIT": "true"}
        out.append(
            BrokerMessage(
                topic="BenchTopic",
                queue_id=i % QUEUES,
                body=body,
                properties=props,
                properties_str=properties_to_string(props),
                tags_code=code,
                born_timestamp=1,
                born_host="10.0.0.1:50000",
                store_host="10.0.0.2:10911",
            )
        )
    return out


def open_store(root: str, flush: str, index: bool = True) -> FileMessageStore:
    """A store with default RocketMQ sizes on ``root``."""
    cfg = MessageStoreConfig(
        store_path_root_dir=root, flush_disk_type=flush, message_index_enable=index
    )
    return FileMessageStore(cfg, reactor, reactor=reactor)


async def crash_close(store: FileMessageStore) -> None:
    """Close like kill -9 (no flush, abort stays) and zero the checkpoint."""
    while store._inflight or store._flushing:  # let background fsyncs finish first
        await deferLater(reactor, 0.01, lambda: None)
    store.running = False
    for loop in store._loops:
        if loop.running:
            loop.stop()
    store.commitlog.close()
    for cq in store._cqs.values():
        cq.close()
    store.index.close(write_headers=False)
    if store._pool is not None:
        store._pool.stop()
    if store._lock_fd is not None:
        os.close(store._lock_fd)
    with open(os.path.join(store.root, "checkpoint"), "wb") as f:
        f.write(bytes(4096))


async def sync_puts(store: FileMessageStore, msgs: list[BrokerMessage], outstanding: int) -> None:
    """Keep ``outstanding`` puts in flight until every message is acknowledged."""
    done: Deferred[None] = Deferred()
    state = {"next": 0, "acked": 0}

    def one(result: Any = None) -> None:
        if result is not None:
            state["acked"] += 1
            if state["acked"] == len(msgs):
                done.callback(None)
                return
        i = state["next"]
        if i < len(msgs):
            state["next"] = i + 1
            store.put_message(msgs[i]).addCallback(one)

    for _ in range(outstanding):
        one()
    await done


async def bench(args: argparse.Namespace) -> None:
    """Run every measurement and print one line each."""
    base = tempfile.mkdtemp(prefix="rmq-store-bench-", dir=args.dir)
    msgs = make_messages(args.count, args.body)
    print(f"{args.count} messages, {args.body}-byte bodies, dir {base}")

    # ASYNC puts
    root = os.path.join(base, "async")
    store = open_store(root, ASYNC_FLUSH)
    await store.start()
    t = time.perf_counter()
    cpu = time.thread_time()
    put = store.put_message
    for i in range(0, len(msgs), 1000):
        for m in msgs[i : i + 1000]:
            put(m)
        await deferLater(reactor, 0, lambda: None)
    dt = time.perf_counter() - t
    cpu = time.thread_time() - cpu
    size = store.get_max_phy_offset()
    print(
        f"ASYNC_FLUSH put: {args.count / dt:,.0f} msgs/s ({size / dt / 1e6:,.0f} MB/s; "
        f"{args.count / cpu:,.0f} per CPU-second of the reactor thread)"
    )

    # ASYNC puts without the index (messageIndexEnable=false)
    plain_root = os.path.join(base, "async-noindex")
    plain = open_store(plain_root, ASYNC_FLUSH, index=False)
    await plain.start()
    t = time.perf_counter()
    cpu = time.thread_time()
    for i in range(0, len(msgs), 1000):
        for m in msgs[i : i + 1000]:
            plain.put_message(m)
        await deferLater(reactor, 0, lambda: None)
    dt2 = time.perf_counter() - t
    cpu = time.thread_time() - cpu
    print(
        f"ASYNC_FLUSH put, messageIndexEnable=false: {args.count / dt2:,.0f} msgs/s "
        f"({args.count / cpu:,.0f} per reactor CPU-second)"
    )
    await plain.stop()
    shutil.rmtree(plain_root)

    # gets of 32 (the synchronous body of get_messages, which wraps it in succeed())
    t = time.perf_counter()
    got = 0
    for _rep in range(args.get_rounds):
        for q in range(QUEUES):
            off = 0
            while True:
                g = store.get_messages_now("BenchTopic", q, off, 32)
                if not g.messages:
                    break
                got += len(g.messages)
                off = g.next_begin_offset
    dt = time.perf_counter() - t
    print(f"get 32-message batches: {got / dt:,.0f} msgs/s")
    await store.flush()

    # recovery
    await crash_close(store)
    for label, wipe in (("queues+index intact", False), ("queues+index rebuilt", True)):
        if wipe:
            shutil.rmtree(os.path.join(root, "consumequeue"))
            shutil.rmtree(os.path.join(root, "index"))
        store = open_store(root, ASYNC_FLUSH)
        t = time.perf_counter()
        await store.start()
        dt = time.perf_counter() - t
        assert store.recovered_abnormally
        assert store.get_max_phy_offset() == size, (store.get_max_phy_offset(), size)
        n = sum(store.get_max_offset_in_queue("BenchTopic", q) for q in range(QUEUES))
        assert n == args.count, n
        print(f"crash recovery ({label}): {size / dt / 1e6:,.0f} MB/s ({size / 1e6:,.0f} MB)")
        await crash_close(store)
    shutil.rmtree(root)

    # SYNC puts
    for outstanding in (1, 64):
        root = os.path.join(base, f"sync{outstanding}")
        store = open_store(root, SYNC_FLUSH)
        await store.start()
        limit = min(len(msgs), args.sync_count * (1 if outstanding == 1 else 8))
        t = time.perf_counter()
        cpu = time.thread_time()
        await sync_puts(store, msgs[:limit], outstanding)
        dt = time.perf_counter() - t
        cpu = time.thread_time() - cpu
        print(
            f"SYNC_FLUSH put, {outstanding} outstanding: {limit / dt:,.0f} msgs/s "
            f"(reactor thread busy {cpu / dt:.0%} of the time)"
        )
        await store.stop()
        shutil.rmtree(root)
    shutil.rmtree(base)


def main() -> None:
    """Parse arguments and run under the global reactor."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--body", type=int, default=1024)
    p.add_argument("--get-rounds", type=int, default=3)
    p.add_argument("--sync-count", type=int, default=5000)
    p.add_argument("--dir", default=None)
    args = p.parse_args()

    def run() -> None:
        d = Deferred.fromCoroutine(bench(args))
        d.addErrback(lambda f: f.printTraceback())
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()


if __name__ == "__main__":
    main()

"""Delay-level precision through real sockets: ``python bench/delay_precision.py [N]``.

Starts an rmq NameServer + Broker (``rmq.testing``), sends N messages at delay level 1 (1 s) and N
at level 2 (5 s) with the rmq producer, waits, and prints how long after its due time (store time of
the parked copy in SCHEDULE_TOPIC_XXXX + the level's delay) each message was stored on its real
topic, and the same measured from the producer's born timestamp.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import ensureDeferred

from rmq.client import Producer, new_message
from rmq.common.message import decode_messages
from rmq.testing import start_local_cluster

TOPIC = "TopicDelayPrecision"


async def main(reactor: Any, n: int) -> None:
    cluster = await start_local_cluster(reactor)
    producer = Producer("PG_DELAY_BENCH", cluster.namesrv_addr, client_ip="127.0.0.1")
    await producer.start()
    try:
        for level in (1, 2):
            for i in range(n):
                await producer.send(new_message(TOPIC, b"m%d" % i, delay_level=level))
        await task.deferLater(reactor, 6.5, lambda: None)
        store = cluster.store
        parked: dict[str, int] = {}
        for level in (1, 2):
            got = await store.get_messages("SCHEDULE_TOPIC_XXXX", level - 1, 0, 1000)
            for m in decode_messages(got.body()):
                parked[m.properties["UNIQ_KEY"]] = m.store_timestamp
        late: dict[int, list[int]] = {1: [], 2: []}
        born: dict[int, list[int]] = {1: [], 2: []}
        for qid in store.topic_queues().get(TOPIC, []):
            got = await store.get_messages(TOPIC, qid, 0, 1000)
            for m in decode_messages(got.body()):
                level = 1 if m.store_timestamp - m.born_timestamp < 3000 else 2
                due = 1000 if level == 1 else 5000
                late[level].append(m.store_timestamp - parked[m.properties["UNIQ_KEY"]] - due)
                born[level].append(m.store_timestamp - m.born_timestamp - due)
        for level in (1, 2):
            print(
                f"level {level}: {len(late[level])} delivered, {min(late[level]):+d} .. "
                f"{max(late[level]):+d} ms after the due time "
                f"({min(born[level]):+d} .. {max(born[level]):+d} ms counted from born time)"
            )
    finally:
        await producer.shutdown()
        await cluster.stop()


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    task.react(lambda reactor: ensureDeferred(main(reactor, count)))

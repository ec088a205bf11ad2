"""Send messages with rmq's Producer.

Usage: python examples/producer.py NAMESRV_ADDR [TOPIC] [COUNT]
e.g.   python examples/producer.py 127.0.0.1:9876 TopicTest 10
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from rmq.client import Producer, SelectMessageQueueByHash, new_message


async def main(reactor: Any, namesrv: str, topic: str, count: int) -> None:
    """Send ``count`` messages, a batch and an ordered message, then shut down."""
    producer = Producer("example_producer_group", namesrv, reactor)
    await producer.start()
    try:
        for i in range(count):
            msg = new_message(topic, f"Hello RocketMQ {i}".encode(), tags="TagA", keys=[f"k{i}"])
            result = await producer.send(msg)
            print(result.status.name, result.msg_id, result.message_queue, result.queue_offset)
        batch = [new_message(topic, f"batch {i}".encode(), tags="TagB") for i in range(3)]
        result = await producer.send(batch)
        print("batch", result.status.name, result.msg_id)
        ordered = new_message(topic, b"ordered", tags="TagA")
        result = await producer.send(ordered, SelectMessageQueueByHash(), "order-42")
        print("ordered ->", result.message_queue)
    finally:
        await producer.shutdown()


def run(reactor: Any, *argv: str) -> Deferred[None]:
    """Entry point for ``react``."""
    topic = argv[1] if len(argv) > 1 else "TopicTest"
    count = int(argv[2]) if len(argv) > 2 else 10
    return Deferred.fromCoroutine(main(reactor, argv[0], topic, count))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    react(run, sys.argv[1:])

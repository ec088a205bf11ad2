"""Poll messages with rmq's lite PullConsumer.

Usage: python examples/pull_consumer.py NAMESRV_ADDR [TOPIC] [POLLS]
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from rmq.client import ConsumeFromWhere, PullConsumer


async def main(reactor: Any, namesrv: str, topic: str, polls: int) -> None:
    """Subscribe, poll ``polls`` times (1 s each), commit, shut down."""
    consumer = PullConsumer(
        "example_pull_group",
        namesrv,
        reactor,
        auto_commit=False,
        consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
    )
    consumer.subscribe(topic, "*")
    await consumer.start()
    try:
        for _ in range(polls):
            for m in await consumer.poll(timeout=1.0):
                print(m.queue_id, m.queue_offset, m.msg_id, m.body[:80].decode("utf-8", "replace"))
            await consumer.commit()
    finally:
        await consumer.shutdown()


def run(reactor: Any, *argv: str) -> Deferred[None]:
    """Entry point for ``react``."""
    topic = argv[1] if len(argv) > 1 else "TopicTest"
    polls = int(argv[2]) if len(argv) > 2 else 5
    return Deferred.fromCoroutine(main(reactor, argv[0], topic, polls))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    react(run, sys.argv[1:])

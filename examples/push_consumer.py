"""Consume messages with rmq's PushConsumer until interrupted (Ctrl-C).

Usage: python examples/push_consumer.py NAMESRV_ADDR [TOPIC] [EXPRESSION] [--broadcast]
e.g.   python examples/push_consumer.py 127.0.0.1:9876 TopicTest "TagA || TagB"
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeFromWhere,
    ConsumeResult,
    MessageExt,
    MessageModel,
    PushConsumer,
)


def listener(msgs: list[MessageExt]) -> ConsumeResult:
    """Print each message; a listener may also return a Deferred firing with the result."""
    for m in msgs:
        print(
            m.topic,
            m.queue_id,
            m.queue_offset,
            m.msg_id,
            m.tags,
            m.body[:80].decode("utf-8", "replace"),
        )
    return CONSUME_SUCCESS


async def main(reactor: Any, argv: list[str]) -> None:
    """Start a consumer and run until the reactor stops."""
    broadcast = "--broadcast" in argv
    args = [a for a in argv if a != "--broadcast"]
    topic = args[1] if len(args) > 1 else "TopicTest"
    expression = args[2] if len(args) > 2 else "*"
    consumer = PushConsumer(
        "example_consumer_group",
        args[0],
        reactor,
        listener=listener,
        message_model=MessageModel.BROADCASTING if broadcast else MessageModel.CLUSTERING,
        consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
    )
    consumer.subscribe(topic, expression)
    await consumer.start()
    print("consuming", topic, expression, "as", consumer.client_id, "- Ctrl-C to stop")
    stopped: Deferred[None] = Deferred()
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: consumer.shutdown().addBoth(lambda _: None)
    )
    await stopped


def run(reactor: Any, *argv: str) -> Deferred[None]:
    """Entry point for ``react``."""
    return Deferred.fromCoroutine(main(reactor, list(argv)))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    react(run, sys.argv[1:])

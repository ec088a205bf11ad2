"""Integration: SQL92 subscriptions of rmq clients against a real rmq broker (rmq.testing).

With ``enablePropertyFilter=true`` a PushConsumer subscribed with
``MessageSelector.by_sql(...)`` receives exactly the matching messages; without it (Java's
default) or with an expression that does not compile, ``start()`` fails on the broker's
CHECK_CLIENT_CONFIG answer. Real loopback sockets, no sleeps.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeFromWhere,
    MessageExt,
    MessageSelector,
    Producer,
    PullConsumer,
    PushConsumer,
    new_message,
)
from rmq.common.asyncutil import global_reactor
from rmq.common.errors import MQClientError
from rmq.remoting.codes import ResponseCode
from rmq.testing import LocalCluster, start_local_cluster


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``cond`` on the reactor until true; fail after ``timeout`` seconds."""
    reactor = global_reactor()
    deadline = reactor.seconds() + timeout
    while not cond():
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await deferLater(reactor, 0.01, lambda: None)


class SqlFilterTests(TestCase):
    timeout = 60

    async def start(self, enabled: bool) -> LocalCluster:
        props = {"enablePropertyFilter": "true"} if enabled else {}
        cluster = await start_local_cluster(global_reactor(), broker_properties=props)
        self.addCleanup(cluster.stop)
        return cluster

    async def produce(self, cluster: LocalCluster, topic: str, n: int) -> None:
        producer = Producer("SQLP", cluster.namesrv_addr, client_ip="127.0.0.1")
        await producer.start()
        self.addCleanup(producer.shutdown)
        for i in range(n):
            msg = new_message(topic, f"m{i}".encode(), tags="even" if i % 2 == 0 else "odd")
            msg.properties["n"] = str(i)
            if i % 3 == 0:
                msg.properties["color"] = "red"
            await producer.send(msg)

    def consumer(
        self, cluster: LocalCluster, got: list[MessageExt], group: str = "SQLC"
    ) -> PushConsumer:
        def listener(msgs: list[MessageExt]) -> object:
            got.extend(msgs)
            return CONSUME_SUCCESS

        return PushConsumer(
            group,
            cluster.namesrv_addr,
            client_ip="127.0.0.1",
            listener=listener,
            offset_store_dir=self.mktemp(),
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        )

    async def test_push_consumer_gets_only_matching_messages(self) -> None:
        """``n >= 10 AND (TAGS = 'even' OR color = 'red')`` selects exactly those messages."""
        cluster = await self.start(enabled=True)
        await self.produce(cluster, "SQLT", 30)
        got: list[MessageExt] = []
        consumer = self.consumer(cluster, got)
        consumer.subscribe(
            "SQLT", MessageSelector.by_sql("n >= 10 AND (TAGS = 'even' OR color = 'red')")
        )
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        want = {i for i in range(10, 30) if i % 2 == 0 or i % 3 == 0}
        await wait_for(lambda: len(got) >= len(want))
        self.assertEqual(sorted(int(m.properties["n"]) for m in got), sorted(want))
        sub = cluster.broker.consumers.find_subscription("SQLC", "SQLT")
        assert sub is not None
        self.assertEqual(sub.expression_type, "SQL92")
        self.assertIsNotNone(cluster.broker.filters.get("SQLT", "SQLC"))

    async def test_pull_consumer_with_sql(self) -> None:
        """A lite PullConsumer subscribed by SQL polls only the matching messages."""
        cluster = await self.start(enabled=True)
        await self.produce(cluster, "SQLP1", 12)
        consumer = PullConsumer(
            "SQLPULL",
            cluster.namesrv_addr,
            client_ip="127.0.0.1",
            offset_store_dir=self.mktemp(),
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        )
        consumer.subscribe("SQLP1", MessageSelector.by_sql("n BETWEEN 3 AND 5"))
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        got: list[MessageExt] = []
        reactor = global_reactor()
        deadline = reactor.seconds() + 10
        while len(got) < 3 and reactor.seconds() < deadline:
            got.extend(await consumer.poll(0.5))
        self.assertEqual(sorted(int(m.properties["n"]) for m in got), [3, 4, 5])

    async def test_start_refused_when_broker_cannot_filter(self) -> None:
        """enablePropertyFilter=false (default): start() fails with the broker's refusal."""
        cluster = await self.start(enabled=False)
        await self.produce(cluster, "SQLT", 1)
        consumer = self.consumer(cluster, [])
        consumer.subscribe("SQLT", MessageSelector.by_sql("n > 1"))
        with self.assertRaises(MQClientError) as caught:
            await consumer.start()
        self.assertEqual(caught.exception.code, ResponseCode.SYSTEM_ERROR)
        self.assertIn("does not support consumer to filter message by SQL92", str(caught.exception))

    async def test_start_refused_for_invalid_expression(self) -> None:
        """An expression that does not compile: start() fails with SUBSCRIPTION_PARSE_FAILED."""
        cluster = await self.start(enabled=True)
        await self.produce(cluster, "SQLT", 1)
        consumer = self.consumer(cluster, [])
        consumer.subscribe("SQLT", MessageSelector.by_sql("n >"))
        with self.assertRaises(MQClientError) as caught:
            await consumer.start()
        self.assertEqual(caught.exception.code, ResponseCode.SUBSCRIPTION_PARSE_FAILED)

    async def test_tag_selector(self) -> None:
        """MessageSelector.by_tag behaves as the TAG expression string."""
        cluster = await self.start(enabled=False)
        await self.produce(cluster, "SQLT", 6)
        got: list[MessageExt] = []
        consumer = self.consumer(cluster, got)
        consumer.subscribe("SQLT", MessageSelector.by_tag("odd"))
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        await wait_for(lambda: len(got) >= 3)
        self.assertEqual(sorted(int(m.properties["n"]) for m in got), [1, 3, 5])

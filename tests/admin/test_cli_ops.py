"""The ``rmq-admin`` commands over rmq.broker.admin_ops, run against a real NameServer + Broker
(rmq.testing, loopback sockets)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from rmq.broker.topic import TRANS_HALF_TOPIC
from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeResult,
    MessageExt,
    Producer,
    PushConsumer,
    new_message,
)
from tests.admin.support import AdminCliCase


class OpsCliTests(AdminCliCase):
    async def topic(self, name: str, queues: int = 2) -> None:
        """Create ``name`` with ``queues`` queues and publish the route."""
        q = str(queues)
        await self.ok("updateTopic", "-b", self.cluster.broker_addr, "-t", name, "-r", q, "-w", q)
        await self.cluster.broker.registration.register_all()

    async def produce(self, topic: str, n: int) -> list[Any]:
        producer = Producer("PG_OPS", self.cluster.namesrv_addr, self.reactor)
        await producer.start()
        self.addCleanup(producer.shutdown)
        results = []
        for i in range(n):
            results.append(await producer.send(new_message(topic, f"m{i}".encode(), tags="A")))
        await producer.instance.send_heartbeat_to_all()
        return results

    async def test_stats_all_and_broker_consume_stats(self) -> None:
        """statsAll shows the backlog and the 24-hour put count per topic and group;
        brokerConsumeStats lists the group's lagging queues and the total diff."""
        cluster = await self.start()
        await self.topic("TopicSt", 1)
        await self.produce("TopicSt", 3)
        cluster.broker.offsets.commit_offset("CG_ST", "TopicSt", 0, 1)
        cluster.broker.groups.find_or_create("CG_ST")
        out = await self.ok("statsAll", "-t", "TopicSt")
        header, *rows = out.splitlines()
        self.assertTrue(header.startswith("#Topic"))
        self.assertIn("#OutMsg24Hour", header)
        (row,) = rows
        self.assertEqual(row.split(), ["TopicSt", "CG_ST", "2", row.split()[3], "0.00", "3", "0"])
        self.assertGreater(float(row.split()[3]), 0.0)
        everything = await self.ok("statsAll", "-a")
        self.assertIn("TopicSt", everything)
        self.assertNotIn("%RETRY%", everything)
        stats = await self.ok("brokerConsumeStats", "-b", cluster.broker_addr)
        lines = stats.splitlines()
        self.assertTrue(lines[0].startswith("#Topic"))
        (mine,) = [line for line in lines if line.startswith("TopicSt")]
        self.assertEqual(mine.split()[:7], ["TopicSt", "CG_ST", "broker-a", "0", "3", "1", "2"])
        self.assertEqual(lines[-1], "Diff Total: 2")
        high = await self.ok("brokerConsumeStats", "-b", cluster.broker_addr, "-l", "5")
        self.assertNotIn("TopicSt", high)

    async def test_time_span_and_clone(self) -> None:
        """consumeTimeSpan lists every queue; cloneGroupOffset copies the offsets; queryCq shows
        the raw units like mqadmin."""
        cluster = await self.start()
        await self.topic("TopicTs", 2)
        await self.produce("TopicTs", 4)
        for qid in (0, 1):
            cluster.broker.offsets.commit_offset("CG_A", "TopicTs", qid, 1)
        out = await self.ok("consumeTimeSpan", "-t", "TopicTs", "-g", "CG_A")
        rows = [line.split() for line in out.splitlines()[1:]]
        self.assertEqual([r[:2] for r in rows], [["broker-a", "0"], ["broker-a", "1"]])
        cloned = await self.ok("cloneGroupOffset", "-s", "CG_A", "-d", "CG_B", "-t", "TopicTs")
        self.assertIn("clone group offset success. srcGroup[CG_A], destGroup=[CG_B]", cloned)
        self.assertEqual(cluster.broker.offsets.query_offsets("CG_B", "TopicTs"), {0: 1, 1: 1})
        units = await self.ok("queryCq", "-t", "TopicTs", "-q", "0", "-i", "0", "-g", "CG_A")
        self.assertIn("Filter data: \nCG_A@TopicTs is not online!\n", units)
        max_offset = cluster.store.get_max_offset_in_queue("TopicTs", 0)
        self.assertIn(f"Queue data: \nmax: {max_offset}, min: 0\n", units)
        self.assertEqual(units.count("ConsumeQueueData{physicOffset="), max_offset)
        self.assertIn("idx: 0\nConsumeQueueData{physicOffset=", units)
        self.assertIn(", extendDataJson='null', bitMap='null', eval=false, msg='null'}", units)
        past = await self.ok("queryCq", "-t", "TopicTs", "-q", "0", "-i", "99")
        self.assertEqual(past, "Index 99 of 0@TopicTs is not exist!\n")

    async def test_maintenance_producer_and_resume(self) -> None:
        """cleanExpiredCQ, cleanUnusedTopic and deleteExpiredCommitLog succeed on -b, -c and all
        masters; producer lists the live producer; resumeCheckHalfMessage re-queues a half
        message."""
        cluster = await self.start()
        results = await self.produce("TopicM", 1)
        self.assertEqual(await self.ok("cleanExpiredCQ", "-b", cluster.broker_addr), "success\n")
        self.assertEqual(await self.ok("cleanUnusedTopic", "-c", "DefaultCluster"), "success\n")
        self.assertEqual(await self.ok("deleteExpiredCommitLog"), "success\n")
        producers = await self.ok("producer", "-b", cluster.broker_addr)
        self.assertRegex(
            producers, r"producer group \(PG_OPS\) instance : clientId=\S+,remoteIP=/127"
        )
        self.assertIn("language=JAVA", producers)
        before = cluster.store.get_max_offset_in_queue(TRANS_HALF_TOPIC, 0)
        out = await self.ok("resumeCheckHalfMessage", "-i", results[0].offset_msg_id)
        self.assertIn("success", out)
        self.assertEqual(cluster.store.get_max_offset_in_queue(TRANS_HALF_TOPIC, 0), before + 1)
        bad = await self.admin("resumeCheckHalfMessage", "-i", "zz")
        self.assertEqual(bad.status, 1)
        self.assertIn("not an offset message id", bad.err)

    async def test_get_consumer_status(self) -> None:
        """getConsumerStatus reaches the live consumers through the broker and lists the
        offset each holds per queue (rmq's client answers 221); an offline group is Java's
        error."""
        cluster = await self.start()
        await self.topic("TopicCs", 1)
        consumed: list[MessageExt] = []
        both: Deferred[None] = Deferred()

        def listener(msgs: list[MessageExt]) -> ConsumeResult:
            consumed.extend(msgs)
            if len(consumed) == 2:
                self.reactor.callLater(0, both.callback, None)  # once offsets moved
            return CONSUME_SUCCESS

        offline = await self.admin("getConsumerStatus", "-g", "CG_CS", "-t", "TopicCs")
        self.assertEqual(offline.status, 1)
        self.assertIn("No Any Consumer online in the consumer group: [CG_CS]", offline.err)
        consumer = PushConsumer("CG_CS", cluster.namesrv_addr, self.reactor, listener=listener)
        consumer.subscribe("TopicCs", "*")
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        await self.produce("TopicCs", 2)
        await both.addTimeout(30, self.reactor)
        out = await self.ok("getConsumerStatus", "-g", "CG_CS", "-t", "TopicCs")
        first, header, *rows = out.splitlines()
        self.assertEqual(
            first, "get consumer status from client. group=CG_CS, topic=TopicCs, originClientId="
        )
        self.assertTrue(header.startswith("#clientId"))
        self.assertEqual(
            [r.split() for r in rows], [[consumer.instance.client_id, "broker-a", "0", "2"]]
        )

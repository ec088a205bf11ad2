"""Delivery guarantees seen by the real C++ client: delay levels, retries, ordered messages.

rmq's NameServer + Broker run in the test's reactor; the C++ producer and PushConsumers run as
child processes. Timings are wall-clock (the C++ client runs on real time).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from twisted.trial.unittest import TestCase

from rmq.common.asyncutil import global_reactor
from rmq.testing import LocalCluster, start_local_cluster
from tests.support.cpp import CppHarness, CppProcess, Event

#: 18 levels, all 1 s except level 2 (5 s): the first retry (level 3) then comes back in 1 s.
FAST_RETRY_LEVELS = "1s 5s " + " ".join(["1s"] * 16)


def received(kind_keys: str) -> Any:
    """Predicate: a "received" event for the message with keys ``kind_keys``."""
    return lambda ev: ev["event"] == "received" and ev["keys"] == kind_keys


class CppDeliveryTests(TestCase):
    """Issue 6 behaviours through the C++ client."""

    timeout = 120

    async def start_cluster(self, **props: str) -> LocalCluster:
        """A NameServer + Broker with 4 queues per auto-created topic and ``props``."""
        self.reactor = global_reactor()
        cluster = await start_local_cluster(
            self.reactor, broker_properties={"defaultTopicQueueNums": "4", **props}
        )
        self.addCleanup(cluster.stop)
        self.harness = CppHarness(self, self.reactor)
        self.cluster = cluster
        return cluster

    def produce(self, topic: str, specs: list[dict[str, Any]], name: str) -> CppProcess:
        """A C++ producer sending ``specs`` in order."""
        return self.harness.spawn(
            "producer",
            {
                "namesrv": self.cluster.namesrv_addr,
                "group": f"PG_{name}",
                "topic": topic,
                "timeout_ms": 5000,
                "retry_no_route": 3,
                "messages": specs,
            },
            name=name,
        )

    def consume(self, topic: str, group: str, **params: Any) -> CppProcess:
        """A C++ PushConsumer of ``topic`` in ``group``."""
        return self.harness.spawn(
            "push_consumer",
            {"namesrv": self.cluster.namesrv_addr, "group": group, "topic": topic, **params},
            name=group,
        )

    async def all_sent(self, proc: CppProcess) -> list[Event]:
        """Wait for the producer's end; every send must have succeeded."""
        done = await proc.wait_event("done", timeout=60)
        self.assertEqual(done["failed"], 0, proc.describe())
        self.assertEqual(await proc.finished(timeout=30), 0)
        return proc.of_kind("sent")

    async def test_delay_level_2_is_delivered_after_5_seconds(self) -> None:
        """A message sent with delay level 2 arrives no sooner than 5 s and within 5.1 s."""
        await self.start_cluster()
        topic = "TopicCppDelay"
        await self.all_sent(self.produce(topic, [{"body": "warm", "keys": "warm"}], "warm"))
        consumer = self.consume(topic, "CG_CPP_DELAY")
        # The consumer is pulling (long polling) once the warm-up message is in.
        await consumer.wait_for(received("warm"), timeout=30)
        delayed = {"body": "later", "keys": "delayed", "delay_level": 2, "tags": "D"}
        await self.all_sent(self.produce(topic, [delayed], "delayed"))
        event = await consumer.wait_for(received("delayed"), timeout=30)
        waited_ms = event["recv_ms"] - event["born_ts"]
        self.assertGreaterEqual(waited_ms, 5000.0, event)
        self.assertLessEqual(waited_ms, 5100.0, event)
        self.assertEqual(event["topic"], topic)
        self.assertEqual(event["tags"], "D")
        self.assertEqual(event["body_b64"], "bGF0ZXI=")

    async def test_reconsume_later_once_redelivers_with_reconsume_count_1(self) -> None:
        """RECONSUME_LATER once sends the message back; it returns with reconsume count 1."""
        await self.start_cluster(messageDelayLevel=FAST_RETRY_LEVELS)
        topic = "TopicCppRetry"
        specs = [{"body": f"body-{i}", "keys": f"r-{i}", "tags": "R"} for i in range(3)]
        await self.all_sent(self.produce(topic, specs, "retry"))
        consumer = self.consume(
            topic, "CG_CPP_RETRY", reconsume_later={"keys": ["r-1"], "times": 1}
        )
        first, again = await consumer.wait_for_count(received("r-1"), 2, timeout=60)
        await consumer.wait_for(received("r-0"), timeout=30)
        await consumer.wait_for(received("r-2"), timeout=30)
        self.assertEqual(await consumer.stop(grace=30), 0)

        self.assertEqual((first["result"], first["reconsume_times"]), ("RECONSUME_LATER", 0))
        self.assertEqual((again["result"], again["reconsume_times"]), ("CONSUME_SUCCESS", 1))
        self.assertEqual(again["body_b64"], first["body_b64"])
        self.assertEqual(again["props"]["UNIQ_KEY"], first["props"]["UNIQ_KEY"])
        # It went through the broker's retry topic (not a local re-run in the client).
        self.assertEqual(again["props"]["RETRY_TOPIC"], topic)
        counts = Counter(ev["keys"] for ev in consumer.of_kind("received"))
        self.assertEqual(counts, Counter({"r-0": 1, "r-1": 2, "r-2": 1}))

    async def test_orderly_send_keeps_per_key_order_at_orderly_consumer(self) -> None:
        """Sharded orderly sends land in one queue per key and are consumed in send order."""
        await self.start_cluster()
        topic = "TopicCppOrderly"
        shards, per_shard = 6, 20
        specs = [
            {
                "body": f"{shard}:{seq}",
                "keys": f"o-{shard}-{seq}",
                "props": {"shard": str(shard), "seq": str(seq)},
                "mode": "orderly",
                "arg": shard,
            }
            for seq in range(per_shard)
            for shard in range(shards)
        ]
        sent = await self.all_sent(self.produce(topic, specs, "orderly"))
        self.assertEqual(len(sent), len(specs))
        consumer = self.consume(
            topic, "CG_CPP_ORDERLY", orderly=True, thread_count=4, read_props=["shard", "seq"]
        )
        await consumer.wait_for_count(lambda ev: ev["event"] == "received", len(specs), timeout=60)
        self.assertEqual(await consumer.stop(grace=30), 0)
        got = consumer.of_kind("received")
        self.assertEqual(len(got), len(specs))
        order: dict[str, list[int]] = defaultdict(list)
        queues: dict[str, set[int]] = defaultdict(set)
        for ev in got:
            order[ev["props"]["shard"]].append(int(ev["props"]["seq"]))
            queues[ev["props"]["shard"]].add(ev["queue_id"])
        for shard in range(shards):
            self.assertEqual(order[str(shard)], list(range(per_shard)), f"shard {shard}")
            # The C++ client's default selector: queue = arg % queue count.
            self.assertEqual(queues[str(shard)], {shard % 4})

"""``rmq-admin`` commands run against a real NameServer + Broker (rmq.testing, loopback sockets)."""

from __future__ import annotations

import io
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from rmq.admin.cli import COMMANDS, Options, parse_timestamp, run
from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeResult,
    MessageExt,
    Producer,
    PushConsumer,
    new_message,
)
from rmq.common.asyncutil import global_reactor
from tests.admin.support import AdminCliCase


class CliTests(AdminCliCase):
    async def registered(self) -> None:
        """Wait for the broker's registration to carry its current topics."""
        await self.cluster.broker.registration.register_all()

    async def produce(self, topic: str, n: int) -> list[Any]:
        producer = Producer("PG_ADMIN", self.cluster.namesrv_addr, self.reactor)
        await producer.start()
        self.addCleanup(producer.shutdown)
        results = []
        for i in range(n):
            msg = new_message(topic, f"body {i}".encode(), tags="TagA", keys=[f"key{i}"])
            results.append(await producer.send(msg))
        await producer.instance.send_heartbeat_to_all()  # now it knows the broker
        return results

    async def test_update_topic_list_route_status(self) -> None:
        """updateTopic creates the topic; topicList, topicRoute and topicStatus show it."""
        cluster = await self.start()
        out = await self.ok(
            "updateTopic", "-b", cluster.broker_addr, "-t", "TopicAdm", "-r", "3", "-w", "3"
        )
        self.assertIn(f"create topic to {cluster.broker_addr} success.", out)
        self.assertIn(
            "TopicConfig [topicName=TopicAdm, readQueueNums=3, writeQueueNums=3, perm=RW-", out
        )
        config = cluster.broker.topics.select("TopicAdm")
        assert config is not None
        self.assertEqual((config.read_queue_nums, config.write_queue_nums), (3, 3))
        await self.registered()
        self.assertIn("TopicAdm\n", await self.ok("topicList"))
        route = await self.ok("topicRoute", "-t", "TopicAdm")
        self.assertIn('"writeQueueNums": 3', route)
        self.assertIn(cluster.broker_addr, route)
        await self.produce("TopicAdm", 2)
        status = await self.ok("topicStatus", "-t", "TopicAdm")
        lines = [line.split() for line in status.splitlines()[1:]]
        self.assertEqual([int(cols[1]) for cols in lines], [0, 1, 2])
        self.assertEqual(sum(int(cols[3]) for cols in lines), 2)

    async def test_order_topic_and_kv(self) -> None:
        """An ordered topic on a cluster sets ORDER_TOPIC_CONFIG; the KV commands work."""
        await self.start()
        out = await self.ok(
            "updateTopic",
            "-c",
            "DefaultCluster",
            "-t",
            "TopicOrd",
            "-o",
            "true",
            "-w",
            "2",
            "-r",
            "2",
        )
        self.assertIn("orderConf=[broker-a:2]", out)
        self.assertEqual(
            await self.ok("getKvConfig", "-s", "ORDER_TOPIC_CONFIG", "-k", "TopicOrd"),
            "broker-a:2\n",
        )
        await self.ok("updateKvConfig", "-s", "NS", "-k", "k1", "-v", "v1")
        self.assertEqual(await self.ok("getKvConfig", "-s", "NS", "-k", "k1"), "v1\n")
        self.assertIn("success", await self.ok("deleteKvConfig", "-s", "NS", "-k", "k1"))
        missing = await self.admin("getKvConfig", "-s", "NS", "-k", "k1")
        self.assertEqual(missing.status, 1)
        self.assertIn("CODE: 22", missing.err)

    async def test_delete_topic(self) -> None:
        """deleteTopic removes the topic from the broker and from the NameServer."""
        cluster = await self.start()
        await self.ok("updateTopic", "-b", cluster.broker_addr, "-t", "TopicGone")
        await self.registered()
        out = await self.ok("deleteTopic", "-c", "DefaultCluster", "-t", "TopicGone")
        self.assertIn("delete topic [TopicGone] from NameServer success.", out)
        self.assertNotIn("TopicGone", cluster.broker.topics)
        self.assertNotIn("TopicGone\n", await self.ok("topicList"))

    async def test_messages_by_key_and_id(self) -> None:
        """queryMsgByKey lists the message; queryMsgById shows it by offset id and unique id."""
        await self.start()
        results = await self.produce("TopicQ", 3)
        out = await self.ok("queryMsgByKey", "-t", "TopicQ", "-k", "key1")
        rows = out.splitlines()[1:]
        self.assertEqual(len(rows), 1)
        self.assertIn(results[1].msg_id, rows[0])
        shown = await self.ok("queryMsgById", "-i", results[1].offset_msg_id)
        self.assertIn("Message Body:        body 1", shown)
        self.assertIn("Keys:                [key1]", shown)
        self.assertIn("Topic:               TopicQ", shown)
        by_unique = await self.ok("queryMsgById", "-i", results[2].msg_id, "-t", "TopicQ")
        self.assertIn("body 2", by_unique)

    async def test_progress_and_reset_offline(self) -> None:
        """consumerProgress shows the lag; resetOffsetByTime of an offline group sets offsets."""
        cluster = await self.start()
        await self.ok(
            "updateTopic", "-b", cluster.broker_addr, "-t", "TopicP", "-r", "1", "-w", "1"
        )
        await self.registered()
        await self.produce("TopicP", 4)
        cluster.broker.offsets.commit_offset("CG_P", "TopicP", 0, 1)
        out = await self.ok("consumerProgress", "-g", "CG_P")
        self.assertIn("Diff Total: 3", out)
        row = out.splitlines()[1].split()
        self.assertEqual(row[:6], ["TopicP", "broker-a", "0", "4", "1", "3"])
        reset = await self.ok("resetOffsetByTime", "-g", "CG_P", "-t", "TopicP", "-s", "-1")
        self.assertIn("broker-a", reset.splitlines()[2])
        self.assertEqual(cluster.broker.offsets.query_offset("CG_P", "TopicP", 0), 4)
        await self.ok("resetOffsetByTime", "-g", "CG_P", "-t", "TopicP", "-s", "0")
        self.assertEqual(cluster.broker.offsets.query_offset("CG_P", "TopicP", 0), 0)

    async def test_connections_and_online_reset(self) -> None:
        """consumerConnection/producerConnection list live clients; an online reset reaches the
        consumer through the broker."""
        cluster = await self.start()
        await self.produce("TopicC", 2)

        def listener(msgs: list[MessageExt]) -> ConsumeResult:
            return CONSUME_SUCCESS

        consumer = PushConsumer("CG_C", cluster.namesrv_addr, self.reactor, listener=listener)
        consumer.subscribe("TopicC", "TagA")
        await consumer.start()
        self.addCleanup(consumer.shutdown)
        out = await self.ok("consumerConnection", "-g", "CG_C")
        (client_id,) = cluster.broker.consumers.client_ids("CG_C")
        self.assertIn(client_id, out)
        self.assertRegex(out, r"\n002\s+TopicC\s+TagA\n")
        self.assertIn("MessageModel: CLUSTERING", out)
        producers = await self.ok("producerConnection", "-g", "PG_ADMIN", "-t", "TopicC")
        self.assertIn("JAVA", producers)
        config = cluster.broker.topics.select("TopicC")
        assert config is not None
        queues = range(config.write_queue_nums)
        for qid in queues:
            cluster.broker.offsets.commit_offset("CG_C", "TopicC", qid, 0)
        reset = await self.ok("resetOffsetByTime", "-g", "CG_C", "-t", "TopicC", "-s", "-1")
        self.assertEqual(len(reset.splitlines()), 2 + len(queues))
        self.assertEqual(
            [cluster.broker.offsets.query_offset("CG_C", "TopicC", q) for q in queues],
            [cluster.store.get_max_offset_in_queue("TopicC", q) for q in queues],
        )
        offline = await self.admin("consumerConnection", "-g", "CG_NOBODY")
        self.assertEqual(offline.status, 1)
        self.assertIn("the consumer group[CG_NOBODY] not online", offline.err)

    async def test_broker_status_cluster_list_and_config(self) -> None:
        """brokerStatus and clusterList show the broker's figures; broker config can be read and
        a live key changed, a restart-only key is refused."""
        cluster = await self.start()
        await self.produce("TopicS", 3)
        status = await self.ok("brokerStatus", "-b", cluster.broker_addr)
        self.assertIn("msgPutTotalTodayNow                 : 3", status)
        self.assertIn("brokerVersionDesc", status)
        listing = await self.ok("clusterList")
        self.assertIn(cluster.broker_addr, listing)
        self.assertIn("DefaultCluster", listing)
        config = await self.ok("getBrokerConfig", "-b", cluster.broker_addr)
        self.assertIn("brokerName", config)
        out = await self.ok(
            "updateBrokerConfig", "-b", cluster.broker_addr, "-k", "maxMessageSize", "-v", "2048"
        )
        self.assertIn("success", out)
        self.assertEqual(cluster.broker.config.max_message_size, 2048)
        refused = await self.admin(
            "updateBrokerConfig", "-c", "DefaultCluster", "-k", "listenPort", "-v", "1"
        )
        self.assertEqual(refused.status, 1)
        self.assertIn("listenPort", refused.err)

    async def test_subscription_groups(self) -> None:
        """updateSubGroup creates a group with the given settings; deleteSubGroup drops it."""
        cluster = await self.start()
        out = await self.ok("updateSubGroup", "-b", cluster.broker_addr, "-g", "CG_NEW", "-r", "3")
        self.assertIn("success", out)
        config = cluster.broker.groups.find("CG_NEW")
        assert config is not None
        self.assertEqual((config.retry_max_times, config.consume_broadcast_enable), (3, False))
        await self.ok("deleteSubGroup", "-c", "DefaultCluster", "-g", "CG_NEW")
        self.assertIsNone(cluster.broker.groups.find("CG_NEW"))

    async def test_unreachable_namesrv(self) -> None:
        """A NameServer that cannot be reached: exit status 1 and its address in the message."""
        await self.start()
        addr = await closed_port_addr()
        result = await self.admin("topicList", "-n", addr)
        self.assertEqual(result.status, 1)
        self.assertIn(addr, result.err)
        self.assertEqual(result.out, "")

    async def test_unreachable_broker(self) -> None:
        """A broker that cannot be reached: exit status 1 and its address in the message."""
        await self.start()
        addr = await closed_port_addr()
        result = await self.admin("brokerStatus", "-b", addr)
        self.assertEqual(result.status, 1)
        self.assertIn(addr, result.err)

    async def test_namesrv_from_environment(self) -> None:
        """NAMESRV_ADDR is used when -n is absent; without either the command fails clearly."""
        await self.start()
        result = await self.admin("topicList", environ={"NAMESRV_ADDR": self.cluster.namesrv_addr})
        self.assertEqual(result.status, 0, result.err)
        self.assertIn("TBW102", result.out)
        result = await self.admin("topicList", environ={"X": "1"})
        self.assertEqual(result.status, 1)
        self.assertIn("NAMESRV_ADDR", result.err)


async def closed_port_addr() -> str:
    """``127.0.0.1:<port>`` of a port that was just listening and is closed now."""
    port = await TCP4ServerEndpoint(global_reactor(), 0, interface="127.0.0.1").listen(
        Factory.forProtocol(Protocol)
    )
    number = port.getHost().port
    await port.stopListening()
    return f"127.0.0.1:{number}"


class OptionsTests(SynchronousTestCase):
    def test_every_command_parses(self) -> None:
        """Every command is a sub-command with -n and its own options."""
        self.assertEqual(len(COMMANDS), 31)
        for name in COMMANDS:
            options = Options()
            options.parseOptions([name, "-n", "127.0.0.1:9876"])
            self.assertEqual(options.subOptions["namesrvAddr"], "127.0.0.1:9876")

    def test_usage_errors(self) -> None:
        """An unknown command, a missing option or no command exits 1 with a message."""
        clock: Any = object()
        for argv, word in (
            (["noSuchCommand"], "noSuchCommand"),
            ([], "command"),
            (["updateTopic", "-n", "x:1", "-p", "abc"], "abc"),
        ):
            err = io.StringIO()
            d: Deferred[int] = run(clock, argv, io.StringIO(), err, {})
            self.assertEqual(self.successResultOf(d), 1)
            self.assertIn(word, err.getvalue())

    def test_parse_timestamp(self) -> None:
        """Timestamps: now, -1, epoch ms and mqadmin's date form."""
        self.assertEqual(parse_timestamp("now", 123), 123)
        self.assertEqual(parse_timestamp("-1", 0), -1)
        self.assertEqual(parse_timestamp("1795295100000", 0), 1795295100000)
        os.environ.setdefault("TZ", os.environ.get("TZ", "UTC"))
        value = parse_timestamp("2026-11-21#10:00:00:250", 0)
        self.assertEqual(value % 1000, 250)

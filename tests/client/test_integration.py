"""Integration: rmq.client against a real rmq NameServer + Broker (rmq.testing) on loopback.

Real sockets on ephemeral 127.0.0.1 ports, the global reactor, no sleeps: every wait is for an
event, bounded by a deadline.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from rmq.client import (
    CONSUME_SUCCESS,
    ConsumeFromWhere,
    MessageExt,
    MessageModel,
    Producer,
    PullConsumer,
    PushConsumer,
    SendStatus,
    new_message,
)
from rmq.client.api import TopicRoute
from rmq.common.asyncutil import global_reactor
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import new_request
from rmq.testing import LocalCluster, start_local_cluster


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> None:
    """Poll ``cond`` on the reactor until true; fail after ``timeout`` seconds."""
    reactor = global_reactor()
    deadline = reactor.seconds() + timeout
    while not cond():
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await deferLater(reactor, step, lambda: None)


class ClientIntegrationTests(TestCase):
    timeout = 60

    async def cluster(self, **broker_properties: str) -> LocalCluster:
        self.reactor = global_reactor()
        cluster = await start_local_cluster(self.reactor, broker_properties=broker_properties)
        self.addCleanup(cluster.stop)
        return cluster

    async def producer(self, cluster: LocalCluster, **kw: object) -> Producer:
        p = Producer("PG", cluster.namesrv_addr, client_ip="127.0.0.1", **kw)  # type: ignore[arg-type]
        await p.start()
        self.addCleanup(p.shutdown)
        return p

    def push(
        self, cluster: LocalCluster, got: list[MessageExt], group: str = "CG", **kw: object
    ) -> PushConsumer:
        """A PushConsumer from the first offset whose listener (unless ``kw`` names one)
        collects the messages in ``got``."""

        def listener(msgs: list[MessageExt]) -> object:
            got.extend(msgs)
            return CONSUME_SUCCESS

        kw.setdefault("consume_from_where", ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
        kw.setdefault("listener", listener)
        c = PushConsumer(
            group,
            cluster.namesrv_addr,
            client_ip="127.0.0.1",
            offset_store_dir=self.mktemp(),
            **kw,  # type: ignore[arg-type]
        )
        return c

    async def create_topic(self, cluster: LocalCluster, topic: str, queues: int) -> None:
        client = RemotingClient(self.reactor, tcp_endpoint_factory(self.reactor))
        try:
            header = {
                "topic": topic,
                "defaultTopic": "TBW102",
                "readQueueNums": queues,
                "writeQueueNums": queues,
                "perm": 6,
                "topicFilterType": "SINGLE_TAG",
                "topicSysFlag": 0,
                "order": False,
            }
            cmd = new_request(RequestCode.UPDATE_AND_CREATE_TOPIC, header)
            resp = await client.invoke(cluster.broker_addr, cmd, 5)
            if resp.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
                # Broker without the admin processor yet: same change through its topic manager.
                from rmq.broker.topic import TopicConfig

                cluster.broker.topics.update_topic_config(TopicConfig(topic, queues, queues))
            else:
                self.assertEqual(resp.code, ResponseCode.SUCCESS, resp.remark)

            async def route_queues() -> int:
                cmd = new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
                r = await client.invoke(cluster.namesrv_addr, cmd, 5)
                if r.code != ResponseCode.SUCCESS:
                    return 0
                return int(TopicRoute.from_json(r.body).queue_datas[0].write_queue_nums)

            deadline = self.reactor.seconds() + 5
            while await route_queues() != queues:
                self.assertLess(self.reactor.seconds(), deadline, "route not updated")
                await deferLater(self.reactor, 0.01, lambda: None)
        finally:
            await client.close()

    async def test_produce_consume_intact(self) -> None:
        """Messages with tags, keys, properties and a compressed body arrive intact."""
        cluster = await self.cluster()
        await self.create_topic(cluster, "IT1", 4)
        p = await self.producer(cluster)
        got: list[MessageExt] = []
        c = self.push(cluster, got)
        c.subscribe("IT1", "TagA || TagB")
        await c.start()
        self.addCleanup(c.shutdown)
        big = bytes(range(256)) * 40
        sent = {}
        for i in range(20):
            body = big if i == 0 else f"body-{i}".encode()
            msg = new_message(
                "IT1",
                body,
                tags="TagA" if i % 2 else "TagB",
                keys=[f"k{i}"],
                properties={"custom": f"v{i}"},
            )
            r = await p.send(msg)
            self.assertEqual(r.status, SendStatus.SEND_OK)
            sent[r.msg_id] = msg
        await p.send(new_message("IT1", b"filtered", tags="TagC"))
        await wait_for(lambda: len(got) >= 20)
        self.assertEqual(len(got), 20)
        for m in got:
            orig = sent[m.msg_id]
            self.assertEqual(m.body, orig.body)
            self.assertEqual(m.tags, orig.tags)
            self.assertEqual(m.keys, orig.keys)
            self.assertEqual(m.properties["custom"], orig.properties["custom"])
            self.assertEqual(m.topic, "IT1")

    async def test_batch_and_pull_consumer(self) -> None:
        """A batch send lands in one queue in order; a PullConsumer polls it."""
        cluster = await self.cluster()
        await self.create_topic(cluster, "IT2", 2)
        p = await self.producer(cluster)
        r = await p.send([new_message("IT2", b"b%d" % i) for i in range(5)])
        self.assertEqual(len(r.msg_id.split(",")), 5)
        c = PullConsumer(
            "LG",
            cluster.namesrv_addr,
            client_ip="127.0.0.1",
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        )
        c.assign([r.message_queue])
        await c.start()
        self.addCleanup(c.shutdown)
        got: list[MessageExt] = []
        while len(got) < 5:
            got += await c.poll(timeout=5)
        self.assertEqual([m.body for m in got], [b"b%d" % i for i in range(5)])
        self.assertEqual(
            [m.queue_offset for m in got], list(range(r.queue_offset, r.queue_offset + 5))
        )
        await c.commit()

    async def test_two_consumers_split_and_take_over(self) -> None:
        """Two members split the queues; when one stops the other owns all within 1 s."""
        cluster = await self.cluster()
        await self.create_topic(cluster, "IT3", 4)
        got_a: list[MessageExt] = []
        got_b: list[MessageExt] = []
        a = self.push(cluster, got_a, instance_name="a")
        b = self.push(cluster, got_b, instance_name="b")
        for c in (a, b):
            c.subscribe("IT3", "*")
        await a.start()
        self.addCleanup(a.shutdown)
        await b.start()
        b_stopped = False

        async def stop_b() -> None:
            if not b_stopped:
                await b.shutdown()

        self.addCleanup(stop_b)

        def t(c: PushConsumer) -> set[object]:
            return {mq for mq in c.assigned_queues() if mq.topic == "IT3"}

        await wait_for(lambda: len(t(a)) == 2 and len(t(b)) == 2, timeout=5)
        self.assertFalse(t(a) & t(b))
        p = await self.producer(cluster)
        for i in range(16):
            await p.send(new_message("IT3", b"x%d" % i))
        await wait_for(lambda: len(got_a) + len(got_b) >= 16)
        self.assertTrue(got_a and got_b)
        await b.shutdown()
        b_stopped = True
        start = self.reactor.seconds()
        await wait_for(lambda: len(t(a)) == 4, timeout=5)
        self.assertLess(self.reactor.seconds() - start, 1.0)
        for i in range(16, 32):
            await p.send(new_message("IT3", b"x%d" % i))
        await wait_for(lambda: len({m.body for m in got_a + got_b}) >= 32)
        self.assertEqual({m.body for m in got_a + got_b}, {b"x%d" % i for i in range(32)})

    async def test_broadcasting(self) -> None:
        """Broadcasting: two consumers of one group each receive every message."""
        cluster = await self.cluster()
        await self.create_topic(cluster, "IT4", 2)
        got_a: list[MessageExt] = []
        got_b: list[MessageExt] = []
        cs = []
        for name, got in (("a", got_a), ("b", got_b)):
            c = self.push(
                cluster,
                got,
                group="BG",
                instance_name=name,
                message_model=MessageModel.BROADCASTING,
            )
            c.subscribe("IT4", "*")
            await c.start()
            self.addCleanup(c.shutdown)
            cs.append(c)
        p = await self.producer(cluster)
        for i in range(10):
            await p.send(new_message("IT4", b"y%d" % i))
        await wait_for(lambda: len(got_a) >= 10 and len(got_b) >= 10)
        want = {b"y%d" % i for i in range(10)}
        self.assertEqual({m.body for m in got_a}, want)
        self.assertEqual({m.body for m in got_b}, want)

    async def test_queue_count_raised(self) -> None:
        """Raising a topic's queue count while running: new queues are produced to and consumed."""
        cluster = await self.cluster()
        await self.create_topic(cluster, "IT5", 2)
        got: list[MessageExt] = []
        c = self.push(cluster, got, poll_name_server_interval=0.2, rebalance_interval=0.3)
        c.subscribe("IT5", "*")
        await c.start()
        self.addCleanup(c.shutdown)
        p = await self.producer(cluster, poll_name_server_interval=0.2)
        await p.send(new_message("IT5", b"before"))
        await self.create_topic(cluster, "IT5", 6)
        await wait_for(lambda: len([q for q in c.assigned_queues() if q.topic == "IT5"]) == 6)
        used = set()
        for i in range(12):
            r = await p.send(new_message("IT5", b"after%d" % i))
            used.add(r.message_queue.queue_id)
        self.assertTrue(used & {2, 3, 4, 5}, used)
        await wait_for(lambda: len(got) >= 13)
        self.assertTrue({m.queue_id for m in got} & {2, 3, 4, 5})

    async def test_namesrv_stopped(self) -> None:
        """With the NameServer stopped, a running producer and consumer keep working; a new
        client fails with an error naming the NameServer."""
        cluster = await self.cluster()
        await self.create_topic(cluster, "IT6", 2)
        got: list[MessageExt] = []
        c = self.push(cluster, got, poll_name_server_interval=0.1)
        c.subscribe("IT6", "*")
        await c.start()
        self.addCleanup(c.shutdown)
        p = await self.producer(cluster, poll_name_server_interval=0.1)
        await p.send(new_message("IT6", b"one"))
        await cluster.namesrv_service.stopService()
        await deferLater(self.reactor, 0.3, lambda: None)  # a few failed route refreshes
        r = await p.send(new_message("IT6", b"two"))
        self.assertEqual(r.status, SendStatus.SEND_OK)
        await wait_for(lambda: len(got) >= 2)
        fresh = Producer("PG2", cluster.namesrv_addr, client_ip="127.0.0.1")
        await fresh.start()
        self.addCleanup(fresh.shutdown)
        with self.assertRaises(Exception) as cm:
            await fresh.send(new_message("IT6", b"three"))
        self.assertIn(cluster.namesrv_addr, str(cm.exception))

    async def test_failed_message_redelivered(self) -> None:
        """RECONSUME_LATER sends the message back; it is redelivered through %RETRY%."""
        # Every delay level 1 s, so the redelivery comes after 1 s instead of level 3's 10 s.
        cluster = await self.cluster(messageDelayLevel=" ".join(["1s"] * 18))
        await self.create_topic(cluster, "IT7", 1)
        calls: list[MessageExt] = []
        done: Deferred[None] = Deferred()

        def listener(msgs: list[MessageExt]) -> object:
            calls.extend(msgs)
            if len(calls) == 1:
                return "RECONSUME_LATER"
            if not done.called:
                done.callback(None)
            return CONSUME_SUCCESS

        c = self.push(
            cluster,
            [],
            "RG",
            listener=listener,
            rebalance_interval=0.5,
            poll_name_server_interval=0.5,
        )
        c.subscribe("IT7", "*")
        await c.start()
        self.addCleanup(c.shutdown)
        p = await self.producer(cluster)
        await p.send(new_message("IT7", b"retry-me"))
        done.addTimeout(30, self.reactor)
        await done
        self.assertEqual(calls[1].body, b"retry-me")
        self.assertEqual(calls[1].topic, "IT7")
        self.assertEqual(calls[1].reconsume_times, 1)

    async def extra_broker(self, cluster: LocalCluster, name: str) -> Any:
        """Start another master broker ``name`` registered with the cluster's NameServer."""
        from twisted.internet.endpoints import TCP4ServerEndpoint

        from rmq.broker.config import configs_from_properties
        from rmq.broker.service import build_broker_service

        props = {
            "brokerName": name,
            "brokerIP1": "127.0.0.1",
            "listenPort": "0",
            "listenInterface": "127.0.0.1",
            "storePathRootDir": self.mktemp(),
            "namesrvAddr": cluster.namesrv_addr,
        }
        broker_config, store_config = configs_from_properties(props, "test")
        service = build_broker_service(
            broker_config,
            TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1"),
            self.reactor,
            store_config=store_config,
            client_endpoint_factory=tcp_endpoint_factory(self.reactor),
        )
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        await service.when_started()
        return service

    async def test_three_brokers_one_killed(self) -> None:
        """Sends spread over three brokers' queues; with one broker stopped mid-run every send
        still succeeds on the other two."""
        cluster = await self.cluster()
        b = await self.extra_broker(cluster, "broker-b")
        c = await self.extra_broker(cluster, "broker-c")
        await self.create_topic(cluster, "IT8", 2)  # broker-a
        from rmq.broker.topic import TopicConfig

        for svc in (b, c):
            svc.broker.topics.update_topic_config(TopicConfig("IT8", 2, 2))
        client = RemotingClient(self.reactor, tcp_endpoint_factory(self.reactor))
        try:
            deadline = self.reactor.seconds() + 5
            while True:
                cmd = new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "IT8"})
                resp = await client.invoke(cluster.namesrv_addr, cmd, 5)
                if resp.code == 0 and len(TopicRoute.from_json(resp.body).queue_datas) == 3:
                    break
                self.assertLess(self.reactor.seconds(), deadline)
                await deferLater(self.reactor, 0.01, lambda: None)
        finally:
            await client.close()
        p = await self.producer(cluster, poll_name_server_interval=0.2)
        used = set()
        for i in range(24):
            r = await p.send(new_message("IT8", b"z%d" % i))
            used.add((r.message_queue.broker_name, r.message_queue.queue_id))
        self.assertEqual(len(used), 6)
        # A crash, not a clean stop: no unregistration, so the NameServer keeps routing to it.
        b.broker.registration.active = False
        await b.stopService()
        brokers = set()
        for i in range(30):
            r = await p.send(new_message("IT8", b"after%d" % i))
            self.assertEqual(r.status, SendStatus.SEND_OK)
            brokers.add(r.message_queue.broker_name)
        self.assertEqual(brokers, {"broker-a", "broker-c"})

    async def test_namesrv_from_http_endpoint(self) -> None:
        """With only rocketmq.namesrv.domain set, the NameServer list comes from HTTP and works."""
        from twisted.web import resource, server

        cluster = await self.cluster()

        class Addr(resource.Resource):
            isLeaf = True  # noqa: N815

            def render_GET(self, request: server.Request) -> bytes:  # noqa: N802
                return cluster.namesrv_addr.encode() + b"\n"

        port = self.reactor.listenTCP(0, server.Site(Addr()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        domain = f"127.0.0.1:{port.getHost().port}"
        env = os.environ.pop("NAMESRV_ADDR", None)
        if env is not None:
            self.addCleanup(os.environ.__setitem__, "NAMESRV_ADDR", env)
        p = Producer(
            "PGH", None, client_ip="127.0.0.1", properties={"rocketmq.namesrv.domain": domain}
        )
        await p.start()
        self.addCleanup(p.shutdown)
        self.assertEqual(p.instance.api.namesrv_addrs, [cluster.namesrv_addr])
        r = await p.send(new_message("IT9", b"via http"))
        self.assertEqual(r.status, SendStatus.SEND_OK)

    async def test_examples_run(self) -> None:
        """examples/producer.py and examples/pull_consumer.py run against a real cluster."""
        import contextlib
        import importlib.util
        import io
        from pathlib import Path

        cluster = await self.cluster()
        root = Path(__file__).resolve().parents[2] / "examples"

        def load(name: str) -> Any:
            spec = importlib.util.spec_from_file_location(f"example_{name}", root / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            await load("producer").main(self.reactor, cluster.namesrv_addr, "ExTopic", 3)
            await load("pull_consumer").main(self.reactor, cluster.namesrv_addr, "ExTopic", 2)
        text = out.getvalue()
        self.assertEqual(text.count("SEND_OK"), 4)
        self.assertIn("Hello RocketMQ 0", text)

    async def test_orderly(self) -> None:
        """Ordered sends by key + an orderly consumer: each key's messages arrive in send order,
        a failure is retried in place, and every queue is owned (its lock granted by the broker)."""
        from rmq.client import RECONSUME_LATER, SelectMessageQueueByHash

        cluster = await self.cluster()
        await self.create_topic(cluster, "IT10", 4)
        seen: list[tuple[str, int]] = []
        failed_once: set[bytes] = set()

        def listener(msgs: list[MessageExt]) -> object:
            m = msgs[0]
            if m.body.endswith(b"-3") and m.body not in failed_once:
                failed_once.add(m.body)
                return RECONSUME_LATER
            key, _, n = m.body.decode().rpartition("-")
            seen.append((key, int(n)))
            return CONSUME_SUCCESS

        c = self.push(
            cluster, [], "OG", listener=listener, orderly=True, suspend_current_queue_time=0.05
        )
        c.subscribe("IT10", "*")
        p = await self.producer(cluster)
        sel = SelectMessageQueueByHash()
        keys = [f"order{k}" for k in range(5)]
        for n in range(8):
            for key in keys:
                await p.send(new_message("IT10", f"{key}-{n}".encode()), sel, key)
        await c.start()
        self.addCleanup(c.shutdown)
        await wait_for(lambda: len(seen) >= 40)
        for key in keys:
            self.assertEqual([n for k, n in seen if k == key], list(range(8)), key)
        self.assertEqual(len(failed_once), 5)
        self.assertEqual(len([q for q in c.assigned_queues() if q.topic == "IT10"]), 4)

    async def test_orderly_poison_message_to_dlq(self) -> None:
        """An orderly consumer's message that always fails is retried in place
        ``max_reconsume_times`` times, then lands in %DLQ%<group>; the later messages of the
        queue are consumed in order and the offset moves past it."""
        from rmq.client import RECONSUME_LATER
        from rmq.common.message import RETRY_TOPIC, decode_messages

        cluster = await self.cluster()
        await self.create_topic(cluster, "IT11", 1)
        calls: list[tuple[bytes, int]] = []

        def listener(msgs: list[MessageExt]) -> object:
            m = msgs[0]
            calls.append((m.body, m.reconsume_times))
            return RECONSUME_LATER if m.body == b"p-2" else CONSUME_SUCCESS

        c = self.push(
            cluster,
            [],
            "DG",
            listener=listener,
            orderly=True,
            suspend_current_queue_time=0.05,
            max_reconsume_times=3,
        )
        c.subscribe("IT11", "*")
        p = await self.producer(cluster)
        sent = [await p.send(new_message("IT11", b"p-%d" % n)) for n in range(5)]
        await c.start()
        self.addCleanup(c.shutdown)
        await wait_for(lambda: len(calls) >= 8)
        self.assertEqual(
            calls,
            [(b"p-0", 0), (b"p-1", 0)]
            + [(b"p-2", n) for n in range(4)]
            + [(b"p-3", 0), (b"p-4", 0)],
        )
        result = await cluster.store.get_messages("%DLQ%DG", 0, 0, 10)
        [dead] = decode_messages(b"".join(bytes(m) for m in result.messages))
        self.assertEqual(dead.body, b"p-2")
        self.assertEqual(dead.reconsume_times, 3)
        self.assertEqual(dead.properties[RETRY_TOPIC], "IT11")
        self.assertEqual(dead.msg_id, sent[2].msg_id)
        self.assertEqual(cluster.store.get_max_offset_in_queue("%RETRY%DG", 0), 0)
        [mq] = [q for q in c.assigned_queues() if q.topic == "IT11"]
        assert c.offset_store is not None
        await wait_for(lambda: c.offset_store is not None and c.offset_store.current(mq) == 5)
        await c.persist_offsets()
        await wait_for(lambda: cluster.broker.offsets.query_offset("DG", "IT11", 0) == 5)

    async def test_reset_offset_by_time_reconsumes(self) -> None:
        """rmq-admin's resetOffsetByTime (INVOKE_BROKER_TO_RESET_OFFSET) makes a running
        PushConsumer consume again every message stored at or after the given time."""
        from rmq.admin.api import MQAdmin

        cluster = await self.cluster()
        await self.create_topic(cluster, "IT12", 2)
        got: list[MessageExt] = []
        c = self.push(cluster, got, group="RSG")
        c.subscribe("IT12", "*")
        await c.start()
        self.addCleanup(c.shutdown)
        p = await self.producer(cluster)
        for n in range(6):
            await p.send(new_message("IT12", b"r-%d" % n))
        await wait_for(lambda: len(got) >= 6)
        store = cluster.store
        maxes = {q: store.get_max_offset_in_queue("IT12", q) for q in range(2)}
        self.assertEqual(sum(maxes.values()), 6)
        await wait_for(
            lambda: all(
                cluster.broker.offsets.query_offset("RSG", "IT12", q) == maxes[q] for q in range(2)
            )
        )
        first_round = list(got)
        pivot = sorted(first_round, key=lambda m: (m.store_timestamp, m.body))[3]
        expected = sorted(m.body for m in first_round if m.store_timestamp >= pivot.store_timestamp)
        admin = MQAdmin(
            RemotingClient(self.reactor, tcp_endpoint_factory(self.reactor)),
            self.reactor,
            [cluster.namesrv_addr],
        )
        self.addCleanup(admin.close)
        table = await admin.reset_offset_by_time(
            cluster.broker_addr, "IT12", "RSG", pivot.store_timestamp, True
        )
        want = {}
        for q in range(2):
            queue_msgs = [m for m in first_round if m.queue_id == q]
            later = [
                m.queue_offset for m in queue_msgs if m.store_timestamp >= pivot.store_timestamp
            ]
            want[q] = min(later) if later else maxes[q]
        self.assertEqual({k.queue_id: v for k, v in table.items()}, want)
        await wait_for(lambda: len(got) >= 6 + len(expected))
        self.assertEqual(sorted(m.body for m in got[6:]), expected)
        self.assertEqual(len(got), 6 + len(expected))
        await wait_for(
            lambda: all(
                cluster.broker.offsets.query_offset("RSG", "IT12", q) == maxes[q] for q in range(2)
            )
        )

    async def test_auto_created_topic_follows_restarted_broker(self) -> None:
        """A topic auto-created through TBW102 by the producer's first send stays in its route
        refresh: when the broker comes back on a new port, the producer learns the address from
        the topic's route, heartbeats the new broker at once (it knows the producer group long
        before the 30 s heartbeat tick) and sends there."""
        self.reactor = global_reactor()
        data = self.mktemp()
        first = await start_local_cluster(self.reactor, data_dir=data)
        broker_up = [True]

        async def stop_first() -> None:
            if broker_up[0]:
                await first.stop()
            else:
                await first.namesrv_service.stopService()

        self.addCleanup(stop_first)
        p = await self.producer(first, poll_name_server_interval=0.2)
        r = await p.send(new_message("IT13", b"before"))
        self.assertEqual(r.status, SendStatus.SEND_OK)
        name = r.message_queue.broker_name
        await first.broker_service.stopService()
        broker_up[0] = False
        second = await start_local_cluster(
            self.reactor, data_dir=data, broker_properties={"namesrvAddr": first.namesrv_addr}
        )
        self.addCleanup(second.stop)
        self.assertNotEqual(second.broker_addr, first.broker_addr)
        await wait_for(lambda: p.instance.master_addr(name) == second.broker_addr, 10.0)
        await wait_for(lambda: bool(second.broker.producers.channels("PG")), 10.0)
        r = await p.send(new_message("IT13", b"after"))
        self.assertEqual(r.status, SendStatus.SEND_OK)
        self.assertEqual(sum(second.store.get_max_offset_in_queue("IT13", q) for q in range(4)), 1)

"""Broker integration tests on loopback through rmq.testing: send, pull, long polling, offsets."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from rmq.broker.topic import TopicConfig
from rmq.common import fastjson
from rmq.common.message import Message, decode_messages, encode_batch
from rmq.common.route import TopicRouteData
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from rmq.testing import LocalCluster, start_local_cluster


def _send(topic: str, body: bytes, props: str = "", queue_id: int = 0) -> RemotingCommand:
    return new_request(
        RequestCode.SEND_MESSAGE_V2,
        {
            "a": "PG",
            "b": topic,
            "c": "TBW102",
            "d": 4,
            "e": queue_id,
            "f": 0,
            "g": 1,
            "h": 0,
            "i": props,
        },
        body,
    )


def _pull(
    topic: str,
    offset: int,
    sys_flag: int = 6,
    suspend_ms: int = 15000,
    commit: int = 0,
    queue_id: int = 0,
    group: str = "CG",
) -> RemotingCommand:
    return new_request(
        RequestCode.PULL_MESSAGE,
        {
            "consumerGroup": group,
            "topic": topic,
            "queueId": queue_id,
            "queueOffset": offset,
            "maxMsgNums": 32,
            "sysFlag": sys_flag,
            "commitOffset": commit,
            "suspendTimeoutMillis": suspend_ms,
            "subscription": "*",
            "subVersion": 0,
        },
    )


class BrokerIntegrationTests(TestCase):
    async def _cluster(self) -> tuple[LocalCluster, RemotingClient]:
        cluster = await start_local_cluster(reactor)
        self.addCleanup(cluster.stop)
        client = RemotingClient(reactor, tcp_endpoint_factory(reactor))
        self.addCleanup(client.close)
        return cluster, client

    async def test_send_then_pull(self) -> None:
        """A sent message (auto-created topic) is pulled back intact with the record layout."""
        cluster, client = await self._cluster()
        body = "héllo wörld".encode()
        sent = await client.invoke(
            cluster.broker_addr, _send("ITopic", body, "TAGS\x01t1\x02KEYS\x01k1 k2"), 5
        )
        self.assertEqual(sent.code, ResponseCode.SUCCESS)
        self.assertEqual(sent.ext_fields["queueOffset"], "0")
        pulled = await client.invoke(cluster.broker_addr, _pull("ITopic", 0), 5)
        self.assertEqual(pulled.code, ResponseCode.SUCCESS)
        self.assertEqual(pulled.ext_fields["nextBeginOffset"], "1")
        (msg,) = decode_messages(pulled.body)
        self.assertEqual(msg.body, body)
        self.assertEqual(msg.properties["KEYS"], "k1 k2")
        self.assertEqual(msg.properties["CLUSTER"], "DefaultCluster")
        self.assertEqual(msg.offset_msg_id, sent.ext_fields["msgId"])
        self.assertEqual(msg.store_host, cluster.broker_addr)

    async def test_route_registered(self) -> None:
        """An auto-created topic reaches the NameServer through the oneway re-registration."""
        cluster, client = await self._cluster()
        await client.invoke(cluster.broker_addr, _send("RouteT", b"x"), 5)
        for _ in range(50):
            resp = await client.invoke(
                cluster.namesrv_addr,
                new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "RouteT"}),
                5,
            )
            if resp.code == ResponseCode.SUCCESS:
                break
            await _later(0.02)
        self.assertEqual(resp.code, ResponseCode.SUCCESS)
        route = TopicRouteData.from_json(resp.body)
        self.assertEqual(route.broker_datas[0].broker_addrs[0], cluster.broker_addr)

    async def test_long_poll_wakes_on_send(self) -> None:
        """A held pull is answered as soon as a message for its queue arrives, not at timeout."""
        cluster, client = await self._cluster()
        await client.invoke(cluster.broker_addr, _send("LpT", b"first"), 5)
        start = reactor.seconds()
        held = client.invoke(cluster.broker_addr, _pull("LpT", 1, suspend_ms=20000), 30)
        answered: list[RemotingCommand] = []
        held.addCallback(_record, answered)
        await _later(0.2)
        self.assertEqual(answered, [])
        self.assertEqual(len(cluster.broker.hold), 1)
        await client.invoke(cluster.broker_addr, _send("LpT", b"second"), 5)
        pulled = await held
        self.assertLess(reactor.seconds() - start, 5)
        self.assertEqual(pulled.code, ResponseCode.SUCCESS)
        self.assertEqual([m.body for m in decode_messages(pulled.body)], [b"second"])

    async def test_long_poll_timeout(self) -> None:
        """A held pull with nothing arriving is answered PULL_NOT_FOUND at its suspend timeout."""
        cluster, client = await self._cluster()
        await client.invoke(cluster.broker_addr, _send("LpT2", b"first"), 5)
        pulled = await client.invoke(cluster.broker_addr, _pull("LpT2", 1, suspend_ms=300), 5)
        self.assertEqual(pulled.code, ResponseCode.PULL_NOT_FOUND)
        self.assertEqual(pulled.remark, "OFFSET_OVERFLOW_ONE")

    async def test_batch_and_offsets(self) -> None:
        """A batch stores one record each; committed offsets are queried back."""
        cluster, client = await self._cluster()
        batch = encode_batch(
            [Message("BT", f"m{i}".encode(), properties={"UNIQ_KEY": f"U{i}"}) for i in range(3)]
        )
        req = new_request(
            RequestCode.SEND_BATCH_MESSAGE,
            {
                "a": "PG",
                "b": "BT",
                "c": "TBW102",
                "d": 4,
                "e": 1,
                "f": 0,
                "g": 1,
                "h": 0,
                "i": "WAIT\x01true",
            },
            batch,
        )
        sent = await client.invoke(cluster.broker_addr, req, 5)
        self.assertEqual(sent.code, ResponseCode.SUCCESS)
        self.assertEqual(len(sent.ext_fields["msgId"].split(",")), 3)
        pulled = await client.invoke(cluster.broker_addr, _pull("BT", 0, queue_id=1), 5)
        self.assertEqual([m.body for m in decode_messages(pulled.body)], [b"m0", b"m1", b"m2"])
        upd = new_request(
            RequestCode.UPDATE_CONSUMER_OFFSET,
            {"consumerGroup": "CG", "topic": "BT", "queueId": 1, "commitOffset": 3},
        )
        self.assertEqual((await client.invoke(cluster.broker_addr, upd, 5)).code, 0)
        q = new_request(
            RequestCode.QUERY_CONSUMER_OFFSET, {"consumerGroup": "CG", "topic": "BT", "queueId": 1}
        )
        self.assertEqual((await client.invoke(cluster.broker_addr, q, 5)).ext_fields["offset"], "3")

    async def test_heartbeat_and_consumer_list(self) -> None:
        """A heartbeat registers the consumer; the group's list names it; NOTIFY reaches it."""
        cluster, client = await self._cluster()
        body = fastjson.dumps(
            {
                "clientID": "127.0.0.1@it",
                "consumerDataSet": [
                    {
                        "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
                        "consumeType": "CONSUME_PASSIVELY",
                        "groupName": "CGI",
                        "messageModel": "CLUSTERING",
                        "subscriptionDataSet": [{"subString": "*", "subVersion": 1, "topic": "T"}],
                    }
                ],
                "producerDataSet": [],
            }
        )
        hb = await client.invoke(
            cluster.broker_addr, new_request(RequestCode.HEART_BEAT, None, body), 5
        )
        self.assertEqual(hb.code, ResponseCode.SUCCESS)
        lst = await client.invoke(
            cluster.broker_addr,
            new_request(RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "CGI"}),
            5,
        )
        self.assertEqual(fastjson.loads(lst.body), {"consumerIdList": ["127.0.0.1@it"]})
        self.assertIn("%RETRY%CGI", cluster.broker.topics)


def _record(response: RemotingCommand, into: list[RemotingCommand]) -> RemotingCommand:
    into.append(response)
    return response


def _later(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class ManyTopicsTests(TestCase):
    async def test_hundred_thousand_topics_register(self) -> None:
        """A broker with 100,000 topics registers (compressed) and the NameServer routes them."""
        # The point is that such a registration is accepted, not its speed: allow a loaded machine.
        cluster = await start_local_cluster(
            reactor, broker_properties={"registerBrokerTimeoutMills": "30000"}
        )
        self.addCleanup(cluster.stop)
        topics = cluster.broker.topics
        for i in range(100_000):
            topics._put(TopicConfig(f"topic-{i:06d}", 8, 8))
        topics.data_version = topics.data_version.next(1)
        self.assertEqual(await cluster.broker.registration.register_all(), [True])
        client = RemotingClient(reactor, tcp_endpoint_factory(reactor))
        self.addCleanup(client.close)
        for name in ("topic-000000", "topic-099999"):
            resp = await client.invoke(
                cluster.namesrv_addr,
                new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": name}),
                10,
            )
            self.assertEqual(resp.code, ResponseCode.SUCCESS)

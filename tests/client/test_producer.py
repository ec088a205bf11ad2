"""Producer against a recording fake cluster, on a Clock."""

from __future__ import annotations

import zlib

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.client import (
    MessageQueue,
    Producer,
    SelectMessageQueueByHash,
    SendStatus,
    new_message,
)
from rmq.client.producer import check_message
from rmq.common.errors import MQBrokerError, MQClientError
from rmq.common.message import UNIQ_KEY, Message, decode_batch, decode_messages
from rmq.remoting.codes import RequestCode, ResponseCode
from tests.client.fakes import NAMESRV, FakeCluster


class ProducerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.cluster = FakeCluster(self.clock, brokers=2)
        self.cluster.create_topic("T")
        self.producer = Producer(
            "PG", NAMESRV, self.clock, remoting_factory=self.cluster.connect, client_ip="10.1.2.3"
        )
        self.successResultOf(self.producer.start())

    def tearDown(self) -> None:
        self.successResultOf(self.producer.shutdown())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_send_v2_header(self) -> None:
        """A send is SEND_MESSAGE_V2 with one-letter string headers, version ≥ 401 and UNIQ_KEY."""
        msg = new_message("T", b"hello", tags="TagA", keys=["k1", "k2"])
        result = self.successResultOf(self.producer.send(msg))
        self.assertEqual(result.status, SendStatus.SEND_OK)
        addr, cmd = self.cluster.sent(RequestCode.SEND_MESSAGE_V2)[0]
        self.assertGreaterEqual(cmd.version, 401)
        self.assertTrue(all(isinstance(v, str) for v in cmd.ext_fields.values()))
        ext = cmd.ext_fields
        self.assertEqual((ext["a"], ext["b"], ext["c"], ext["f"]), ("PG", "T", "TBW102", "0"))
        self.assertIn("TAGS\x01TagA", ext["i"])
        self.assertIn("KEYS\x01k1 k2", ext["i"])
        uniq = msg.properties[UNIQ_KEY]
        self.assertEqual(len(uniq), 32)
        self.assertTrue(uniq.startswith("0A010203"))  # 10.1.2.3
        self.assertEqual(result.msg_id, uniq)
        self.assertEqual(result.offset_msg_id[:8], "7F000001")
        self.assertEqual(result.queue_offset, 0)
        self.assertEqual(result.message_queue.topic, "T")
        stored = decode_messages(b"".join(self.cluster.queues[("broker-a", "T", 0)]))
        self.assertEqual(stored[0].body, b"hello")

    def test_round_robin_over_brokers(self) -> None:
        """Successive sends walk every writable queue of both brokers."""
        seen = set()
        for _ in range(8):
            r = self.successResultOf(self.producer.send(Message("T", b"x")))
            seen.add((r.message_queue.broker_name, r.message_queue.queue_id))
        self.assertEqual(len(seen), 8)

    def test_compression(self) -> None:
        """Bodies of 4 KiB and more are zlib-compressed with the compressed sysflag."""
        body = b"a" * 5000
        self.successResultOf(self.producer.send(Message("T", body)))
        _, cmd = self.cluster.sent(RequestCode.SEND_MESSAGE_V2)[0]
        self.assertEqual(int(cmd.ext_fields["f"]) & 1, 1)
        self.assertEqual(zlib.decompress(cmd.body), body)
        stored = decode_messages(b"".join(self.cluster.queues[("broker-a", "T", 0)]))
        self.assertEqual(stored[0].body, body)

    def test_checks(self) -> None:
        """Bad topics, empty and oversized bodies are refused before any request."""
        self.assertRaises(MQClientError, check_message, Message("a b", b"x"))
        self.assertRaises(MQClientError, check_message, Message("x" * 128, b"x"))
        self.assertRaises(MQClientError, check_message, Message("SCHEDULE_TOPIC_XXXX", b"x"))
        self.failureResultOf(self.producer.send(Message("T", b"")), MQClientError)
        big = Message("T", b"x" * (4 * 1024 * 1024 + 1))
        self.failureResultOf(self.producer.send(big), MQClientError)
        self.assertEqual(self.cluster.sent(RequestCode.SEND_MESSAGE_V2), [])

    def test_retry_another_broker(self) -> None:
        """A broker that is down is retried on the other broker, and then avoided."""
        self.cluster.down.add(self.cluster.brokers["broker-a"])
        r = self.successResultOf(self.producer.send(Message("T", b"x")))
        self.assertEqual(r.message_queue.broker_name, "broker-b")
        for _ in range(4):
            r = self.successResultOf(self.producer.send(Message("T", b"x")))
            self.assertEqual(r.message_queue.broker_name, "broker-b")
        sends_a = [a for a, _ in self.cluster.sent(310) if a == self.cluster.brokers["broker-a"]]
        self.assertEqual(len(sends_a), 1)

    def test_all_brokers_down(self) -> None:
        """When every attempt fails the send fails with the transport error after 3 tries."""
        self.cluster.down.update(self.cluster.brokers.values())
        f = self.failureResultOf(self.producer.send(Message("T", b"x")))
        self.assertEqual(len(self.cluster.sent(310)), 3)
        self.assertIn("refused", str(f.value))

    def test_non_retry_code(self) -> None:
        """A refusal that is not retryable fails at once with MQBrokerError."""
        self.cluster.send_code["broker-a"] = ResponseCode.MESSAGE_ILLEGAL
        f = self.failureResultOf(self.producer.send(Message("T", b"x")), MQBrokerError)
        self.assertEqual(f.value.code, ResponseCode.MESSAGE_ILLEGAL)
        self.assertEqual(len(self.cluster.sent(310)), 1)

    def test_flush_timeout_status(self) -> None:
        """FLUSH_DISK_TIMEOUT is a result status, not an error."""
        self.cluster.send_code["broker-a"] = ResponseCode.FLUSH_DISK_TIMEOUT
        r = self.successResultOf(self.producer.send(Message("T", b"x")))
        self.assertEqual(r.status, SendStatus.FLUSH_DISK_TIMEOUT)

    def warm(self, producer: Producer | None = None) -> Producer:
        """Send once so the topic's route is cached (later sends take the fast path); the next
        queue is then broker-a's queue 1."""
        p = producer or self.producer
        r = self.successResultOf(p.send(Message("T", b"warm")))
        self.assertEqual((r.message_queue.broker_name, r.message_queue.queue_id), ("broker-a", 0))
        self.cluster.requests.clear()
        return p

    def assert_limiter_free(self, p: Producer) -> None:
        """Every in-flight slot was given back."""
        self.assertEqual((p.limiter.count, p.limiter.bytes), (0, 0))

    def test_fast_path_retry_another_broker(self) -> None:
        """A cached-route send whose first attempt fails on the transport is retried on the
        other broker, and its in-flight slot is given back."""
        p = self.warm()
        self.cluster.down.add(self.cluster.brokers["broker-a"])
        r = self.successResultOf(p.send(Message("T", b"x")))
        self.assertEqual(r.message_queue.broker_name, "broker-b")
        self.assertEqual(r.status, SendStatus.SEND_OK)
        self.assertEqual(len(self.cluster.sent(310)), 2)
        self.assertEqual(len(self.cluster.sent(RequestCode.GET_ROUTEINFO_BY_TOPIC)), 1)
        self.assert_limiter_free(p)

    def test_fast_path_all_down_and_non_retry_code(self) -> None:
        """On the fast path too: all brokers down fails after 3 attempts; a refusal that is not
        retryable fails after one; no slot is leaked either way."""
        p = self.warm()
        self.cluster.down.update(self.cluster.brokers.values())
        f = self.failureResultOf(p.send(Message("T", b"x")))
        self.assertIn("refused", str(f.value))
        self.assertEqual(len(self.cluster.sent(310)), 3)
        self.assert_limiter_free(p)
        self.cluster.down.clear()
        self.cluster.requests.clear()
        self.clock.advance(60)  # latency avoidance forgets the failures
        self.cluster.send_code = {b: ResponseCode.MESSAGE_ILLEGAL for b in self.cluster.brokers}
        f = self.failureResultOf(p.send(Message("T", b"x")), MQBrokerError)
        self.assertEqual(f.value.code, ResponseCode.MESSAGE_ILLEGAL)
        self.assertEqual(len(self.cluster.sent(310)), 1)
        self.assert_limiter_free(p)

    def test_fast_path_not_store_ok_retried_elsewhere(self) -> None:
        """With retry_another_broker_when_not_store_ok, FLUSH_DISK_TIMEOUT on the fast path's
        attempt moves to the other broker."""
        p = Producer(
            "PG2",
            NAMESRV,
            self.clock,
            remoting_factory=self.cluster.connect,
            retry_another_broker_when_not_store_ok=True,
        )
        self.successResultOf(p.start())
        self.warm(p)
        self.cluster.send_code["broker-a"] = ResponseCode.FLUSH_DISK_TIMEOUT
        r = self.successResultOf(p.send(Message("T", b"x")))
        self.assertEqual((r.status, r.message_queue.broker_name), (SendStatus.SEND_OK, "broker-b"))
        self.assert_limiter_free(p)
        self.successResultOf(p.shutdown())

    def test_fast_path_checks(self) -> None:
        """A cached-route send still refuses empty and oversized bodies before any request."""
        p = self.warm()
        self.failureResultOf(p.send(Message("T", b"")), MQClientError)
        big = Message("T", b"x" * (4 * 1024 * 1024 + 1))
        self.failureResultOf(p.send(big), MQClientError)
        self.assertEqual(self.cluster.sent(RequestCode.SEND_MESSAGE_V2), [])
        self.assert_limiter_free(p)

    def test_batch(self) -> None:
        """A list is sent as one SEND_BATCH_MESSAGE with a UNIQ_KEY per message."""
        msgs = [Message("T", b"m%d" % i) for i in range(3)]
        r = self.successResultOf(self.producer.send(msgs))
        [(_, cmd)] = self.cluster.sent(RequestCode.SEND_BATCH_MESSAGE)
        self.assertEqual(cmd.ext_fields["m"], "true")
        decoded = decode_batch(cmd.body, "T")
        self.assertEqual([m.body for m in decoded], [b"m0", b"m1", b"m2"])
        self.assertEqual(len({m.properties[UNIQ_KEY] for m in decoded}), 3)
        self.assertEqual(len(r.msg_id.split(",")), 3)
        self.assertEqual(len(r.offset_msg_id.split(",")), 3)

    def test_ordered(self) -> None:
        """A selector picks the queue; the same key always goes to the same queue."""
        sel = SelectMessageQueueByHash()
        a = self.successResultOf(self.producer.send(Message("T", b"1"), sel, "order-7"))
        b = self.successResultOf(self.producer.send(Message("T", b"2"), sel, "order-7"))
        self.assertEqual(a.message_queue, b.message_queue)
        fixed = MessageQueue("T", "broker-b", 2)
        c = self.successResultOf(self.producer.send(Message("T", b"3"), fixed))
        self.assertEqual(c.message_queue, fixed)

    def test_ordered_no_failover(self) -> None:
        """An ordered send to a down broker fails without trying another queue."""
        self.cluster.down.add(self.cluster.brokers["broker-b"])
        fixed = MessageQueue("T", "broker-b", 1)
        self.failureResultOf(self.producer.send(Message("T", b"3"), fixed))
        self.assertEqual(len(self.cluster.sent(310)), 1)

    def test_auto_create_through_tbw102(self) -> None:
        """A topic without a route is sent using TBW102's brokers; the broker creates it."""
        r = self.successResultOf(self.producer.send(Message("NEW", b"x")))
        self.assertEqual(r.status, SendStatus.SEND_OK)
        self.assertIn("NEW", self.cluster.topics)
        routes = [c.ext_fields["topic"] for _, c in self.cluster.sent(105)]
        self.assertEqual(routes[:2], ["NEW", "TBW102"])

    def routes_asked(self) -> list[str]:
        """Topics of the GET_ROUTEINFO_BY_TOPIC requests so far."""
        return [c.ext_fields["topic"] for _, c in self.cluster.sent(105)]

    def heartbeat_addrs(self) -> list[str]:
        """Addresses the HEART_BEAT requests so far went to."""
        return [a for a, _ in self.cluster.sent(RequestCode.HEART_BEAT)]

    def test_auto_created_topic_follows_moved_broker(self) -> None:
        """A topic first sent through TBW102 is remembered: the route refresh asks for the
        topic itself, so a broker that comes back on a new address is found, gets a heartbeat
        at once and takes the next sends."""
        r = self.successResultOf(self.producer.send(Message("NEW", b"x")))
        self.assertEqual(r.status, SendStatus.SEND_OK)
        self.assertIn("NEW", self.producer.topics())
        inst = self.producer.instance
        self.assertNotIn("TBW102", inst.routes)  # TBW102's route is NEW's until NEW has one
        moved = "127.0.0.1:20911"
        self.cluster.brokers["broker-a"] = moved
        self.cluster.requests.clear()
        self.clock.advance(30)
        self.assertIn("NEW", self.routes_asked())
        self.assertNotIn("TBW102", self.routes_asked())  # the broker registered NEW
        self.assertEqual(inst.master_addr("broker-a"), moved)
        self.assertNotIn("127.0.0.1:10911", inst.all_broker_addrs())
        self.assertIn(moved, self.heartbeat_addrs())
        self.cluster.requests.clear()
        for _ in range(8):
            self.successResultOf(self.producer.send(Message("NEW", b"y")))
        self.assertEqual(len(self.cluster.sent(310)), 8)
        self.assertEqual(self.routes_asked(), [])  # the cached (refreshed) route served them
        self.assertEqual(len(self.cluster.stored("NEW", 1)), 1)

    def test_unrouted_topic_refreshed_from_tbw102_until_routed(self) -> None:
        """While the NameServer has no route of its own for an auto-created topic, each refresh
        asks for it and then for TBW102 (following a moved broker, with a heartbeat to it
        before the 30 s heartbeat tick); once the topic is routed its own queues are used."""
        p = Producer(
            "PG2",
            NAMESRV,
            self.clock,
            remoting_factory=self.cluster.connect,
            poll_name_server_interval=10,
        )
        self.successResultOf(p.start())
        self.addCleanup(lambda: self.successResultOf(p.shutdown()))
        self.successResultOf(p.send(Message("NEW", b"x")))
        self.assertEqual(self.routes_asked()[:2], ["NEW", "TBW102"])
        del self.cluster.topics["NEW"]  # the broker has not registered it yet
        moved = "127.0.0.1:20911"
        self.cluster.brokers["broker-a"] = moved
        self.cluster.requests.clear()
        self.clock.advance(10)
        self.assertEqual(self.routes_asked(), ["NEW", "TBW102"])
        self.assertEqual(p.instance.master_addr("broker-a"), moved)
        self.assertIn(moved, self.heartbeat_addrs())
        # min(default_topic_queue_nums 4, TBW102's 8 read queues) per broker
        self.assertEqual(len(p._publish["NEW"].queues), 8)
        self.cluster.requests.clear()
        r = self.successResultOf(p.send(Message("NEW", b"y")))
        self.assertEqual(
            self.cluster.sent(310)[0][0], self.cluster.brokers[r.message_queue.broker_name]
        )
        self.assertEqual(self.routes_asked(), [])
        self.cluster.create_topic("NEW", 2)
        self.cluster.requests.clear()
        self.clock.advance(10)
        self.assertEqual(self.routes_asked(), ["NEW"])
        self.assertEqual(len(p._publish["NEW"].queues), 4)
        self.assertNotIn("NEW", p.instance.default_routed)

    def test_oneway(self) -> None:
        """send_oneway writes a oneway SEND_MESSAGE_V2."""
        self.successResultOf(self.producer.send_oneway(Message("T", b"x")))
        [(_, cmd)] = self.cluster.sent(310)
        self.assertTrue(cmd.is_oneway)

    def test_in_flight_bound(self) -> None:
        """With max_in_flight=2, a third send waits until one of the first two is answered."""
        held: list[Deferred[object]] = []
        orig = self.cluster._b310

        def slow(remote, broker, cmd):  # type: ignore[no-untyped-def]
            d: Deferred[object] = Deferred()
            held.append(d)
            d.addCallback(lambda _: orig(remote, broker, cmd))
            return d

        self.cluster._b310 = slow  # type: ignore[method-assign]
        p = Producer(
            "PG2", NAMESRV, self.clock, remoting_factory=self.cluster.connect, max_in_flight=2
        )
        self.successResultOf(p.start())
        d1 = p.send(Message("T", b"1"))
        d2 = p.send(Message("T", b"2"))
        d3 = p.send(Message("T", b"3"))
        self.assertEqual(len(held), 2)
        self.assertEqual(p.limiter.waiting, 1)
        held[0].callback(None)
        self.successResultOf(d1)
        self.assertEqual(len(held), 3)
        held[1].callback(None)
        held[2].callback(None)
        self.successResultOf(d2)
        self.successResultOf(d3)
        self.successResultOf(p.shutdown())

    def test_heartbeat_and_unregister(self) -> None:
        """Heartbeats name the producer group; shutdown unregisters it from each broker."""
        self.successResultOf(self.producer.send(Message("T", b"x")))
        self.clock.advance(30)
        [(_, hb)] = self.cluster.sent(RequestCode.HEART_BEAT)[:1]
        self.assertIn(b'"groupName":"PG"', hb.body)
        self.successResultOf(self.producer.shutdown())
        un = self.cluster.sent(RequestCode.UNREGISTER_CLIENT)
        self.assertTrue(un)
        self.assertEqual(un[0][1].ext_fields["producerGroup"], "PG")
        self.producer = Producer("PG", NAMESRV, self.clock, remoting_factory=self.cluster.connect)
        self.successResultOf(self.producer.start())

    def test_periodic_route_and_heartbeat(self) -> None:
        """Routes refresh every 30 s and heartbeats go to every broker every 30 s."""
        self.successResultOf(self.producer.send(Message("T", b"x")))
        n_routes = len(self.cluster.sent(105))
        n_hb = len(self.cluster.sent(34))
        self.clock.advance(30)
        self.assertGreater(len(self.cluster.sent(105)), n_routes)
        self.assertEqual(len(self.cluster.sent(34)), n_hb + 2)

    def test_namesrv_down_keeps_working(self) -> None:
        """With the NameServer gone, a producer with a known route keeps sending."""
        self.successResultOf(self.producer.send(Message("T", b"x")))
        self.cluster.down.add(NAMESRV)
        self.clock.advance(30)
        r = self.successResultOf(self.producer.send(Message("T", b"y")))
        self.assertEqual(r.status, SendStatus.SEND_OK)

    def test_new_client_no_namesrv(self) -> None:
        """A new client with all NameServers down fails with an error naming them."""
        self.cluster.down.add(NAMESRV)
        p = Producer("PG3", NAMESRV, self.clock, remoting_factory=self.cluster.connect)
        self.successResultOf(p.start())
        f = self.failureResultOf(p.send(Message("T", b"x")), MQClientError)
        self.assertIn(NAMESRV, str(f.value))
        self.successResultOf(p.shutdown())

    def test_no_namesrv_configured(self) -> None:
        """Starting without any NameServer source fails with MQClientError."""
        import os

        old = os.environ.pop("NAMESRV_ADDR", None)
        try:
            p = Producer("PG4", None, self.clock, remoting_factory=self.cluster.connect)
            self.failureResultOf(p.start(), MQClientError)
        finally:
            if old is not None:
                os.environ["NAMESRV_ADDR"] = old

    def test_offline_broker_cleaned(self) -> None:
        """A broker that leaves every route is dropped from the broker table at the refresh."""
        self.successResultOf(self.producer.send(Message("T", b"x")))
        inst = self.producer.instance
        self.assertIn("broker-b", inst.broker_addrs)
        del self.cluster.brokers["broker-b"]
        self.clock.advance(30)
        self.assertNotIn("broker-b", inst.broker_addrs)
        self.assertEqual(inst.all_broker_addrs(), ["127.0.0.1:10911"])
        r = self.successResultOf(self.producer.send(Message("T", b"y")))
        self.assertEqual(r.message_queue.broker_name, "broker-a")

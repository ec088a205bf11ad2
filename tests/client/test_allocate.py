"""Queue allocation strategies give Java's results."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.client.allocate import (
    AllocateMessageQueueAveragely,
    AllocateMessageQueueAveragelyByCircle,
    AllocateMessageQueueByConfig,
    AllocateMessageQueueConsistentHash,
    md5_ring_hash,
)
from rmq.client.interfaces import IAllocateStrategy
from rmq.client.message_queue import MessageQueue


def queues(n: int, broker: str = "broker-a", topic: str = "T") -> list[MessageQueue]:
    return [MessageQueue(topic, broker, i) for i in range(n)]


class AveragelyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = AllocateMessageQueueAveragely()

    def ids(self, n: int, c: int) -> list[list[int]]:
        mqs = queues(n)
        cids = [f"c{i}" for i in range(c)]
        return [[mq.queue_id for mq in self.s.allocate("g", cid, mqs, cids)] for cid in cids]

    def test_provides_interface(self) -> None:
        """Every strategy provides IAllocateStrategy."""
        for s in (
            self.s,
            AllocateMessageQueueAveragelyByCircle(),
            AllocateMessageQueueConsistentHash(),
            AllocateMessageQueueByConfig([]),
        ):
            verifyObject(IAllocateStrategy, s)

    def test_eight_queues_three_clients(self) -> None:
        """8 queues over 3 clients: 3, 3, 2 contiguous queues (protocol §10.4 example)."""
        self.assertEqual(self.ids(8, 3), [[0, 1, 2], [3, 4, 5], [6, 7]])

    def test_fewer_queues_than_clients(self) -> None:
        """2 queues over 3 clients: the last client gets nothing."""
        self.assertEqual(self.ids(2, 3), [[0], [1], []])

    def test_even_split(self) -> None:
        """16 queues over 4 clients: 4 each, in order."""
        self.assertEqual(self.ids(16, 4)[3], [12, 13, 14, 15])

    def test_ten_over_four(self) -> None:
        """10 queues over 4 clients (Java: 3,3,2,2)."""
        self.assertEqual(self.ids(10, 4), [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]])

    def test_unknown_client_gets_nothing(self) -> None:
        """A client id missing from the group list gets no queue."""
        self.assertEqual(self.s.allocate("g", "zz", queues(4), ["a", "b"]), [])

    def test_every_queue_exactly_once(self) -> None:
        """For many shapes the union of allocations is every queue exactly once."""
        for n in range(0, 20):
            for c in range(1, 7):
                got = sum(self.ids(n, c), [])
                self.assertEqual(sorted(got), list(range(n)))


class CircleTests(SynchronousTestCase):
    def test_dealing(self) -> None:
        """By circle: queue k goes to client k % c."""
        s = AllocateMessageQueueAveragelyByCircle()
        mqs = queues(8)
        cids = ["a", "b", "c"]
        got = [[mq.queue_id for mq in s.allocate("g", c, mqs, cids)] for c in cids]
        self.assertEqual(got, [[0, 3, 6], [1, 4, 7], [2, 5]])


class ConsistentHashTests(SynchronousTestCase):
    def test_matches_java(self) -> None:
        """Allocation equals what Java's ConsistentHashRouter (MD5, TreeMap, 10 vnodes) gives.

        Expected owners were computed with a Java program using MessageDigest MD5 and a TreeMap
        exactly as ``ConsistentHashRouter`` does.
        """
        java = {
            "a": "13113131",  # owner digit per queue 0..7 of broker-a
            "b": "31131232",
        }
        cids = ["127.0.0.1@c1", "127.0.0.1@c2", "127.0.0.1@c3"]
        mqs = queues(8, "broker-a") + queues(8, "broker-b")
        s = AllocateMessageQueueConsistentHash()
        owners: dict[MessageQueue, str] = {}
        for cid in cids:
            for mq in s.allocate("g", cid, mqs, cids):
                self.assertNotIn(mq, owners)
                owners[mq] = cid[-1]
        got_a = "".join(owners[mq] for mq in mqs[:8])
        got_b = "".join(owners[mq] for mq in mqs[8:])
        self.assertEqual(got_a, java["a"])
        self.assertEqual(got_b, java["b"])

    def test_md5_hash(self) -> None:
        """The ring hash is the first four MD5 bytes, big-endian, unsigned."""
        # md5("") = d41d8cd98f00b204e9800998ecf8427e
        self.assertEqual(md5_ring_hash(""), 0xD41D8CD9)

    def test_absent_client(self) -> None:
        """A client not in the list gets nothing."""
        s = AllocateMessageQueueConsistentHash()
        self.assertEqual(s.allocate("g", "x", queues(4), ["a"]), [])


class ByConfigTests(SynchronousTestCase):
    def test_fixed(self) -> None:
        """By config: always the configured list."""
        mine = queues(2)
        s = AllocateMessageQueueByConfig(mine)
        self.assertEqual(s.allocate("g", "a", queues(8), ["a", "b"]), mine)


class MessageQueueTests(SynchronousTestCase):
    def test_order_and_str(self) -> None:
        """Queues sort by topic, broker name, then numeric queue id; toString is Java's."""
        a = MessageQueue("T", "b", 10)
        b = MessageQueue("T", "b", 9)
        c = MessageQueue("S", "z", 0)
        self.assertEqual(sorted([a, b, c]), [c, b, a])
        self.assertEqual(a.java_str(), "MessageQueue [topic=T, brokerName=b, queueId=10]")
        self.assertEqual(MessageQueue.from_json_obj(a.to_json_obj()), a)

"""LOCK_BATCH_MQ / UNLOCK_BATCH_MQ: queue locks with 60 s expiry (rmq.broker.rebalance_lock)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.rebalance_lock import QueueId, RebalanceLockManager
from rmq.common import fastjson
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from tests.broker.guarantees_support import GuaranteeBroker, make_root, new_clock
from tests.broker.test_sendback import frame

Q0 = QueueId("T", "broker-a", 0)
Q1 = QueueId("T", "broker-a", 1)


def lock_request(
    client: str, *queues: QueueId, group: str = "G", code: int = RequestCode.LOCK_BATCH_MQ
) -> RemotingCommand:
    """A LOCK/UNLOCK_BATCH_MQ request."""
    body = fastjson.dumps(
        {"clientId": client, "consumerGroup": group, "mqSet": [q.to_json() for q in queues]}
    )
    return new_request(code, body=body)


class RebalanceLockManagerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.locks = RebalanceLockManager(self.clock)

    def test_lock_then_others_refused(self) -> None:
        """A locked queue is refused to another client and granted again to its owner."""
        self.assertEqual(self.locks.try_lock_batch("G", [Q0, Q1], "a"), [Q0, Q1])
        self.assertEqual(self.locks.try_lock_batch("G", [Q0], "b"), [])
        self.assertEqual(self.locks.try_lock_batch("G", [Q0], "a"), [Q0])
        self.assertEqual(self.locks.try_lock_batch("OTHER", [Q0], "b"), [Q0])

    def test_expiry_after_60s_without_renewal(self) -> None:
        """A lock lives 60 s after its last renewal, then another client may take it."""
        self.locks.try_lock_batch("G", [Q0], "a")
        self.clock.advance(40)
        self.locks.try_lock_batch("G", [Q0], "a")
        self.clock.advance(60)
        self.assertEqual(self.locks.try_lock_batch("G", [Q0], "b"), [])
        self.assertTrue(self.locks.is_locked("G", Q0, "a"))
        self.clock.advance(0.001)
        self.assertFalse(self.locks.is_locked("G", Q0, "a"))
        self.assertEqual(self.locks.try_lock_batch("G", [Q0], "b"), [Q0])
        self.assertEqual(self.locks.try_lock_batch("G", [Q0], "a"), [])

    def test_unlock_only_by_owner(self) -> None:
        """UNLOCK by another client leaves the lock; by the owner frees it."""
        self.locks.try_lock_batch("G", [Q0], "a")
        self.locks.unlock_batch("G", [Q0], "b")
        self.assertTrue(self.locks.is_locked("G", Q0, "a"))
        self.locks.unlock_batch("G", [Q0], "a")
        self.assertEqual(self.locks.try_lock_batch("G", [Q0], "b"), [Q0])


class LockProcessorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.b = GuaranteeBroker(self, new_clock(), make_root(self))
        self.addCleanup(self.b.stop)

    def granted(self, response: RemotingCommand | None) -> list[QueueId]:
        assert response is not None
        self.assertEqual(response.code, ResponseCode.SUCCESS)
        return [QueueId.from_json(m) for m in fastjson.loads(response.body)["lockOKMQSet"]]

    def test_java_vectors(self) -> None:
        """Java's LOCK gets the recorded lockOKMQSet; UNLOCK the recorded empty answer."""
        ours = self.b.request(frame("java-lock-batch-mq.req.hex"))
        recorded = frame("java-lock-batch-mq.resp.hex")
        assert ours is not None
        self.assertEqual((ours.code, ours.opaque), (recorded.code, recorded.opaque))
        self.assertEqual(fastjson.loads(ours.body), fastjson.loads(recorded.body))
        self.assertEqual(ours.ext_fields, recorded.ext_fields)
        other = lock_request("someone-else", QueueId("TopicJ", "broker-a", 2), group="CG_ORDER")
        self.assertEqual(self.granted(self.b.request(other)), [])
        ours = self.b.request(frame("java-unlock-batch-mq.req.hex"))
        recorded = frame("java-unlock-batch-mq.resp.hex")
        assert ours is not None
        self.assertEqual((ours.code, ours.opaque, ours.body), (0, recorded.opaque, recorded.body))
        self.assertEqual(self.granted(self.b.request(other)), [QueueId("TopicJ", "broker-a", 2)])

    def test_expiry_through_the_wire(self) -> None:
        """Over the wire too, a lock not renewed for 60 s goes to the next client."""
        self.assertEqual(self.granted(self.b.request(lock_request("a", Q0, Q1))), [Q0, Q1])
        self.assertEqual(self.granted(self.b.request(lock_request("b", Q0, Q1))), [])
        self.b.clock.advance(60.001)
        self.assertEqual(self.granted(self.b.request(lock_request("b", Q1))), [Q1])

    def test_bad_body(self) -> None:
        """A body that is not a lock request answers SYSTEM_ERROR."""
        r = self.b.request(new_request(RequestCode.LOCK_BATCH_MQ, body=b"[1,2"))
        assert r is not None
        self.assertEqual(r.code, ResponseCode.SYSTEM_ERROR)

"""Queue selectors, latency fault tolerance and the in-flight limiter."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rmq.client.flowcontrol import InFlightLimiter
from rmq.client.interfaces import IMessageQueueSelector
from rmq.client.latency import LatencyFaultTolerance, not_available_duration_ms
from rmq.client.message_queue import MessageQueue
from rmq.client.selector import (
    SelectMessageQueueByHash,
    SelectMessageQueueByRandom,
    SelectMessageQueueByRoundRobin,
    java_string_hash,
)

MQS = [MessageQueue("T", "b", i) for i in range(4)]


class SelectorTests(SynchronousTestCase):
    def test_interfaces(self) -> None:
        """All selectors provide IMessageQueueSelector."""
        for s in (
            SelectMessageQueueByHash(),
            SelectMessageQueueByRoundRobin(),
            SelectMessageQueueByRandom(),
        ):
            verifyObject(IMessageQueueSelector, s)

    def test_java_string_hash(self) -> None:
        """String hashes equal Java's String.hashCode (known values)."""
        self.assertEqual(java_string_hash("hello"), 99162322)
        self.assertEqual(java_string_hash(""), 0)
        self.assertEqual(java_string_hash("polygenelubricants"), -(2**31))

    def test_hash_selector(self) -> None:
        """Hash selection is abs(hashCode) % n for str and int keys, and stable."""
        s = SelectMessageQueueByHash()
        self.assertEqual(s.select(MQS, None, "hello"), MQS[99162322 % 4])
        self.assertEqual(s.select(MQS, None, -7), MQS[3])
        self.assertEqual(s.select(MQS, None, "order-1"), s.select(MQS, None, "order-1"))

    def test_round_robin(self) -> None:
        """Round robin walks the queues in order and wraps."""
        s = SelectMessageQueueByRoundRobin()
        got = [s.select(MQS, None, None).queue_id for _ in range(6)]
        self.assertEqual(got, [0, 1, 2, 3, 0, 1])


class LatencyTests(SynchronousTestCase):
    def test_durations(self) -> None:
        """Java's latency table: < 550 ms is free, 550 ms → 30 s, 15 s → 600 s."""
        self.assertEqual(not_available_duration_ms(100), 0)
        self.assertEqual(not_available_duration_ms(549), 0)
        self.assertEqual(not_available_duration_ms(550), 30000)
        self.assertEqual(not_available_duration_ms(3000), 180000)
        self.assertEqual(not_available_duration_ms(20000), 600000)

    def test_isolation_and_recovery(self) -> None:
        """A failed broker is avoided for 600 s (isolation = 30 s latency), then available."""
        clock = Clock()
        lft = LatencyFaultTolerance(clock)
        lft.update("a", 10, isolation=True)
        lft.update("b", 600, isolation=False)
        self.assertFalse(lft.is_available("a"))
        self.assertFalse(lft.is_available("b"))
        self.assertTrue(lft.is_available("c"))
        self.assertEqual(lft.pick_one_at_least(), "b")
        clock.advance(30)
        self.assertTrue(lft.is_available("b"))
        self.assertFalse(lft.is_available("a"))
        clock.advance(570)
        self.assertTrue(lft.is_available("a"))
        lft.remove("a")
        self.assertEqual(lft.pick_one_at_least(), "b")


class LimiterTests(SynchronousTestCase):
    def test_count_bound(self) -> None:
        """The third acquire with max_count=2 waits until a release."""
        lim = InFlightLimiter(2, 1000)
        self.successResultOf(lim.acquire(1))
        self.successResultOf(lim.acquire(1))
        d = lim.acquire(1)
        self.assertNoResult(d)
        lim.release(1)
        self.successResultOf(d)
        self.assertEqual((lim.count, lim.bytes), (2, 2))

    def test_byte_bound_fifo(self) -> None:
        """Bytes are bounded and waiters are admitted in order."""
        lim = InFlightLimiter(100, 10)
        self.successResultOf(lim.acquire(8))
        d1 = lim.acquire(5)
        d2 = lim.acquire(1)  # would fit, but waits behind d1 (FIFO)
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        lim.release(8)
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.assertEqual(lim.bytes, 6)

    def test_oversized_admitted_alone(self) -> None:
        """An item larger than the byte budget is admitted when nothing else is in flight."""
        lim = InFlightLimiter(10, 10)
        self.successResultOf(lim.acquire(50))
        d = lim.acquire(1)
        self.assertNoResult(d)
        lim.release(50)
        self.successResultOf(d)

    def test_cancel_and_fail(self) -> None:
        """A cancelled waiter leaves the queue; fail_waiters fails the rest."""
        lim = InFlightLimiter(1, 10)
        self.successResultOf(lim.acquire(1))
        d1 = lim.acquire(1)
        d2 = lim.acquire(1)
        d1.cancel()
        self.failureResultOf(d1, CancelledError)
        self.assertEqual(lim.waiting, 1)
        lim.fail_waiters(RuntimeError("stop"))
        self.failureResultOf(d2, RuntimeError)

    def test_try_acquire(self) -> None:
        """try_acquire reserves only when the item fits and nobody is waiting."""
        lim = InFlightLimiter(1, 10)
        self.assertTrue(lim.try_acquire(5))
        self.assertFalse(lim.try_acquire(1))
        d = lim.acquire(1)
        lim.release(5)
        self.successResultOf(d)
        self.assertEqual((lim.count, lim.bytes), (1, 1))

    def test_release_without_acquire(self) -> None:
        """Releasing more than acquired is a bug and raises."""
        lim = InFlightLimiter(1, 10)
        self.assertRaises(RuntimeError, lim.release, 1)

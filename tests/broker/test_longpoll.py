"""Tests for the pull hold service (long polling) on a task.Clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.clients import build_subscription
from rmq.broker.longpoll import PullRequestHoldService
from rmq.common.message import tags_hash


class HoldServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.max_offsets: dict[tuple[str, int], int] = {}
        self.hold = PullRequestHoldService(self.clock, lambda t, q: self.max_offsets.get((t, q), 0))

    def test_timeout(self) -> None:
        """A held pull wakes at its suspend timeout and leaves no timer behind."""
        d = self.hold.hold("T", 0, 5, None, 15.0)
        self.clock.advance(14.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.hold), 0)

    def test_arrival_wakes_matching_queue_only(self) -> None:
        """An arrival past the held offset on the same queue wakes it; other queues stay held."""
        d0 = self.hold.hold("T", 0, 5, None, 15.0)
        d1 = self.hold.hold("T", 1, 5, None, 15.0)
        self.hold.on_arrival("T", 0, 4, 0)
        self.assertNoResult(d0)
        self.hold.on_arrival("T", 0, 5, 0)
        self.successResultOf(d0)
        self.assertNoResult(d1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        d1.cancel()
        self.failureResultOf(d1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_tag_filter(self) -> None:
        """An arrival whose tag does not match the held subscription keeps the pull held."""
        sub = build_subscription("T", "TagA")
        d = self.hold.hold("T", 0, 0, sub, 15.0)
        self.hold.on_arrival("T", 0, 0, tags_hash("TagB"))
        self.assertNoResult(d)
        self.hold.on_arrival("T", 0, 1, tags_hash("TagA"))
        self.successResultOf(d)

    def test_periodic_check(self) -> None:
        """The periodic check wakes pulls whose queue grew past their offset."""
        d = self.hold.hold("T", 0, 3, None, 15.0)
        self.max_offsets[("T", 0)] = 3
        self.hold.check_held_requests()
        self.assertNoResult(d)
        self.max_offsets[("T", 0)] = 4
        self.hold.check_held_requests()
        self.successResultOf(d)

    def test_connection_closed_cancels(self) -> None:
        """Closing a connection cancels exactly its holds."""
        mine, other = object(), object()
        d1 = self.hold.hold("T", 0, 0, None, 15.0, mine)
        d2 = self.hold.hold("T", 0, 0, None, 15.0, other)
        self.assertEqual(self.hold.connection_closed(mine), 1)
        self.failureResultOf(d1)
        self.assertNoResult(d2)
        self.hold.wake_all()
        self.successResultOf(d2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

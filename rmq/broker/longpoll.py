"""Long polling: RocketMQ's ``PullRequestHoldService`` on an injected clock.

A PULL_MESSAGE that found nothing (PULL_NOT_FOUND) with the SUSPEND flag is held here, keyed by
``(topic, queueId)``, until a message for that queue whose tags code matches the held subscription
is dispatched (the store's arrival callback), a periodic check finds the queue's max offset past
the held offset, or the request's suspend timeout elapses. Each held pull is one fresh Deferred that
fires with None when the processor should run the pull again (and answer whatever it finds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from rmq.broker.clients import SubscriptionData


@attrs.define(eq=False)
class HeldPull:
    """One suspended pull."""

    topic: str
    queue_id: int
    offset: int
    subscription: SubscriptionData | None
    deferred: Deferred[None]
    connection: Any = None
    timer: IDelayedCall | None = None


class PullRequestHoldService:
    """Held pulls by queue (Java ``PullRequestHoldService``)."""

    log = Logger()

    def __init__(self, clock: IReactorTime, max_offset: Callable[[str, int], int]) -> None:
        self._clock = clock
        self._max_offset = max_offset
        self._held: dict[tuple[str, int], list[HeldPull]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._held.values())

    def hold(
        self,
        topic: str,
        queue_id: int,
        offset: int,
        subscription: SubscriptionData | None,
        timeout_s: float,
        connection: Any = None,
    ) -> Deferred[None]:
        """Suspend a pull at ``offset``; fires with None when it should run again.

        Cancelling the Deferred removes the hold and its timer; so does
        :meth:`connection_closed` for the holds of that ``connection``.
        """
        key = (topic, queue_id)

        def cancel(_: Deferred[None]) -> None:
            self._remove(held)

        held = HeldPull(topic, queue_id, offset, subscription, Deferred(cancel), connection)
        held.timer = self._clock.callLater(max(0.0, timeout_s), self._expire, held)
        self._held.setdefault(key, []).append(held)
        return held.deferred

    def _remove(self, held: HeldPull) -> None:
        key = (held.topic, held.queue_id)
        waiting = self._held.get(key)
        if waiting is not None and held in waiting:
            waiting.remove(held)
            if not waiting:
                del self._held[key]
        if held.timer is not None and held.timer.active():
            held.timer.cancel()
        held.timer = None

    def _wake(self, held: HeldPull) -> None:
        self._remove(held)
        if not held.deferred.called:
            held.deferred.callback(None)

    def _expire(self, held: HeldPull) -> None:
        held.timer = None
        self._wake(held)

    def notify_message_arriving(
        self, topic: str, queue_id: int, max_offset: int, tags_code: int | None = None
    ) -> int:
        """Wake the pulls on (topic, queue) that ``max_offset`` satisfies and the tags code
        matches (None = do not filter). Returns how many woke."""
        waiting = self._held.get((topic, queue_id))
        if not waiting:
            return 0
        woken = [
            h
            for h in waiting
            if max_offset > h.offset
            and (
                tags_code is None
                or h.subscription is None
                or h.subscription.is_matched_by_tags_code(tags_code)
            )
        ]
        for held in woken:
            self._wake(held)
        return len(woken)

    def on_arrival(self, topic: str, queue_id: int, queue_offset: int, tags_code: int) -> None:
        """The store's ArrivalListener: a record was dispatched at ``queue_offset``."""
        self.notify_message_arriving(topic, queue_id, queue_offset + 1, tags_code)

    def check_held_requests(self) -> None:
        """Periodic safety net: wake pulls whose queue grew past their offset."""
        for topic, queue_id in list(self._held):
            self.notify_message_arriving(topic, queue_id, self._max_offset(topic, queue_id))

    def connection_closed(self, connection: Any) -> int:
        """Cancel the holds of a closed connection (nobody is left to answer); returns how many."""
        mine = [h for h in self.held() if h.connection is connection]
        for held in mine:
            held.deferred.cancel()
        return len(mine)

    def wake_all(self) -> None:
        """Let every held pull answer now (broker stopping)."""
        held_lists, self._held = self._held, {}
        for waiting in held_lists.values():
            for held in waiting:
                if held.timer is not None and held.timer.active():
                    held.timer.cancel()
                held.timer = None
                if not held.deferred.called:
                    held.deferred.callback(None)

    def held(self) -> list[HeldPull]:
        """Snapshot of the held pulls (tests, admin)."""
        return [h for waiting in self._held.values() for h in waiting]

"""The lite pull consumer (Java ``DefaultLitePullConsumer``): ``poll()`` returns what the
per-queue pull loops buffered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from rmq.client.api import SubscriptionData
from rmq.client.consumer import BaseConsumer, ConsumerOptions, ProcessQueue, fire_if_waiting
from rmq.client.message_queue import MessageQueue
from rmq.common.asyncutil import deferred_api, log_failure, now_ms
from rmq.common.errors import MQClientError
from rmq.common.message import MessageExt


class PullConsumer(BaseConsumer):
    """Lite pull consumer: ``assign()`` queues or ``subscribe()`` (group rebalance), then
    ``poll()`` for batches of messages, ``seek()`` and ``commit()``.

    With ``auto_commit`` (default) the messages returned by ``poll()`` count as consumed and their
    offsets are committed every 5 s; otherwise call ``commit()``.

    The other keyword arguments (message model, start offset, allocation, pull sizes, client
    instance settings) are :class:`~rmq.client.consumer.ConsumerOptions`.
    """

    consume_type = "CONSUME_ACTIVELY"
    subscribe_retry = False

    def __init__(
        self,
        group: str,
        namesrv_addr: str | None = None,
        clock: IReactorTime | None = None,
        *,
        auto_commit: bool = True,
        **options: Unpack[ConsumerOptions],
    ) -> None:
        super().__init__(group, namesrv_addr, clock, **options)
        self.auto_commit = auto_commit
        self._assigned: list[MessageQueue] | None = None
        self._ready: list[tuple[MessageQueue, MessageExt]] = []
        self._pollers: list[Deferred[None]] = []
        self._delivered: dict[MessageQueue, list[MessageExt]] = {}

    def assign(self, mqs: Sequence[MessageQueue]) -> None:
        """Consume exactly these queues (no group rebalance)."""
        self._assigned = sorted(mqs)
        for mq in self._assigned:
            self.subscriptions.setdefault(
                mq.topic, SubscriptionData.build(mq.topic, "*", now_ms(self.clock))
            )
        if self.running:
            self.rebalance().addErrback(log_failure("assign"))

    @deferred_api
    async def fetch_queues(self, topic: str) -> list[MessageQueue]:
        """The readable queues of ``topic`` (from the NameServer)."""
        route = await self.instance.update_route(topic)
        return route.subscribe_queues(topic)

    async def _rebalance_once(self) -> None:
        if self._assigned is None:
            await super()._rebalance_once()
            return
        wanted: dict[str, list[MessageQueue]] = {}
        for topic in self.subscriptions:
            wanted[topic] = [mq for mq in self._assigned if mq.topic == topic]
        await self._update_process_queues(wanted)

    def _on_messages(self, mq: MessageQueue, pq: ProcessQueue, msgs: list[MessageExt]) -> None:
        for m in msgs:
            self._ready.append((mq, m))
        waiters, self._pollers = self._pollers, []
        for w in waiters:
            if not w.called:
                w.callback(None)

    def poll(self, timeout: float = 5.0) -> Deferred[list[MessageExt]]:
        """Fire with the next messages (up to ``pull_batch_size``), or ``[]`` after ``timeout``."""
        return Deferred.fromCoroutine(self._poll(timeout))

    async def _poll(self, timeout: float) -> list[MessageExt]:
        if self.auto_commit:
            self._commit_delivered()
        if not self._ready and timeout > 0 and self.running:
            w: Deferred[None] = Deferred()
            self._pollers.append(w)
            call = self.clock.callLater(timeout, fire_if_waiting, w)
            try:
                await w
            finally:
                if call.active():
                    call.cancel()
        out: list[MessageExt] = []
        rest = []
        for mq, m in self._ready:
            pq = self.process_queues.get(mq)
            if pq is None or pq.dropped or m.queue_offset not in pq.msgs:
                continue
            if len(out) < self.pull_batch_size:
                out.append(m)
                self._delivered.setdefault(mq, []).append(m)
            else:
                rest.append((mq, m))
        self._ready = rest
        return out

    def _commit_delivered(self) -> None:
        delivered, self._delivered = self._delivered, {}
        for mq, msgs in delivered.items():
            pq = self.process_queues.get(mq)
            if pq is not None:
                self._consumed(mq, pq, msgs)

    @deferred_api
    async def commit(self) -> None:
        """Mark everything returned by ``poll()`` as consumed and persist the offsets now."""
        self._commit_delivered()
        if self.offset_store is not None:
            await self.offset_store.persist(self.assigned_queues())

    def seek(self, mq: MessageQueue, offset: int) -> None:
        """Continue ``mq`` from ``offset`` (buffered messages of it are discarded)."""
        pq = self.process_queues.get(mq)
        if pq is None:
            raise MQClientError(f"The message queue is not in assigned list: {mq.java_str()}")
        pq.stop()
        new = ProcessQueue()
        new.next_offset = offset
        self.process_queues[mq] = new
        self._ready = [(q, m) for q, m in self._ready if q != mq]
        self._delivered.pop(mq, None)
        if self.offset_store is not None:
            self.offset_store.update_offset(mq, offset, False)
        self._start_pulling(mq, new)

    def committed(self, mq: MessageQueue) -> int:
        """The in-memory committed offset of ``mq`` (-1 if none)."""
        if self.offset_store is None:
            return -1
        return self.offset_store.current(mq)


__all__ = ["PullConsumer"]
